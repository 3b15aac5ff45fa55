import json
import urllib.error
import urllib.request

import pytest

from monitoring.health import HealthServer, HealthState
from monitoring.metrics import MinerMetrics


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture
def side_port():
    metrics = MinerMetrics()
    state = HealthState(metrics)
    with HealthServer(state, metrics, "127.0.0.1", 0) as hs:
        yield hs, state, metrics


def test_alive_at_once_ready_only_after_warmup(side_port):
    hs, state, _ = side_port
    assert get(hs.url + "/healthz")[0] == 200
    code, body = get(hs.url + "/readyz")
    assert code == 503 and "loading" in json.loads(body)["reason"]
    state.set_ready(True, "serving")
    assert get(hs.url + "/readyz")[0] == 200
    state.set_ready(False, "draining: SIGTERM")
    assert get(hs.url + "/readyz")[0] == 503


def test_metrics_are_prometheus_text(side_port):
    hs, state, metrics = side_port
    metrics.record_answer("L0", 0.12)
    metrics.record_error("decode_bad_base64")
    metrics.record_refusal("unregistered")
    state.set_ready(True, "serving")
    code, body = get(hs.url + "/metrics")
    assert code == 200
    for line in (
        'roadwork_answers_total{exit_level="L0"} 1.0',
        'roadwork_errors_total{kind="decode_bad_base64"} 1.0',
        'roadwork_refused_total{reason="unregistered"} 1.0',
        'roadwork_request_latency_seconds_bucket{le="0.2",outcome="ok"} 1.0',
        "roadwork_ready 1.0",
    ):
        assert line in body


def test_unknown_path_is_404(side_port):
    hs, _, _ = side_port
    assert get(hs.url + "/nope")[0] == 404
