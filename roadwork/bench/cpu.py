"""`roadwork bench`: per-image latency and throughput of a profile, written as JSON."""

from __future__ import annotations

import platform
import time
from typing import Any

import numpy as np

from cascade.pipeline import Cascade
from cascade.types import Frame
from training.evaluate import progress_bar
from training.sample import draw_scene


def bench_frames(n: int, size: int | tuple[int, int], seed: int = 0) -> list[Frame]:
    w, h = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    return [Frame(np.asarray(draw_scene(rng, bool(i % 2), w, h)), source="bench", frame_id=str(i)) for i in range(n)]


def run_bench(
    cascade: Cascade,
    n: int = 100,
    size: int | tuple[int, int] = 224,
    warmup: int = 5,
    batch: int = 16,
    show_progress: bool = True,
) -> dict[str, Any]:
    import torch

    frames = bench_frames(n + warmup, size)
    for f in frames[:warmup]:
        cascade.run_sync(f)
    lat = []
    with progress_bar(transient=True) as bar:
        task = bar.add_task("bench", total=n) if show_progress else None
        t_all = time.perf_counter()
        for f in frames[warmup:]:
            t0 = time.perf_counter()
            cascade.run_sync(f)
            lat.append((time.perf_counter() - t0) * 1000)
            if task is not None:
                bar.advance(task)
        wall = time.perf_counter() - t_all
    per_voter: dict[str, dict[str, Any]] = {}
    side = frames[0].long_side
    for d in cascade.detectors:  # each voter's own batched cost, for the overhead ratio
        chunk = frames[warmup : warmup + batch]
        if not cascade.runs_on(d.name, side):  # the cascade does not run it on frames of this size
            per_voter[d.name] = {
                "skipped": f"long_side {list(cascade.sides[d.name])} does not cover {side} px",
                "ms_per_image": 0.0,
            }
            continue
        t0 = time.perf_counter()
        d.predict(chunk)
        per_voter[d.name] = {"batch": len(chunk), "ms_per_image": (time.perf_counter() - t0) * 1000 / len(chunk)}
    arr = np.asarray(lat)
    p50 = float(np.percentile(arr, 50))
    return {
        "profile": cascade.config.name,
        "images": n,
        "image_size": size if isinstance(size, int) else f"{size[0]}x{size[1]}",
        "latency_ms": {
            "p50": p50,
            "p95": float(np.percentile(arr, 95)),
            "mean": float(arr.mean()),
            "max": float(arr.max()),
        },
        "images_per_s_sequential": n / wall,
        "voters_batched": per_voter,
        "sequential_over_batched_ratio": p50 / max(sum(v["ms_per_image"] for v in per_voter.values()), 1e-9),
        "machine": {
            "cpu_count": __import__("os").cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "processor": platform.processor() or platform.machine(),
        },
    }
