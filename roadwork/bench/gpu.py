"""`roadwork bench --gpu`: the in-process levels (L0-L2) of a profile under concurrent load.

The run, stage by stage (the other modules of roadwork/bench/ hold each stage's parts).

With `--random-weights` every in-process voter of the profile is built at its real size from its
config (detectors/random_weights.py; no downloads), placed on its configured device (`--single-gpu`
moves all of them to cuda:0, `--device` to one named device). Then:

  cold      the first query on the freshly built cascade (lazy CUDA/cuDNN init included)
  warm-up   each model once at batch 1 and at its batch size, then the first query again
  native    each model's own batched cost: predict on `native_batch` frames directly (no cascade)
  loop      a sequential per-frame, per-model loop (what you would write without batching)
            (`--no-native` skips these two: no overhead or speed-up figures then)
  cascade   for each concurrency C: C frames driven at once through `await cascade.run(...)`
            (asyncio.gather under a semaphore), micro-batched per model (detectors/batching.py)

and reports img/s, p50/p95 latency, peak GPU memory per device against `roadwork plan`'s
prediction, the overhead of the cascade over the sum of the models' native batched cost
(goal <= 15 %) and its speed-up over the loop (goal >= 3x). VLM tiers (vlm-http) are not
in-process and are listed as excluded; voters whose package is missing are listed as skipped.
`--no-early-exit` opens every band so every frame runs every in-process level (random weights
give meaningless probabilities). `--tiny` maps every voter to a tiny config (CPU smoke run).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cascade.config import CascadeConfig
from roadwork.bench.build import build_all, build_all_remote, close_voter, cuda_devices, make_frames
from roadwork.bench.levers import try_levers
from roadwork.bench.options import GpuBenchOptions, compile_for_one_process, place, split_voters
from roadwork.bench.timing import concurrency_run, first_queries, native_all, time_loop
from roadwork.bench.utilisation import machine, memory_report


def run_gpu_bench(
    cfg: CascadeConfig, opts: GpuBenchOptions, progress: Any = None, checkpoint: Any = None
) -> dict[str, Any]:
    """The whole measurement; returns the JSON-ready result (see the module docstring).

    `checkpoint(result)` is called after every stage with what is measured so far
    (`complete: false`, `stage`), so a run cut off by a time limit still leaves its figures.
    """
    import torch

    def step(msg: str) -> None:
        if progress is not None:
            progress(msg)

    cfg = place(cfg, opts)
    voters, excluded = split_voters(cfg, opts)
    cuda_devs = cuda_devices(voters)
    if cuda_devs and not torch.cuda.is_available():
        raise RuntimeError(
            f"voters are placed on {cuda_devs} but CUDA is not available here; use --tiny (CPU) or --device cpu"
        )
    absent = [d for d in cuda_devs if int(d.split(":")[1]) >= torch.cuda.device_count()]
    if absent:
        raise RuntimeError(
            f"voters are placed on {absent} but this machine has {torch.cuda.device_count()} "
            "GPU(s); add --single-gpu (every model on cuda:0) or --device cuda:0"
        )
    for d in cuda_devs:
        torch.zeros(1, device=d)  # the allocator of a device must exist before its stats can be reset
        torch.cuda.reset_peak_memory_stats(d)
    remote = cfg.runtime.process_per_device if opts.process_per_device is None else opts.process_per_device
    workers = cfg.runtime.workers_per_device if opts.workers_per_device is None else opts.workers_per_device
    if workers > 1 and not remote:
        raise RuntimeError(
            f"{workers} workers per device need worker processes: drop --one-process, or add --process-per-device"
        )
    lanes = cfg.runtime.lanes_per_worker if opts.lanes_per_worker is None else opts.lanes_per_worker
    if lanes > 1 and not remote:
        raise RuntimeError(f"{lanes} lanes per worker need worker processes: drop --one-process")
    transport = cfg.runtime.frame_transport if opts.frame_transport is None else opts.frame_transport
    opts = replace(opts, workers_per_device=workers, lanes_per_worker=lanes, frame_transport=transport)
    adjusted: dict[str, str] = {}
    if not remote:
        voters, adjusted = compile_for_one_process(voters)
    procs: list = []
    step(
        f"building {len(voters)} in-process voters with random weights"
        + (" (a worker process per device)" if remote else "")
    )
    if remote:
        dets, info, skipped, procs = build_all_remote(cfg, voters, opts)
    else:
        dets, info, skipped = build_all(cfg, voters, opts)
    for name, note in adjusted.items():
        if name in info:
            info[name]["adjusted"] = note
    try:
        return _measure(cfg, voters, excluded, dets, info, skipped, procs, opts, step, checkpoint)
    finally:
        for d in dets:
            close_voter(d)
        for p in procs:
            p.close()


def _measure(
    cfg: CascadeConfig,
    voters: list,
    excluded: dict,
    dets: list,
    info: dict,
    skipped: dict,
    procs: list,
    opts: GpuBenchOptions,
    step: Any,
    checkpoint: Any,
) -> dict[str, Any]:
    def save(stage: str) -> None:
        result["stage"] = stage
        if checkpoint is not None:
            checkpoint(result)

    if not dets:
        raise RuntimeError(f"no in-process voter could be built: {skipped}")
    result: dict[str, Any] = {
        "profile": cfg.name,
        "random_weights": True,
        "tiny": opts.tiny,
        "single_gpu": opts.single_gpu,
        "no_early_exit": opts.no_early_exit,
        "image_size": opts.size,
        "dtype_override": opts.dtype,
        "process_per_device": bool(procs),
        "workers_per_device": opts.workers_per_device if procs else None,
        "lanes_per_worker": opts.lanes_per_worker if procs else None,
        "worker_split": cfg.runtime.worker_split if procs else None,
        "frame_transport": opts.frame_transport if procs else None,
        "start_early": [lv.name for lv in cfg.runtime.start_early],
        "input_scale": {v.name: v.input_long_side for v in voters if v.input_long_side is not None},
        "complete": False,
        "voters": info,
        "skipped": skipped,
        "excluded": excluded,
        "goals": {"overhead_max": 0.15, "speedup_min": 3.0},
        "machine": machine(),
        "concurrency": {},
    }
    save("built")
    frames = make_frames(max(opts.native_batch, opts.loop_frames), opts.size, seed=1)
    dets, result["first_query_ms"], primed = first_queries(
        cfg, voters, dets, info, skipped, opts, frames, step, fallback=not procs
    )
    save("first queries")

    def native_next(name: str, i: int, n: int) -> None:
        step(f"native batched cost: {name} ({i + 1}/{n})")
        if i:
            save("native batched cost (part)")  # the models done so far keep their figures if the run is cut

    result["native_sum_ms_per_image"] = result["loop_ms_per_image"] = None  # so with --no-native
    if opts.native:
        dets = native_all(dets, info, skipped, primed, on_model=native_next)
        result["native_sum_ms_per_image"] = sum(info[d.name]["native"]["ms_per_image"] for d in dets)
        save("native batched cost")
        step("sequential loop")
        result["loop_ms_per_image"] = time_loop(dets, frames[: opts.loop_frames])
        save("sequential loop")
    else:
        step("native batched cost and sequential loop skipped (--no-native)")
    native_sum, loop_ms = result["native_sum_ms_per_image"], result["loop_ms_per_image"]
    for c in opts.concurrency:
        step(f"cascade at concurrency {c}")
        result["concurrency"][str(c)] = concurrency_run(cfg, dets, voters, opts, c, native_sum, loop_ms)
        save(f"concurrency {c}")
    result["memory"] = memory_report(voters, {d.name for d in dets}, cfg, procs)
    if opts.levers:
        step("levers: fp16 vs bf16, channels_last")
        result["levers"] = {}
        try_levers(cfg, voters, dets, primed, opts, out=result["levers"], on_model=lambda: save("levers"))
    result["complete"] = True
    save("done")
    return result
