"""Micro-batching: concurrent single-frame calls share inner model calls and get their own answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from cascade.config import VoterConfig
from cascade.types import Frame, Level, Vote
from detectors.base import Detector
from detectors.batching import MicroBatcher


class EchoModel(Detector):
    """prob = the frame's first pixel / 255, so each caller can check it got its own answer."""

    def __init__(self, delay: float = 0.01, fail_on: int | None = None) -> None:
        super().__init__("echo", Level.L1)
        self.delay, self.fail_on = delay, fail_on
        self.batch_sizes: list[int] = []
        self._busy = threading.Lock()
        self.overlapped = False

    @classmethod
    def from_config(cls, cfg: VoterConfig, base_dir: Path) -> EchoModel:
        return cls()

    def predict(self, frames: Sequence[Frame]) -> list[Vote]:
        if not self._busy.acquire(blocking=False):
            self.overlapped = True
            self._busy.acquire()
        try:
            self.batch_sizes.append(len(frames))
            time.sleep(self.delay)
            if self.fail_on is not None and any(int(f.image[0, 0, 0]) == self.fail_on for f in frames):
                raise RuntimeError("CUDA out of memory (simulated)")
            return [Vote("echo", Level.L1, float(f.image[0, 0, 0]) / 255) for f in frames]
        finally:
            self._busy.release()


def frame(i: int) -> Frame:
    return Frame(np.full((8, 8, 3), i, np.uint8), source="t", frame_id=str(i))


def test_sixteen_concurrent_callers_share_batches_and_get_their_own_votes() -> None:
    inner = EchoModel(delay=0.02)
    mb = MicroBatcher(inner, batch=8, wait_ms=30)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: mb.predict([frame(i)]), range(16)))
    mb.close()
    assert [r[0].prob for r in results] == pytest.approx([i / 255 for i in range(16)])
    assert mb.stats.frames == 16 and sum(inner.batch_sizes) == 16 + mb.stats.padded
    assert len(inner.batch_sizes) < 16 and max(inner.batch_sizes) <= 8
    assert mb.stats.calls == 16 and mb.stats.batches == len(inner.batch_sizes)
    assert not inner.overlapped  # one batch at a time on the model


def test_single_caller_waits_at_most_the_window() -> None:
    mb = MicroBatcher(EchoModel(delay=0.0), batch=8, wait_ms=20)
    t0 = time.monotonic()
    (vote,) = mb.predict([frame(3)])
    assert vote.prob == pytest.approx(3 / 255)
    assert time.monotonic() - t0 < 0.5
    mb.close()


def test_full_batch_runs_without_waiting() -> None:
    inner = EchoModel(delay=0.0)
    mb = MicroBatcher(inner, batch=4, wait_ms=5000)
    t0 = time.monotonic()
    votes = mb.predict([frame(i) for i in range(4)])
    assert len(votes) == 4 and time.monotonic() - t0 < 1.0 and inner.batch_sizes == [4]


def test_inner_error_reaches_every_caller_of_that_batch_and_batcher_survives() -> None:
    inner = EchoModel(delay=0.02, fail_on=7)
    mb = MicroBatcher(inner, batch=4, wait_ms=50)
    with ThreadPoolExecutor(4) as pool:
        futs = [pool.submit(mb.predict, [frame(i)]) for i in (5, 6, 7, 8)]
        errors = [f.exception(timeout=5) for f in futs]
    assert any(isinstance(e, RuntimeError) and "out of memory" in str(e) for e in errors)
    assert mb.predict([frame(9)])[0].prob == pytest.approx(9 / 255)  # the worker lives on
    mb.close()


def test_registry_wraps_when_batch_wait_ms_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from detectors import registry

    monkeypatch.setitem(registry.KINDS, "echo-test", registry.Kind(f"{__name__}:EchoModel", "pydantic:BaseModel"))
    cfg = VoterConfig(name="echo", kind="echo-test", level="L1", batch=8, batch_wait_ms=2)
    det = registry.build(cfg, Path("."))
    assert isinstance(det, MicroBatcher) and det.max_batch == 8 and det.name == "echo"
    plain = registry.build(cfg.model_copy(update={"batch_wait_ms": 0}), Path("."))
    assert isinstance(plain, EchoModel)


@pytest.mark.parametrize("batch, wait", [(0, 1.0), (4, -1.0)])
def test_bad_settings_rejected(batch: int, wait: float) -> None:
    with pytest.raises(ValueError, match="batch_wait_ms"):
        MicroBatcher(EchoModel(), batch=batch, wait_ms=wait)


def test_batches_are_padded_to_power_of_two_buckets_and_padding_is_dropped() -> None:
    inner = EchoModel(delay=0.0)
    mb = MicroBatcher(inner, batch=8, wait_ms=0)
    assert [mb.bucket(n) for n in range(1, 10)] == [1, 2, 4, 4, 8, 8, 8, 8, 9]
    assert mb.buckets() == [1, 2, 4, 8]
    votes = mb.predict([frame(3), frame(5), frame(7)])  # 3 frames run as a batch of 4
    mb.close()
    assert inner.batch_sizes == [4] and mb.stats.padded == 1
    assert [v.prob for v in votes] == pytest.approx([3 / 255, 5 / 255, 7 / 255])


