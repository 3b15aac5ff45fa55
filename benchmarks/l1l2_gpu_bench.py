"""L1 + L2 throughput through our adapters with micro-batching, against two baselines.

For each model (random weights at production sizes, fp16 on CUDA; `--tiny` runs tiny CPU models):

  loop      a plain per-model, per-image loop: predict([frame]) one after another
  native    the adapter's own batched call on a ready-made batch of `batch` frames (the model's
            best batched cost, with nothing of ours around it but the adapter)
  ours      `--frames` concurrent single-frame requests from a thread pool, gathered per model by
            `MicroBatcher` (what the cascade does under load)

and the whole level (all its models at once on the same concurrent frames, as the cascade runs a
level's voters in parallel). Written to `$OUT/l1l2_bench.json` (default runs/): img/s per model
and per level, ours/loop (goal >= 3x at 32 concurrent frames) and the overhead of ours against
the sum of the models' native batched cost (goal <= 15 %).

    python benchmarks/l1l2_gpu_bench.py                  # H100: production sizes, fp16
    python benchmarks/l1l2_gpu_bench.py --tiny --frames 8 --rounds 1   # CPU smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cascade.config import VoterConfig  # noqa: E402
from cascade.types import Frame, Vote  # noqa: E402
from detectors.base import Detector  # noqa: E402
from detectors.batching import MicroBatcher  # noqa: E402
from detectors.evidence import Boxes  # noqa: E402


def make_frames(n: int, h: int, w: int, seed: int = 0) -> list[Frame]:
    """Random frames that carry a few L1 boxes, so L2 validators have something to check."""
    rng = np.random.default_rng(seed)
    prior = Vote(
        "l1",
        "L1",
        0.6,
        evidence={
            "boxes": Boxes(
                np.array([[0.1, 0.5, 0.18, 0.75], [0.6, 0.4, 0.9, 0.7]]),
                np.array([0.9, 0.7]),
                ("traffic cone", "barrier"),
            ).to_evidence()
        },
    )
    return [
        Frame(
            rng.integers(0, 255, (h, w, 3), dtype=np.uint8),
            source="bench",
            frame_id=str(i),
            meta={"prior_votes": (prior,)},
        )
        for i in range(n)
    ]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed(fn: Any, device: str, rounds: int) -> float:
    """Best wall time over `rounds` runs of fn() (after it has run once before)."""
    best = float("inf")
    for _ in range(rounds):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def concurrent(batchers: list[MicroBatcher], frames: list[Frame]) -> None:
    """Every frame asks every model at once, one thread per (frame, model) request."""
    jobs = [(b, f) for f in frames for b in batchers]
    with ThreadPoolExecutor(max_workers=min(len(jobs), 256)) as pool:
        for votes in pool.map(lambda job: job[0].predict([job[1]]), jobs):
            assert len(votes) == 1


def bench_model(det: Detector, batch: int, frames: list[Frame], args: argparse.Namespace) -> dict[str, Any]:
    n = len(frames)
    det.predict(frames[:batch])  # warm-up at the batch size (allocator, cudnn autotune)
    det.predict(frames[:1])
    loop_s = timed(lambda: [det.predict([f]) for f in frames], args.device, args.rounds)
    native_s = timed(lambda: [det.predict(frames[i : i + batch]) for i in range(0, n, batch)], args.device, args.rounds)
    mb = MicroBatcher(det, batch=batch, wait_ms=args.wait_ms)
    mb.warmup()  # every padded batch size, on the batcher's own thread
    concurrent([mb], frames)
    mb.stats.__init__()
    ours_s = timed(lambda: concurrent([mb], frames), args.device, args.rounds)
    stats = {"calls": mb.stats.calls, "batches": mb.stats.batches, "mean_batch": round(mb.stats.mean_batch, 2)}
    mb.close()
    return {
        "batch": batch,
        "loop_img_s": n / loop_s,
        "native_img_s": n / native_s,
        "ours_img_s": n / ours_s,
        "ours_vs_loop": loop_s / ours_s,
        "overhead_vs_native": ours_s / native_s - 1,
        "batcher": stats,
        "seconds": {"loop": loop_s, "native": native_s, "ours": ours_s},
    }


def param_millions(det: Detector) -> float | None:
    """Parameter count of the adapter's torch model (to check the production size), if it has one."""
    model = getattr(det, "model", None)
    module = getattr(model, "model", model)  # ultralytics wraps the nn.Module
    params = getattr(module, "parameters", None)
    if not callable(params):
        return None
    return round(sum(p.numel() for p in params()) / 1e6, 2)


