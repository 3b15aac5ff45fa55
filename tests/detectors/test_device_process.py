"""Voters in a worker process (runtime.process_per_device): same votes, clear failures, no hang.

The worker holds the bundled MobileNetV2 + trained head of configs/cpu.yaml (real weights, so the
votes can be compared across processes); `include_cpu` moves that CPU voter into a worker, which
is the same code path a GPU's voters take.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from cascade.config import VoterConfig, load_config
from cascade.types import Frame
from detectors.device_process import DeviceProcess, DeviceProcessError, RemoteVoter, build_voters, device_groups
from detectors.registry import build

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def l0_voter() -> tuple[VoterConfig, Path]:
    cfg = load_config(REPO / "configs" / "cpu.yaml")
    return cfg.voters[0], cfg.base_dir


def frames(n: int = 3) -> list[Frame]:
    rng = np.random.default_rng(1)
    return [
        Frame(rng.integers(0, 255, (96 + 8 * i, 128, 3), dtype=np.uint8), source="t", frame_id=str(i)) for i in range(n)
    ]


def answer_once_rebuilt(voter: RemoteVoter, within_s: float = 120) -> list:
    """The voter's votes once its worker is back (calls fail fast while it is rebuilt)."""
    import time

    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            return voter.predict(frames(1))
        except DeviceProcessError:
            time.sleep(0.5)
    pytest.fail(f"the worker was not rebuilt within {within_s:.0f} s")


def test_groups_take_gpu_voters_and_leave_cpu_and_servers() -> None:
    voters = [
        VoterConfig.model_validate({"name": n, "kind": k, "level": "L1", "device": d})
        for n, k, d in [
            ("a", "ultralytics", "cuda:1"),
            ("b", "ultralytics", "cuda"),
            ("c", "ocr-signs", "cpu"),
            ("d", "vlm-http", "cpu"),
        ]
    ]
    assert {d: [v.name for v in g] for d, g in device_groups(voters).items()} == {"cuda:1": ["a"], "cuda:0": ["b"]}
    assert [v.name for v in device_groups(voters, include_cpu=True)["cpu"]] == ["c"]


def test_remote_voter_votes_like_the_local_one() -> None:
    # given the L0 voter built here and the same voter in a worker process
    cfg, base = l0_voter()
    local = build(cfg, base)
    dets, procs = build_voters([cfg], base, include_cpu=True)
    try:
        (remote,) = dets
        # when both see the same frames
        want = [v.prob for v in local.predict(frames())]
        got = remote.predict(frames())
        # then the worker's votes are the local votes, named and levelled the same
        assert [v.prob for v in got] == pytest.approx(want, abs=1e-6)
        assert all(v.voter == cfg.name and v.level == cfg.level for v in got)
        assert procs[0].info[cfg.name]["pid"] != os.getpid()
    finally:
        for p in procs:
            p.close()


def test_frames_through_shared_memory_get_the_same_votes_and_leave_no_block(monkeypatch) -> None:
    import errno
    import glob

    from detectors.frame_transport import FrameTransportError

    # given the L0 voter in a worker that takes its frames from shared memory
    cfg, base = l0_voter()
    local = build(cfg, base)
    dets, procs = build_voters([cfg], base, include_cpu=True, frame_transport="shared-memory")
    try:
        (remote,) = dets
        # then it votes as the local voter does, and every block is gone once the votes are back
        want = [v.prob for v in local.predict(frames(4))]
        assert [v.prob for v in remote.predict(frames(4))] == pytest.approx(want, abs=1e-6)
        assert glob.glob(f"/dev/shm/roadwork_{os.getpid()}_*") == []
        # and with no room left in /dev/shm the call fails saying what to do, and the next one serves

        def full(fd, offset, length):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "posix_fallocate", full)
        with pytest.raises(FrameTransportError, match="--shm-size"):
            remote.predict(frames(2))
        monkeypatch.undo()
        assert glob.glob(f"/dev/shm/roadwork_{os.getpid()}_*") == []
        assert [v.prob for v in remote.predict(frames(4))] == pytest.approx(want, abs=1e-6)
    finally:
        for p in procs:
            p.close()


