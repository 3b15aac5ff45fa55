"""Shared body of every L1 box detector: chunk, detect, map classes, vote.

A backend adapter subclasses `BoxDetector` and implements `detect(images) -> list[Boxes]` on a
chunk of RGB uint8 arrays; everything else (chunking to the model's batch, turning boxes into a
calibrated image probability, putting the boxes in `Vote.evidence`, abstaining per frame when a
frame cannot be processed) lives here once.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cascade.types import AbstainCause, Frame, Level, Vote
from detectors.base import Detector
from detectors.evidence import Boxes, ClassMap

log = logging.getLogger(__name__)

# Errors a backend raises on an input it cannot handle; anything else is a bug and propagates.
FRAME_ERRORS = (ValueError, RuntimeError, IndexError)
"""What a bad input raises inside a model backend: the batch is retried frame by frame and only the
failing frames abstain. Not TypeError (a code or version bug) and not out-of-memory (the device,
not the frame): those propagate, and the cascade abstains with cause `error`, logs a warning and
counts it."""


def is_frame_error(exc: BaseException) -> bool:
    """True for a failure of this input; False for one of the model or the machine (CUDA OOM)."""
    return isinstance(exc, FRAME_ERRORS) and "out of memory" not in str(exc).lower()


def resolve_weights(
    weights: str, base_dir: Path, allow_download: bool, key: str, builtin_suffixes: tuple[str, ...] = (".yaml", ".yml")
) -> str:
    """A local file (relative to the profile), a built-in model yaml, or a hub name if allowed."""
    p = Path(weights).expanduser()
    local = p if p.is_absolute() else (base_dir / p)
    if local.exists():
        return str(local.resolve())
    if p.suffix in builtin_suffixes:
        return weights  # the backend builds it from its own packaged config (random weights)
    if allow_download:
        return weights
    raise FileNotFoundError(
        f"{key}={weights!r}: no such file under {str(base_dir)!r}, and downloads are off. Give a local "
        f"path, a model yaml (random weights) or set `params.allow_download: true` to fetch a hub name."
    )


class BoxDetector(Detector):
    """Detector that finds boxes and turns them into one roadwork probability per frame."""

    def __init__(self, name: str, level: Level, class_map: ClassMap, weight: float = 1.0, batch: int = 16) -> None:
        super().__init__(name, level, weight)
        self.class_map = class_map
        self.batch = batch

    @abstractmethod
    def detect(self, images: list[np.ndarray]) -> list[Boxes]:
        """Boxes for each RGB uint8 image, same order."""

    def vote_from_boxes(self, boxes: Boxes, ms: float) -> Vote:
        weights = self.class_map.box_weights(boxes)
        prob = self.class_map.image_probability(boxes)
        return Vote(
            self.name,
            self.level,
            prob,
            self.weight,
            ms,
            evidence={"boxes": boxes.to_evidence(weights), "n_boxes": len(boxes)},
        )

    def predict(self, frames: Sequence[Frame]) -> list[Vote]:
        votes: list[Vote] = []
        for start in range(0, len(frames), self.batch):
            chunk = list(frames[start : start + self.batch])
            t0 = time.monotonic()
            try:
                results: list[Boxes | Exception] = list(self.detect([f.image for f in chunk]))
            except FRAME_ERRORS as exc:  # one bad frame must not sink the batch: retry one by one
                if not is_frame_error(exc):
                    raise
                log.warning(
                    "%s: batch of %d failed (%s: %s); retrying frame by frame",
                    self.name,
                    len(chunk),
                    type(exc).__name__,
                    exc,
                )
                results = [self._detect_one(f.image) for f in chunk]
            if len(results) != len(chunk):
                raise RuntimeError(f"{self.name}: backend returned {len(results)} results for {len(chunk)} frames")
            ms = (time.monotonic() - t0) * 1000 / len(chunk)
            for res in results:
                if isinstance(res, Exception):
                    votes.append(
                        Vote.abstain(
                            self.name,
                            self.level,
                            f"frame failed: {type(res).__name__}: {res}",
                            ms,
                            cause=AbstainCause.ERROR,
                        )
                    )
                else:
                    votes.append(self.vote_from_boxes(res, ms))
        return votes

    def _detect_one(self, image: np.ndarray) -> Boxes | Exception:
        try:
            return self.detect([image])[0]
        except FRAME_ERRORS as exc:
            if not is_frame_error(exc):
                raise
            return exc


def map_with_fallback(items: list, run_batch: Callable[[list], Sequence]) -> list:
    """run_batch(items); if the batch fails on a bad input, run item by item and return the
    exception in place of each failing item's result (the caller abstains for it)."""
    try:
        out = list(run_batch(items))
    except FRAME_ERRORS as exc:
        if not is_frame_error(exc):
            raise
        out = []
        for item in items:
            try:
                out.append(run_batch([item])[0])
            except FRAME_ERRORS as one:
                if not is_frame_error(one):
                    raise
                out.append(one)
    return out
