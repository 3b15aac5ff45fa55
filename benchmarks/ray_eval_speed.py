"""`roadwork eval` in one process against `roadwork eval --ray local` on the same rows, timed.

    PYTHONPATH=. python benchmarks/ray_eval_speed.py --data ../shared/data --split dev \\
        --out benchmarks/results/ray_eval_speed_cpu.json

Each command runs as its own process, start-up included (Ray starts its local cluster, each
replica loads the profile). Also checks that both runs give the same metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def run(args: list[str]) -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "roadwork.cli", *args], check=True, capture_output=True, text=True)
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--config", default="configs/cpu.yaml")
    ap.add_argument("--regime", default="v0.2")
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--work", type=Path, default=Path("runs/ray_eval_speed"))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    base = ["eval", "--data", str(args.data), "--split", args.split, "--config", args.config, "--regime", args.regime]
    runs = {"single process": run([*base, "--out", str(args.work / "single")])}
    for n in args.replicas:
        runs[f"ray, {n} replicas"] = run([*base, "--out", str(args.work / f"ray{n}"), "--ray", "local",
                                          "--ray-replicas", str(n)])  # fmt: skip
    metrics = {
        name: json.loads((args.work / folder / "metrics.json").read_text())
        for name, folder in [("single process", "single"), *((f"ray, {n} replicas", f"ray{n}") for n in args.replicas)]
    }
    n_images = metrics["single process"]["n"]
    result = {
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "processor": platform.machine()},
        "data": str(args.data),
        "split": args.split,
        "regime": args.regime,
        "images": n_images,
        "wall_s": {k: round(v, 1) for k, v in runs.items()},
        "images_per_s": {k: round(n_images / v, 2) for k, v in runs.items()},
        "over_single": {k: round(runs["single process"] / v, 2) for k, v in runs.items()},
        "same_metrics": all(
            m[k] == metrics["single process"][k] for m in metrics.values() for k in ("n", "mcc", "accuracy", "auroc")
        ),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
