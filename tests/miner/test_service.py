import asyncio
import time

import pytest

from cascade.types import Level, Verdict
from miner.service import Admission, MinerService
from monitoring.metrics import MinerMetrics
from tests.conftest import FakeVoter
from tests.miner.helpers import cascade_config, encode, fake_cascade, miner_config

IMAGE = encode(size=(64, 64))


def answer(service, image=IMAGE, timeout=None, priority=0.0):
    return asyncio.run(service.answer(image, timeout, priority))


@pytest.fixture
def make_service():
    made = []

    def build(voters, **cfg):
        service = MinerService(
            fake_cascade(voters, deadline_ms=cfg.pop("deadline_ms", 2000)), miner_config(**cfg), MinerMetrics()
        )
        made.append(service)
        return service

    yield build
    for s in made:
        s.close()
        s.cascade.close()


def test_a_healthy_cascade_answers_its_probability(make_service):
    service = make_service([FakeVoter("l0", "L0", 0.9)])
    ans = answer(service)
    assert ans.prediction == pytest.approx(0.9) and ans.exit_level == "L0" and ans.reason == "ok"
    assert service.metrics.value("roadwork_answers_total", {"exit_level": "L0"}) == 1
    assert "l0 (L0) p=0.90" in ans.explanation


@pytest.mark.parametrize(
    "bad_stage",
    [
        FakeVoter("l1", "L1", 0.1, error=RuntimeError("CUDA out of memory")),  # a stage that raises
        FakeVoter("l1", "L1", 0.1, delay=5.0),  # a stage that sleeps past the deadline
    ],
)
def test_a_failing_later_stage_still_yields_the_earlier_answer_in_time(make_service, bad_stage):
    # given a sure-enough L0 and an L1 that fails; deadline 1 s
    service = make_service([FakeVoter("l0", "L0", 0.8), bad_stage], deadline_ms=1000)
    # when
    t0 = time.monotonic()
    ans = answer(service)
    # then the L0 answer comes back before the deadline
    assert time.monotonic() - t0 < 1.0
    assert ans.prediction == pytest.approx(0.8)  # pooled over L0 alone: the L1 vote abstained


def test_nothing_ran_means_minus_one(make_service):
    service = make_service([FakeVoter("l0", "L0", error=RuntimeError("boom"))])
    ans = answer(service)
    assert ans.prediction == -1.0 and ans.exit_level is None
    assert service.metrics.value("roadwork_errors_total", {"kind": "no_vote"}) == 1


def test_bad_input_gets_a_reason_and_the_safe_answer_and_service_goes_on(make_service):
    service = make_service([FakeVoter("l0", "L0", 0.7)])
    bad = answer(service, image="%%% not base64 %%%")
    assert bad.prediction == -1.0 and "bad_base64" in bad.reason
    assert service.metrics.value("roadwork_errors_total", {"kind": "decode_bad_base64"}) == 1
    assert answer(service).prediction == pytest.approx(0.7)


def test_bad_input_answer_is_configurable(make_service):
    service = make_service([FakeVoter("l0", "L0", 0.7)], bad_input_prediction=0.5)
    assert answer(service, image="").prediction == 0.5


def test_the_validator_timeout_caps_our_budget(make_service):
    # given our deadline 2 s but a validator that waits only 0.6 s (reserve 0.2 s)
    service = make_service([FakeVoter("l0", "L0", 0.3), FakeVoter("l1", "L1", 0.9, delay=3.0)])
    t0 = time.monotonic()
    ans = answer(service, timeout=0.6)
    assert time.monotonic() - t0 < 0.55 and ans.prediction == pytest.approx(0.3)


class StuckCascade:
    """A cascade whose run pools L0 and then hangs, ignoring its deadline."""

    def __init__(self, deadline_ms: float = 2000):
        self.config = cascade_config([FakeVoter("l0", "L0")], deadline_ms)

    async def run(self, frame, deadline, observer):
        observer.on_start(frame, deadline.remaining())
        observer.on_level(Level.L0, 0.77, 1.0, deadline.remaining())
        await asyncio.sleep(60)
        return Verdict(0.5, (), None)

    def close(self):
        pass


def test_a_hung_cascade_is_cut_at_the_deadline_with_the_best_answer_so_far():
    service = MinerService(StuckCascade(deadline_ms=500), miner_config(), MinerMetrics())
    t0 = time.monotonic()
    ans = answer(service)
    assert time.monotonic() - t0 < 0.7
    assert ans.prediction == pytest.approx(0.77) and ans.reason.startswith("deadline")
    assert service.metrics.value("roadwork_errors_total", {"kind": "deadline"}) == 1
    service.close()


def test_a_full_queue_answers_minus_one_at_once(make_service):
    service = make_service([FakeVoter("l0", "L0", 0.6, delay=0.4)], max_concurrent=1, max_queue=0)

    async def two():
        return await asyncio.gather(service.answer(IMAGE), service.answer(IMAGE))

    first, second = asyncio.run(two())
    assert first.prediction == pytest.approx(0.6)
    assert second.prediction == -1.0 and second.reason.startswith("overloaded")
    assert second.latency_s < 0.1


