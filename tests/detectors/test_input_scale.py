"""Frames scaled down before a model sees them (`voters[].input_long_side`): the model gets the
smaller frame on live calls and in warm-up, in this process or through a worker, and voters asking
for one size share one copy."""

from __future__ import annotations

import gc
import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from cascade.config import CascadeConfig, VoterConfig
from cascade.types import DEADLINE_META, Frame, Vote
from detectors.input_scale import _SCALED, InputScale, scaled, scaled_size
from tests.conftest import FakeVoter


def full_frame(w: int = 1920, h: int = 1080, seed: int = 0) -> Frame:
    rng = np.random.default_rng(seed)
    deadline = time.monotonic() + 60
    return Frame(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), source="t", meta={DEADLINE_META: deadline})


class Shapes(FakeVoter):
    """Records the (height, width) of every frame it is asked about."""

    def predict(self, frames):
        self.seen = getattr(self, "seen", []) + [f.image.shape[:2] for f in frames]
        return super().predict(frames)


def test_a_full_resolution_frame_is_scaled_once_per_size_and_kept_whole_when_small() -> None:
    f = full_frame()
    small = scaled(f, 640)
    # the aspect ratio is kept, the deadline travels with it, and the pixels are an area average
    assert small.size == (640, 360) and small.meta[DEADLINE_META] == f.meta[DEADLINE_META]
    block = f.image[:3, :3].reshape(-1, 3).mean(axis=0)
    assert np.abs(small.image[0, 0].astype(float) - block).max() <= 1.0
    # a second voter asking for the same size gets the same copy; another size, its own
    assert scaled(f, 640) is small and scaled(f, 1024).size == (1024, 576)
    # frames already inside the size go on untouched, and sizes are never enlarged
    tiny = Frame(np.zeros((224, 224, 3), np.uint8), source="t")
    assert scaled(tiny, 640) is tiny and scaled_size((300, 200), 640) == (300, 200)
    # the copies go with their frame
    key = id(f)
    del f, small
    gc.collect()
    assert key not in _SCALED


def test_the_model_sees_scaled_frames_live_and_in_warm_up(monkeypatch) -> None:
    import detectors.registry as registry

    profile = CascadeConfig.model_validate(
        {
            "voter_defaults": {"warmup_frames": [[224, 224], [1920, 1080]], "batch_wait_ms": 2, "batch": 2},
            "voters": [{"name": "yolo", "kind": "shapes-test", "level": "L1", "input_long_side": 640}],
        }
    )
    monkeypatch.setattr(registry, "resolve", lambda kind: Shapes)
    voter = registry.build(profile.voters[0], Path("."))
    model = voter.unwrap()
    try:
        voter.warmup()
        # every bucket is warmed at the size the model will really get: 224 stays, 1920x1080 -> 640x360
        assert set(model.seen) == {(224, 224), (360, 640)}
        model.seen = []
        votes = voter.predict([full_frame(seed=1)])
    finally:
        voter.close()
    assert model.seen == [(360, 640)] and len(votes) == 1 and isinstance(votes[0], Vote)


def test_input_long_side_is_checked_at_load_and_can_be_shared() -> None:
    with pytest.raises(ValidationError, match="input_long_side"):
        VoterConfig(name="v", kind="k", level="L0", input_long_side=8)
    profile = CascadeConfig.model_validate(
        {
            "voter_defaults": {"input_long_side": 1024},
            "voters": [
                {"name": "a", "kind": "k", "level": "L1"},
                {"name": "b", "kind": "k", "level": "L1", "input_long_side": 640},
            ],
        }
    )
    assert [v.input_long_side for v in profile.voters] == [1024, 640]
    with pytest.raises(ValueError, match="16 px or more"):
        InputScale(FakeVoter("v", "L1"), 8)


def test_the_production_profile_scales_every_gpu_model_but_ocr() -> None:
    from miner.profile import load_profile

    voters = load_profile(Path(__file__).resolve().parents[2] / "configs" / "h100x2.yaml").voters
    gpu = {v.name: v.input_long_side for v in voters if v.device.startswith("cuda") and v.kind != "vlm-http"}
    assert gpu and all(gpu.values())
    assert {v.name: v.input_long_side for v in voters if v.kind == "ocr-signs"} == {"ocr_signs": None}


@pytest.mark.slow
def test_a_worker_voter_gets_the_scaled_frame_and_votes_as_on_it_here() -> None:
    from cascade.config import load_config
    from detectors.device_process import build_voters
    from detectors.registry import build

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "cpu.yaml")
    plain = cfg.voters[0]
    local = build(plain, cfg.base_dir)
    dets, procs = build_voters([plain.model_copy(update={"input_long_side": 160})], cfg.base_dir, include_cpu=True)
    try:
        (remote,) = dets
        frames = [full_frame(480, 270, seed=s) for s in range(3)]
        want = [v.prob for v in local.predict([scaled(f, 160) for f in frames])]
        assert [v.prob for v in remote.predict(frames)] == pytest.approx(want, abs=1e-6)
        assert [v.prob for v in local.predict(frames)] != pytest.approx(want, abs=1e-6)  # the size mattered
    finally:
        for p in procs:
            p.close()
