"""The one interface every voter implements, and the adapters built from a profile entry.

`Voter` is what the cascade runs: a name, a level, a weight and `predict`. A `Detector` is a voter
adapter built from its `VoterConfig` by `from_config` (all file and weight I/O happens there; the
registry's kinds are Detectors); wrappers around an adapter (the micro-batcher, a voter in a device
worker process) are plain Voters, built by whoever wraps. A voter only predicts: `predict(frames)` takes a batch and returns one `Vote` per frame,
in order. The constructor takes already-loaded parts so a test can pass fakes.

An I/O-bound adapter (a VLM client) may also define `async def apredict(frames)`; the cascade then
awaits it on the event loop instead of running `predict` in its thread pool.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cascade.config import VoterConfig
from cascade.types import Frame, Level, Vote


class Voter(ABC):
    """A named model at one level that turns frames into votes."""

    def __init__(self, name: str, level: Level, weight: float = 1.0) -> None:
        self.name = name
        self.level = Level.parse(level)
        self.weight = weight

    @abstractmethod
    def predict(self, frames: Sequence[Frame]) -> list[Vote]:
        """One vote per frame, same order. Abstain (with a reason) rather than raise per frame."""

    def unwrap(self) -> Voter:
        """The adapter that does the work: itself, or for a wrapper (micro-batcher) what it wraps."""
        return self

    def warmup(self) -> None:
        """Run once on a blank frame so the first real query does not pay for lazy init."""
        self.predict([warm_frame()])

    def warm(self, frames: Sequence[Frame]) -> None:
        """Run these frames for warm-up only (a batch size the cascade will use). A voter served by
        several copies (runtime.workers_per_device) runs them on every copy."""
        self.predict(frames)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, level={self.level.name})"


def warm_prior() -> Vote:
    """An L1 vote with two roadwork boxes: in a frame's prior votes it makes L2 validators (which
    check earlier voters' boxes, and abstain without any) run their model."""
    from detectors.evidence import Boxes

    boxes = Boxes(
        np.array([[0.1, 0.5, 0.18, 0.75], [0.6, 0.4, 0.9, 0.7]]), np.array([0.9, 0.7]), ("traffic cone", "road barrier")
    )
    return Vote("warmup", "L1", 0.6, evidence={"boxes": boxes.to_evidence()})


def warm_frame(width: int = 224, height: int = 224) -> Frame:
    """A blank frame for warm-up, with `warm_prior` among its prior votes: every voter, L2 box
    validators included, runs its model on it (a model first met on a live request would pay for
    its lazy init, autotuning or compilation there)."""
    return Frame(np.zeros((height, width, 3), np.uint8), source="warmup", meta={"prior_votes": (warm_prior(),)})


class Detector(Voter):
    """A voter adapter of one registry kind, built from its profile entry."""

    @classmethod
    @abstractmethod
    def from_config(cls, cfg: VoterConfig, base_dir: Path) -> Detector:
        """Load weights and build the adapter; relative paths are resolved against base_dir."""
