"""Core value types that every other package passes around.

`Frame` is one decoded image, `Vote` one model's opinion about it and `Verdict` the cascade's
answer. All three are frozen and check themselves when built, so a bad value fails where it is
made, not deep inside pooling. This module imports nothing from the rest of the project.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Any

import numpy as np


class Level(IntEnum):
    """The cascade's levels, in the order they run."""

    L0 = 0  # shared backbone features + fast head
    L1 = 1  # detector ensemble
    L2 = 2  # depth / segmentation / OCR / zero-shot validators
    L3 = 3  # fast VLM tier
    L4 = 4  # power VLM tier
    L5 = 5  # precision VLM tier
    L6 = 6  # consensus over every vote that ran

    @classmethod
    def parse(cls, value: str | int | Level) -> Level:
        if isinstance(value, Level):
            return value
        if isinstance(value, int):
            return cls(value)
        text = str(value).strip().upper()
        if text in cls.__members__:
            return cls[text]
        raise ValueError(f"unknown level {value!r}; expected one of {', '.join(cls.__members__)}")


def _check_prob(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


DEADLINE_META = "deadline_at"
"""Frame.meta key: the request's deadline on the monotonic clock (set by the cascade), so every wait
below it (micro-batcher, device worker) can end when the request does."""


LongSides = tuple[int, int | None]
"""Frames whose long side (pixels) is >= the first and < the second (None: no upper bound): what a
voter scores (`voters[].long_side`) and what a fitted pool is for (consensus/artefact.py)."""
EVERY_SIZE: LongSides = (0, None)


def covers(sides: LongSides, long_side: int) -> bool:
    lo, hi = sides
    return long_side >= lo and (hi is None or long_side < hi)


def overlaps(a: LongSides, b: LongSides) -> bool:
    """Whether some frame size is in both ranges."""
    return a[0] < (b[1] if b[1] is not None else math.inf) and b[0] < (a[1] if a[1] is not None else math.inf)


def seconds_left(frames: Any) -> float | None:
    """Seconds until the latest deadline among `frames` (never below 0), or None when none has one."""
    import time

    ats = [f.meta[DEADLINE_META] for f in frames if DEADLINE_META in f.meta]
    return None if not ats else max(max(ats) - time.monotonic(), 0.0)


@dataclass(frozen=True)
class Frame:
    """One RGB image (H, W, 3) uint8 plus where it came from."""

    image: np.ndarray
    source: str = "unknown"
    frame_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        img = self.image
        if not isinstance(img, np.ndarray):
            raise TypeError(f"Frame.image must be a numpy array, got {type(img).__name__}")
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"Frame.image must have shape (H, W, 3), got {img.shape}")
        if img.dtype != np.uint8:
            raise ValueError(f"Frame.image must be uint8, got {img.dtype}")
        if img.shape[0] < 1 or img.shape[1] < 1:
            raise ValueError(f"Frame.image is empty: shape {img.shape}")
        if not self.source:
            raise ValueError("Frame.source must be a non-empty name")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])

    @property
    def long_side(self) -> int:
        return max(self.size)


class AbstainCause(str, Enum):
    """Why a voter gave no probability; set where it happens, counted by metrics and alerts."""

    DEADLINE = "deadline"
    """It did not answer within the time left (the cascade's budget or the tier's own timeout)."""
    ERROR = "error"
    """The model, its worker process or its server failed."""
    BREAKER = "breaker"
    """Its circuit breaker is open: it was not called."""
    NO_EVIDENCE = "no_evidence"
    """It ran, but this frame gives it nothing to judge (no text, no boxes from the level before)."""


@dataclass(frozen=True)
class Vote:
    """One voter's probability that the frame shows roadwork, with provenance.

    An abstaining vote (`Vote.abstain`) has `prob=None` and carries no weight in pooling.
    """

    voter: str
    level: Level
    prob: float | None
    weight: float = 1.0
    latency_ms: float = 0.0
    evidence: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    cause: AbstainCause | None = None
    """Why it abstained (abstaining votes only)."""

    def __post_init__(self) -> None:
        if not self.voter:
            raise ValueError("Vote.voter must be a non-empty name")
        object.__setattr__(self, "level", Level.parse(self.level))
        if self.prob is None:
            if not self.reason or self.cause is None:
                raise ValueError(f"vote {self.voter!r} abstains without a reason and cause; use Vote.abstain(...)")
            object.__setattr__(self, "cause", AbstainCause(self.cause))
        else:
            if self.cause is not None:
                raise ValueError(f"vote {self.voter!r} has a probability and an abstain cause {self.cause!r}")
            _check_prob(f"Vote({self.voter}).prob", float(self.prob))
            object.__setattr__(self, "prob", float(self.prob))
        if not self.weight >= 0 or math.isinf(self.weight):
            raise ValueError(f"Vote({self.voter}).weight must be finite and >= 0, got {self.weight!r}")
        if self.latency_ms < 0:
            raise ValueError(f"Vote({self.voter}).latency_ms must be >= 0, got {self.latency_ms!r}")

    @property
    def abstained(self) -> bool:
        return self.prob is None

    @classmethod
    def abstain(
        cls, voter: str, level: Level | str | int, reason: str, latency_ms: float = 0.0, *, cause: AbstainCause
    ) -> Vote:
        return cls(
            voter=voter,
            level=Level.parse(level),
            prob=None,
            weight=0.0,
            latency_ms=latency_ms,
            reason=reason,
            cause=cause,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "voter": self.voter,
            "level": self.level.name,
            "prob": self.prob,
            "weight": self.weight,
            "latency_ms": round(self.latency_ms, 3),
            "reason": self.reason,
            "cause": None if self.cause is None else self.cause.value,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class Verdict:
    """The cascade's answer for one frame.

    `prob` is the pooled probability. `exit_level` is the last level that ran, or None when no
    voter produced a probability (then `prob` is 0.5 and `answered` is False).
    """

    prob: float
    votes: tuple[Vote, ...]
    exit_level: Level | None
    timings_ms: dict[str, float] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_prob("Verdict.prob", self.prob)
        object.__setattr__(self, "votes", tuple(self.votes))
        if self.exit_level is not None:
            object.__setattr__(self, "exit_level", Level.parse(self.exit_level))

    @property
    def answered(self) -> bool:
        return self.exit_level is not None and any(not v.abstained for v in self.votes)

    @property
    def label(self) -> int:
        return subnet_answer(self.prob)


def subnet_answer(prob: float) -> int:
    """The subnet's reading of an answer: np.round, so exactly 0.5 counts as no roadwork."""
    return int(np.round(prob))
