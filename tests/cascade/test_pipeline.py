import asyncio
import itertools
import logging
import time

import numpy as np
import pytest

from cascade.budget import CostTracker, Deadline
from cascade.config import CascadeConfig
from cascade.pipeline import Cascade
from cascade.types import Frame, Level, Vote
from consensus.artefact import ConsensusArtefact, Pool
from tests.conftest import FakeVoter


def make_cascade(voters, bands=None, deadline_ms=2000, margin_ms=50, artefact=None, prior_ms=10):
    levels = [{"level": lv, "band": b} for lv, b in (bands or {}).items()]
    cfg = CascadeConfig.model_validate(
        {
            "runtime": {"deadline_ms": deadline_ms, "margin_ms": margin_ms, "cost_prior_ms": prior_ms, "workers": 4},
            "levels": levels,
            "voters": [{"name": v.name, "kind": "fake", "level": v.level.name} for v in voters],
        }
    )
    return Cascade(voters, cfg, artefact)


def test_confident_first_level_exits_early(frame):
    # given a sure L0 and an L1 that would disagree
    l0, l1 = FakeVoter("l0", "L0", 0.99), FakeVoter("l1", "L1", 0.01)
    with make_cascade([l0, l1], bands={"L0": (0.1, 0.9)}) as cascade:
        # when
        verdict = cascade.run_sync(frame)
    # then the cascade stopped after L0 and L1 never ran
    assert verdict.exit_level is Level.L0 and l1.calls == 0
    assert verdict.prob == pytest.approx(0.99)


def test_unsure_first_level_goes_on_and_pools(frame):
    l0, l1 = FakeVoter("l0", "L0", 0.6), FakeVoter("l1", "L1", 0.9)
    with make_cascade([l0, l1], bands={"L0": (0.1, 0.9)}) as cascade:
        verdict = cascade.run_sync(frame)
    assert verdict.exit_level is Level.L1 and l1.calls == 1
    assert 0.6 < verdict.prob < 0.9  # geometric pooling lies between the votes


def test_voter_that_raises_abstains_and_others_answer(frame):
    bad = FakeVoter("bad", "L0", error=RuntimeError("CUDA out of memory"))
    good = FakeVoter("good", "L0", 0.8)
    with make_cascade([bad, good]) as cascade:
        verdict = cascade.run_sync(frame)
    by_name = {v.voter: v for v in verdict.votes}
    assert by_name["bad"].abstained and "CUDA out of memory" in by_name["bad"].reason
    assert verdict.prob == pytest.approx(0.8) and verdict.answered


def test_voter_past_the_deadline_abstains_and_answer_comes_in_time(frame):
    fast, slow = FakeVoter("fast", "L0", 0.7), FakeVoter("slow", "L1", 0.1, delay=2.0)
    with make_cascade([fast, slow], deadline_ms=500, margin_ms=50) as cascade:
        t0 = time.monotonic()
        verdict = cascade.run_sync(frame, timeout_s=0.5)
        elapsed = time.monotonic() - t0
    assert elapsed < 0.5
    assert verdict.prob == pytest.approx(0.7)
    assert {v.voter for v in verdict.votes if v.abstained} == {"slow"}


def test_stage_known_to_be_too_slow_is_skipped_without_running(frame):
    fast, slow = FakeVoter("fast", "L0", 0.7), FakeVoter("slow", "L1", 0.2)
    with make_cascade([fast, slow]) as cascade:
        cascade.costs.observe("slow", 5.0)  # measured earlier: 5 s per frame
        verdict = cascade.run_sync(frame, timeout_s=1.0)
    assert slow.calls == 0 and any(s.startswith("slow") for s in verdict.skipped)
    assert verdict.exit_level is Level.L0


def test_nothing_ran_gives_unanswered_verdict(frame):
    only = FakeVoter("only", "L0", 0.9)
    with make_cascade([only], prior_ms=10_000) as cascade:
        verdict = cascade.run_sync(frame, timeout_s=1.0)
    assert not verdict.answered and verdict.exit_level is None and only.calls == 0


def test_run_does_not_block_the_event_loop(frame):
    slow = FakeVoter("slow", "L0", 0.6, delay=0.4)
    ticks = []

    async def ticker():
        for _ in range(10):
            ticks.append(time.monotonic())
            await asyncio.sleep(0.02)

    async def main():
        with make_cascade([slow]) as cascade:
            return await asyncio.gather(cascade.run(frame, Deadline.after(2.0)), ticker())

    verdict, _ = asyncio.run(main())
    assert verdict.prob == pytest.approx(0.6)
    assert len(ticks) == 10 and max(b - a for a, b in itertools.pairwise(ticks)) < 0.2


