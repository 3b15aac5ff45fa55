"""Offline metrics, including the subnet's reward simulated over a stream of answers.

`BinaryMetrics` follows the update() / compute() shape of supervision's metrics.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, matthews_corrcoef, roc_auc_score


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            ece += sel.mean() * abs(y[sel].mean() - p[sel].mean())
    return float(ece)


def subnet_reward_stream(y: np.ndarray, p: np.ndarray, mcc_window: int = 100, acc_window: int = 10) -> np.ndarray:
    """Reward after each answer: (0.5 * MCC(last 100) + 0.5 * accuracy(last 10)) ** 3.

    Predictions are thresholded with np.round, as the validator does (0.5 -> 0). A negative base
    is clipped to 0. MCC of a window with one class only is 0 (sklearn's convention).
    """
    pred = np.round(p).astype(int)
    out = np.zeros(len(y))
    for t in range(len(y)):
        ym, pm = y[max(0, t + 1 - mcc_window) : t + 1], pred[max(0, t + 1 - mcc_window) : t + 1]
        ya, pa = y[max(0, t + 1 - acc_window) : t + 1], pred[max(0, t + 1 - acc_window) : t + 1]
        # one label in both (sklearn warns there, and says 0): no correlation to measure
        mcc = matthews_corrcoef(ym, pm) if len(np.union1d(ym, pm)) > 1 else 0.0
        base = 0.5 * mcc + 0.5 * float((ya == pa).mean())
        out[t] = max(base, 0.0) ** 3
    return out


def _safe_auroc(y: np.ndarray, p: np.ndarray) -> float | None:
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else None


def summarise(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    pred = np.round(p).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return {
        "n": int(len(y)),
        "positives": int(y.sum()),
        # MCC is undefined with one class in y_true; None instead of sklearn's warning and 0
        "mcc": float(matthews_corrcoef(y, pred)) if len(np.unique(y)) == 2 else None,
        "accuracy": float((pred == y).mean()) if len(y) else 0.0,
        "auroc": _safe_auroc(y, p),
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
    }


@dataclass
class BinaryMetrics:
    """Accumulates (label, prob, source, latency, exit level) and computes the report's numbers."""

    labels: list[int] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    exit_levels: list[str] = field(default_factory=list)
    answered: list[bool] = field(default_factory=list)
    """False where no voter gave a probability: the miner sends -1 there, which earns nothing, so
    the report scores it as a wrong answer (not the 0.5 placeholder, which would pass as 'no
    roadwork' and be right on every negative)."""

    def update(
        self, label: int, prob: float, source: str, latency_ms: float, exit_level: str, answered: bool = True
    ) -> None:
        self.answered.append(bool(answered))
        self.labels.append(int(label))
        self.probs.append(float(prob))
        self.sources.append(source)
        self.latencies_ms.append(float(latency_ms))
        self.exit_levels.append(exit_level)

    def reset(self) -> None:
        for lst in (self.labels, self.probs, self.sources, self.latencies_ms, self.exit_levels, self.answered):
            lst.clear()

    def compute(self, stream_seed: int = 0) -> dict[str, Any]:
        if not self.labels:
            raise ValueError("no predictions to score")
        y = np.asarray(self.labels)
        answered = np.asarray(self.answered, dtype=bool)
        p = np.where(answered, np.asarray(self.probs, dtype=float), 1.0 - y)  # no answer: scored wrong
        lat = np.asarray(self.latencies_ms)
        out = summarise(y, p)
        out["unanswered"] = int((~answered).sum())
        out["ece"] = expected_calibration_error(y, p)
        by_source: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(self.sources):
            by_source[s].append(i)
        out["per_source"] = {s: summarise(y[idx], p[idx]) for s, idx in sorted(by_source.items())}
        out["latency_ms"] = {
            "p50": float(np.percentile(lat, 50)),
            "p95": float(np.percentile(lat, 95)),
            "mean": float(lat.mean()),
            "max": float(lat.max()),
        }
        out["exit_levels"] = dict(sorted(Counter(self.exit_levels).items()))
        order = np.random.default_rng(stream_seed).permutation(len(y))
        rewards = subnet_reward_stream(y[order], p[order])
        out["subnet_reward"] = {
            "mean": float(rewards.mean()),
            "final": float(rewards[-1]),
            "stream_seed": stream_seed,
            "note": "stream shuffled with stream_seed; np.round thresholding",
        }
        return out
