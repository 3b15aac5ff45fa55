"""The L0 MobileNetV2 as trained (eager) against the network the voters serve (`for_inference`:
conv + batch norm folded, channels-last), on this machine's CPU, same process, same inputs.

    python benchmarks/backbone_speed.py --out benchmarks/results/backbone_speed_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from detectors.mobilenet import for_inference, mobilenetv2_features, pool_map

SHAPES = {"one 224-px frame": (1, 224), "one 448-px frame": (1, 448), "18 tile crops": (18, 224)}


def per_call_ms(forward, x: torch.Tensor, repeats: int) -> float:
    with torch.inference_mode():
        forward(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            forward(x)
            times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="models/l0_backbone_paste_erase.pt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    eager = mobilenetv2_features(args.weights)
    served = for_inference(mobilenetv2_features(args.weights))
    results = {}
    for name, (n, size) in SHAPES.items():
        x = torch.randn(n, 3, size, size)
        a = per_call_ms(lambda t: pool_map(eager.features(t), "meanmax"), x, args.repeats)
        b = per_call_ms(
            lambda t: pool_map(served.features(t.contiguous(memory_format=torch.channels_last)), "meanmax"),
            x,
            args.repeats,
        )
        with torch.inference_mode():
            diff = float(
                (
                    pool_map(eager.features(x), "meanmax")
                    - pool_map(served.features(x.contiguous(memory_format=torch.channels_last)), "meanmax")
                )
                .abs()
                .max()
            )
        results[name] = {
            "eager_ms": round(a, 2),
            "served_ms": round(b, 2),
            "eager_over_served": round(a / b, 2),
            "max_abs_feature_diff": diff,
        }
        print(f"{name:18s} eager {a:7.1f} ms  served {b:7.1f} ms  x{a / b:.2f}  (features differ by {diff:.1e})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": {
                    "cpu_count": os.cpu_count(),
                    "torch_threads": args.threads,
                    "processor": platform.processor(),
                    "torch": torch.__version__,
                },
                "weights": args.weights,
                "median_of": args.repeats,
                "shapes": results,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
