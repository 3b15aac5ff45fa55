"""Would a colour voter (how much traffic orange, red or yellow a frame holds) carry to a new camera?

    PYTHONPATH=. python benchmarks/colour_signal.py --data ../shared/data \\
        --out benchmarks/results/colour_signal_cpu.json

Cones, drums and barriers are painted in a few saturated colours, and a colour share needs no
network that could learn a camera's look. For every training photo in each validator regime (the
held-back views the OOF votes were scored on, `training.finetune.held_out_transform`), it counts
the share of saturated, lit pixels (HSV: saturation > 0.5, value > 0.3) in three hue bands (red,
orange, yellow) over the whole frame, in its most coloured cell of a 3x4 grid and in its lower two
thirds, plus the share of lit pixels: ten numbers, from the frame at long side 640 at most.

Then the same leave-one-source-out as `loso_networks.py`: for each held-out vehicle source, a
logistic regression (scikit-learn, balanced classes, standardised log shares) fitted on every
regime's rows of the other sources scores the held-out source's rows. AUROC per feature is
reported within each source that has both labels: pooled over sources, a colour share mostly
tells sources apart (night work-zone video is orange-lit, fog is grey). About 25 s on 2 CPU cores.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # loso_networks, beside this script

REGIMES = ("v0.2", "letterbox", "full")
HUES = {"red": ((340, 360), (0, 8)), "orange": ((8, 38),), "yellow": ((38, 65),)}  # degrees
PARTS = ("all", "best_cell", "lower")
FEATURES = [f"{h}_{p}" for h in HUES for p in PARTS] + ["lit"]
GRID = (3, 4)
MAX_SIDE = 640


def colour_shares(rgb: np.ndarray) -> list[float]:
    """FEATURES of one RGB frame."""
    from PIL import Image

    img = Image.fromarray(rgb)
    if max(img.size) > MAX_SIDE:
        s = MAX_SIDE / max(img.size)
        img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.BILINEAR)
    hsv = np.asarray(img.convert("HSV"), dtype=np.float32) / 255.0
    hue, sat, val = hsv[..., 0] * 360, hsv[..., 1], hsv[..., 2]
    h, w = hue.shape
    vivid = (sat > 0.5) & (val > 0.3)
    out = []
    for bands in HUES.values():
        m = vivid & np.any([(hue >= lo) & (hue < hi) for lo, hi in bands], axis=0)
        cells = [
            m[i * h // GRID[0] : (i + 1) * h // GRID[0], j * w // GRID[1] : (j + 1) * w // GRID[1]].mean()
            for i in range(GRID[0])
            for j in range(GRID[1])
        ]
        out += [float(m.mean()), float(max(cells)), float(m[h // 3 :].mean())]
    return out + [float((val > 0.3).mean())]


def row_features(item: tuple[str, str, int, str]) -> dict:
    from training.finetune import held_out_transform
    from training.images import open_image

    path, key, label, source = item
    with open_image(path) as im:
        img = np.asarray(im.convert("RGB"))
    feats = {r: colour_shares(held_out_transform(r, 0)(img, key)) for r in REGIMES}
    return {"key": key, "label": label, "source": source, "features": feats}


def loso(rows: list[dict]) -> dict:
    from loso_networks import HELD_OUT, HELD_OUT_SOURCES, held_out_scores
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.array([r["label"] for r in rows])
    src = np.array([r["source"] for r in rows])
    x = {g: np.log(1e-4 + np.array([r["features"][g] for r in rows])) for g in REGIMES}
    held_any = np.isin(src, HELD_OUT_SOURCES)
    prob = {g: np.full(len(rows), np.nan) for g in REGIMES}
    for sources in HELD_OUT.values():
        train, test = ~np.isin(src, sources), np.isin(src, sources)
        model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000))
        model.fit(np.vstack([x[g][train] for g in REGIMES]), np.concatenate([y[train]] * len(REGIMES)))
        for g in REGIMES:
            prob[g][test] = model.predict_proba(x[g][test])[:, 1]
    out: dict = {"held_out_rows": int(held_any.sum()), "loso": {}}
    # each share alone, over the held-out sources' rows together: sources, not scenes, apart
    out["feature_auroc_held_out_sources_pooled"] = {
        g: {f: round(float(roc_auc_score(y[held_any], x[g][held_any, i])), 3) for i, f in enumerate(FEATURES)}
        for g in REGIMES
    }
    out["feature_auroc_within_source"] = {}
    for g in REGIMES:
        out["loso"][g] = held_out_scores(y, prob[g], src)
    for source in sorted(set(src)):
        sel = src == source
        if 0 < y[sel].sum() < sel.sum():
            out["feature_auroc_within_source"][source] = {
                g: {f: round(float(roc_auc_score(y[sel], x[g][sel, i])), 3) for i, f in enumerate(FEATURES)}
                for g in REGIMES
            }
    return out


def main() -> None:
    from loso_networks import map_train_photos, photo_signal_args

    args = photo_signal_args(__doc__)
    t0 = time.time()
    rows = map_train_photos(args.data, row_features, args.workers)
    result = {"features": FEATURES, "n": len(rows), **loso(rows), "seconds": round(time.time() - t0, 1)}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["loso"], indent=1))


if __name__ == "__main__":
    main()