def test_an_unknown_frame_transport_is_refused_at_load() -> None:
    from cascade.config import RuntimeConfig

    with pytest.raises(ValueError, match="frame_transport"):
        RuntimeConfig.model_validate({"frame_transport": "sockets"})


@pytest.fixture
def two_workers():
    """The L0 voter over two worker processes of one device: (its config, the remote voter, the workers)."""
    cfg, base = l0_voter()
    dets, procs = build_voters([cfg], base, include_cpu=True, workers_per_device=2)
    try:
        yield cfg, dets[0], procs
    finally:
        for p in procs:
            p.close()


def test_with_two_workers_per_device_a_call_goes_to_the_one_that_is_free(two_workers) -> None:
    import threading
    import time

    from detectors.device_process import worker_states

    # given the L0 voter in two worker processes of one device
    cfg, remote, procs = two_workers
    assert len(procs) == 2 and procs[0].info[cfg.name]["pid"] != procs[1].info[cfg.name]["pid"]
    assert [s["worker"] for s in worker_states(procs)] == [0, 1]
    remote.warmup()  # warms the voter in both workers
    # when the first worker is busy with another call
    busy = threading.Thread(target=procs[0].call, args=(time.sleep, 3.0))
    busy.start()
    deadline = time.monotonic() + 10
    while procs[0].waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    votes = remote.predict(frames(2))
    busy.join()
    # then the frames were scored by the second, at once, with the same votes as the first gives
    assert cfg.name in procs[1].busy_by_voter and cfg.name not in procs[0].busy_by_voter
    again = RemoteVoter(procs[0], cfg).predict(frames(2))
    assert [v.prob for v in votes] == pytest.approx([v.prob for v in again], abs=1e-6)


def test_warm_up_runs_every_padded_batch_size_in_every_worker(two_workers) -> None:
    from detectors.batching import MicroBatcher

    # given the L0 voter micro-batched (sizes 1, 2 and 4) over two worker processes of one device
    cfg, remote, procs = two_workers
    batcher = MicroBatcher(remote, batch=4, wait_ms=5)
    try:
        # when it warms up
        batcher.warmup()
        # then both workers ran the batch sizes (before, they all went to the first, idle one, and
        # the second met its sizes cold on live requests); the model's own warmup() is not counted here
        assert all(cfg.name in p.busy_by_voter for p in procs)
    finally:
        batcher.close()


def test_a_dead_worker_fails_fast_then_comes_back() -> None:

    cfg, base = l0_voter()
    proc = DeviceProcess("cpu", [cfg], base)
    try:
        voter = RemoteVoter(proc, cfg)
        assert len(voter.predict(frames(1))) == 1
        first_pid = proc.info[cfg.name]["pid"]
        # when the worker is killed (as the OOM killer would)
        os.kill(first_pid, signal.SIGKILL)
        # then the next call raises at once, naming the device and its voters
        with pytest.raises(DeviceProcessError, match=r"worker process for cpu .*l0_head"):
            voter.predict(frames(1))
        # and a new worker with the same voter answers again shortly after
        votes = answer_once_rebuilt(voter)
        assert len(votes) == 1 and not votes[0].abstained
        assert proc.restarts == 1 and proc.info[cfg.name]["pid"] != first_pid
    finally:
        proc.close()


def test_a_voter_that_cannot_load_stops_start_up_with_a_clear_error(tmp_path: Path) -> None:
    cfg, base = l0_voter()
    broken = cfg.model_copy(update={"params": {**cfg.params, "head": str(tmp_path / "missing.npz")}})
    with pytest.raises(DeviceProcessError, match=r"failed while building its voters: voter .l0_head.*missing.npz"):
        DeviceProcess("cpu", [broken], base)


def test_worker_states_for_metrics_follow_a_restart() -> None:
    from detectors.device_process import worker_states

    cfg, base = l0_voter()
    proc = DeviceProcess("cpu", [cfg], base, restart=False)
    try:
        assert worker_states([proc, object()]) == [{"device": "cpu", "worker": 0, "up": 1, "restarts": 0}]
        os.kill(proc.info[cfg.name]["pid"], signal.SIGKILL)
        with pytest.raises(DeviceProcessError, match="until the miner restarts"):
            RemoteVoter(proc, cfg).predict(frames(1))
        assert worker_states([proc]) == [{"device": "cpu", "worker": 0, "up": 0, "restarts": 0}]
    finally:
        proc.close()


