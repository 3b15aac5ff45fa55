"""A worker process that runs up to `lanes` calls at once: one thread per lane, each lane with a CUDA
stream of its own (runtime.lanes_per_worker).

Why: one call at a time leaves the GPU idle while that call's Python runs (processors, kernel
launches, post-processing) and the CPU idle while it waits on the GPU. Measured on one H200 with
the 18-model profile: worker 96 % busy, GPU 37 %. With two lanes one voter's batch can run on the
GPU while another voter's Python runs: a thread that waits on its stream releases the GIL.

A call names its lane; the caller keeps each voter on one lane (`lane_of`), so a voter's warm-up
and compiled graphs are made and used on the same thread, and every voter that replays CUDA graphs
shares one lane: torch's cudagraph trees serve one thread per process. One lane is the plain case:
a single thread on the default stream, one call at a time.

The interface is the part of `concurrent.futures.Executor` that `DeviceProcess` uses: `submit`
returns a `Future`, a worker that dies fails every call in flight with `BrokenProcessPool` (what
`ProcessPoolExecutor` raises), and `shutdown`.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from cascade.config import VoterConfig


def lane_of(voters: Sequence[VoterConfig], lanes: int) -> dict[str, int]:
    """Each voter's lane in one worker (its device's voters, in profile order). Voters that replay
    CUDA graphs (`compile: reduce-overhead`) all go on lane 0: torch keeps that state for one thread
    of a process, and a second thread's first replay fails with an AssertionError (seen on the lent
    H200 with the two L0 backbones on two lanes). The others take the lanes in turn, from the next
    one (the profile lists each level's voters together, so every lane gets a share of each
    level's models)."""
    from detectors.backbone_head import cuda_graph_voters

    if lanes < 1:
        raise ValueError(f"lanes must be at least 1, got {lanes}")
    graphs = {voters[i].name for i in cuda_graph_voters(voters)}
    rest = [v.name for v in voters if v.name not in graphs]
    return {n: 0 for n in graphs} | {n: (i + bool(graphs)) % lanes for i, n in enumerate(rest)}


# ---- worker side -----------------------------------------------------------------------------
def _stream_for(device: str, lanes: int) -> Callable[[], AbstractContextManager[Any]]:
    """A context that puts the calling lane thread on its own CUDA stream (made on first use);
    with one lane, or off CUDA, nothing changes."""
    if lanes < 2 or not device.startswith("cuda"):
        return nullcontext
    import torch

    if not torch.cuda.is_available():
        return nullcontext
    local = threading.local()

    def ctx() -> AbstractContextManager[Any]:
        if not hasattr(local, "stream"):
            local.stream = torch.cuda.Stream(device=device)
        return torch.cuda.stream(local.stream)

    return ctx


def _serve(conn: Any, lanes: int, device: str, initializer: Callable[..., None], initargs: tuple) -> None:
    """The worker's main loop: run `initializer`, then hand each (id, lane, fn, args) it receives
    to that lane's thread; replies go back as (id, ok, result or exception). Ends on None or EOF."""
    initializer(*initargs)
    stream = _stream_for(device, lanes)
    send_lock = threading.Lock()

    def run(call_id: int, fn: Callable[..., Any], args: tuple) -> None:
        try:
            with stream():
                out = fn(*args)
                if stream is not nullcontext:
                    import torch

                    torch.cuda.current_stream().synchronize()  # results are read on the host next
            reply: tuple = (call_id, True, out)
        except BaseException as exc:  # sent back to the caller, as a process pool does
            reply = (call_id, False, exc)
        with send_lock:
            try:
                conn.send(reply)
            except Exception as exc:  # an unpicklable result or exception still answers the call
                conn.send((call_id, False, RuntimeError(f"{type(exc).__name__} while sending the reply: {exc}")))

    threads = [ThreadPoolExecutor(1, thread_name_prefix=f"lane{i}") for i in range(lanes)]
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            if msg is None:
                break
            call_id, lane, fn, args = msg
            threads[lane % lanes].submit(run, call_id, fn, args)
    finally:
        for t in threads:
            t.shutdown(wait=True, cancel_futures=True)
        conn.close()


# ---- main side -------------------------------------------------------------------------------
class LanedProcess:
    """One spawned worker process with `lanes` threads; `submit(fn, *args, lane=k)`."""

    def __init__(self, ctx: Any, lanes: int, device: str, initializer: Callable[..., None], initargs: tuple) -> None:
        if lanes < 1:
            raise ValueError(f"lanes must be at least 1, got {lanes}")
        self.lanes = lanes
        self._conn, child = ctx.Pipe(duplex=True)
        self._proc = ctx.Process(
            target=_serve, args=(child, lanes, device, initializer, initargs), name=f"worker-{device}", daemon=True
        )
        self._proc.start()
        child.close()
        self.pid = self._proc.pid
        self._lock, self._send_lock = threading.Lock(), threading.Lock()
        self._pending: dict[int, Future] = {}
        self._ids = itertools.count()
        self._broken: str | None = None
        self._stopping = False
        self._reader = threading.Thread(target=self._read, name=f"replies-{device}", daemon=True)
        self._reader.start()

    def submit(self, fn: Callable[..., Any], *args: Any, lane: int = 0) -> Future:
        fut: Future = Future()
        with self._lock:
            if self._broken is not None:
                raise BrokenProcessPool(self._broken)
            call_id = next(self._ids)
            self._pending[call_id] = fut
        try:
            with self._send_lock:
                self._conn.send((call_id, lane, fn, args))
        except (OSError, EOFError, ValueError) as exc:  # the pipe is gone: the worker has died
            self._fail_all(f"the worker process is gone ({type(exc).__name__}: {exc})")
        return fut

    def _read(self) -> None:
        while True:
            try:
                call_id, ok, payload = self._conn.recv()
            except (EOFError, OSError):
                break
            except Exception as exc:  # a reply that cannot be unpickled fails its call, not the reader
                self._fail_all(f"a reply from the worker could not be read: {type(exc).__name__}: {exc}")
                break
            with self._lock:
                fut = self._pending.pop(call_id, None)
            if fut is not None and not fut.done():
                fut.set_result(payload) if ok else fut.set_exception(payload)
        self._proc.join(timeout=5)
        code = self._proc.exitcode
        self._fail_all(
            "the worker process was shut down"
            if self._stopping
            else f"the worker process died (exit code {code}: out of memory or a crash in a native library)"
        )

    def _fail_all(self, why: str) -> None:
        with self._lock:
            self._broken = self._broken or why
            pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(BrokenProcessPool(why))

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Ask the worker to stop after the calls it is running; `cancel_futures` fails the calls
        still waiting for an answer. With `wait`, join it (and kill it after 30 s)."""
        self._stopping = True
        try:
            with self._send_lock:
                self._conn.send(None)
        except (OSError, ValueError):
            pass
        if cancel_futures:
            self._fail_all("the worker process was shut down")
        if wait:
            self._proc.join(timeout=30)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(timeout=5)
