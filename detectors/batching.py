"""Micro-batching: concurrent `predict([frame])` calls on one model are gathered into one batch.

The cascade runs each request's voters in its thread pool (`runtime.workers` threads), so with
many requests in flight the same model is asked for one frame from several threads at once. A
`MicroBatcher` wraps any `Voter`: the first queued frame opens a batch that waits up to
`batch_wait_ms` (or until `batch` frames are queued), then the inner model runs once on all
queued frames and hands each caller its own votes. One worker thread per model runs the batches
(one batch at a time on the accelerator); callers that arrive meanwhile form the next batch.

Batches are padded (with copies of their last frame, whose votes are dropped) to the next power of
two up to `batch`, and `warmup()` runs every such size on the worker thread itself. Measured on an
H100 (yolo11x, fp16): the first batch of each new size on each thread cost 0.9-1.4 s (cuDNN
autotuning and per-thread handles) against 0.06-0.11 s afterwards, so free batch sizes made the
micro-batched path 60x slower than the model's own batched cost.

An error in the inner model is raised in every caller of that batch (the cascade turns it into an
abstaining vote with the reason), never swallowed.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from functools import partial

from cascade.types import Frame, Vote, seconds_left
from detectors.base import Voter, warm_frame


@dataclass
class _Request:
    frames: list[Frame]
    future: Future = field(default_factory=Future)


@dataclass
class BatchStats:
    calls: int = 0
    """predict() calls received."""
    batches: int = 0
    """inner model calls made."""
    frames: int = 0
    padded: int = 0
    """frames added to reach a bucket size (their votes are dropped)."""

    @property
    def mean_batch(self) -> float:
        return self.frames / self.batches if self.batches else 0.0


class MicroBatcher(Voter):
    def __init__(
        self,
        inner: Voter,
        batch: int = 16,
        wait_ms: float = 5.0,
        pad: bool = True,
        warm_sizes: Sequence[tuple[int, int]] = ((224, 224),),
    ) -> None:
        super().__init__(inner.name, inner.level, inner.weight)
        if batch < 1 or wait_ms < 0:
            raise ValueError(f"micro-batching needs batch >= 1 and batch_wait_ms >= 0, got {batch}, {wait_ms}")
        self.inner = inner
        self.max_batch = batch
        self.wait_s = wait_ms / 1000
        self.pad = pad
        self.warm_sizes = [tuple(s) for s in warm_sizes]
        """(width, height) of the blank frames `warmup` runs every bucket at."""
        self.stats = BatchStats()
        self._queue: queue.SimpleQueue[_Request | Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._run_lock = threading.Lock()  # one batch at a time on the model

    def unwrap(self) -> Voter:
        return self.inner.unwrap()

    def bucket(self, n: int) -> int:
        """The batch size the model is run at for n frames."""
        if not self.pad or n >= self.max_batch:
            return n
        return min(1 << (n - 1).bit_length(), self.max_batch)

    def buckets(self) -> list[int]:
        return sorted({self.bucket(n) for n in range(1, self.max_batch + 1)})

    def warmup(self) -> None:
        """Warm the inner model, then every bucket size at every warm size (width, height) on the
        worker thread that will run them."""
        self.inner.warmup()
        for w, h in self.warm_sizes:
            blank = warm_frame(w, h)
            for size in self.buckets():
                self._run_on_worker(partial(self.inner.warm, [blank] * size))

    def _run_on_worker(self, fn: Callable[[], None]) -> None:
        """fn() on the batcher's worker thread, one batch at a time with the rest; its error is raised here."""
        done: Future = Future()

        def job() -> None:
            try:
                with self._run_lock:
                    fn()
                done.set_result(None)
            except Exception as exc:  # handed to the caller below
                done.set_exception(exc)

        self._ensure_worker()
        self._queue.put(job)
        done.result()

    def predict(self, frames: Sequence[Frame]) -> list[Vote]:
        if len(frames) >= self.max_batch:  # already a full batch: no need to wait for company
            with self._lock:
                self.stats.calls += 1
            return self._run_direct(list(frames))
        req = _Request(list(frames))
        with self._lock:
            self.stats.calls += 1
        self._ensure_worker()
        self._queue.put(req)
        return self._wait(req)

    def _wait(self, req: _Request) -> list[Vote]:
        """The batch's votes, or TimeoutError once the request's deadline has passed (the batch may
        still finish later; its answer is then dropped)."""
        try:
            return req.future.result(timeout=seconds_left(req.frames))
        except FutureTimeout:
            raise TimeoutError(f"{self.name}: no micro-batch result before the request's deadline") from None

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._loop, name=f"batch-{self.name}", daemon=True)
                self._worker.start()

    def close(self) -> None:
        """Stop the batching thread (queued requests are still answered first)."""
        if self._worker is not None and self._worker.is_alive():
            self._queue.put(None)
            self._worker.join(timeout=5)

    def _loop(self) -> None:
        carry: _Request | None = None
        while True:
            first = carry if carry is not None else self._queue.get()
            carry = None
            if first is None:
                return
            if callable(first):  # a warm-up job: runs here, on the thread that runs the batches
                first()
                continue
            batch, n = [first], len(first.frames)
            deadline = time.monotonic() + self.wait_s
            while n < self.max_batch:
                try:
                    nxt = (
                        self._queue.get(timeout=max(deadline - time.monotonic(), 0))
                        if deadline > time.monotonic()
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if nxt is None:
                    self._run(batch)
                    return
                if callable(nxt) or n + len(nxt.frames) > self.max_batch:
                    carry = nxt  # starts the next batch
                    break
                batch.append(nxt)
                n += len(nxt.frames)
            self._run(batch)

    def _run_direct(self, frames: list[Frame]) -> list[Vote]:
        req = _Request(frames)
        self._run([req])
        return self._wait(req)

    def _run(self, batch: list[_Request]) -> None:
        frames = [f for r in batch for f in r.frames]
        extra = self.bucket(len(frames)) - len(frames)
        with self._lock:
            self.stats.batches += 1
            self.stats.frames += len(frames)
            self.stats.padded += extra
        try:
            with self._run_lock:
                votes = self.inner.predict(frames + [frames[-1]] * extra)
            if len(votes) != len(frames) + extra:
                raise RuntimeError(f"{self.name}: inner model gave {len(votes)} votes for {len(frames) + extra} frames")
            votes = votes[: len(frames)]
        except Exception as exc:  # hand the failure to every waiting caller; the worker goes on
            for r in batch:
                r.future.set_exception(exc)
            return
        i = 0
        for r in batch:
            r.future.set_result(votes[i : i + len(r.frames)])
            i += len(r.frames)

    def __repr__(self) -> str:
        return f"MicroBatcher({self.inner!r}, batch={self.max_batch}, wait_ms={self.wait_s * 1000:g})"
