"""`roadwork bench --gpu`: the in-process levels (L0-L2) of a profile under concurrent load.

With `--random-weights` every in-process voter of the profile is built at its real size from its
config (detectors/random_weights.py; no downloads), placed on its configured device (`--single-gpu`
moves all of them to cuda:0, `--device` to one named device). Then:

  cold      the first query on the freshly built cascade (lazy CUDA/cuDNN init included)
  warm-up   each model once at batch 1 and at its batch size, then the first query again
  native    each model's own batched cost: predict on `native_batch` frames directly (no cascade)
  loop      a sequential per-frame, per-model loop (what you would write without batching)
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

import asyncio
import dataclasses
import importlib.util
import platform
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cascade.config import CascadeConfig, ConsensusConfig, LevelConfig
from cascade.placement import card
from cascade.types import AbstainCause, Frame, Level

PACKAGES = {
    "ultralytics": "ultralytics",
    "rfdetr": "rfdetr",
    "ocr-signs": "rapidocr_onnxruntime",
    "hf-detector": "transformers",
    "depth-size": "transformers",
    "sam-mask": "transformers",
    "scene-zero-shot": "transformers",
    "backbone-head": "transformers",
    "wbf-ensemble": "ensemble_boxes",
}
GIB = 1024**3


@dataclass
class GpuBenchOptions:
    concurrency: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    device: str | None = None
    """Put every in-process voter on this device (default: the profile's devices)."""
    single_gpu: bool = False
    """Remap every cuda:N to cuda:0 (the 1-GPU side of a 2-GPU vs 1-GPU comparison)."""
    tiny: bool = False
    no_early_exit: bool = False
    dtype: str | None = None
    """Override the profile's dtype: float16, bfloat16 or float32."""
    levers: bool = False
    """Also time each model's native batch in the other half dtype and with channels_last."""
    size: int = 224
    native_batch: int = 32
    loop_frames: int = 8
    only: list[str] | None = None
    process_per_device: bool | None = None
    """Each GPU's voters in a worker process of their own; None: as the profile's runtime says."""


def package_missing(kind: str) -> str | None:
    pkg = PACKAGES.get(kind)
    if pkg and importlib.util.find_spec(pkg) is None:
        return f"package {pkg!r} is not installed (voter kind {kind!r})"
    return None


def place(cfg: CascadeConfig, opts: GpuBenchOptions) -> CascadeConfig:
    """The profile with devices remapped for this run (CPU for --tiny without --device)."""

    def dev(d: str) -> str:
        if opts.device is not None:
            return d if d == "cpu" else opts.device
        if opts.tiny:
            return "cpu"
        if opts.single_gpu and d.startswith("cuda"):
            return "cuda:0"
        return card(d)

    voters = [v.model_copy(update={"device": dev(v.device)}) for v in cfg.voters]
    return cfg.model_copy(update={"voters": voters})


def split_voters(cfg: CascadeConfig, opts: GpuBenchOptions) -> tuple[list, dict[str, str]]:
    from detectors.random_weights import IN_PROCESS_EXCLUDED

    run, excluded = [], {}
    for v in cfg.voters:
        if not v.enabled:
            excluded[v.name] = "disabled in the profile"
        elif v.kind in IN_PROCESS_EXCLUDED:
            excluded[v.name] = (
                f"{v.kind} ({v.level.name}) runs on a vLLM server, not in-process; its cost "
                "comes from benchmarks/vlm_prefill_bench.py"
            )
        elif opts.only is not None and v.name not in opts.only:
            excluded[v.name] = "not in --only"
        else:
            run.append(v)
    return run, excluded


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _devices(voters: list) -> list[str]:
    return sorted({v.device for v in voters if v.device.startswith("cuda")})


def _procs(dets: list) -> list:
    """The device worker processes behind these detectors, once each."""
    from detectors.device_process import RemoteVoter

    return list({id(m.proc): m.proc for d in dets if isinstance(m := inner(d), RemoteVoter)}.values())


def _allocated(devices: list[str]) -> dict[str, float]:
    import torch

    return {d: torch.cuda.memory_allocated(d) / GIB for d in devices}


BUILD_ERRORS = (ImportError, OSError, RuntimeError, ValueError, TypeError, KeyError, SyntaxError)
"""What a backend may raise on a config or dtype it cannot run (ultralytics raises SyntaxError on bad args)."""


def probe_prior() -> Any:
    """An L1 vote with two roadwork boxes: in a frame's prior votes it makes L2 validators run their model."""
    from cascade.types import Vote
    from detectors.evidence import Boxes

    boxes = Boxes(
        np.array([[0.1, 0.5, 0.18, 0.75], [0.6, 0.4, 0.9, 0.7]]), np.array([0.9, 0.7]), ("traffic cone", "road barrier")
    )
    return Vote("probe", "L1", 0.6, evidence={"boxes": boxes.to_evidence()})


def probe_frames(size: int) -> list[Frame]:
    """Two frames with a few L1 boxes in their prior votes, so L2 validators run their model too."""
    prior = probe_prior()
    return [dataclasses.replace(f, meta={"prior_votes": (prior,)}) for f in make_frames(2, size, seed=7)]


def probe(det: Any, frames: list[Frame]) -> str | None:
    """None when the model answers; else why not (an exception, or every vote failing)."""
    try:
        votes = inner(det).predict(frames)
    except BUILD_ERRORS as exc:
        return f"{type(exc).__name__}: {str(exc)[:300]}"
    failed = [v.reason for v in votes if v.cause is AbstainCause.ERROR]
    return failed[0][:300] if failed and len(failed) == len(votes) else None


def build_one(cfg: CascadeConfig, v: Any, opts: GpuBenchOptions, dtype: str | None = None) -> tuple[Any, str | None]:
    from detectors.random_weights import NoRandomConfigError, build_random

    try:
        return build_random(v, cfg.base_dir, tiny=opts.tiny, dtype=dtype or opts.dtype), None
    except (NoRandomConfigError, *BUILD_ERRORS) as exc:
        return None, f"build failed: {type(exc).__name__}: {str(exc)[:300]}"


def verify(
    cfg: CascadeConfig,
    voters: list,
    dets: list,
    info: dict,
    skipped: dict,
    opts: GpuBenchOptions,
    fallback: bool = True,
) -> list:
    """Probe each built model; a half-precision one that fails is rebuilt in float32 (noted), one that
    still fails moves to `skipped`. Returns the detectors that run, in order."""
    frames = probe_frames(opts.size)
    by_name = {v.name: v for v in voters}
    ok = []
    for det in dets:
        name = det.name
        why = probe(det, frames)
        if why is not None and fallback and not opts.tiny and opts.dtype != "float32":
            info[name].update(half_failed=why, dtype="float32 (fallback)")
            _close(det)
            det, err = build_one(cfg, by_name[name], opts, dtype="float32")
            why = err if det is None else probe(det, frames)
        if why is None:
            ok.append(det)
        else:
            skipped[name] = f"does not run: {why}" + (
                f" (half precision failed first: {info[name]['half_failed']})" if "half_failed" in info[name] else ""
            )
            del info[name]
            _close(det)
    return ok


def _close(det: Any) -> None:
    close = getattr(det, "close", None)
    if callable(close):
        close()


def build_all(cfg: CascadeConfig, voters: list, opts: GpuBenchOptions) -> tuple[list, dict, dict]:
    """Build each voter with random weights; returns (detectors, per-voter info, skipped)."""
    dets, info, skipped = [], {}, {}
    devices = _devices(voters)
    for v in voters:
        missing = package_missing(v.kind)
        if missing:
            skipped[v.name] = missing
            continue
        before = _allocated(devices)
        t0 = time.perf_counter()
        det, err = build_one(cfg, v, opts)
        if det is None:
            skipped[v.name] = err
            continue
        _sync()
        after = _allocated(devices)
        weights = after.get(v.device, 0.0) - before.get(v.device, 0.0)
        info[v.name] = info_row(v, build_s=round(time.perf_counter() - t0, 2), weights_gib=round(weights, 3))
        dets.append(det)
    return dets, info, skipped


def info_row(v: Any, **measured: Any) -> dict[str, Any]:
    """The JSON row of one built voter: what the profile says of it, what its build measured, its plan."""
    return {
        "kind": v.kind,
        "level": v.level.name,
        "device": v.device,
        "batch": v.batch,
        **measured,
        "planned_gib": round(v.memory.total_gib(), 3) if v.memory else None,
    }


def build_all_remote(cfg: CascadeConfig, voters: list, opts: GpuBenchOptions) -> tuple[list, dict, dict, list]:
    """build_all with each device's voters in a worker process (detectors/device_process.py).

    A voter that cannot be built stops its whole device's worker (the error names the device); a
    `--tiny` run puts the CPU voters in a worker too, so the path runs without a GPU."""
    from detectors.device_process import build_voters
    from detectors.random_weights import NoRandomConfigError, random_voter
    from detectors.registry import build

    skipped: dict[str, str] = {}
    ok, randomised = [], []
    for v in voters:
        missing = package_missing(v.kind)
        if missing:
            skipped[v.name] = missing
            continue
        try:  # the entry that builds the same architecture with random weights, then the production build
            randomised.append(random_voter(v, opts.tiny, opts.dtype))
        except (NoRandomConfigError, *BUILD_ERRORS) as exc:
            skipped[v.name] = f"build failed: {type(exc).__name__}: {str(exc)[:300]}"
            continue
        ok.append(v)

    def local(v: Any) -> Any:
        try:
            return build(v, cfg.base_dir)
        except BUILD_ERRORS as exc:
            skipped[v.name] = f"build failed: {type(exc).__name__}: {str(exc)[:300]}"
            return None

    dets, procs = build_voters(
        randomised, cfg.base_dir, torch_threads=cfg.runtime.torch_threads, local=local, include_cpu=opts.tiny
    )
    dets = [d for d in dets if d is not None]
    built = {n: p.info[n] for p in procs for n in p.names}  # what each worker measured while building
    info = {
        v.name: info_row(v, process="worker" if v.name in built else "main", **built.get(v.name, {}))
        for v in ok
        if v.name not in skipped
    }
    return dets, info, skipped, procs


def bench_config(cfg: CascadeConfig, voters: list, opts: GpuBenchOptions, workers: int) -> CascadeConfig:
    """The profile limited to the built voters; all bands open with --no-early-exit; no deadline cut."""
    levels = cfg.levels
    if opts.no_early_exit:
        levels = [LevelConfig(level=lv) for lv in sorted({v.level for v in voters})]
    runtime = cfg.runtime.model_copy(update={"deadline_ms": 600_000.0, "margin_ms": 0.0, "workers": workers})
    return cfg.model_copy(
        update={"voters": voters, "levels": levels, "runtime": runtime, "consensus": ConsensusConfig()}
    )


def make_frames(n: int, size: int, seed: int = 0) -> list[Frame]:
    from roadwork.bench import bench_frames

    return bench_frames(n, size, seed)


def inner(det: Any) -> Any:
    """The model under a MicroBatcher (native cost is measured without our batching)."""
    return det.unwrap()


def with_priors(frames: list[Frame], verdicts: list) -> list[Frame]:
    """Frames carrying the L0/L1 votes a cascade run gave them, so L2 validators see boxes."""
    return [
        dataclasses.replace(f, meta={**f.meta, "prior_votes": tuple(x for x in v.votes if x.level < Level.L2)})
        for f, v in zip(frames, verdicts, strict=True)
    ]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


async def drive(cascade: Any, frames: list[Frame], concurrency: int) -> tuple[float, list[float], list]:
    """All frames through `cascade.run`, at most `concurrency` in flight; (wall s, latencies ms, verdicts)."""
    from cascade.budget import Deadline

    sem = asyncio.Semaphore(concurrency)
    lat: list[float] = []

    async def one(frame: Frame) -> Any:
        async with sem:
            t0 = time.perf_counter()
            verdict = await cascade.run(frame, Deadline.after(600.0))
            lat.append((time.perf_counter() - t0) * 1000)
            return verdict

    t0 = time.perf_counter()
    verdicts = await asyncio.gather(*(one(f) for f in frames))
    _sync()
    return time.perf_counter() - t0, lat, list(verdicts)


def new_cascade(cfg: CascadeConfig, dets: list, voters: list, opts: GpuBenchOptions, concurrency: int) -> Any:
    from cascade.pipeline import Cascade

    per_level = max(sum(1 for d in dets if d.level == lv) for lv in {d.level for d in dets})
    workers = max(4, min(concurrency * per_level, 1024))
    built = {d.name for d in dets}
    return Cascade(dets, bench_config(cfg, [v for v in voters if v.name in built], opts, workers))


def time_native(det: Any, frames: list[Frame], device: str, repeats: int = 3) -> dict[str, float]:
    """Warm batched calls of the bare model, timed (the median of `repeats`: one call varied 2-3x on
    a shared H100); with its peak activation memory on CUDA (in this process only: a worker
    process's memory is read by memory_report)."""
    import torch

    m = inner(det)
    m.predict(frames)  # warm at this batch size
    from detectors.device_process import RemoteVoter

    cuda = device.startswith("cuda") and torch.cuda.is_available() and not isinstance(m, RemoteVoter)
    if cuda:
        _sync()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        m.predict(frames)
        _sync()
        runs.append((time.perf_counter() - t0) * 1000 / len(frames))
    out = {"ms_per_image": float(np.median(runs)), "batch": len(frames), "repeats": repeats}
    if cuda:
        out["activation_peak_gib"] = round((torch.cuda.max_memory_allocated(device) - base) / GIB, 3)
    return out


def time_loop(dets: list, frames: list[Frame]) -> float:
    """Sequential loop: each frame through each model one call at a time, levels in order. ms/image."""
    levels = sorted({d.level for d in dets})
    t0 = time.perf_counter()
    for f in frames:
        votes: list = []
        for lv in levels:
            seen = dataclasses.replace(f, meta={**f.meta, "prior_votes": tuple(votes)})
            for d in dets:
                if d.level == lv:
                    votes.extend(inner(d).predict([seen]))
    _sync()
    return (time.perf_counter() - t0) * 1000 / len(frames)


def warm_up(dets: list, frames: list[Frame]) -> None:
    for d in dets:
        m = inner(d)
        m.warmup()
        m.predict(frames[:1])
        m.predict(frames[: getattr(m, "batch", 1)])


def memory_report(voters: list, built: set[str], cfg: CascadeConfig, procs: list | None = None) -> dict[str, Any]:
    """Peak allocated per device vs what build_plan predicts for the same in-process voters
    (read from each device's worker process when the voters run in workers)."""
    import torch

    from cascade.placement import PlacementConfig, build_plan

    devices = _devices([v for v in voters if v.name in built])
    if not devices or not torch.cuda.is_available():
        return {}
    gpus = [g for g in cfg.placement.gpus if g.id in devices] or [
        {"id": d, "memory_gib": torch.cuda.get_device_properties(d).total_memory / GIB} for d in devices
    ]
    placement = PlacementConfig.model_validate({"gpus": [g if isinstance(g, dict) else g.model_dump() for g in gpus]})
    plan = build_plan(
        [v for v in voters if v.name in built and v.memory is not None], placement, one_batch_at_a_time=bool(procs)
    )
    planned = {g.gpu.id: g.planned_gib for g in plan.gpus}
    remote = {d: m for p in procs or [] for d, m in p.memory().items()}
    out = {}
    for d in devices:
        if d in remote:
            peak, reserved = remote[d]["peak_allocated_gib"], remote[d]["reserved_gib"]
        else:
            peak, reserved = torch.cuda.max_memory_allocated(d) / GIB, torch.cuda.memory_reserved(d) / GIB
        out[d] = {
            "peak_allocated_gib": round(peak, 3),
            "reserved_gib": round(reserved, 3),
            "planned_gib": round(planned.get(d, 0.0), 3),
            "measured_over_planned": round(peak / planned[d], 3) if planned.get(d) else None,
        }
    return out


def machine() -> dict[str, Any]:
    import os

    import torch

    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    )
    return {
        "gpus": gpus,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }


