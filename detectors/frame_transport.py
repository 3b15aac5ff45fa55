"""How frames reach a device worker process (`runtime.frame_transport`).

`pipe` (the default): each micro-batch's frames are pickled and sent through the worker's pipe,
once per voter. At 224 px that is ~150 KB a frame; a 1920x1080 frame, which full-resolution
validators send, is 6.2 MB, and with 17 GPU voters it crosses 17 times
(`benchmarks/ipc_frames.py`).

`shared-memory`: the batch's pixels are copied once into a POSIX shared-memory block (stdlib
`multiprocessing.shared_memory`), only the frames' shapes and metadata go through the pipe, and
the worker copies the pixels out and closes the block before its model runs. The main process
creates and unlinks every block, so a worker that dies leaves nothing behind. The block's pages
are reserved when it is made (`posix_fallocate`): a full `/dev/shm` (a container's default is
64 MB) is a clear error that the voter abstains with, never a SIGBUS when the pixels are written.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cascade.types import Frame

_COUNTER = itertools.count()


class FrameTransportError(RuntimeError):
    """The frames could not be handed over (no room in /dev/shm)."""


@dataclass(frozen=True)
class FrameRef:
    """One frame of a shared batch: where its pixels are in the block, and the rest of the Frame."""

    shape: tuple[int, int, int]
    offset: int
    source: str
    frame_id: str
    meta: dict[str, Any] = field(default_factory=dict)


def check_available() -> None:
    """Refuse the shared-memory transport where its pages cannot be reserved up front."""
    if not hasattr(os, "posix_fallocate"):
        raise FrameTransportError(
            f"runtime.frame_transport: shared-memory needs os.posix_fallocate, which {sys.platform} lacks; use pipe"
        )


@contextmanager
def shared_batch(frames: Sequence[Frame]) -> Iterator[tuple[str, list[FrameRef]]]:
    """The frames' pixels in a new shared-memory block: (block name, refs); unlinked on exit."""
    from multiprocessing.shared_memory import SharedMemory

    sizes = [f.image.nbytes for f in frames]
    total = max(sum(sizes), 1)
    shm = SharedMemory(name=f"roadwork_{os.getpid()}_{next(_COUNTER)}", create=True, size=total)
    try:
        try:  # reserve the pages now: tmpfs out of room must fail here, not as SIGBUS on write
            os.posix_fallocate(shm._fd, 0, total)  # type: ignore[attr-defined]  # POSIX SharedMemory's fd
        except OSError as exc:
            raise FrameTransportError(
                f"no room in /dev/shm for {total / 1e6:.1f} MB of frames ({exc.strerror}); give the "
                "container more (docker --shm-size) or set runtime.frame_transport: pipe"
            ) from exc
        refs, offset = [], 0
        for f, size in zip(frames, sizes, strict=True):
            np.ndarray(f.image.shape, np.uint8, buffer=shm.buf, offset=offset)[...] = f.image
            refs.append(FrameRef(tuple(f.image.shape), offset, f.source, f.frame_id, f.meta))  # type: ignore[arg-type]
            offset += size
        yield shm.name, refs
    finally:
        shm.close()
        shm.unlink()


def frames_in(block: str, refs: Sequence[FrameRef]) -> list[Frame]:
    """Worker side: the frames of a shared batch, copied out, with the block closed again."""
    shm = _attach(block)
    try:
        return [
            Frame(np.ndarray(r.shape, np.uint8, buffer=shm.buf, offset=r.offset).copy(), r.source, r.frame_id, r.meta)
            for r in refs
        ]
    finally:
        shm.close()


_ATTACH_LOCK = threading.Lock()


def _attach(name: str) -> Any:
    """Open an existing block without handing it to the resource tracker: the main process made
    it, registered it and unlinks it. (Before Python 3.13 every attach registers the block too,
    bpo-39959, and the tracker then reports it leaked or unlinks it early.)"""
    from multiprocessing import resource_tracker
    from multiprocessing.shared_memory import SharedMemory

    if sys.version_info >= (3, 13):
        return SharedMemory(name=name, track=False)
    with _ATTACH_LOCK:  # lanes (runtime.lanes_per_worker) attach from several threads of a worker
        register = resource_tracker.register
        resource_tracker.register = lambda *args, **kwargs: None
        try:
            return SharedMemory(name=name)
        finally:
            resource_tracker.register = register