def test_fitted_weights_replace_prior_weights(frame):
    a, b = FakeVoter("a", "L0", 0.9), FakeVoter("b", "L0", 0.2)
    art = ConsensusArtefact(pools=[Pool(weights={"a": 1.0, "b": 0.0})])
    with make_cascade([a, b], artefact=art) as cascade:
        verdict = cascade.run_sync(frame)
    assert verdict.prob == pytest.approx(0.9)
    assert {v.voter: v.weight for v in verdict.votes} == {"a": 1.0, "b": 0.0}


def test_cost_tracker_moving_average():
    t = CostTracker(prior_s=0.2, alpha=0.5)
    assert t.estimate("x") == 0.2
    t.observe("x", 1.0)
    t.observe("x", 0.0)
    assert t.estimate("x") == pytest.approx(0.5)


class RecordingObserver:
    def __init__(self):
        self.events = []

    def on_start(self, frame, deadline_s):
        self.events.append(("start", frame.frame_id))

    def on_vote(self, vote):
        self.events.append(("vote", vote.voter))

    def on_level(self, level, pooled, elapsed_ms, deadline_left_s):
        self.events.append(("level", level.name, round(pooled, 3)))

    def on_verdict(self, verdict):
        self.events.append(("verdict", verdict.exit_level.name))


def test_observer_sees_votes_levels_and_verdict_in_order(frame):
    obs = RecordingObserver()
    l0, l1 = FakeVoter("l0", "L0", 0.6), FakeVoter("l1", "L1", 0.6)
    with make_cascade([l0, l1]) as cascade:
        asyncio.run(cascade.run(frame, Deadline.after(2.0), observer=obs))
    assert obs.events == [
        ("start", "f0"),
        ("vote", "l0"),
        ("level", "L0", 0.6),
        ("vote", "l1"),
        ("level", "L1", 0.6),
        ("verdict", "L1"),
    ]


class AsyncVoter(FakeVoter):
    """Like a VLM client: waits on I/O in the event loop instead of a thread."""

    async def apredict(self, frames):
        await asyncio.sleep(self.delay)
        self.calls += 1
        return [Vote(self.name, self.level, self.prob) for _ in frames]


def test_async_voter_is_awaited_on_the_loop_and_times_out_cleanly(frame):
    fast, slow = AsyncVoter("fast", "L0", 0.3), AsyncVoter("slow", "L3", 0.9, delay=5.0)
    with make_cascade([fast, slow], deadline_ms=400, margin_ms=50) as cascade:
        t0 = time.monotonic()
        verdict = cascade.run_sync(frame, timeout_s=0.4)
    assert time.monotonic() - t0 < 0.45
    assert verdict.prob == pytest.approx(0.3) and fast.calls == 1
    assert [v.voter for v in verdict.votes if v.abstained] == ["slow"]


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_voter_skipped_after_one_slow_call_is_probed_again_and_recovers(frame):
    # given a voter that hung once past the deadline (the tracker records twice its elapsed time)
    slow = FakeVoter("l1", "L1", 0.9, delay=0.5)
    with make_cascade([FakeVoter("l0", "L0", 0.6), slow], deadline_ms=400, margin_ms=50) as cascade:
        clock = FakeClock()
        cascade.costs = CostTracker(prior_s=0.01, alpha=0.2, recovery_s=30, clock=clock)
        first = cascade.run_sync(frame, timeout_s=0.4)
        assert next(v for v in first.votes if v.voter == "l1").abstained
        # when it is fast again, it is still skipped right away: its estimate is over the budget
        slow.delay = 0.0
        calls = slow.calls
        assert not any(v.voter == "l1" for v in cascade.run_sync(frame, timeout_s=0.4).votes)
        assert slow.calls == calls
        # then, once the slow measurement has faded (a few half-lives), it is probed and answers
        clock.now += 5 * 30
        again = cascade.run_sync(frame, timeout_s=0.4)
        assert slow.calls == calls + 1
        vote = next(v for v in again.votes if v.voter == "l1")
        assert not vote.abstained and vote.prob == pytest.approx(0.9)
        # and the fresh, fast measurement keeps it on
        assert cascade.costs.estimate("l1") < 0.35


def test_cost_estimates_fade_toward_the_prior_only_from_above():
    clock = FakeClock()
    t = CostTracker(prior_s=0.2, alpha=1.0, recovery_s=10, clock=clock)
    t.observe("slow", 1.0)
    t.observe("fast", 0.05)
    clock.now += 10
    assert t.estimate("slow") == pytest.approx(0.2 + 0.8 * 0.5)
    assert t.estimate("fast") == pytest.approx(0.05)


