"""Run several `CascadeObserver`s on one query (tracing + metrics), in order."""

from __future__ import annotations

from typing import Any

from cascade.types import Frame, Level, Verdict, Vote


class ObserverGroup:
    """Fans the hooks out to several observers (tracing + metrics), in order."""

    def __init__(self, *observers: Any) -> None:
        self.observers = [o for o in observers if o is not None]

    def on_start(self, frame: Frame, deadline_s: float) -> None:
        for o in self.observers:
            o.on_start(frame, deadline_s)

    def on_vote(self, vote: Vote) -> None:
        for o in self.observers:
            o.on_vote(vote)

    def on_level(self, level: Level, pooled: float | None, elapsed_ms: float, deadline_left_s: float) -> None:
        for o in self.observers:
            o.on_level(level, pooled, elapsed_ms, deadline_left_s)

    def on_verdict(self, verdict: Verdict) -> None:
        for o in self.observers:
            o.on_verdict(verdict)
