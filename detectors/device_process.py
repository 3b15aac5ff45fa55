"""One process per accelerator: each GPU's in-process voters run in a worker process of their own.

Why: the L0-L2 adapters do real Python work per batch (processors, post-processing, evidence
rows, kernel launches), and in one process all of it waits on one GIL. Measured on 2x H100 with
the 18-model profile (py-spy --gil, `roadwork bench --gpu`): GPUs 23-45 % busy, 5 of 32 cores in
use, and a second GPU added 3 % throughput. With `runtime.process_per_device: true` the voters
placed on each `cuda:N` are built in one spawned worker process per device (its own interpreter
and GIL); the cascade and the micro-batchers stay in the main process, and one call per
micro-batch crosses the process boundary (frames and votes are pickled: ~150 KB per 224-px frame).

The worker is a `LanedProcess` (detectors/worker_lanes.py): with one lane (the default), calls
run one at a time on its single thread, one batch at a time per device; with
`runtime.lanes_per_worker: N`, up to N calls run at once, each voter always on the same lane
(thread and CUDA stream), so every batch size is warmed on the thread that will run it. A worker that dies (out of memory, a crash in
a CUDA library) fails the calls with a `DeviceProcessError` naming the device, and is started
again in the background with the same voters; meanwhile the cascade turns those errors into
abstaining votes and keeps serving with the other voters.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from cascade.config import FrameTransport, VoterConfig, WorkerSplit
from cascade.placement import card
from cascade.types import Frame, Vote, seconds_left
from detectors.base import Detector, Voter
from detectors.frame_transport import FrameRef, check_available, frames_in, shared_batch
from detectors.worker_lanes import LanedProcess, lane_of

GIB = 1024**3

# ---- worker side: runs in the spawned process ------------------------------------------------
_DETECTORS: dict[str, Detector] = {}
_BUILD_INFO: dict[str, dict[str, Any]] = {}
_BUILD_ERROR: list[str] = []


def _init(voters: list[dict[str, Any]], base_dir: str, torch_threads: int) -> None:
    from roadwork.env import configure_process, set_torch_threads

    configure_process()
    set_torch_threads(torch_threads)
    try:
        for raw in voters:
            _build_one(VoterConfig.model_validate(raw), base_dir)
    except Exception as exc:
        _BUILD_ERROR.append(str(exc) if isinstance(exc, RuntimeError) else f"{type(exc).__name__}: {exc}")


def _build_one(cfg: VoterConfig, base_dir: str) -> None:
    """The model itself: micro-batching happens in the main process, not in the worker."""
    import torch

    from detectors.registry import resolve

    try:
        cuda = cfg.device.startswith("cuda") and torch.cuda.is_available()
        before = torch.cuda.memory_allocated(cfg.device) if cuda else 0
        t0 = time.perf_counter()
        det = resolve(cfg.kind).from_config(cfg, Path(base_dir))
        if cuda:
            torch.cuda.synchronize(cfg.device)
    except Exception as exc:
        raise RuntimeError(f"voter {cfg.name!r} ({cfg.kind} on {cfg.device}): {type(exc).__name__}: {exc}") from exc
    _DETECTORS[cfg.name] = det
    _BUILD_INFO[cfg.name] = {
        "build_s": round(time.perf_counter() - t0, 2),
        "pid": os.getpid(),
        "weights_gib": round(((torch.cuda.memory_allocated(cfg.device) if cuda else 0) - before) / GIB, 3),
    }


def _predict(name: str, frames: list[Frame]) -> list[Vote]:
    return _DETECTORS[name].predict(frames)


def _predict_shared(name: str, block: str, refs: list[FrameRef]) -> list[Vote]:
    """_predict on frames whose pixels wait in a shared-memory block (frame_transport: shared-memory)."""
    return _DETECTORS[name].predict(frames_in(block, refs))


def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    """fn(*args) and the seconds it ran in the worker (not counting its wait in the queue)."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def _warmup(name: str) -> None:
    _DETECTORS[name].warmup()


def _describe() -> dict[str, dict[str, Any]]:
    if _BUILD_ERROR:
        raise RuntimeError(_BUILD_ERROR[0])
    return {n: {"batch": getattr(d, "batch", None), **_BUILD_INFO[n]} for n, d in _DETECTORS.items()}


def _memory(devices: list[str], reset: bool) -> dict[str, dict[str, float]]:
    import torch

    out = {}
    for d in devices:
        out[d] = {
            "allocated_gib": torch.cuda.memory_allocated(d) / GIB,
            "peak_allocated_gib": torch.cuda.max_memory_allocated(d) / GIB,
            "reserved_gib": torch.cuda.memory_reserved(d) / GIB,
        }
        if reset:
            torch.cuda.reset_peak_memory_stats(d)
    return out


