"""Does a tile score that ignores the camera's overall look, or one grid's crops alone, rank new
cameras better than the max over every crop?

The tile voter answers with the maximum over a frame's 18 overlapping crops. A camera the network
never saw can move every crop's logit by the same amount (its colours, its sharpness), which moves
the max and the calibrated threshold with it. A frame-relative score, the best crop's logit minus
the frame's median (or mean) crop logit, cancels such a shift, at no extra cost on the CPU. One
grid's crops alone (6 or 12 of the 18) would cost a third or two thirds of the tiles' CPU.

Reads LOSO votes written with `loso_networks.py train --crops` (each held-out frame's crop
probabilities at full size), or OOF votes with crops (by source, then), and reports, for each score:
- AUROC over every held-out row and per held-out source (where it has both labels);
- a logistic fit on the other held-out sources' rows, scored on each source in turn (a threshold
  that has to survive a camera it was not fitted on): AUROC, MCC at 0.5 and accuracy per source.

    python benchmarks/tile_contrast.py benchmarks/results/loso_votes_l0_backbone_paste_erase_crops.jsonl.gz \\
        --out benchmarks/results/tile_contrast_loso.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from detectors.mobilenet import TILE_CROPS, TILE_GRIDS, crop_count, grid_slices

REGIME = "full"  # only full-size frames are large enough to tile


SCORES: dict[str, Callable[[np.ndarray], float]] = {  # name: frame score from the voter's own crops' logits
    "max (shipped)": lambda z: float(z.max()),
    "max - median": lambda z: float(z.max() - np.median(z)),
    "max - mean": lambda z: float(z.max() - z.mean()),
    "mean": lambda z: float(z.mean()),
    "mean of the top 2": lambda z: float(np.sort(z)[-2:].mean()),
}


CLIP = 1e-6  # crop probabilities this close to 0 or 1 still order apart


def read_rows(path: Path) -> tuple[list[dict], tuple[tuple[int, int], ...]]:
    """The rows with crops at REGIME, and the grids of their crops (`crop_grids`, the tile voter's
    when absent; every row must have the same)."""
    from training.finetune import votes_crop_grids, votes_text

    rows = [json.loads(line) for line in votes_text(path).splitlines() if line.strip()]
    if not any("crops" in r for r in rows):
        raise SystemExit(f"{path}: no row has `crops`; write it with `loso_networks.py train --crops`")
    rows = [r for r in rows if REGIME in r.get("crops", {})]
    if not rows:
        raise SystemExit(f"{path}: no row has crops at {REGIME}")
    try:
        grids = votes_crop_grids(rows)
    except ValueError as exc:
        raise SystemExit(f"{path}: {exc}") from None
    want = crop_count(grids)
    wrong = [r["key"] for r in rows if len(r["crops"][REGIME]) != want]
    if wrong:
        raise SystemExit(f"{path}: {len(wrong)} rows (first {wrong[0]}) do not have the {want} crops of grids {grids}")
    if grids[: len(TILE_GRIDS)] != TILE_GRIDS:
        raise SystemExit(f"{path}: crops of grids {grids} do not begin with the tile voter's {TILE_GRIDS}")
    return rows, grids


def auroc_by_source(y: np.ndarray, s: np.ndarray, src: np.ndarray) -> dict[str, float | None]:
    from sklearn.metrics import roc_auc_score

    return {
        name: round(float(roc_auc_score(y[src == name], s[src == name])), 4) if len(set(y[src == name])) > 1 else None
        for name in sorted(set(src))
    }


def leave_source_out(y: np.ndarray, s: np.ndarray, src: np.ndarray) -> dict:
    """A balanced logistic fit on the other sources' rows, applied to each source in turn."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import matthews_corrcoef, roc_auc_score

    prob = np.zeros(len(y))
    for name in set(src):
        fit = src != name
        model = LogisticRegression(class_weight="balanced").fit(s[fit, None], y[fit])
        prob[~fit] = model.predict_proba(s[~fit, None])[:, 1]
    said = prob > 0.5
    return {
        "auroc": round(float(roc_auc_score(y, prob)), 4),
        "mcc": round(float(matthews_corrcoef(y, said)), 4),
        "accuracy_by_source": {name: round(float((said == y)[src == name].mean()), 4) for name in sorted(set(src))},
    }


def main() -> None:
    from sklearn.metrics import roc_auc_score

    from consensus.pooling import logit

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("votes", type=Path, help="LOSO votes with crops (.jsonl or .jsonl.gz)")
    ap.add_argument("--out", type=Path, required=True, help="JSON to write")
    a = ap.parse_args()

    rows, grids = read_rows(a.votes)
    y = np.array([r["label"] for r in rows])
    # a LOSO row's held-out name; an OOF row (in fold: `--oof-crops`, `oof_rescore --crops`) its source
    src = np.array([r["held_out"] if "held_out" in r else r["source"] for r in rows])
    crops = [logit(np.array(r["crops"][REGIME]), clip=CLIP) for r in rows]
    result: dict = {
        "votes": str(a.votes),
        "regime": REGIME,
        "rows": len(rows),
        "rows_by_source": {n: [int((src == n).sum()), int(y[src == n].sum())] for n in sorted(set(src))},
        "crop_grids": [list(g) for g in grids],
        "scores": {},
    }
    # one grid alone (the tile voter's `grids:`): each grid the crops hold, the voter's and any extra
    slices = grid_slices(grids)
    alone = {f"max, {r}x{c} grid only": (lambda z, sl=sl: float(z[sl].max())) for (r, c), sl in slices.items()}
    # two grids together, where the file holds more than the voter's own (e.g. 3x4 with an extra 4x6)
    pairs = {
        f"max, {a[0]}x{a[1]} and {b[0]}x{b[1]} grids": (
            lambda z, sa=slices[a], sb=slices[b]: float(max(z[sa].max(), z[sb].max()))
        )
        for i, a in enumerate(grids)
        for b in grids[i + 1 :]
        if {a, b} != set(TILE_GRIDS)  # the voter's own pair is "max (shipped)"
    }
    # the voter's own crops come first in a row's crops, any extra grids' after them
    named = {n: (lambda z, f=f: f(z[:TILE_CROPS])) for n, f in SCORES.items()} | alone | pairs
    for name, score in named.items():
        s = np.array([score(z) for z in crops])
        result["scores"][name] = {
            "auroc": round(float(roc_auc_score(y, s)), 4),
            "auroc_by_source": auroc_by_source(y, s, src),
            "fitted_without_the_source": leave_source_out(y, s, src),
        }
        r = result["scores"][name]
        print(
            f"{name:20s} AUROC {r['auroc']:.3f}  fitted elsewhere: AUROC "
            f"{r['fitted_without_the_source']['auroc']:.3f} MCC {r['fitted_without_the_source']['mcc']:.3f}"
        )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
