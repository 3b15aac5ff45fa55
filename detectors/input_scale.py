"""Frames scaled down before a model sees them (`voters[].input_long_side`).

Since May 2026 validators send frames at full resolution (1920x1080, 6.2 MB of pixels), while
every GPU model of the production profile looks at far less: YOLO letterboxes to 640, the depth
models take 518, the classifiers 224-384. Their processors did that resize on the worker's CPU,
in float32, once per model and frame; measured on an H200 at 10 concurrent full-resolution
frames (benchmarks/results/gpu_bench_1gpu_workers1_1920x1080_*_h200.json) the metric depth voter
went from 3.7 to 108 ms an image and the worker stayed 97 % busy with the GPU 16 % busy.

`InputScale` wraps a voter (under its micro-batcher, over the adapter or its worker-process
proxy): each frame whose long side exceeds `long_side` is scaled down once, by area, keeping its
aspect ratio, and the smaller frame goes on (through the pipe or shared memory to the worker, too).
Frames at or under the size pass unchanged. Boxes are kept normalised to the frame and the depth
check uses the box's height over the frame's width, so a vote means the same at either size.

Voters asking for the same size share one scaled copy of a frame (`scaled`): the copy lives as
long as the frame it came from.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence

import numpy as np
from PIL import Image

from cascade.types import Frame, Vote
from detectors.base import Voter

_SCALED: dict[int, dict[int, Frame]] = {}
"""id(frame) -> {long side: its scaled copy}; an entry goes when its frame is collected."""
_LOCK = threading.Lock()


def scaled_size(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """(width, height) fitted inside `long_side` with the aspect ratio kept; never enlarged."""
    w, h = size
    if max(w, h) <= long_side:
        return w, h
    s = long_side / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def scaled(frame: Frame, long_side: int) -> Frame:
    """`frame` with its long side at most `long_side` (area resampling; the same object if it
    already fits), shared by every caller asking for that size while the frame lives."""
    size = scaled_size(frame.size, long_side)
    if size == frame.size:
        return frame
    key = id(frame)
    with _LOCK:
        copies = _SCALED.get(key)
        if copies is None:
            copies = _SCALED[key] = {}
            weakref.finalize(frame, _SCALED.pop, key, None)
        hit = copies.get(long_side)
    if hit is not None:
        return hit
    # PIL's BOX filter is an area average; reducing_gap first shrinks by a whole factor (fast and
    # still antialiased), as Image.thumbnail does.
    pixels = np.array(Image.fromarray(frame.image).resize(size, Image.Resampling.BOX, reducing_gap=2.0))
    small = Frame(pixels, frame.source, frame.frame_id, frame.meta)
    with _LOCK:
        return copies.setdefault(long_side, small)


class InputScale(Voter):
    """A voter that sees every frame scaled down to `long_side` at most (see the module docstring)."""

    def __init__(self, inner: Voter, long_side: int) -> None:
        super().__init__(inner.name, inner.level, inner.weight)
        if long_side < 16:
            raise ValueError(f"voter {inner.name!r}: input_long_side must be 16 px or more, got {long_side}")
        self.inner = inner
        self.long_side = long_side

    def unwrap(self) -> Voter:
        return self.inner.unwrap()

    def predict(self, frames: Sequence[Frame]) -> list[Vote]:
        return self.inner.predict([scaled(f, self.long_side) for f in frames])

    def warmup(self) -> None:
        self.inner.warmup()

    def warm(self, frames: Sequence[Frame]) -> None:
        self.inner.warm([scaled(f, self.long_side) for f in frames])

    def __repr__(self) -> str:
        return f"InputScale({self.inner!r}, long_side={self.long_side})"