def first_query_ms(cascade: Any, frame: Frame) -> float:
    t0 = time.perf_counter()
    asyncio.run(drive(cascade, [frame], 1))
    return (time.perf_counter() - t0) * 1000


class Utilisation:
    """Samples each GPU's busy share (NVML, every 100 ms) and the CPU time used over a run.

    `cpu_cores_busy` is CPU seconds (this process and its device workers) over wall seconds: near
    the core count means the run is bound by the CPU; a GPU near 100 % busy means that GPU is the
    limit; neither (as measured on 2x H100) points at one thread holding the GIL.
    """

    def __init__(self, devices: list[str], period_s: float = 0.1, procs: list | None = None) -> None:
        import threading

        self.devices, self.period_s, self.procs = devices, period_s, list(procs or [])
        self.samples: dict[str, list[float]] = {d: [] for d in devices}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="utilisation", daemon=True)

    def _run(self) -> None:
        import torch

        while not self._stop.wait(self.period_s):
            for d in self.devices:
                try:
                    self.samples[d].append(float(torch.cuda.utilization(d)))
                except Exception:
                    return

    @staticmethod
    def _cpu_s() -> dict[str, float]:
        """CPU seconds of this process ("main") and of each child (worker) process by pid (psutil);
        without psutil, of this process only."""
        try:
            import psutil
        except ImportError:
            return {"main": time.process_time()}
        me = psutil.Process()
        out = {"main": sum(me.cpu_times()[:2])}
        for child in me.children(recursive=True):
            try:
                out[str(child.pid)] = sum(child.cpu_times()[:2])
            except psutil.Error:
                pass
        return out

    def _busy_s(self) -> dict[str, float]:
        return {f"{p.device}#{i}": p.busy_s for i, p in enumerate(self.procs)}

    def _busy_by_voter(self) -> dict[str, float]:
        return {n: s for p in self.procs for n, s in p.busy_by_voter.items()}

    def __enter__(self) -> Utilisation:
        self._cpu0, self._busy0, self._t0 = self._cpu_s(), self._busy_s(), time.perf_counter()
        self._voter0 = self._busy_by_voter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        wall = max(time.perf_counter() - self._t0, 1e-9)
        cpu = self._cpu_s()
        per = {k: (v - self._cpu0.get(k, 0.0)) / wall for k, v in cpu.items()}
        self.cpu_cores_busy = sum(per.values())
        self.cpu_cores_main = per["main"]
        self.cpu_cores_workers = {k: round(v, 2) for k, v in per.items() if k != "main" and v > 0.05}
        self.worker_busy_pct = {k: round(100 * (v - self._busy0[k]) / wall, 1) for k, v in self._busy_s().items()}
        self.voter_busy_s = {n: s - self._voter0.get(n, 0.0) for n, s in self._busy_by_voter().items()}

    def report(self) -> dict[str, Any]:
        gpus = {d: round(float(np.mean(v)), 1) for d, v in self.samples.items() if v}
        out = {
            "gpu_busy_pct_mean": gpus,
            "cpu_cores_busy": round(self.cpu_cores_busy, 2),
            "cpu_cores_main": round(self.cpu_cores_main, 2),
            "cpu_cores_workers": self.cpu_cores_workers,
        }
        if self.worker_busy_pct:
            out["worker_busy_pct"] = self.worker_busy_pct
        return out


