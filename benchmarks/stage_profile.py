"""Where each in-process model's time goes: build, image preprocessing, and the rest (model + post).

    python benchmarks/stage_profile.py --config configs/h100x2.yaml --single-gpu --out $OUT/stages.json

Builds every in-process voter of the profile with random weights at full size (one at a time,
freed after), then times `predict` on a warm batch of the voter's batch size for 224-px frames
(older validators) and 1920x1080 frames (newer ones). The transformers adapters' processor is
wrapped in a timer (CUDA synchronised), so `preprocess_ms` is what the image processor costs per
image and `rest_ms` the model, post-processing and our own code. Ultralytics and RF-DETR keep
their preprocessing inside predict (no split). The JSON is rewritten after every voter.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from roadwork.env import configure_process

configure_process()


class Timed:
    """Callable proxy that adds the synchronised wall time of each call to `total`."""

    def __init__(self, fn: Any) -> None:
        self._fn, self.total, self.calls = fn, 0.0, 0

    def __call__(self, *a: Any, **k: Any) -> Any:
        import torch

        torch.cuda.synchronize() if torch.cuda.is_available() else None
        t0 = time.perf_counter()
        out = self._fn(*a, **k)
        torch.cuda.synchronize() if torch.cuda.is_available() else None
        self.total += time.perf_counter() - t0
        self.calls += 1
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fn, name)


def processor_owner(det: Any) -> Any:
    for obj in (det, getattr(det, "backbone", None)):
        if obj is not None and hasattr(obj, "processor"):
            return obj
    return None


def frames_with_boxes(n: int, h: int, w: int) -> list:
    import numpy as np

    from cascade.types import Frame
    from detectors.base import warm_prior

    prior = warm_prior()
    rng = np.random.default_rng(0)
    return [
        Frame(
            rng.integers(0, 255, (h, w, 3), dtype=np.uint8),
            source="profile",
            frame_id=str(i),
            meta={"prior_votes": (prior,)},
        )
        for i in range(n)
    ]


def time_predict(det: Any, frames: list, reps: int) -> dict[str, float]:
    import torch

    owner = processor_owner(det)
    timer = None
    if owner is not None:
        timer = Timed(owner.processor)
        owner.processor = timer
    try:
        votes = det.predict(frames)  # warm at this size and batch; failures show in the row
        if timer is not None:
            timer.total, timer.calls = 0.0, 0
        torch.cuda.synchronize() if torch.cuda.is_available() else None
        t0 = time.perf_counter()
        for _ in range(reps):
            det.predict(frames)
        torch.cuda.synchronize() if torch.cuda.is_available() else None
        total = (time.perf_counter() - t0) * 1000 / (reps * len(frames))
    finally:
        if timer is not None:
            owner.processor = timer._fn
    out: dict[str, Any] = {"ms_per_image": round(total, 3), "img_per_s": round(1000 / total, 1)}
    failed = [v.reason for v in votes if v.abstained]
    if failed:
        out["abstained"] = {"n": len(failed), "first": failed[0][:200]}
    if timer is not None:
        pre = timer.total * 1000 / (reps * len(frames))
        out.update(preprocess_ms=round(pre, 3), rest_ms=round(total - pre, 3), preprocess_share=round(pre / total, 3))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=Path("configs/h100x2.yaml"))
    ap.add_argument("--single-gpu", action="store_true", help="every model on cuda:0")
    ap.add_argument("--only", nargs="*", help="voter names (default: every in-process voter)")
    ap.add_argument("--sizes", default="224x224,1080x1920", help="HxW frame sizes, comma-separated")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="tiny configs on the CPU (a smoke run)")
    ap.add_argument("--out", type=Path, default=Path("runs/stage_profile.json"))
    a = ap.parse_args(argv)

    import torch

    from miner.profile import load_profile
    from roadwork.bench.build import build_one
    from roadwork.bench.options import GpuBenchOptions, place, split_voters

    opts = GpuBenchOptions(single_gpu=a.single_gpu, only=a.only, tiny=a.tiny)
    cfg = place(load_profile(a.config), opts)
    voters, _ = split_voters(cfg, opts)
    sizes = [tuple(int(x) for x in s.split("x")) for s in a.sizes.split(",")]
    result: dict[str, Any] = {
        "profile": cfg.name,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "voters": {},
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    for v in voters:
        row: dict[str, Any] = {"kind": v.kind, "device": v.device, "batch": v.batch}
        result["voters"][v.name] = row
        t0 = time.perf_counter()
        det, err = build_one(cfg, v, opts)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        row["build_s"] = round(time.perf_counter() - t0, 2)
        if det is None:
            row["error"] = err
        else:
            m = det.unwrap()  # the adapter itself: its stages are timed at each size given
            batch = min(v.batch, 4) if a.tiny else v.batch
            for h, w in sizes:
                try:
                    row[f"{h}x{w}"] = time_predict(m, frames_with_boxes(batch, h, w), a.reps)
                except Exception as exc:
                    row[f"{h}x{w}"] = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
            close = getattr(det, "close", None)
            if callable(close):
                close()
            del det, m
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        print(v.name, json.dumps(row), flush=True)
        a.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
