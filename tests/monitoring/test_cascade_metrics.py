import asyncio

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from cascade.budget import Deadline
from monitoring.cascade_metrics import CascadeMetrics
from monitoring.observers import ObserverGroup
from tests.conftest import FakeVoter
from tests.monitoring.helpers import make_cascade, standard_voters


def run(cascade, frame, observer, seconds=2.0):
    return asyncio.run(cascade.run(frame, Deadline.after(seconds), observer=observer))


@pytest.fixture
def metrics():
    return CascadeMetrics(CollectorRegistry())


def test_queries_levels_and_voter_latency_are_counted(metrics, frame):
    with make_cascade(standard_voters()) as cascade:
        for _ in range(3):
            verdict = run(cascade, frame, metrics.observer())
    assert metrics.value("roadwork_cascade_queries_total", {"exit_level": verdict.exit_level.name}) == 3
    assert metrics.value("roadwork_cascade_query_seconds_count") == 3
    for level in ("L0", "L1", "L3"):
        assert metrics.value("roadwork_cascade_level_seconds_count", {"level": level}) == 3
    assert metrics.value("roadwork_cascade_voter_seconds_count", {"voter": "yolo", "level": "L1"}) == 3
    assert metrics.value("roadwork_cascade_prob_count") == 3
    assert metrics.value("roadwork_cascade_deadline_missed_total") == 0


def test_agreement_with_the_final_answer_per_voter(metrics, frame):
    # given three voters that say yes and one that says no: the answer is yes
    voters = [
        FakeVoter("a", "L0", 0.9),
        FakeVoter("b", "L0", 0.8),
        FakeVoter("c", "L0", 0.7),
        FakeVoter("dissent", "L0", 0.2),
        FakeVoter("bad", "L0", error=RuntimeError("boom")),
    ]
    with make_cascade(voters) as cascade:
        verdict = run(cascade, frame, metrics.observer())
    assert verdict.label == 1

    def v(voter, outcome):
        return metrics.value("roadwork_cascade_votes_total", {"voter": voter, "level": "L0", "outcome": outcome})

    assert (v("a", "agree"), v("dissent", "disagree"), v("dissent", "agree"), v("bad", "abstain")) == (1, 1, 0, 1)
    assert metrics.value("roadwork_cascade_voter_abstentions_total", {"voter": "bad", "cause": "error"}) == 1


def test_a_late_verdict_counts_as_a_deadline_miss(metrics, frame):
    with make_cascade([FakeVoter("a", "L0", 0.9)]) as cascade:
        run(cascade, frame, metrics.observer(), seconds=-0.01)
    assert metrics.value("roadwork_cascade_deadline_missed_total") == 1
    assert metrics.value("roadwork_cascade_queries_total", {"exit_level": "none"}) == 1


def test_voter_timeout_is_an_abstention_for_deadline(metrics, frame):
    voters = [FakeVoter("fast", "L0", 0.7), FakeVoter("slow", "L0", 0.1, delay=1.0)]
    with make_cascade(voters, deadline_ms=400, margin_ms=50) as cascade:
        run(cascade, frame, metrics.observer(), seconds=0.4)
    assert metrics.value("roadwork_cascade_voter_abstentions_total", {"voter": "slow", "cause": "deadline"}) == 1


@pytest.mark.parametrize("state, value", [("closed", 0), ("half_open", 1), ("HALF-OPEN", 1), ("open", 2)])
def test_breaker_state_gauge(metrics, state, value):
    metrics.set_breaker_state("vlm_power", state, endpoint="http://127.0.0.1:8001")
    assert (
        metrics.value("roadwork_cascade_breaker_state", {"tier": "vlm_power", "endpoint": "http://127.0.0.1:8001"})
        == value
    )


def test_breaker_states_are_read_after_each_verdict(frame):
    # given a source in vlm_tiers' format (breaker_states(cascade.detectors)) whose tier opens
    states = [{"tier": "fast", "endpoint": "http://a", "state": "closed", "consecutive_failures": 0}]
    metrics = CascadeMetrics(CollectorRegistry(), breakers=lambda: states)
    with make_cascade([FakeVoter("a", "L0", 0.9)]) as cascade:
        run(cascade, frame, metrics.observer())
        assert metrics.value("roadwork_cascade_breaker_state", {"tier": "fast", "endpoint": "http://a"}) == 0
        states[0]["state"] = "open"
        run(cascade, frame, metrics.observer())
    assert metrics.value("roadwork_cascade_breaker_state", {"tier": "fast", "endpoint": "http://a"}) == 2


