"""Build a profile's voters with random weights for a bench run (in this process or a worker per
device), probe that each answers, and rebuild a half-precision one that does not in float32."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from cascade.config import CascadeConfig
from cascade.types import AbstainCause, Frame
from detectors.base import warm_prior
from roadwork.bench.options import GIB, GpuBenchOptions, package_missing


def sync_cuda() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def cuda_devices(voters: list) -> list[str]:
    return sorted({v.device for v in voters if v.device.startswith("cuda")})


def allocated_gib(devices: list[str]) -> dict[str, float]:
    import torch

    return {d: torch.cuda.memory_allocated(d) / GIB for d in devices}


BUILD_ERRORS = (ImportError, OSError, RuntimeError, ValueError, TypeError, KeyError, SyntaxError)
"""What a backend may raise on a config or dtype it cannot build (ultralytics raises SyntaxError on bad args)."""


def probe_frames(size: int) -> list[Frame]:
    """Two frames with a few L1 boxes in their prior votes, so L2 validators run their model too."""
    prior = warm_prior()
    return [dataclasses.replace(f, meta={"prior_votes": (prior,)}) for f in make_frames(2, size, seed=7)]


def probe(det: Any, frames: list[Frame]) -> str | None:
    """None when the model answers; else why not (an exception, or every vote failing)."""
    try:
        votes = inner(det).predict(frames)
    except (
        Exception
    ) as exc:  # whatever one model raises (an AssertionError in torch's CUDA graphs) skips it, not the run
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
            close_voter(det)
            det, err = build_one(cfg, by_name[name], opts, dtype="float32")
            why = err if det is None else probe(det, frames)
        if why is None:
            ok.append(det)
        else:
            skipped[name] = f"does not run: {why}" + (
                f" (half precision failed first: {info[name]['half_failed']})" if "half_failed" in info[name] else ""
            )
            del info[name]
            close_voter(det)
    return ok


def close_voter(det: Any) -> None:
    close = getattr(det, "close", None)
    if callable(close):
        close()


def build_all(cfg: CascadeConfig, voters: list, opts: GpuBenchOptions) -> tuple[list, dict, dict]:
    """Build each voter with random weights; returns (detectors, per-voter info, skipped)."""
    dets, info, skipped = [], {}, {}
    devices = cuda_devices(voters)
    for v in voters:
        missing = package_missing(v.kind)
        if missing:
            skipped[v.name] = missing
            continue
        before = allocated_gib(devices)
        t0 = time.perf_counter()
        det, err = build_one(cfg, v, opts)
        if det is None:
            skipped[v.name] = err
            continue
        sync_cuda()
        after = allocated_gib(devices)
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
        randomised,
        cfg.base_dir,
        torch_threads=cfg.runtime.torch_threads,
        local=local,
        include_cpu=opts.tiny,
        workers_per_device=opts.workers_per_device or 1,
        lanes_per_worker=opts.lanes_per_worker or 1,
        frame_transport=opts.frame_transport or "pipe",
        worker_split=cfg.runtime.worker_split,
    )
    dets = [d for d in dets if d is not None]
    built = {n: p.info[n] for p in procs for n in p.names}  # what each worker measured while building
    info = {
        v.name: info_row(v, process="worker" if v.name in built else "main", **built.get(v.name, {}))
        for v in ok
        if v.name not in skipped
    }
    return dets, info, skipped, procs


def inner(det: Any) -> Any:
    """The voter under a MicroBatcher (native cost is measured without our batching, but with the
    voter's input scaling: its cost is the model's now)."""
    from detectors.batching import MicroBatcher

    return det.inner if isinstance(det, MicroBatcher) else det


def make_frames(n: int, size: int, seed: int = 0) -> list[Frame]:
    from roadwork.bench.cpu import bench_frames

    return bench_frames(n, size, seed)