def test_an_artefact_fitted_on_other_voters_is_refused_with_both_lists(frame):
    art = ConsensusArtefact(pools=[Pool(weights={"l0_head": 1.0, "old_yolo": 0.5})], fitted_on="models/old.oof")
    with pytest.raises(ValueError, match=r"missing from the artefact: \['l1'\]; not in the profile: \['old_yolo'\]"):
        make_cascade([FakeVoter("l0_head", "L0", 0.9), FakeVoter("l1", "L1", 0.1)], artefact=art)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(
            lambda: __import__("torch").cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
            id="cuda-oom",
        ),
        pytest.param(lambda: TypeError("forward() got an unexpected keyword argument 'conf'"), id="type-error"),
    ],
)
def test_a_box_detector_that_breaks_is_an_error_abstention_not_a_bad_frame(frame, error, caplog):
    from cascade.types import AbstainCause
    from detectors.box_detector import BoxDetector
    from detectors.evidence import ClassMap

    class Broken(BoxDetector):
        calls = 0

        @classmethod
        def from_config(cls, cfg, base_dir):
            raise NotImplementedError

        def detect(self, images):
            Broken.calls += 1
            raise error()

    error()  # imports torch here, not inside the voter's time budget
    det, l0 = Broken("boxes", Level.L1, ClassMap()), FakeVoter("l0", "L0", 0.7)
    # importing bittensor may have set our loggers to CRITICAL, and ours may not propagate (monitoring.logs)
    caplog.set_level(logging.WARNING, logger="cascade.pipeline")
    pipeline_log = logging.getLogger("cascade.pipeline")
    pipeline_log.addHandler(caplog.handler)
    try:
        with make_cascade([l0, det]) as cascade:
            verdict = cascade.run_sync(frame)
    finally:
        pipeline_log.removeHandler(caplog.handler)
    vote = next(v for v in verdict.votes if v.voter == "boxes")
    # not retried frame by frame as if the image were bad, and said out loud with its type
    assert Broken.calls == 1
    assert vote.abstained and vote.cause is AbstainCause.ERROR and type(error()).__name__ in vote.reason
    assert any("voter boxes failed" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    assert verdict.prob == pytest.approx(0.7)  # the answer still goes out


def test_a_bad_frame_in_a_box_detector_batch_abstains_alone(frame):
    import numpy as np

    from cascade.types import AbstainCause, Frame
    from detectors.box_detector import BoxDetector
    from detectors.evidence import Boxes, ClassMap

    class Picky(BoxDetector):
        @classmethod
        def from_config(cls, cfg, base_dir):
            raise NotImplementedError

        def detect(self, images):
            if any(im.shape[0] < 8 for im in images):
                raise ValueError("image too small")
            return [Boxes(np.zeros((0, 4)), np.zeros(0), ()) for _ in images]

    tiny = Frame(np.zeros((2, 2, 3), np.uint8), source="t")
    votes = Picky("boxes", Level.L1, ClassMap()).predict([frame, tiny, frame])
    assert [v.abstained for v in votes] == [False, True, False] and votes[1].cause is AbstainCause.ERROR


def sized_cascade(artefact=None):
    """Whole-frame voters on frames under 448 px, a tile voter on the larger ones (as configs/cpu.yaml)."""
    whole, tiles = FakeVoter("whole", "L0", 0.2), FakeVoter("tiles", "L0", 0.9)
    cfg = CascadeConfig.model_validate(
        {
            "runtime": {"deadline_ms": 2000, "margin_ms": 50, "cost_prior_ms": 10},
            "voters": [
                {"name": "whole", "kind": "fake", "level": "L0", "long_side": [0, 448]},
                {"name": "tiles", "kind": "fake", "level": "L0", "long_side": [448, None]},
            ],
        }
    )
    return Cascade([whole, tiles], cfg, artefact), whole, tiles


def sized_frame(w, h):
    return Frame(np.zeros((h, w, 3), np.uint8), source="test")


def test_each_voter_runs_only_on_the_frame_sizes_its_profile_names():
    cascade, whole, tiles = sized_cascade()
    with cascade:
        small = cascade.run_sync(sized_frame(224, 224))
        large = cascade.run_sync(sized_frame(1920, 1080))
    # a 224-px validator image is scored whole; a full-resolution frame by the tiles alone
    assert [v.voter for v in small.votes] == ["whole"] and small.prob == pytest.approx(0.2)
    assert [v.voter for v in large.votes] == ["tiles"] and large.prob == pytest.approx(0.9)
    assert (whole.calls, tiles.calls) == (1, 1)  # a skipped voter costs nothing
    assert any("tiles: frame long side 224 px outside its long_side [448, None]" in s for s in small.skipped)


def test_each_frame_is_pooled_with_the_fitted_pool_for_its_size():
    # given an artefact whose pool for large frames calls roadwork later than its pool for small ones
    art = ConsensusArtefact(
        pools=[
            Pool(long_side=(0, 448), weights={"whole": 1.0}, bias=0.0),
            Pool(long_side=(448, None), weights={"tiles": 1.0}, bias=-4.0),
        ]
    )
    cascade, _, _ = sized_cascade(art)
    with cascade:
        small, large = cascade.run_sync(sized_frame(224, 224)), cascade.run_sync(sized_frame(1920, 1080))
    assert small.prob == pytest.approx(0.2)
    # logit(0.9) - 4 = -1.80: the tile voter's 0.9 is not enough on its own for that pool
    assert large.prob == pytest.approx(1 / (1 + np.exp(4 - np.log(9))), abs=1e-6) and large.prob < 0.5


def test_an_artefact_whose_pool_holds_voters_that_do_not_run_on_its_frames_is_refused():
    art = ConsensusArtefact(
        pools=[
            Pool(long_side=(0, 448), weights={"whole": 1.0, "tiles": 1.0}),
            Pool(long_side=(448, None), weights={"tiles": 1.0}),
        ],
        fitted_on="old.json",
    )
    with pytest.raises(
        ValueError,
        match=r"pool for frames with long side 0-447 px was fitted on \['tiles', 'whole'\], "
        r"but on those frames the profile runs \['whole'\]",
    ):
        sized_cascade(art)


class GatedVoter(FakeVoter):
    """Records whether `waits_for` was running when it started, and what prior votes it saw."""

    def __init__(self, name, level, prob, started, waits_for=None):
        super().__init__(name, level, prob)
        self.started, self.waits_for = started, waits_for
        self.overlapped: bool | None = None
        self.prior: tuple = ()

    def predict(self, frames):
        self.started.set()
        self.prior = tuple(v.voter for v in frames[0].meta.get("prior_votes", ()))
        if self.waits_for is not None:  # a slow L1 detector: is the L2 voter already running?
            self.overlapped = self.waits_for.wait(timeout=1.0)
        return super().predict(frames)


def early_cascade(start_early, l0_band=(0.0, 1.0), l1_band=(0.0, 1.0)):
    import threading

    scene_started, unused = threading.Event(), threading.Event()
    l1 = GatedVoter("detector", "L1", 0.7, threading.Event(), waits_for=scene_started)
    scene = GatedVoter("scene", "L2", 0.8, scene_started)
    sam = GatedVoter("sam", "L2", 0.6, unused)
    cfg = CascadeConfig.model_validate(
        {
            "runtime": {"cost_prior_ms": 10, "workers": 4, "start_early": start_early},
            "levels": [{"level": "L0", "band": l0_band}, {"level": "L1", "band": l1_band}],
            "voters": [
                {"name": "l0", "kind": "backbone-head", "level": "L0"},
                {"name": "detector", "kind": "ultralytics", "level": "L1"},
                {"name": "scene", "kind": "scene-zero-shot", "level": "L2"},
                {"name": "sam", "kind": "sam-mask", "level": "L2"},
            ],
        }
    )
    return Cascade([FakeVoter("l0", "L0", 0.6), l1, scene, sam], cfg), l1, scene, sam


@pytest.mark.parametrize("start_early", [[], ["L2"]])
def test_start_early_runs_a_later_voter_that_needs_no_boxes_beside_the_earlier_levels(frame, start_early):
    # given a scene voter and SAM at L2 behind a slow L1 detector
    cascade, l1, scene, sam = early_cascade(start_early)
    with cascade:
        verdict = cascade.run_sync(frame)
    # then with runtime.start_early [L2] the scene voter was already running while L1 worked, without it not;
    # SAM, which reads L1's boxes, waited for them either way
    assert l1.overlapped is bool(start_early)
    assert sam.prior == ("l0", "detector") and scene.prior == (() if start_early else ("l0", "detector"))
    # and the answer pools the same votes at the same levels
    assert [(v.voter, v.level.name) for v in verdict.votes] == [
        ("l0", "L0"),
        ("detector", "L1"),
        ("scene", "L2"),
        ("sam", "L2"),
    ]
    assert verdict.exit_level is Level.L2 and verdict.prob == pytest.approx((0.6 * 0.7 * 0.8 * 0.6) ** 0.25, abs=0.05)


def test_a_voter_started_early_whose_level_does_not_run_is_dropped(frame):
    # given L1 sure enough to exit, and the scene voter started early
    cascade, l1, scene, sam = early_cascade(["L2"], l1_band=(0.1, 0.62))
    with cascade:
        verdict = cascade.run_sync(frame)
    # then the cascade exits at L1 and its answer holds no L2 vote, as without start_early
    assert verdict.exit_level is Level.L1 and scene.started.is_set() and sam.calls == 0
    assert {v.voter for v in verdict.votes} == {"l0", "detector"}


def test_start_early_refuses_the_first_and_the_consensus_level():
    from pydantic import ValidationError

    for level in ("L0", "L6"):
        with pytest.raises(ValidationError, match="start_early"):
            CascadeConfig.model_validate({"runtime": {"start_early": [level]}})
