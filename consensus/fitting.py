"""Fit voter weights, calibration and routing bands from a labelled run (scikit-learn).

Input rows are what `roadwork eval` writes to predictions.jsonl (label + every vote). Missing or
abstaining votes are encoded as logit 0 (no evidence) plus a presence indicator, so a voter that
rarely runs is not punished for the rows where it did not.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import matthews_corrcoef

from cascade.types import Level
from consensus.artefact import ConsensusArtefact
from consensus.pooling import logit, sigmoid


@dataclass(frozen=True)
class LabelledVotes:
    """One labelled row: voter name -> (level, prob or None)."""

    label: int
    votes: dict[str, tuple[Level, float | None]]


def _design(rows: Sequence[LabelledVotes], voters: list[str], clip: float) -> tuple[np.ndarray, np.ndarray]:
    x = np.zeros((len(rows), len(voters)))
    present = np.zeros_like(x)
    for i, row in enumerate(rows):
        for j, name in enumerate(voters):
            level_prob = row.votes.get(name)
            if level_prob is not None and level_prob[1] is not None:
                x[i, j] = float(logit(level_prob[1], clip))
                present[i, j] = 1.0
    return x, present


def pooled_logits(x: np.ndarray, present: np.ndarray, weights: np.ndarray) -> np.ndarray:
    w = present * weights[None, :]
    total = w.sum(axis=1)
    z = (w * x).sum(axis=1) / np.where(total > 0, total, 1.0)
    return np.where(total > 0, z, 0.0)


def best_threshold(y: np.ndarray, p: np.ndarray, lo: float = 0.2, hi: float = 0.8) -> float:
    """The MCC-maximising threshold, searched on a coarse grid inside [lo, hi] to limit overfit."""
    grid = np.round(np.arange(lo, hi + 1e-9, 0.025), 4)
    scores = [matthews_corrcoef(y, (p >= t).astype(int)) for t in grid]
    best = float(np.max(scores))
    # among near-ties take the middle one: less sensitive to a few samples
    near = grid[np.asarray(scores) >= best - 1e-3]
    return float(near[len(near) // 2])


def exit_band(y: np.ndarray, p: np.ndarray, target: float, min_support: int) -> tuple[float, float]:
    """The widest uncertainty band [lo, hi] outside of which decisions are at least `target` correct."""
    hi, lo = 1.0, 0.0
    for t in np.unique(np.round(p, 4))[::-1]:
        sel = p >= t
        if sel.sum() >= min_support and y[sel].mean() >= target:
            hi = float(t)
        elif sel.sum() >= min_support:
            break
    for t in np.unique(np.round(p, 4)):
        sel = p <= t
        if sel.sum() >= min_support and (1 - y[sel]).mean() >= target:
            lo = float(t)
        elif sel.sum() >= min_support:
            break
    return (min(lo, hi), max(lo, hi))


def fit_consensus(rows: Sequence[LabelledVotes], *, clip: float = 1e-4, target: float = 0.98,
                  min_support: int = 20, fitted_on: str = "") -> ConsensusArtefact:
    if not rows:
        raise ValueError("no labelled rows to fit on")
    y = np.asarray([r.label for r in rows], dtype=int)
    if set(np.unique(y)) != {0, 1}:
        raise ValueError(f"fitting needs both labels 0 and 1, got {sorted(set(y.tolist()))}")
    voters = sorted({name for r in rows for name, (_, p) in r.votes.items() if p is not None})
    if not voters:
        raise ValueError("no voter produced a probability in this run")
    levels = {name: lv for r in rows for name, (lv, _) in r.votes.items()}
    x, present = _design(rows, voters, clip)

    lr = LogisticRegression(C=1.0, max_iter=1000)
    lr.fit(np.hstack([x, present]), y)
    beta = np.clip(lr.coef_[0][: len(voters)], 0.0, None)
    if beta.sum() <= 0:
        beta = np.ones(len(voters))
    weights = beta / beta.sum() * len(voters)

    z = pooled_logits(x, present, weights)
    cal = LogisticRegression(C=1e4, max_iter=1000).fit(z[:, None], y)
    scale, bias = float(cal.coef_[0][0]), float(cal.intercept_[0])
    p_cal = sigmoid(scale * z + bias)
    t = best_threshold(y, p_cal)
    bias_shifted = bias - float(logit(t))
    p_final = sigmoid(scale * z + bias_shifted)

    bands: dict[str, tuple[float, float]] = {}
    for level in sorted(set(levels.values())):
        upto = np.asarray([levels[v] <= level for v in voters], dtype=float)
        z_l = pooled_logits(x, present * upto[None, :], weights)
        has = (present * upto[None, :]).sum(axis=1) > 0
        p_l = sigmoid(scale * z_l + bias_shifted)
        if has.sum() >= min_support:
            bands[level.name] = exit_band(y[has], p_l[has], target, min_support)

    pred = (p_final >= 0.5).astype(int)
    metrics = {"mcc": float(matthews_corrcoef(y, pred)), "accuracy": float((pred == y).mean())}
    return ConsensusArtefact(
        weights={v: float(w) for v, w in zip(voters, weights, strict=True)},
        scale=scale, bias=bias_shifted, clip=clip, bands=bands, threshold_raw=t,
        fitted_on=fitted_on, n_samples=len(rows), metrics=metrics)


def artefact_probs(artefact: ConsensusArtefact, rows: Sequence[LabelledVotes]) -> np.ndarray:
    """The fitted pool's calibrated probability for each row (voters absent from a row abstain)."""
    voters = list(artefact.weights)
    x, present = _design(rows, voters, artefact.clip)
    z = pooled_logits(x, present, np.array([artefact.weights[v] for v in voters]))
    return sigmoid(artefact.scale * z + artefact.bias)


def rows_from_predictions(predictions: Sequence[dict]) -> list[LabelledVotes]:
    """Turn `roadwork eval` predictions.jsonl rows into fitting rows."""
    rows = []
    for r in predictions:
        votes = {v["voter"]: (Level.parse(v["level"]), v["prob"]) for v in r.get("votes", [])}
        rows.append(LabelledVotes(label=int(r["label"]), votes=votes))
    return rows