def test_a_hung_worker_is_waited_on_only_until_the_deadline_then_killed_and_rebuilt() -> None:
    import threading
    import time

    from cascade.types import DEADLINE_META

    cfg, base = l0_voter()
    proc = DeviceProcess("cpu", [cfg], base, hang_s=1.0)
    try:
        voter = RemoteVoter(proc, cfg)
        first_pid = proc.info[cfg.name]["pid"]
        # given a worker stuck in a long native call (here: a sleep), started in the background
        threading.Thread(target=lambda: _swallow(proc.call, time.sleep, 600), daemon=True).start()
        time.sleep(0.3)
        # when a request with 1.5 s left asks it for a vote
        f = frames(1)[0]
        f = Frame(f.image, source=f.source, meta={DEADLINE_META: time.monotonic() + 1.5})
        t0 = time.monotonic()
        with pytest.raises(DeviceProcessError, match="did not answer within"):
            voter.predict([f])
        # then the wait ended with the deadline, not with the worker
        assert time.monotonic() - t0 < 3.0
        # and the hung worker was killed and rebuilt: a later call answers from a new process
        votes = answer_once_rebuilt(voter)
        assert not votes[0].abstained and proc.restarts == 1 and proc.info[cfg.name]["pid"] != first_pid
    finally:
        proc.close()


def _swallow(fn, *args):
    try:
        fn(*args)
    except DeviceProcessError:
        pass


def _inductor_cache() -> str:
    return os.environ.get("TORCHINDUCTOR_CACHE_DIR", "")


def test_a_worker_compiles_into_the_same_kept_cache_as_the_main_process() -> None:
    # compiled kernels survive restarts only if the workers, which compile, use the kept folder too
    from roadwork.env import configure_process

    configure_process()
    cfg, base = l0_voter()
    proc = DeviceProcess("cpu", [cfg], base)
    try:
        assert proc.call(_inductor_cache) == os.environ["TORCHINDUCTOR_CACHE_DIR"] != ""
    finally:
        proc.close()


def test_with_two_lanes_a_call_runs_while_another_waits_and_each_voter_keeps_its_lane() -> None:
    import threading
    import time

    # given the L0 voter in a worker process with two lanes
    cfg, base = l0_voter()
    proc = DeviceProcess("cpu", [cfg], base, lanes=2)
    try:
        voter = RemoteVoter(proc, cfg)
        assert proc.lane_of == {cfg.name: 0}
        # when lane 1 is busy with a long call
        busy = threading.Thread(target=proc.call, args=(time.sleep, 3.0), kwargs={"lane": 1})
        busy.start()
        deadline = time.monotonic() + 10
        while proc.waiting == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.monotonic()
        votes = voter.predict(frames(2))
        waited = time.monotonic() - t0
        # then the voter's call on lane 0 answered without waiting for it
        assert busy.is_alive() and waited < 2.5, f"waited {waited:.2f} s"
        assert [v.abstained for v in votes] == [False, False]
        busy.join()
        # and each lane is always the same thread of the worker, one per lane
        lane0 = {proc.call(threading.get_ident, lane=0) for _ in range(4)}
        lane1 = {proc.call(threading.get_ident, lane=1) for _ in range(4)}
        assert len(lane0) == len(lane1) == 1 and lane0 != lane1
    finally:
        proc.close()


def test_with_two_lanes_a_dead_worker_fails_every_call_in_flight() -> None:
    import threading
    import time

    cfg, base = l0_voter()
    proc = DeviceProcess("cpu", [cfg], base, lanes=2, restart=False)
    try:
        errors: list[BaseException] = []

        def sleep_on(lane: int) -> None:
            try:
                proc.call(time.sleep, 30.0, lane=lane)
            except BaseException as exc:
                errors.append(exc)

        # given a call in flight on each lane
        calls = [threading.Thread(target=sleep_on, args=(lane,)) for lane in (0, 1)]
        for c in calls:
            c.start()
        deadline = time.monotonic() + 10
        while proc.waiting < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        # when the worker dies
        os.kill(proc.info[cfg.name]["pid"], signal.SIGKILL)
        for c in calls:
            c.join(timeout=10)
        # then both calls fail at once with the error that names the device
        assert not any(c.is_alive() for c in calls)
        assert len(errors) == 2 and all(isinstance(e, DeviceProcessError) for e in errors), errors
        assert "has died" in str(errors[0])
    finally:
        proc.close()