def concurrency_run(
    cfg: CascadeConfig, dets: list, voters: list, opts: GpuBenchOptions, c: int, native_sum_ms: float, loop_ms: float
) -> dict[str, Any]:
    cascade = new_cascade(cfg, dets, voters, opts, c)
    for d in dets:  # count this run's micro-batches only
        if hasattr(d, "stats"):
            d.stats.__init__()
    try:
        frames = make_frames(c, opts.size, seed=c)
        running = {d.name for d in dets}
        with Utilisation(_devices([v for v in voters if v.name in running]), procs=_procs(dets)) as util:
            wall, lat, verdicts = asyncio.run(drive(cascade, frames, c))
    finally:
        cascade.close()
    per_image_ms = wall * 1000 / len(frames)
    exits: dict[str, int] = {}
    for v in verdicts:
        key = v.exit_level.name if v.exit_level is not None else "none"
        exits[key] = exits.get(key, 0) + 1
    batchers = {
        d.name: {"mean_batch": round(d.stats.mean_batch, 2), "batches": d.stats.batches}
        for d in dets
        if hasattr(d, "stats")
    }
    abstained: dict[str, dict[str, int]] = {}  # random weights abstain for reasons worth seeing
    for v in verdicts:
        for vote in v.votes:
            if vote.abstained:
                reasons = abstained.setdefault(vote.voter, {})
                reasons[vote.reason[:80]] = reasons.get(vote.reason[:80], 0) + 1
    return {
        "frames": len(frames),
        "img_per_s": len(frames) / wall,
        "wall_s": wall,
        "latency_ms": {"p50": pct(lat, 50), "p95": pct(lat, 95), "max": max(lat)},
        "overhead_vs_native_sum": per_image_ms / native_sum_ms - 1 if native_sum_ms else None,
        "speedup_vs_loop": loop_ms / per_image_ms if per_image_ms else None,
        "exit_levels": exits,
        "micro_batches": batchers,
        "abstained": abstained,
        "utilisation": util.report(),
        # each voter's time in its device worker per frame, at this run's batch sizes (for `plan --costs`)
        "worker_ms_per_image": {n: round(s * 1000 / len(frames), 3) for n, s in util.voter_busy_s.items() if s},
    }


