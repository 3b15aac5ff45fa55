"""Does the dashcam road-hazard detector in ../shared/weights say anything about roadwork?

    PYTHONPATH=. python benchmarks/hazard_signal.py --data ../shared/data \\
        --out benchmarks/results/hazard_signal_cpu.json

`road_hazard_pothole_damage_obstacle_int8.tflite` is a YOLOv8 fine-tuned on dashcam frames to find
potholes, damaged road and obstacles (README of ../shared/weights): the one real model here trained
on the vehicle cameras the miner meets, so its `obstacle` class might fire on cones and barriers.
It runs through the project's own `ultralytics` voter (imgsz 320, conf 0.05) on every training
photo in each validator regime (the project's transforms, seed 0), keeping each class's highest
confidence. It never saw our data, so these scores are out of fold for every source and camera.
The result gives AUROC per class and regime, pooled and per source with both labels, and each
one-label source's mean score. About 75 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REGIMES = ("v0.2", "letterbox", "full")
CLASSES = ("pothole", "damaged_road", "obstacle")
WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights" / "road_hazard_pothole_damage_obstacle_int8.tflite"


def score(data: Path, weights: Path) -> list[dict]:
    from cascade.config import VoterConfig
    from cascade.types import Frame
    from detectors.ultralytics_yolo import UltralyticsDetector
    from training.datasets import load_dataset
    from training.transforms import make_transform

    cfg = VoterConfig(
        name="road_hazard", kind="ultralytics", level="L1", params={"weights": str(weights), "imgsz": 320, "conf": 0.05}
    )
    det = UltralyticsDetector.from_config(cfg, Path("."))
    rows = [s for s in load_dataset(data).samples if s.split == "train"]
    out, t0 = [], time.time()
    for i, s in enumerate(rows):
        img = s.load()
        best = {}
        for regime in REGIMES:
            (vote,) = det.predict([Frame(make_transform(regime)(img, s.key), source=s.source)])
            if vote.abstained:
                raise RuntimeError(f"{s.key}: the detector abstained ({vote.evidence})")
            boxes = vote.evidence["boxes"]
            best[regime] = {c: max([b["score"] for b in boxes if b["label"] == c], default=0.0) for c in CLASSES}
        out.append({"key": s.key, "label": s.label, "source": s.source, "best": best})
        if i % 200 == 0:
            print(f"{i}/{len(rows)} after {time.time() - t0:.0f} s", flush=True)
    return out


def summarise(rows: list[dict]) -> dict:
    from sklearn.metrics import roc_auc_score

    y = np.array([r["label"] for r in rows])
    result: dict = {"n": len(rows), "positives": int(y.sum()), "auroc": {}, "per_source_full": {}}
    for regime in REGIMES:
        result["auroc"][regime] = {
            c: round(float(roc_auc_score(y, [r["best"][regime][c] for r in rows])), 3) for c in CLASSES
        }
    by_source = defaultdict(list)
    for r in rows:
        by_source[r["source"]].append(r)
    for source, rs in sorted(by_source.items()):
        ys = np.array([r["label"] for r in rs])
        cell: dict = {"n": len(rs), "positives": int(ys.sum())}
        for c in CLASSES:
            p = [r["best"]["full"][c] for r in rs]
            cell[c] = (
                {"auroc": round(float(roc_auc_score(ys, p)), 3)}
                if 0 < ys.sum() < len(ys)
                else {"mean_score": round(float(np.mean(p)), 3)}
            )
        result["per_source_full"][source] = cell
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--weights", type=Path, default=WEIGHTS)
    args = ap.parse_args()
    if not args.weights.is_file():
        raise SystemExit(f"{args.weights} does not exist (../shared/weights on this machine)")
    t0 = time.time()
    result = {"weights": args.weights.name, **summarise(score(args.data, args.weights))}
    result["seconds"] = round(time.time() - t0, 1)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["auroc"], indent=1))


if __name__ == "__main__":
    main()
