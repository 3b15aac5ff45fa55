"""Deadline budget: measured stage costs (moving averages) and what still fits."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Deadline:
    """An absolute point on the monotonic clock."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return self.at - time.monotonic()


class CostTracker:
    """Exponential moving average of each stage's wall time, in seconds. Thread-safe."""

    def __init__(self, prior_s: float, alpha: float, priors: dict[str, float] | None = None) -> None:
        if prior_s <= 0 or not 0 < alpha <= 1:
            raise ValueError(f"prior_s must be > 0 and alpha in (0, 1], got {prior_s}, {alpha}")
        bad = {k: v for k, v in (priors or {}).items() if not v > 0}
        if bad:
            raise ValueError(f"per-stage priors must be > 0 seconds, got {bad}")
        self._prior = prior_s
        self._priors = dict(priors or {})
        self._alpha = alpha
        self._ema: dict[str, float] = {}
        self._lock = threading.Lock()

    def estimate(self, stage: str) -> float:
        with self._lock:
            return self._ema.get(stage, self._priors.get(stage, self._prior))

    def observe(self, stage: str, seconds: float) -> None:
        with self._lock:
            old = self._ema.get(stage)
            self._ema[stage] = seconds if old is None else (1 - self._alpha) * old + self._alpha * seconds

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self._ema)

    def fits(self, stage: str, deadline: Deadline, margin_s: float) -> bool:
        return self.estimate(stage) <= deadline.remaining() - margin_s