COMPILE_MODES = ("default", "reduce-overhead")
"""torch.compile modes tried on the first L0 backbone: inductor fusion, and the same with CUDA graphs."""


def compiled_native(det: Any, frames: list[Frame], device: str, mode: str) -> dict[str, Any]:
    """ms/image of an L0 backbone under torch.compile (static shapes: the input size is fixed),
    with the seconds the compilation took; or why it failed."""
    import torch

    bb = inner(det).backbone
    eager = bb.model
    try:
        bb.forward = torch.compile(eager, mode=mode, dynamic=False)
        t0 = time.perf_counter()
        inner(det).predict(frames)  # compile for this batch size
        compile_s = time.perf_counter() - t0
        return {
            "ms_per_image": round(time_native(det, frames, device)["ms_per_image"], 3),
            "compile_s": round(compile_s, 1),
        }
    except Exception as exc:
        return {"failed": f"{type(exc).__name__}: {str(exc)[:200]}"}
    finally:
        bb.forward = eager
        torch._dynamo.reset()


def try_levers(
    cfg: CascadeConfig,
    voters: list,
    dets: list,
    frames: list[Frame],
    opts: GpuBenchOptions,
    out: dict[str, Any] | None = None,
    on_model: Any = None,
) -> dict:
    """Native batched cost per model in fp16 vs bf16 (rebuilt), with channels_last, and (the first
    L0 backbone) compiled; fills `out` model by model and calls `on_model()` after each."""
    import torch

    from detectors.random_weights import HF_KINDS, build_random

    out = {} if out is None else out
    by_name = {v.name: v for v in voters}
    compiled = False
    for det in dets:
        v = by_name[det.name]
        if v.kind not in (*HF_KINDS, "backbone-head") or not (v.device.startswith("cuda") or opts.tiny):
            continue
        res = {}
        for dt in ("float16", "bfloat16"):
            try:
                other = build_random(v, cfg.base_dir, tiny=opts.tiny, dtype=dt)
                if v.kind == "backbone-head":  # levers start from eager, whatever the profile compiles
                    inner(other).backbone.forward = inner(other).backbone.model
                res[dt] = round(time_native(other, frames, v.device)["ms_per_image"], 3)
                model = getattr(inner(other), "model", None)
                if dt == "float16" and isinstance(model, torch.nn.Module):
                    model.to(memory_format=torch.channels_last)
                    res["float16+channels_last"] = round(time_native(other, frames, v.device)["ms_per_image"], 3)
                if dt == "float16" and v.kind == "backbone-head" and not opts.tiny and not compiled:
                    compiled = True  # L0 runs on every query; one backbone shows what compiling buys
                    for mode in COMPILE_MODES:
                        got = compiled_native(other, frames, v.device, mode)
                        res[f"float16+compile:{mode}"] = got.get("ms_per_image", got.get("failed"))
                        res[f"float16+compile:{mode}:compile_s"] = got.get("compile_s")
                del other
            except (RuntimeError, ValueError, TypeError) as exc:
                res[dt] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        timed = {k: x for k, x in res.items() if isinstance(x, float) and not k.endswith("compile_s")}
        res["best"] = min(timed, key=timed.get) if timed else None  # failures are strings
        out[det.name] = res
        if on_model is not None:
            on_model()
    return out


