"""Deadline budget: measured stage costs (moving averages) and what still fits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
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
    """Exponential moving average of each stage's wall time, in seconds. Thread-safe.

    A stage measured slower than its prior (a timeout records twice its elapsed time) would be
    skipped on every later request and so never measured again. The part of an estimate above the
    prior therefore fades with the time since the stage last ran (half-life `recovery_s`): a
    voter that was slow once is probed again once that has faded, and is skipped again only if
    it is still slow.
    """

    def __init__(
        self,
        prior_s: float,
        alpha: float,
        priors: dict[str, float] | None = None,
        recovery_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if prior_s <= 0 or not 0 < alpha <= 1 or recovery_s <= 0:
            raise ValueError(
                f"prior_s and recovery_s must be > 0 and alpha in (0, 1], got {prior_s}, {recovery_s}, {alpha}"
            )
        bad = {k: v for k, v in (priors or {}).items() if not v > 0}
        if bad:
            raise ValueError(f"per-stage priors must be > 0 seconds, got {bad}")
        self._prior = prior_s
        self._priors = dict(priors or {})
        self._alpha = alpha
        self._recovery_s = recovery_s
        self._clock = clock
        self._ema: dict[str, float] = {}
        self._seen_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def prior(self, stage: str) -> float:
        return self._priors.get(stage, self._prior)

    def _faded(self, stage: str) -> float | None:
        """The stage's estimate with its excess over the prior faded; None if it never ran. Lock held."""
        if stage not in self._ema:
            return None
        ema, prior = self._ema[stage], self.prior(stage)
        if ema <= prior:
            return ema
        return prior + (ema - prior) * 0.5 ** ((self._clock() - self._seen_at[stage]) / self._recovery_s)

    def estimate(self, stage: str) -> float:
        with self._lock:
            current = self._faded(stage)
        return self.prior(stage) if current is None else current

    def observe(self, stage: str, seconds: float) -> None:
        with self._lock:
            current = self._faded(stage)
            self._ema[stage] = seconds if current is None else (1 - self._alpha) * current + self._alpha * seconds
            self._seen_at[stage] = self._clock()

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {stage: self._faded(stage) for stage in self._ema}

    def fits(self, stage: str, deadline: Deadline, margin_s: float) -> bool:
        return self.estimate(stage) <= deadline.remaining() - margin_s