def test_two_lanes_take_frames_from_shared_memory_at_once_and_leave_no_block() -> None:
    import glob
    from concurrent.futures import ThreadPoolExecutor

    # given two copies of the L0 voter in one worker with two lanes (one each), frames in shared memory
    cfg, base = l0_voter()
    twin = cfg.model_copy(update={"name": "l0_twin"})
    want = [v.prob for v in build(cfg, base).predict(frames(4))]
    dets, procs = build_voters([cfg, twin], base, include_cpu=True, frame_transport="shared-memory", lanes_per_worker=2)
    try:
        assert procs[0].lane_of == {cfg.name: 0, twin.name: 1}
        # when both are asked for votes from many threads at once
        with ThreadPoolExecutor(8) as pool:
            runs = list(pool.map(lambda i: dets[i % 2].predict(frames(4)), range(16)))
        # then every answer is the local voter's, and no block is left behind
        for votes in runs:
            assert [v.prob for v in votes] == pytest.approx(want, abs=1e-6)
        assert glob.glob(f"/dev/shm/roadwork_{os.getpid()}_*") == []
    finally:
        for p in procs:
            p.close()


def test_every_worker_of_a_card_warms_its_copy_at_the_same_time() -> None:
    import time

    # given a voter over two workers whose warm-up takes a while
    spans: dict[int, tuple[float, float]] = {}

    class SlowWorker:
        def __init__(self, k: int) -> None:
            self.k, self.lane_of, self.up, self.waiting = k, {"l0_head": 0}, True, 0

        def call(self, fn, name, lane=0):
            t0 = time.monotonic()
            time.sleep(0.5)
            spans[self.k] = (t0, time.monotonic())

        def predict(self, name, frames):
            self.call(None, name)
            return []

    cfg, _ = l0_voter()
    remote = RemoteVoter([SlowWorker(0), SlowWorker(1)], cfg)
    for warm in (remote.warmup, lambda: remote.warm(frames(1))):
        spans.clear()
        # when it warms up (the model's warmup, then a batch size)
        warm()
        # then both workers did, at once: each started before the other finished
        assert set(spans) == {0, 1}
        assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]


def test_a_worker_that_fails_its_warm_up_fails_the_voters_warm_up() -> None:
    class Broken:
        lane_of, up, waiting = {"l0_head": 0}, True, 0

        def call(self, fn, name, lane=0):
            raise DeviceProcessError("worker for cuda:0 died")

    class Fine(Broken):
        def call(self, fn, name, lane=0):
            return None

    cfg, _ = l0_voter()
    with pytest.raises(DeviceProcessError, match="died"):
        RemoteVoter([Fine(), Broken()], cfg).warmup()


def test_models_split_over_two_workers_each_live_in_one_and_answer_as_in_process() -> None:
    # given two voters over two workers of one device that split the models (runtime.worker_split: models)
    cfg, base = l0_voter()
    twin = cfg.model_copy(update={"name": "l0_twin"})
    want = [v.prob for v in build(cfg, base).predict(frames(3))]
    dets, procs = build_voters([cfg, twin], base, include_cpu=True, workers_per_device=2, worker_split="models")
    try:
        # then each worker holds one of them, and each answers as the voter built here does
        assert [p.names for p in procs] == [[cfg.name], [twin.name]]
        assert [p.worker for p in procs] == [0, 1]
        assert procs[0].info[cfg.name]["pid"] != procs[1].info[twin.name]["pid"]
        for det in dets:
            assert [v.prob for v in det.predict(frames(3))] == pytest.approx(want, abs=1e-6)
        assert cfg.name in procs[0].busy_by_voter and twin.name in procs[1].busy_by_voter
    finally:
        for p in procs:
            p.close()