# ---- main side ----------------------------------------------------------------------------------
class DeviceProcessError(RuntimeError):
    pass


class DeviceProcess:
    """A worker process holding the voters of one device; `predict(name, frames)` runs one there.

    If the worker dies, the calls in flight and those that arrive while it is rebuilt fail at once
    with `DeviceProcessError` (the voters abstain), and a new worker is started in the background
    with the same voters (`restart=True`); a rebuild that fails is tried again with a growing pause.
    """

    def __init__(
        self,
        device: str,
        voters: Sequence[VoterConfig],
        base_dir: Path,
        torch_threads: int = 0,
        start_timeout_s: float = 900.0,
        restart: bool = True,
        hang_s: float = 60.0,
        worker: int = 0,
        frame_transport: FrameTransport = "pipe",
        lanes: int = 1,
    ) -> None:
        import threading

        if frame_transport == "shared-memory":
            check_available()
        self.device, self.worker, self.frame_transport = device, worker, frame_transport
        """`worker`: which of the device's workers this is (runtime.workers_per_device);
        `frame_transport`: how frames reach it (detectors/frame_transport.py)."""
        self.names = [v.name for v in voters]
        self.lanes = lanes
        self.lane_of = lane_of(voters, lanes)
        """Each voter's lane (runtime.lanes_per_worker): its calls, warm-up included, run there."""
        self.restart, self.restarts, self.start_timeout_s, self.hang_s = restart, 0, start_timeout_s, hang_s
        self._waiting = 0
        self._last_done = time.monotonic()
        self.busy_s = 0.0
        """Seconds the worker has spent running calls, summed over its lanes: over a wall interval
        and divided by `lanes`, how busy it was (near 100 % means this worker is the limit)."""
        self.busy_by_voter: dict[str, float] = {}
        """The same, per voter (its predict calls only): what balancing the GPUs needs."""
        self._initargs = ([v.model_dump(mode="json") for v in voters], str(base_dir), torch_threads)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._pool: LanedProcess | None
        self._pool, self.info = self._start()

    def _start(self) -> tuple[LanedProcess, dict[str, dict[str, Any]]]:
        ctx = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked child
        pool = LanedProcess(ctx, self.lanes, self.device, _init, self._initargs)
        try:  # build now, so a voter that cannot load fails at start-up and names itself
            return pool, pool.submit(_describe).result(timeout=self.start_timeout_s)
        except (BrokenProcessPool, RuntimeError, TimeoutError) as exc:
            pool.shutdown(wait=False, cancel_futures=True)
            why = (
                str(exc)
                if isinstance(exc, RuntimeError) and not isinstance(exc, BrokenProcessPool)
                else (f"the process died ({type(exc).__name__})")
            )
            raise DeviceProcessError(
                f"the worker process for {self.device} failed while building its voters: {why}"
            ) from exc

    def call(self, fn: Any, *args: Any, timeout: float | None = None, lane: int = 0) -> Any:
        return self._timed_call(fn, *args, timeout=timeout, lane=lane)[0]

    def _timed_call(self, fn: Any, *args: Any, timeout: float | None = None, lane: int = 0) -> tuple[Any, float]:
        """fn(*args) on one of the worker's lanes, and the seconds it ran there (added to busy_s).
        Waits at most `timeout` seconds; a worker that has finished nothing for `hang_s` while
        calls wait on it is killed (and rebuilt)."""
        pool = self._pool
        if pool is None:
            raise DeviceProcessError(
                f"the worker process for {self.device} is being restarted; its voters "
                f"{self.names} abstain until it is back"
            )
        with self._lock:
            if self._waiting == 0:  # the stall clock starts when work is waiting, not at the last idle call
                self._last_done = time.monotonic()
            self._waiting += 1
        try:
            out, seconds = pool.submit(_timed, fn, *args, lane=lane).result(timeout=timeout)
        except FutureTimeout:
            self._kill_if_hung(pool)
            raise DeviceProcessError(
                f"the worker process for {self.device} did not answer within the request's "
                f"{timeout:.2f} s; its voters {self.names} abstain for this request"
            ) from None
        except BrokenProcessPool as exc:
            self._replace(pool)
            raise DeviceProcessError(
                f"the worker process for {self.device} has died (out of memory or a crash "
                f"in a native library); its voters {self.names} abstain until "
                + ("it is restarted" if self.restart else "the miner restarts")
            ) from exc
        finally:
            with self._lock:
                self._waiting -= 1
        with self._lock:
            self.busy_s += seconds
            self._last_done = time.monotonic()
        return out, seconds

    def _kill_if_hung(self, pool: LanedProcess) -> None:
        """Kill the worker when calls wait on it and it has finished none for `hang_s`: the pool
        breaks, every waiting call fails at once, and `_replace` rebuilds it."""
        import logging
        import signal

        with self._lock:
            stalled = time.monotonic() - self._last_done
            if self._pool is not pool or self._waiting == 0 or stalled < self.hang_s:
                return
        logging.getLogger(__name__).error(
            "worker process for %s finished no call for %.0f s with %d waiting: killing pid %s to rebuild it",
            self.device,
            stalled,
            self._waiting,
            pool.pid,
        )
        try:
            os.kill(pool.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _replace(self, broken: LanedProcess) -> None:
        import threading

        with self._lock:
            if self._pool is not broken or self._closed.is_set():
                return  # another caller saw it first
            self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)
        if self.restart:
            threading.Thread(target=self._restart_loop, name=f"restart-{self.device}", daemon=True).start()

    def _restart_loop(self) -> None:
        import logging

        log = logging.getLogger(__name__)
        pause = 5.0
        while not self._closed.is_set():
            try:
                pool, info = self._start()
            except DeviceProcessError as exc:
                log.error("%s; trying again in %.0f s", exc, pause)
                self._closed.wait(pause)
                pause = min(pause * 2, 300.0)
                continue
            with self._lock:
                if self._closed.is_set():
                    pool.shutdown(wait=False, cancel_futures=True)
                    return
                self._pool, self.info = pool, info
                self.restarts += 1
            log.warning("worker process for %s restarted (%d so far)", self.device, self.restarts)
            return

    @property
    def up(self) -> bool:
        """False while the worker is dead or being rebuilt (or after close)."""
        return self._pool is not None

    @property
    def waiting(self) -> int:
        """Calls submitted to this worker and not yet answered (running or queued)."""
        return self._waiting

    def predict(self, name: str, frames: Sequence[Frame]) -> list[Vote]:
        timeout, lane = seconds_left(frames), self.lane_of[name]
        if self.frame_transport == "shared-memory":
            with shared_batch(frames) as (block, refs):  # unlinked once the worker has answered
                votes, seconds = self._timed_call(_predict_shared, name, block, refs, timeout=timeout, lane=lane)
        else:
            votes, seconds = self._timed_call(_predict, name, list(frames), timeout=timeout, lane=lane)
        with self._lock:
            self.busy_by_voter[name] = self.busy_by_voter.get(name, 0.0) + seconds
        return votes

    def memory(self, reset: bool = False) -> dict[str, dict[str, float]]:
        return self.call(_memory, [self.device], reset) if self.device.startswith("cuda") else {}

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def worker_states(resources: Sequence[Any]) -> list[dict[str, object]]:
    """Each device worker's state for metrics: device, worker (its index on the device), up (1
    serving, 0 dead or being rebuilt), restarts."""
    return [
        {"device": r.device, "worker": r.worker, "up": int(r.up), "restarts": r.restarts}
        for r in resources
        if isinstance(r, DeviceProcess)
    ]