def first_queries(
    cfg: CascadeConfig,
    voters: list,
    dets: list,
    info: dict,
    skipped: dict,
    opts: GpuBenchOptions,
    frames: list[Frame],
    step: Any,
    fallback: bool = True,
) -> tuple[list, dict, list[Frame]]:
    """Cold first query, probe (fp32 fallback), warm-up, first query again; returns the running
    detectors, the first-query figures and frames primed with L0/L1 votes for the native runs."""
    step("cold first query")
    cascade = new_cascade(cfg, dets, voters, opts, 1)
    cold_ms = first_query_ms(cascade, frames[0])
    cascade.close()
    step("probing each model (half precision that fails is rebuilt in float32)")
    dets = verify(cfg, voters, dets, info, skipped, opts, fallback)
    if not dets:
        raise RuntimeError(f"no in-process voter runs: {skipped}")
    step("warm-up")
    cascade = new_cascade(cfg, dets, voters, opts, opts.native_batch)
    t0 = time.perf_counter()
    warm_up(dets, frames)
    _, _, verdicts = asyncio.run(drive(cascade, frames[: opts.native_batch], opts.native_batch))
    warm_s = time.perf_counter() - t0
    warm_ms = first_query_ms(cascade, frames[1])
    cascade.close()
    figures = {"cold": cold_ms, "after_warmup": warm_ms, "warmup_s": warm_s}
    return dets, figures, with_priors(frames[: opts.native_batch], verdicts)