def test_warmup_runs_every_bucket_on_the_batching_thread() -> None:
    class ThreadRecorder(EchoModel):
        def predict(self, frames):
            self.threads = getattr(self, "threads", []) + [threading.current_thread().name]
            return super().predict(frames)

    inner = ThreadRecorder(delay=0.0)
    mb = MicroBatcher(inner, batch=8, wait_ms=5)
    mb.warmup()
    mb.close()
    # inner.warmup() runs once on the caller's thread, then sizes 1, 2, 4, 8 on the worker
    assert inner.batch_sizes[-4:] == [1, 2, 4, 8]
    assert set(inner.threads[-4:]) == {"batch-echo"}


def test_warmup_runs_every_bucket_at_every_frame_size_the_profile_lists() -> None:
    class ShapeRecorder(EchoModel):
        def predict(self, frames):
            self.shapes = getattr(self, "shapes", []) + [(len(frames), frames[0].image.shape)]
            return super().predict(frames)

    inner = ShapeRecorder(delay=0.0)
    mb = MicroBatcher(inner, batch=4, wait_ms=5, warm_sizes=[(224, 224), (1920, 1080)])
    mb.warmup()
    mb.close()
    # after the inner model's own warm-up: buckets 1, 2, 4 at 224x224, then at full resolution
    assert inner.shapes[-6:] == [(n, (224, 224, 3)) for n in (1, 2, 4)] + [(n, (1080, 1920, 3)) for n in (1, 2, 4)]


def test_a_voter_warms_the_frame_sizes_it_scores(monkeypatch) -> None:
    import detectors.registry as registry
    from cascade.config import CascadeConfig

    profile = CascadeConfig.model_validate(
        {
            "voter_defaults": {"warmup_frames": [[224, 224], [1920, 1080]], "batch_wait_ms": 5},
            "voters": [
                {"name": "whole", "kind": "echo-test", "level": "L0", "long_side": [0, 448]},
                {"name": "tiles", "kind": "echo-test", "level": "L0", "long_side": [448, None]},
                {"name": "any", "kind": "echo-test", "level": "L0"},
            ],
        }
    )
    sizes = {v.name: v.warm_sizes() for v in profile.voters}
    assert sizes == {"whole": [(224, 224)], "tiles": [(1920, 1080)], "any": [(224, 224), (1920, 1080)]}
    assert VoterConfig(name="v", kind="k", level="L0").warm_sizes() == [(224, 224)]  # the default: v0.2 images
    with pytest.raises(ValueError, match="16 px or more"):
        VoterConfig(name="v", kind="k", level="L0", warmup_frames=[[1920, 0]])
    monkeypatch.setattr(registry, "resolve", lambda kind: EchoModel)
    built = {v.name: registry.build(v, Path(".")) for v in profile.voters}
    assert {n: b.warm_sizes for n, b in built.items()} == sizes  # what the miner's micro-batchers warm


def test_unpadded_batcher_runs_exact_sizes() -> None:
    inner = EchoModel(delay=0.0)
    mb = MicroBatcher(inner, batch=8, wait_ms=0, pad=False)
    mb.predict([frame(1), frame(2), frame(3)])
    mb.close()
    assert inner.batch_sizes == [3] and mb.stats.padded == 0


def test_a_caller_waits_for_a_stuck_batch_only_until_its_deadline():
    import threading
    import time

    from cascade.types import DEADLINE_META, Frame
    from tests.conftest import FakeVoter

    release = threading.Event()

    class Stuck(FakeVoter):
        def predict(self, frames):
            release.wait(30)  # a model call that hangs (a wedged GPU kernel, a dead driver)
            return super().predict(frames)

    batcher = MicroBatcher(Stuck("yolo", "L1", 0.7), batch=4, wait_ms=5)
    try:
        frame = Frame(np.zeros((32, 32, 3), np.uint8), source="t", meta={DEADLINE_META: time.monotonic() + 0.5})
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="before the request's deadline"):
            batcher.predict([frame])
        assert time.monotonic() - t0 < 2.0
    finally:
        release.set()
        batcher.close()


def test_warmup_runs_a_box_validators_model_at_every_bucket() -> None:
    """An L2 validator checks earlier voters' boxes and abstains on frames without any: the warm-up
    frames carry boxes, so SAM's image encoder meets every batch size before live requests do."""
    from detectors.random_weights import build_random
    from miner.profile import load_profile

    repo = Path(__file__).resolve().parents[2]
    cfg = load_profile(repo / "configs" / "h100x2.yaml")
    sam = next(v for v in cfg.voters if v.kind == "sam-mask").model_copy(
        update={"device": "cpu", "warmup_frames": [(224, 224)]}
    )
    voter = build_random(sam, repo / "configs", tiny=True)  # micro-batched, 4 frames a batch
    assert isinstance(voter, MicroBatcher) and voter.buckets() == [1, 2, 4]
    model = voter.inner.unwrap().model
    encoded: list[int] = []
    encode = model.get_image_embeddings
    model.get_image_embeddings = lambda pixels, *a, **k: encoded.append(len(pixels)) or encode(pixels, *a, **k)
    voter.warmup()
    voter.close()
    # the adapter's own warm-up (one frame), then every bucket on the batching thread
    assert encoded == [1, 1, 2, 4]
