"""`roadwork bench`: speed measurements, apart from the product's build and serve path.

cpu.py            the plain bench: a profile's latency and throughput on generated frames
gpu.py            `bench --gpu`, the in-process levels under concurrent load, stage by stage:
  options.py        what a run builds and where (placement, --only, the bench's profile)
  build.py          voters built with random weights (registry entries' `random` forms), probed
  timing.py         frames through the cascade at a concurrency, native batched cost, the loop
  utilisation.py    GPU busy share, CPU cores, peak memory against the plan, the machine
  levers.py         fp16 vs bf16, channels_last, torch.compile
results.py        the schema `roadwork plan --costs` and `--expected-cost` read result JSON through
expected_cost.py  early-exit shares -> expected GPU ms per query
cli.py            the command bodies (light at import: torch loads when a command runs)
"""
