"""The HTTP client and the `vlm-http` tier against a local fake OpenAI-compatible server.

The fake (tests/vlm_tiers/fake_openai.py) checks the wire format only; the real-server test is
in test_transformers_serve.py.
"""

import asyncio
import base64
import io
import time

import numpy as np
import pytest
from PIL import Image

from cascade.config import CascadeConfig, VoterConfig
from cascade.pipeline import Cascade
from cascade.types import Frame, Level
from detectors.registry import build
from tests.conftest import FakeVoter
from tests.vlm_tiers.fake_openai import FakeServer, dead_url
from vlm_tiers.client import VLMClient
from vlm_tiers.errors import TierUnavailableError, VLMConnectionError, VLMHTTPError, VLMTimeoutError
from vlm_tiers.http_tier import HttpVLMTier, breaker_states


def tier(urls, **params):
    cfg = VoterConfig(name="fast", kind="vlm-http", level="L3", params={"model": "fast", "endpoints": urls, **params})
    return build(cfg, base_dir=None)


def big_frame():
    rng = np.random.default_rng(1)
    return Frame(rng.integers(0, 255, (600, 800, 3), dtype=np.uint8), source="t", frame_id="f7")


def test_vote_from_logprobs_and_the_request_on_the_wire():
    with FakeServer(p_yes=0.8) as srv:
        t = tier([srv.url], image={"max_pixels": 224 * 224})
        (vote,) = t.predict([big_frame()])
    # then the probability is the server's yes-mass, with provenance
    assert isinstance(t, HttpVLMTier) and vote.level is Level.L3
    assert vote.prob == pytest.approx(0.8, abs=1e-3)
    assert vote.evidence["method"] == "logprobs" and vote.evidence["endpoint"] == srv.url
    # and the request carried the correlation id, logprobs, the vLLM choice constraint and a small image
    (req,) = srv.chats
    assert req["headers"]["X-Request-Id"] == vote.evidence["request_id"] and vote.evidence["request_id"].endswith("-f7")
    body = req["body"]
    assert body["logprobs"] is True and body["top_logprobs"] >= 5 and body["max_tokens"] == 1
    assert body["structured_outputs"] == {"choice": ["yes", "no"]} and body["temperature"] == 0.0
    url = body["messages"][0]["content"][0]["image_url"]["url"]
    img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert img.format == "JPEG" and img.width * img.height <= 224 * 224 and img.width % 28 == 0
    assert abs(img.width / img.height - 800 / 600) < 0.2  # aspect kept up to 28-px rounding


@pytest.mark.parametrize(
    "server, key, value",
    [
        ("vllm-legacy", "guided_choice", ["yes", "no"]),
        ("sglang", "regex", "(yes|no)"),
    ],
)
def test_server_presets_change_the_constraint(server, key, value):
    with FakeServer() as srv:
        tier([srv.url], server=server).predict([big_frame()])
    assert srv.chats[0]["body"][key] == value and "structured_outputs" not in srv.chats[0]["body"]


def test_round_robin_and_failover_past_a_dead_endpoint():
    with FakeServer(p_yes=0.3) as a, FakeServer(p_yes=0.3) as b:
        t = tier([dead_url(), a.url, b.url], breaker={"failures": 1, "reset_s": 60})
        votes = t.predict([big_frame() for _ in range(4)])
    # every frame answered though one endpoint refuses connections; the dead one is opened
    assert all(v.prob == pytest.approx(0.3, abs=1e-3) for v in votes)
    assert len(a.chats) >= 1 and len(b.chats) >= 1 and len(a.chats) + len(b.chats) == 4
    states = {s["endpoint"]: s["state"] for s in t.breaker_states()}
    assert list(states.values()) == ["open", "closed", "closed"]
    # the metrics helper reads the same states from a cascade's voters
    exported = breaker_states([FakeVoter("l0", "L0"), t])
    assert [(s["tier"], s["state"]) for s in exported] == [("fast", "open"), ("fast", "closed"), ("fast", "closed")]


def test_dead_tier_opens_its_circuit_then_costs_nothing():
    t = tier([dead_url()], breaker={"failures": 2, "reset_s": 60}, timeout_ms=1000)
    first = t.predict([big_frame()])[0]
    second = t.predict([big_frame()])[0]
    assert first.abstained and "VLMConnectionError" in first.reason
    assert second.abstained and t.breaker_states()[0]["state"] == "open"
    t0 = time.monotonic()
    third = t.predict([big_frame()])[0]
    assert third.abstained and "TierUnavailableError" in third.reason
    assert time.monotonic() - t0 < 0.5


def test_slow_server_times_out_and_counts_as_failure():
    with FakeServer(mode="slow", delay=1.0) as srv:
        t = tier([srv.url], timeout_ms=200)
        t0 = time.monotonic()
        (vote,) = t.predict([big_frame()])
    assert vote.abstained and "VLMTimeoutError" in vote.reason and time.monotonic() - t0 < 0.9
    assert t.breaker_states()[0]["consecutive_failures"] == 1


