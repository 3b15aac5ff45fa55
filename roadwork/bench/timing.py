"""Timing a bench run: frames through the cascade at a concurrency, each model's own batched cost,
the sequential loop, first queries and warm-up."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import numpy as np

from cascade.config import CascadeConfig
from cascade.types import Frame, Level
from roadwork.bench.build import cuda_devices, inner, make_frames, sync_cuda, verify
from roadwork.bench.options import GIB, GpuBenchOptions, bench_config
from roadwork.bench.utilisation import Utilisation, worker_processes


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
    sync_cuda()
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
        sync_cuda()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        m.predict(frames)
        sync_cuda()
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
    sync_cuda()
    return (time.perf_counter() - t0) * 1000 / len(frames)


def warm_up(dets: list, frames: list[Frame]) -> None:
    """The miner's warm-up (each voter's own `warmup()`: a micro-batcher runs every padded batch size
    on the thread that will run it, so no first use of a shape lands on a timed frame), then the
    model once on real frames at its batch size."""
    for d in dets:
        d.warmup()
        inner(d).predict(frames[: getattr(d.unwrap(), "batch", 1)])


def first_query_ms(cascade: Any, frame: Frame) -> float:
    t0 = time.perf_counter()
    asyncio.run(drive(cascade, [frame], 1))
    return (time.perf_counter() - t0) * 1000


def latency_figures(lat: list[float]) -> dict[str, float]:
    return {"p50": pct(lat, 50), "p95": pct(lat, 95), "max": max(lat)}


def burst_figures(wall_s: float, lat: list[float]) -> dict[str, float]:
    return {"wall_s": wall_s, **latency_figures(lat)}


def concurrency_run(
    cfg: CascadeConfig,
    dets: list,
    voters: list,
    opts: GpuBenchOptions,
    c: int,
    native_sum_ms: float | None,
    loop_ms: float | None,
) -> dict[str, Any]:
    """C frames at once through a new cascade, `opts.bursts` times (new frames each time). With more
    than one burst the first is kept apart (`bursts[0]`: the first load after warm-up, issue 18's
    "first burst") and the figures below are those of the later bursts together."""
    cascade = new_cascade(cfg, dets, voters, opts, c)
    bursts: list[dict[str, float]] = []
    lat: list[float] = []
    verdicts: list = []
    wall = 0.0
    try:
        if opts.bursts > 1:
            first_wall, first_lat, _ = asyncio.run(drive(cascade, make_frames(c, opts.size, seed=c + 10_000), c))
            bursts.append(burst_figures(first_wall, first_lat))
        for d in dets:  # count the measured bursts' micro-batches only
            if hasattr(d, "stats"):
                d.stats.__init__()
        running = {d.name for d in dets}
        with Utilisation(cuda_devices([v for v in voters if v.name in running]), procs=worker_processes(dets)) as util:
            for b in range(opts.bursts - len(bursts)):
                w, burst_lat, burst_verdicts = asyncio.run(drive(cascade, make_frames(c, opts.size, seed=c + b), c))
                wall, lat, verdicts = wall + w, lat + burst_lat, verdicts + burst_verdicts
                bursts.append(burst_figures(w, burst_lat))
    finally:
        cascade.close()
    n = len(verdicts)
    per_image_ms = wall * 1000 / n
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
        "frames": n,
        "img_per_s": n / wall,
        "wall_s": wall,
        "latency_ms": latency_figures(lat),
        "overhead_vs_native_sum": per_image_ms / native_sum_ms - 1 if native_sum_ms else None,
        "speedup_vs_loop": loop_ms / per_image_ms if loop_ms and per_image_ms else None,
        "exit_levels": exits,
        # each level's wall time from its start to its last vote, per frame (runtime.start_early moves work out of it)
        "level_ms_mean": {
            lv: round(float(np.mean([v.timings_ms[lv] for v in verdicts if lv in v.timings_ms])), 1)
            for lv in sorted({lv for v in verdicts for lv in v.timings_ms})
        },
        "micro_batches": batchers,
        "abstained": abstained,
        "utilisation": util.report(),
        # each voter's time in its device worker per frame, at this run's batch sizes (for `plan --costs`)
        "worker_ms_per_image": {name: round(busy * 1000 / n, 3) for name, busy in util.voter_busy_s.items() if busy},
        **(
            {
                "bursts": bursts,
                # issue 18's goal: the first burst after warm-up within 20 % of a later one
                "first_over_later_p95": bursts[0]["p95"] / float(np.median([b["p95"] for b in bursts[1:]])),
            }
            if len(bursts) > 1
            else {}
        ),
    }


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


def native_all(dets: list, info: dict, skipped: dict, primed: list[Frame], on_model: Any = None) -> list:
    """Each model's own batched cost (and activation peak); a model that fails here is left out.
    `on_model(name, i, n)` is called before each model (progress, and a checkpoint of those done)."""
    todo = list(dets)
    for i, d in enumerate(todo):
        if on_model is not None:
            on_model(d.name, i, len(todo))
        row = info[d.name]
        try:
            row["native"] = time_native(d, primed, row["device"])
        except Exception as exc:  # it ran on the probe but not on a full batch: skip it, keep the run
            skipped[d.name] = f"native batch failed: {type(exc).__name__}: {str(exc)[:300]}"
            dets.remove(d)
            del info[d.name]
            continue
        if "activation_peak_gib" in row["native"]:  # what to write as memory.measured_gib
            row["suggested_measured_gib"] = round(row["weights_gib"] + row["native"]["activation_peak_gib"], 3)
    return dets
