"""Weighted geometric-mean pooling of probabilities in odds space.

    p* = sigmoid( sum_i w_i * logit(clip(p_i)) / sum_i w_i )

which is the weighted geometric mean of p and of 1-p, renormalised. Abstaining votes and votes
with weight 0 contribute nothing. An optional affine calibration (scale, bias) fitted by
`roadwork fit` is applied to the pooled logit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from cascade.types import Vote

DEFAULT_CLIP = 1e-4


def logit(p: float | np.ndarray, clip: float = DEFAULT_CLIP) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), clip, 1.0 - clip)
    return np.log(q) - np.log1p(-q)


def sigmoid(z: float | np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))


def pool(
    probs: Sequence[float], weights: Sequence[float], clip: float = DEFAULT_CLIP, scale: float = 1.0, bias: float = 0.0
) -> float | None:
    """Pool probabilities; None when no weight is left (nothing to say)."""
    p = np.asarray(probs, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if p.shape != w.shape:
        raise ValueError(f"probs and weights differ in length: {p.shape} vs {w.shape}")
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError(f"weights must be finite and >= 0, got {w.tolist()}")
    total = float(w.sum())
    if total <= 0.0:
        return None
    z = float(np.dot(w, logit(p, clip)) / total)
    return float(sigmoid(scale * z + bias))


def pool_votes(
    votes: Iterable[Vote],
    weights: Mapping[str, float] | None = None,
    clip: float = DEFAULT_CLIP,
    scale: float = 1.0,
    bias: float = 0.0,
) -> float | None:
    """Pool the votes that did not abstain.

    A voter's weight is `weights[voter]` when given (fitted weights), else the vote's own weight.
    """
    probs: list[float] = []
    ws: list[float] = []
    for v in votes:
        if v.abstained:
            continue
        w = v.weight if weights is None else float(weights.get(v.voter, v.weight))
        probs.append(float(v.prob))  # type: ignore[arg-type]
        ws.append(w)
    if not probs:
        return None
    return pool(probs, ws, clip=clip, scale=scale, bias=bias)