class RemoteVoter(Voter):
    """A voter that lives in `DeviceProcess`es (one, or runtime.workers_per_device copies on its
    device); same name, level, weight and batch as the original. Each call goes to the worker that
    is up with the fewest calls waiting."""

    def __init__(self, procs: DeviceProcess | Sequence[DeviceProcess], cfg: VoterConfig) -> None:
        super().__init__(cfg.name, cfg.level, cfg.weight)
        self.procs = [procs] if isinstance(procs, DeviceProcess) else list(procs)
        if not self.procs:
            raise ValueError(f"voter {cfg.name!r}: a remote voter needs at least one worker process")
        self.batch = cfg.batch

    def _pick(self) -> DeviceProcess:
        return min(self.procs, key=lambda p: (not p.up, p.waiting))

    def predict(self, frames: Sequence[Frame]) -> list[Vote]:
        return self._pick().predict(self.name, frames)

    def warmup(self) -> None:
        """Every worker warms its copy, on the voter's lane, before the first request."""
        self._on_every_worker(lambda proc: proc.call(_warmup, self.name, lane=proc.lane_of[self.name]))

    def warm(self, frames: Sequence[Frame]) -> None:
        """A batch size meets every worker, not just the least busy one."""
        self._on_every_worker(lambda proc: proc.predict(self.name, frames))

    def _on_every_worker(self, fn: Any) -> None:
        """fn(proc) for every worker at once: one after another, two workers a card doubled the
        warm-up (over 100 s for 18 models on an H200, issue 18). The first error is raised."""
        if len(self.procs) == 1:
            fn(self.procs[0])
            return
        with ThreadPoolExecutor(len(self.procs), thread_name_prefix=f"warm-{self.name}") as pool:
            for _ in pool.map(fn, self.procs):
                pass

    def __repr__(self) -> str:
        return f"RemoteVoter(name={self.name!r}, device={self.procs[0].device!r}, workers={len(self.procs)})"


