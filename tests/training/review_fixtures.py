"""A tiny labelled folder and an eval run over it, for the review tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

# key, label, prob, voter probs (None = abstained), boxes from the `yolo` voter
ROWS = [
    ("images/cones/a.jpg", 1, 0.95, [0.9, 0.97], True),  # right and sure
    ("images/cones/b.jpg", 1, 0.20, [0.3, 0.1], False),  # false negative
    ("images/cones/c.jpg", 1, 0.50, [0.45, None], False),  # false negative (0.5 rounds to 0) + uncertain
    ("images/street/d.jpg", 0, 0.05, [0.1, 0.02], False),  # right and sure
    ("images/street/e.jpg", 0, 0.85, [0.6, 0.95], True),  # false positive
    ("images/street/f.jpg", 0, 0.40, [0.2, 0.6], False),  # right but uncertain
]
BOX = {"xyxy": [0.1, 0.2, 0.5, 0.8], "score": 0.88, "label": "traffic_cone"}


def make_data(root: Path) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "source", "split", "group", "license", "notes"])
        for key, label, *_ in ROWS:
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path, quality=90)
            source = key.split("/")[1]
            w.writerow([key, label, source, "dev", f"{source}:{Path(key).stem}", "test", "looked"])
    boxes = root / "boxes" / "cones"
    boxes.mkdir(parents=True)
    (boxes / "classes.txt").write_text("cone\nbarrier\n")
    (boxes / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n1 0.3 0.3 0.1 0.1\n")
    (boxes / "b.txt").write_text("")
    return root


def make_run(run: Path, data_root: Path | None, transform: str = "none") -> Path:
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "predictions.jsonl", "w") as f:
        for key, label, prob, (p0, p1), has_box in ROWS:
            votes = [
                {
                    "voter": "l0_head",
                    "level": "L0",
                    "prob": p0,
                    "weight": 1.0,
                    "latency_ms": 5.0,
                    "reason": "",
                    "evidence": {},
                },
                {
                    "voter": "yolo-11n",
                    "level": "L1",
                    "prob": p1,
                    "weight": 0.0 if p1 is None else 1.0,
                    "latency_ms": 9.0,
                    "reason": "" if p1 is not None else "error: RuntimeError: boom",
                    "evidence": {"boxes": [BOX]} if has_box else {},
                },
            ]
            f.write(
                json.dumps(
                    {
                        "key": key,
                        "label": label,
                        "source": key.split("/")[1],
                        "group": "g",
                        "prob": prob,
                        "answered": True,
                        "exit_level": "L1",
                        "latency_ms": 20.0,
                        "transform": transform,
                        "votes": votes,
                        "skipped": [],
                    }
                )
                + "\n"
            )
    if data_root is not None:
        (run / "run.json").write_text(json.dumps({"data_root": str(data_root), "transform": transform, "seed": 0}))
    return run
