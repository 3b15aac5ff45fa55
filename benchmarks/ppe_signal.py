"""Does the hard-hat / hi-vis-vest detector in ../shared/weights say anything about roadwork?

    # score (needs the YOLOv5 classes to unpickle the checkpoint; not a project dependency):
    pip install --no-deps --target /tmp/y5 yolov5==7.0.14 'setuptools<81' seaborn
    PYTHONPATH=/tmp/y5:. python benchmarks/ppe_signal.py score --data ../shared/data \\
        --out benchmarks/results/ppe_votes_train.jsonl
    # summarise (project environment only):
    PYTHONPATH=. python benchmarks/ppe_signal.py summarise --votes benchmarks/results/ppe_votes_train.jsonl \\
        --out benchmarks/results/ppe_signal_cpu.json

`ppe_helmet_vest_yolov5n.pt` is a YOLOv5n in the original repository's format (README of
../shared/weights): ultralytics 8 cannot load it. `score` runs it (AutoShape, 640 px, conf 0.05)
on every training photo in each validator regime (the project's own transforms, seed 0) and keeps
each class's highest confidence. The model was never trained on our data, so these votes are out
of fold for every source and every camera. `summarise` gives AUROC per class and regime, and per
source how often a frame has a detection above 0.25.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REGIMES = ("v0.2", "letterbox", "full")
CLASSES = ("helmet", "vest")
WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights" / "ppe_helmet_vest_yolov5n.pt"


def score(data: Path, out: Path, weights: Path) -> None:
    import torch
    import yolov5.models
    import yolov5.models.common
    import yolov5.models.yolo
    import yolov5.utils

    # the checkpoint pickles classes as the YOLOv5 repository names them (models.yolo, models.common)
    sys.modules.update(
        {
            "models": yolov5.models,
            "models.yolo": yolov5.models.yolo,
            "models.common": yolov5.models.common,
            "utils": yolov5.utils,
        }
    )
    from training.datasets import load_dataset
    from training.transforms import make_transform

    torch.set_num_threads(1)
    model = yolov5.models.common.AutoShape(torch.load(weights, map_location="cpu", weights_only=False)["model"])
    model = model.float().eval()
    model.conf = 0.05
    rows = [s for s in load_dataset(data).samples if s.split == "train"]
    t0 = time.time()
    with out.open("w") as f:
        for i, s in enumerate(rows):
            img = s.load()
            probs, sides = {}, {}
            for regime in REGIMES:
                view = make_transform(regime)(img, s.key)
                with torch.no_grad():
                    det = model(view, size=640).xyxy[0].numpy()
                best = {c: float(det[det[:, 5] == k, 4].max(initial=0.0)) for k, c in enumerate(CLASSES)}
                probs[regime] = {**best, "ppe": max(best.values())}
                sides[regime] = int(max(view.shape[:2]))
            row = {"key": s.key, "label": s.label, "source": s.source, "group": s.group}
            f.write(json.dumps({**row, "long_side": sides, "probs": probs}) + "\n")
            if i % 100 == 0:
                print(f"{i}/{len(rows)} after {time.time() - t0:.0f} s", flush=True)


def summarise(votes: Path, out: Path) -> None:
    from sklearn.metrics import roc_auc_score

    rows = [json.loads(line) for line in votes.read_text().splitlines()]
    y = np.array([r["label"] for r in rows])
    result: dict = {"votes": str(votes), "n": len(rows), "positives": int(y.sum()), "auroc": {}, "per_source": {}}
    for regime in REGIMES:
        result["auroc"][regime] = {
            k: round(float(roc_auc_score(y, [r["probs"][regime][k] for r in rows])), 3) for k in (*CLASSES, "ppe")
        }
    by_source = defaultdict(list)
    for r in rows:
        by_source[r["source"]].append(r)
    for source, rs in sorted(by_source.items()):
        ys = np.array([r["label"] for r in rs])
        p = np.array([r["probs"]["full"]["ppe"] for r in rs])
        result["per_source"][source] = {
            "n": len(rs),
            "positives": int(ys.sum()),
            "positives_with_detection": round(float((p[ys == 1] > 0.25).mean()), 3) if ys.any() else None,
            "negatives_with_detection": round(float((p[ys == 0] > 0.25).mean()), 3) if (ys == 0).any() else None,
        }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["auroc"], indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("score")
    s.add_argument("--data", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--weights", type=Path, default=WEIGHTS)
    m = sub.add_parser("summarise")
    m.add_argument("--votes", type=Path, required=True)
    m.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if args.cmd == "score":
        score(args.data, args.out, args.weights)
    else:
        summarise(args.votes, args.out)


if __name__ == "__main__":
    main()