def build(spec: dict[str, Any], device: str) -> tuple[Detector, int]:
    from detectors.registry import resolve

    cfg = VoterConfig.model_validate({**spec, "device": device})
    return resolve(cfg.kind).from_config(cfg, REPO / "configs"), cfg.batch


def run_one(spec: dict[str, Any], frames: list[Frame], args: argparse.Namespace) -> tuple[Detector, int, dict]:
    """Build and measure one model; a model that fails in fp16 (an op without a half kernel) is
    measured again in fp32, with the fp16 error kept in its record."""
    try:
        det, batch = build(spec, args.device)
        return det, batch, bench_model(det, batch, frames, args)
    except (RuntimeError, ValueError, TypeError) as exc:
        if spec.get("dtype") != "float16":
            raise
        spec = {**spec, "dtype": "float32"}
        det, batch = build(spec, args.device)
        return (
            det,
            batch,
            {
                **bench_model(det, batch, frames, args),
                "dtype_used": "float32",
                "fp16_error": f"{type(exc).__name__}: {exc}"[:300],
            },
        )


def level_run(built: list[tuple[str, Detector, int, dict]], frames: list[Frame], args: argparse.Namespace) -> dict:
    n = len(frames)
    batchers = [MicroBatcher(det, batch=b, wait_ms=args.wait_ms) for _, det, b, _ in built]
    concurrent(batchers, frames)
    ours_s = timed(lambda: concurrent(batchers, frames), args.device, args.rounds)
    for mb in batchers:
        mb.close()
    loop_s = sum(r["seconds"]["loop"] for *_, r in built)
    native_s = sum(r["seconds"]["native"] for *_, r in built)
    return {
        "models": [name for name, *_ in built],
        "ours_img_s": n / ours_s,
        "loop_img_s": n / loop_s,
        "native_sum_img_s": n / native_s,
        "ours_vs_loop": loop_s / ours_s,
        "overhead_vs_native_sum": ours_s / native_s - 1,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny random models on CPU (smoke test)")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    ap.add_argument("--frames", type=int, default=32, help="concurrent frames")
    ap.add_argument("--rounds", type=int, default=3, help="timed repeats (best is kept)")
    ap.add_argument("--wait-ms", type=float, default=4.0, help="micro-batching window")
    ap.add_argument("--size", type=int, nargs=2, default=[480, 640], metavar=("H", "W"))
    ap.add_argument("--only", nargs="*", default=None, help="model names to run")
    ap.add_argument("--fp32", action="store_true", help="production models in fp32")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "runs")) / "l1l2_bench.json")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(REPO / ".cache" / "ultralytics"))
    import torch

    from detectors.model_specs import production_voters, tiny_voters

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.tiny:
        specs = [s for s in tiny_voters() if s["name"] in {"yolo11n", "rtdetr", "owlv2", "gdino", "depth", "siglip"}]
        args.size = [96, 128]
    else:
        specs = production_voters(fp16=not args.fp32 and args.device.startswith("cuda"))
    if args.only:
        specs = [s for s in specs if s["name"] in args.only]
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    frames = make_frames(args.frames, *args.size)
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "frames": args.frames,
        "size_hw": args.size,
        "wait_ms": args.wait_ms,
        "tiny": args.tiny,
        "models": {},
        "levels": {},
    }
    built: dict[str, list] = {"L1": [], "L2": []}
    for spec in specs:
        name = spec["name"]
        t0 = time.perf_counter()
        try:
            det, batch, r = run_one(spec, frames, args)
        except (RuntimeError, ValueError, TypeError, KeyError) as exc:
            result["models"][name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            print(f"{name}: FAILED {type(exc).__name__}: {exc}", flush=True)
            continue
        r.update(
            params_m=param_millions(det),
            level=spec["level"],
            dtype=spec.get("dtype", "float32"),
            build_plus_bench_s=time.perf_counter() - t0,
        )
        result["models"][name] = r
        built[spec["level"]].append((name, det, batch, r))
        print(
            f"{name:12s} loop {r['loop_img_s']:8.1f}  native {r['native_img_s']:8.1f}  ours "
            f"{r['ours_img_s']:8.1f} img/s  x{r['ours_vs_loop']:.2f} vs loop, "
            f"{100 * r['overhead_vs_native']:+.1f}% vs native",
            flush=True,
        )
    for level, items in built.items():
        if items:
            result["levels"][level] = level_run(items, frames, args)
            lv = result["levels"][level]
            print(
                f"{level}: ours {lv['ours_img_s']:.1f} img/s, x{lv['ours_vs_loop']:.2f} vs loop, "
                f"{100 * lv['overhead_vs_native_sum']:+.1f}% vs sum of native",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
