"""The miner's own Prometheus series."""


def test_an_idle_miner_already_exports_every_error_and_refusal_series_at_zero():
    """An alert's rate() over a series that does not exist yet cannot fire on the first errors."""
    from prometheus_client import generate_latest

    from monitoring.metrics import ERROR_KINDS, MinerMetrics

    text = generate_latest(MinerMetrics().registry).decode()
    assert 'roadwork_errors_total{kind="deadline"} 0.0' in text
    assert 'roadwork_refused_total{reason="body_too_large"} 0.0' in text
    # every decode refusal the miner can record is among them
    import inspect
    import re

    import miner.decode as decode

    reasons = set(re.findall(r'DecodeError\("([a-z_]+)"', inspect.getsource(decode)))
    assert reasons and {f"decode_{r}" for r in reasons} <= set(ERROR_KINDS)
