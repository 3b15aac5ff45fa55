"""Circuit breakers per endpoint and a round-robin pool that skips open circuits.

A breaker is `closed` (calls pass) until `failures` consecutive failures open it. An `open`
breaker refuses calls, so a dead server costs no deadline, until `reset_s` have passed; then it
is `half_open` and lets exactly one probe call through: success closes it, failure opens it
again for another `reset_s`. `states()` returns every endpoint's state for metrics.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vlm_tiers.errors import TierUnavailableError

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    def __init__(self, failures: int = 3, reset_s: float = 15.0, clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 1 or reset_s <= 0:
            raise ValueError(f"failures must be >= 1 and reset_s > 0, got {failures}, {reset_s}")
        self.failures_to_open = failures
        self.reset_s = reset_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self.total_failures = 0
        self.total_successes = 0
        self.times_opened = 0
        self.last_error = ""

    def _refresh(self) -> None:
        if self._state == OPEN and self._clock() - self._opened_at >= self.reset_s:
            self._state, self._probe_in_flight = HALF_OPEN, False

    @property
    def state(self) -> str:
        with self._lock:
            self._refresh()
            return self._state

    def try_acquire(self) -> bool:
        """May a call go out now? In half-open state only the first caller gets the probe."""
        with self._lock:
            self._refresh()
            if self._state == CLOSED:
                return True
            if self._state == HALF_OPEN and not self._probe_in_flight:
                self._probe_in_flight = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._state, self._failures, self._probe_in_flight = CLOSED, 0, False
            self.total_successes += 1

    def record_failure(self, error: str = "") -> None:
        with self._lock:
            self.total_failures += 1
            self.last_error = error[:200]
            self._failures += 1
            if self._state == HALF_OPEN or self._failures >= self.failures_to_open:
                if self._state != OPEN:
                    self.times_opened += 1
                self._state, self._opened_at, self._probe_in_flight = OPEN, self._clock(), False

    def release(self) -> None:
        """A call that neither succeeded nor failed (e.g. cancelled) gives the probe back."""
        with self._lock:
            self._probe_in_flight = False

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            self._refresh()
            retry_in = max(self.reset_s - (self._clock() - self._opened_at), 0.0) if self._state == OPEN else 0.0
            return {
                "state": self._state,
                "consecutive_failures": self._failures,
                "failures": self.total_failures,
                "successes": self.total_successes,
                "times_opened": self.times_opened,
                "retry_in_s": round(retry_in, 3),
                "last_error": self.last_error,
            }


@dataclass
class Endpoint:
    url: str
    breaker: CircuitBreaker


class EndpointPool:
    """Round robin over a tier's endpoints, skipping those whose circuit refuses calls."""

    def __init__(
        self,
        tier: str,
        urls: Sequence[str],
        failures: int = 3,
        reset_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not urls:
            raise ValueError(f"tier {tier!r} needs at least one endpoint")
        self.tier = tier
        self.endpoints = [Endpoint(u.rstrip("/"), CircuitBreaker(failures, reset_s, clock)) for u in urls]
        self._next = 0
        self._lock = threading.Lock()

    def acquire(self, exclude: Sequence[str] = ()) -> Endpoint:
        """The next endpoint that may be called (its breaker's permit taken), or raise."""
        with self._lock:
            n = len(self.endpoints)
            for i in range(n):
                ep = self.endpoints[(self._next + i) % n]
                if ep.url in exclude:
                    continue
                if ep.breaker.try_acquire():
                    self._next = (self._next + i + 1) % n
                    return ep
        states = ", ".join(f"{e.url}={e.breaker.state}" for e in self.endpoints)
        raise TierUnavailableError(
            f"tier {self.tier!r}: no endpoint may be called now ({states}); "
            "their circuits reopen for a probe after breaker.reset_s"
        )

    def states(self) -> list[dict[str, object]]:
        """Per-endpoint breaker state, for metrics and health pages."""
        return [{"tier": self.tier, "endpoint": e.url, **e.breaker.snapshot()} for e in self.endpoints]