def test_waiters_are_served_by_priority():
    async def scenario():
        adm = Admission(slots=1, max_queue=10)
        order = []
        assert await adm.acquire(0.0, time.monotonic() + 5)  # the slot is taken

        async def wait(p):
            if await adm.acquire(p, time.monotonic() + 5):
                order.append(p)
                adm.release()

        tasks = [asyncio.create_task(wait(p)) for p in (1.0, 500.0, 30.0)]
        await asyncio.sleep(0.01)
        adm.release()
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == [500.0, 30.0, 1.0]


def test_a_waiter_gives_up_at_its_deadline_and_frees_nothing():
    async def scenario():
        adm = Admission(slots=1, max_queue=10)
        await adm.acquire(0.0, time.monotonic() + 5)
        got = await adm.acquire(1.0, time.monotonic() + 0.05)
        adm.release()  # the holder leaves: the slot must come back, not go to the departed waiter
        return got, await adm.acquire(2.0, time.monotonic() + 0.05)

    assert asyncio.run(scenario()) == (False, True)


def test_drain_waits_for_requests_inside(make_service):
    service = make_service([FakeVoter("l0", "L0", 0.6, delay=0.3)])

    async def scenario():
        task = asyncio.create_task(service.answer(IMAGE))
        await asyncio.sleep(0.05)
        drained = await service.drain(2.0)
        late = await service.answer(IMAGE)
        return drained, (await task).prediction, late

    drained, first, late = asyncio.run(scenario())
    assert drained and first == pytest.approx(0.6)
    assert late.prediction == -1.0 and late.reason == "shutting down"


class StubbornVoter(FakeVoter):
    """An I/O voter that ignores cancellation: the cascade's own timeout cannot stop it."""

    async def apredict(self, frames):
        for _ in range(15):
            try:
                await asyncio.sleep(0.1)
            except asyncio.CancelledError:
                continue
        return [self.predict(frames)[0]]


def test_a_stage_that_swallows_cancellation_cannot_hold_the_answer(make_service):
    service = make_service([FakeVoter("l0", "L0", 0.66), StubbornVoter("vlm", "L3", 0.1)], deadline_ms=600)
    ans = answer(service)  # asyncio.run then waits out the stubborn task; the answer itself did not
    assert ans.latency_s < 0.7
    assert ans.prediction == pytest.approx(0.66) and ans.reason.startswith("deadline")


def test_explanation_names_boxed_objects_first():
    from cascade.types import AbstainCause, Vote
    from miner.service import explain

    boxes = [
        {"xyxy": [0, 0, 1, 1], "score": 0.9, "label": "traffic cone"},
        {"xyxy": [0, 0, 1, 1], "score": 0.8, "label": "traffic cone"},
        {"xyxy": [0, 0, 1, 1], "score": 0.1, "label": "person"},
    ]
    votes = [
        Vote("l0", "L0", 0.7),
        Vote("yolo", "L1", 0.95, evidence={"boxes": boxes}),
        Vote.abstain("vlm", "L3", "deadline", cause=AbstainCause.DEADLINE),
    ]
    text = explain(votes)
    assert text.startswith("2 traffic cone;") and "person" not in text and "vlm" not in text


def test_a_caller_that_leaves_the_queue_does_not_leak_its_slot():
    async def scenario():
        adm = Admission(slots=1, max_queue=10)
        await adm.acquire(0.0, time.monotonic() + 5)
        waiter = asyncio.create_task(adm.acquire(1.0, time.monotonic() + 5))
        await asyncio.sleep(0.01)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        adm.release()
        return await adm.acquire(2.0, time.monotonic() + 0.05)

    assert asyncio.run(scenario()) is True


def test_logs_never_carry_the_image_payload(make_service, caplog):
    import base64
    import logging

    service = make_service([FakeVoter("l0", "L0", 0.7)])
    bad = base64.b64encode(b"\x00SECRET-PAYLOAD" * 400).decode()
    with caplog.at_level(logging.DEBUG):
        answer(service, image=bad)
        answer(service, image=IMAGE)
    assert "unsupported_format" in caplog.text
    assert bad[20:200] not in caplog.text and IMAGE[20:200] not in caplog.text


class BrokenCascade(StuckCascade):
    """Pools L0, then a later stage (or an observer) raises out of run()."""

    async def run(self, frame, deadline, observer):
        observer.on_level(Level.L0, 0.31, 1.0, deadline.remaining())
        raise RuntimeError("observer exploded")


def test_a_cascade_that_raises_after_l0_still_answers_l0():
    service = MinerService(BrokenCascade(), miner_config(), MinerMetrics())
    ans = answer(service)
    assert ans.prediction == pytest.approx(0.31) and ans.reason.startswith("cascade error")
    assert service.metrics.value("roadwork_errors_total", {"kind": "cascade"}) == 1
    service.close()