def planned_lanes(
    voters: Sequence[VoterConfig],
    lanes_per_worker: int,
    workers_per_device: int = 1,
    worker_split: WorkerSplit = "copies",
) -> dict[str, int]:
    """The lane each GPU voter will run on in its worker, for `build_plan(lanes=...)`."""
    return {
        n: k
        for group in device_groups(voters).values()
        for part in split_workers(group, workers_per_device, worker_split)
        for n, k in lane_of(part, lanes_per_worker).items()
    }


def split_workers(
    group: Sequence[VoterConfig], workers_per_device: int, worker_split: WorkerSplit = "copies"
) -> list[list[VoterConfig]]:
    """The voters each of one device's workers holds (runtime.worker_split): with `copies`, all of
    them in every worker; with `models`, each voter in one worker, `voters[].worker` or else dealt
    in turn in profile order. A worker left without voters is not started."""
    if workers_per_device < 1:
        raise ValueError(f"workers_per_device must be at least 1, got {workers_per_device}")
    if worker_split == "copies":
        return [list(group) for _ in range(workers_per_device)]
    parts: list[list[VoterConfig]] = [[] for _ in range(workers_per_device)]
    dealt = 0
    for v in group:
        if v.worker is None:
            w, dealt = dealt % workers_per_device, dealt + 1
        elif v.worker < workers_per_device:
            w = v.worker
        else:
            raise ValueError(
                f"voter {v.name!r}: worker {v.worker} is not one of the device's {workers_per_device} workers"
            )
        parts[w].append(v)
    return [p for p in parts if p]


def planned_workers(
    voters: Sequence[VoterConfig], workers_per_device: int, worker_split: WorkerSplit
) -> dict[str, int] | None:
    """Each GPU voter's worker when the device's models are split (`build_plan(workers=...)`);
    None with `copies` (every worker holds every voter)."""
    if worker_split == "copies":
        return None
    return {
        v.name: w
        for group in device_groups(voters).values()
        for w, part in enumerate(split_workers(group, workers_per_device, worker_split))
        for v in part
    }


def device_groups(voters: Sequence[VoterConfig], include_cpu: bool = False) -> dict[str, list[VoterConfig]]:
    """Voters by accelerator (`cuda`, `cuda:N`); CPU voters and server-backed tiers stay in-process
    (`include_cpu` also moves in-process CPU voters to a worker: how tests run this without a GPU)."""
    groups: dict[str, list[VoterConfig]] = {}
    for v in voters:
        remote = v.kind not in ("vlm-http",) and (v.device.startswith("cuda") or (include_cpu and v.device == "cpu"))
        if v.enabled and remote:
            groups.setdefault(card(v.device), []).append(v)
    return groups


def build_voters(
    voters: Sequence[VoterConfig],
    base_dir: Path,
    *,
    torch_threads: int = 0,
    local: Any = None,
    include_cpu: bool = False,
    remote: bool = True,
    workers_per_device: int = 1,
    hang_s: float = 60.0,
    frame_transport: FrameTransport = "pipe",
    lanes_per_worker: int = 1,
    worker_split: WorkerSplit = "copies",
) -> tuple[list[Voter], list[DeviceProcess]]:
    """Every enabled voter, in profile order: accelerator voters as `RemoteVoter`s (micro-batched
    here when the profile batches them) over `workers_per_device` worker processes per device
    (each holding all of the device's voters, or a share of them: `worker_split`), the rest built
    in this process by `local(cfg)`; `remote=False` builds them all here. Returns (detectors,
    worker processes to close)."""
    from detectors.registry import build, wrapped

    local = local or (lambda cfg: build(cfg, base_dir))
    procs: dict[str, list[DeviceProcess]] = {}
    try:
        for device, group in (device_groups(voters, include_cpu) if remote else {}).items():
            for w, part in enumerate(split_workers(group, workers_per_device, worker_split)):
                proc = DeviceProcess(
                    device,
                    part,
                    base_dir,
                    torch_threads,
                    hang_s=hang_s,
                    worker=w,
                    frame_transport=frame_transport,
                    lanes=lanes_per_worker,
                )
                procs.setdefault(device, []).append(proc)
    except BaseException:
        for p in (p for ps in procs.values() for p in ps):
            p.close()
        raise
    by_name: dict[str, list[DeviceProcess]] = {}
    for p in (p for ps in procs.values() for p in ps):
        for n in p.names:
            by_name.setdefault(n, []).append(p)
    dets: list[Voter] = []
    for v in voters:
        if not v.enabled:
            continue
        if v.name in by_name:
            # scaled and batched here, so only the smaller frames cross, a batch at a time
            dets.append(wrapped(RemoteVoter(by_name[v.name], v), v))
        else:
            dets.append(local(v))
    return dets, [p for ps in procs.values() for p in ps]