def native_all(dets: list, info: dict, skipped: dict, primed: list[Frame]) -> list:
    """Each model's own batched cost (and activation peak); a model that fails here is left out."""
    for d in list(dets):
        row = info[d.name]
        try:
            row["native"] = time_native(d, primed, row["device"])
        except BUILD_ERRORS as exc:  # it ran on the probe but not on a full batch
            skipped[d.name] = f"native batch failed: {type(exc).__name__}: {str(exc)[:300]}"
            dets.remove(d)
            del info[d.name]
            continue
        if "activation_peak_gib" in row["native"]:  # what to write as memory.measured_gib
            row["suggested_measured_gib"] = round(row["weights_gib"] + row["native"]["activation_peak_gib"], 3)
    return dets


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
    cuda_devs = _devices(voters)
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
    procs: list = []
    step(
        f"building {len(voters)} in-process voters with random weights"
        + (" (a worker process per device)" if remote else "")
    )
    if remote:
        dets, info, skipped, procs = build_all_remote(cfg, voters, opts)
    else:
        dets, info, skipped = build_all(cfg, voters, opts)
    try:
        return _measure(cfg, voters, excluded, dets, info, skipped, procs, opts, step, checkpoint)
    finally:
        for d in dets:
            _close(d)
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
    step("native batched cost per model")
    dets = native_all(dets, info, skipped, primed)
    native_sum = result["native_sum_ms_per_image"] = sum(info[d.name]["native"]["ms_per_image"] for d in dets)
    save("native batched cost")
    step("sequential loop")
    loop_ms = result["loop_ms_per_image"] = time_loop(dets, frames[: opts.loop_frames])
    save("sequential loop")
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
