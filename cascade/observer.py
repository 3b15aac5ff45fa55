"""Hooks that let tracing and metrics watch a cascade run without the cascade knowing them.

`Cascade.run(frame, deadline, observer=...)` calls these in order: `on_start`, then per level
`on_vote` for each vote and `on_level` once pooled, then `on_verdict`. Observers must be cheap
and must not raise; an observer's own state (a trace span, say) is passed in explicitly by
whoever builds it, never read from globals.
"""

from __future__ import annotations

from typing import Protocol

from cascade.types import Frame, Level, Verdict, Vote


class CascadeObserver(Protocol):
    def on_start(self, frame: Frame, deadline_s: float) -> None: ...

    def on_vote(self, vote: Vote) -> None: ...

    def on_level(self, level: Level, pooled: float | None, elapsed_ms: float, deadline_left_s: float) -> None: ...

    def on_verdict(self, verdict: Verdict) -> None: ...


class NullObserver:
    """Does nothing; the default."""

    def on_start(self, frame: Frame, deadline_s: float) -> None:
        pass

    def on_vote(self, vote: Vote) -> None:
        pass

    def on_level(self, level: Level, pooled: float | None, elapsed_ms: float, deadline_left_s: float) -> None:
        pass

    def on_verdict(self, verdict: Verdict) -> None:
        pass