@pytest.mark.parametrize(
    "mode, error, opens",
    [
        ("error500", "HTTP 500", True),  # server fault: counts
        ("garbage", "not JSON", False),  # proxy page: an answer, not a dead server
    ],
)
def test_bad_answers_abstain_with_the_status(mode, error, opens):
    with FakeServer(mode=mode) as srv:
        t = tier([srv.url], breaker={"failures": 1, "reset_s": 60})
        (vote,) = t.predict([big_frame()])
    assert vote.abstained and error in vote.reason
    assert (t.breaker_states()[0]["state"] == "open") is opens


def test_client_error_is_not_retried_elsewhere_and_does_not_open():
    with FakeServer() as a, FakeServer() as b:
        client = VLMClient("fast", [a.url, b.url], failures=1)
        with pytest.raises(VLMHTTPError, match="HTTP 404.*model wrong not found"):
            asyncio.run(client.chat({"model": "wrong", "messages": []}, timeout_s=2.0))
        assert len(a.chats) + len(b.chats) == 1
        assert [s["state"] for s in client.breaker_states()] == ["closed", "closed"]


def test_probe_marks_unhealthy_endpoints():
    with FakeServer() as ok:
        client = VLMClient("fast", [ok.url, dead_url()], failures=1)
        health = asyncio.run(client.probe(timeout_s=1.0))
    assert list(health.values()) == [True, False]
    assert [s["state"] for s in client.breaker_states()] == ["closed", "open"]
    assert ok.requests[0]["path"] == "/health" and ok.requests[0]["headers"]["X-Request-Id"].endswith("-health")


def test_no_endpoint_left_raises_tier_unavailable():
    client = VLMClient("fast", [dead_url()], failures=1, reset_s=60)
    with pytest.raises(VLMConnectionError, match="ConnectError"):
        asyncio.run(client.chat({"model": "fast"}, timeout_s=1.0))
    with pytest.raises(TierUnavailableError):
        asyncio.run(client.chat({"model": "fast"}, timeout_s=1.0))
    with pytest.raises(VLMTimeoutError, match="no time left"):
        asyncio.run(VLMClient("fast", ["http://127.0.0.1:9"]).chat({}, timeout_s=0.0))


def test_tier_in_the_cascade_is_awaited_and_cut_by_the_deadline(frame):
    # given an unsure L0 and a VLM tier whose server is slower than the deadline
    with FakeServer(mode="slow", delay=2.0) as srv:
        vlm = tier([srv.url], timeout_ms=5000)
        l0 = FakeVoter("l0", "L0", 0.6)
        cfg = CascadeConfig.model_validate(
            {
                "runtime": {"deadline_ms": 600, "margin_ms": 100, "cost_prior_ms": 10},
                "levels": [{"level": "L3", "run_when": (0.05, 0.95)}],
                "voters": [
                    {"name": "l0", "kind": "fake", "level": "L0"},
                    {"name": "fast", "kind": "vlm-http", "level": "L3"},
                ],
            }
        )
        with Cascade([l0, vlm], cfg) as cascade:
            t0 = time.monotonic()
            verdict = cascade.run_sync(frame, timeout_s=0.6)
            elapsed = time.monotonic() - t0
    # then the answer comes in time with L0's probability and the tier abstains for the deadline
    assert elapsed < 0.6 and verdict.prob == pytest.approx(0.6)
    vote = {v.voter: v for v in verdict.votes}["fast"]
    assert vote.abstained and "deadline" in vote.reason


def test_tier_in_the_cascade_pools_its_vote(frame):
    with FakeServer(p_yes=0.95) as srv:
        cfg = CascadeConfig.model_validate(
            {
                "runtime": {"cost_prior_ms": 10},
                "voters": [
                    {"name": "l0", "kind": "fake", "level": "L0"},
                    {"name": "fast", "kind": "vlm-http", "level": "L3"},
                ],
            }
        )
        with Cascade([FakeVoter("l0", "L0", 0.6), tier([srv.url])], cfg) as cascade:
            verdict = cascade.run_sync(frame)
    assert verdict.exit_level is Level.L3 and 0.6 < verdict.prob < 0.95


@pytest.mark.parametrize(
    "params, message",
    [
        ({"endpoints": ["127.0.0.1:8001"]}, "must be a base URL"),
        ({"endpoints": ["http://127.0.0.1:8001/v1"]}, "without /v1"),
        ({"endpoints": []}, "at least 1 item"),
        ({"endpoints": ["http://h:1"], "server": "ollama"}, "vllm"),
        ({"endpoints": ["http://h:1"], "api_key_env": "RW_TEST_UNSET_KEY"}, "RW_TEST_UNSET_KEY"),
        ({"endpoints": ["http://h:1"], "batch_wait_ms": 5}, "batch_wait_ms must be 0"),
    ],
)
def test_bad_tier_params_name_the_key(params, message):
    params = dict(params)
    top = {k: params.pop(k) for k in ("batch_wait_ms",) if k in params}
    cfg = VoterConfig(name="fast", kind="vlm-http", level="L3", params={"model": "fast", **params}, **top)
    with pytest.raises(ValueError, match=message):
        build(cfg, base_dir=None)