def test_device_worker_states_are_read_after_each_verdict(frame):
    # given worker states in device_process.worker_states' format, where cuda:1's worker dies
    states = [
        {"device": "cuda:0", "worker": 0, "up": 1, "restarts": 0},
        {"device": "cuda:1", "worker": 0, "up": 1, "restarts": 0},
        {"device": "cuda:1", "worker": 1, "up": 1, "restarts": 0},
    ]
    metrics = CascadeMetrics(CollectorRegistry(), workers=lambda: states)
    with make_cascade([FakeVoter("a", "L0", 0.9)]) as cascade:
        run(cascade, frame, metrics.observer())
        assert metrics.value("roadwork_cascade_device_worker_up", {"device": "cuda:1", "worker": "0"}) == 1
        states[1].update(up=0, restarts=1)
        run(cascade, frame, metrics.observer())
    # then the gauges show it down with one rebuild, and cuda:1's other worker and cuda:0 untouched
    assert metrics.value("roadwork_cascade_device_worker_up", {"device": "cuda:1", "worker": "0"}) == 0
    assert metrics.value("roadwork_cascade_device_worker_restarts", {"device": "cuda:1", "worker": "0"}) == 1
    assert metrics.value("roadwork_cascade_device_worker_up", {"device": "cuda:1", "worker": "1"}) == 1
    assert metrics.value("roadwork_cascade_device_worker_up", {"device": "cuda:0", "worker": "0"}) == 1


def test_unknown_breaker_state_names_the_choices(metrics):
    with pytest.raises(ValueError, match="closed, half_open, open.*'ajar'"):
        metrics.set_breaker_state("vlm_fast", "ajar")


class RaisingClient:
    """The VLM client's interface, failing the way the real one does."""

    def __init__(self, exc):
        self.exc = exc

    async def chat(self, body, timeout_s, request_id):
        raise self.exc

    async def aclose(self):
        pass


def _vlm_errors():
    from vlm_tiers.errors import ReplyParseError, TierUnavailableError, VLMHTTPError, VLMTimeoutError

    return [
        (TierUnavailableError("vlm_fast: every endpoint's circuit is open"), "breaker"),
        (VLMTimeoutError("http://127.0.0.1:8001: no answer within 2.5 s"), "deadline"),
        (VLMHTTPError("http://127.0.0.1:8001: HTTP 503", 503, "overloaded"), "error"),
        (ReplyParseError("no yes/no token in the reply: 'I cannot tell'"), "error"),
    ]


@pytest.mark.parametrize("index", range(4))
def test_vlm_tier_abstentions_are_counted_by_their_typed_cause(metrics, frame, index):
    # given a real vlm-http tier whose client fails as the real client does
    from cascade.types import Level
    from tests.monitoring.helpers import make_cascade as cascade_of
    from vlm_tiers.config import HttpTierParams
    from vlm_tiers.http_tier import HttpVLMTier

    exc, cause = _vlm_errors()[index]
    params = HttpTierParams.model_validate({"model": "qwen", "endpoints": ["http://127.0.0.1:8001"]})
    tier = HttpVLMTier("vlm_fast", Level.L3, params, RaisingClient(exc))
    # when the cascade runs it
    with cascade_of([FakeVoter("l0", "L0", 0.5), tier]) as cascade:
        verdict = run(cascade, frame, metrics.observer())
    # then the vote carries the cause and the metric counts it there (the alert reads cause="error")
    vote = next(v for v in verdict.votes if v.voter == "vlm_fast")
    assert vote.abstained and vote.cause.value == cause
    assert metrics.value("roadwork_cascade_voter_abstentions_total", {"voter": "vlm_fast", "cause": cause}) == 1


def test_shares_the_miner_registry_and_both_are_exposed(frame):
    from monitoring.metrics import MinerMetrics

    miner = MinerMetrics()
    cascade_metrics = CascadeMetrics(miner.registry)
    cascade_metrics.declare_voters([("l0_head", FakeVoter("l0_head", "L0").level)])
    with make_cascade([FakeVoter("l0_head", "L0", 0.9)]) as cascade:
        run(cascade, frame, ObserverGroup(cascade_metrics.observer(), None))
    text = miner.exposition()[0].decode()
    assert "roadwork_cascade_queries_total" in text and "roadwork_request_latency_seconds" in text
    assert 'roadwork_cascade_votes_total{level="L0",outcome="disagree",voter="l0_head"} 0.0' in text


def test_registries_are_separate_per_instance():
    a, b = CascadeMetrics(), CascadeMetrics()  # would raise "Duplicated timeseries" on a global registry
    a.queries.labels(exit_level="L0").inc()
    assert b.value("roadwork_cascade_queries_total", {"exit_level": "L0"}) == 0
    assert b"roadwork_cascade_breaker_state" in generate_latest(b.registry)
