"""The Grafana dashboard and the Prometheus alert rules only name metrics that the miner exports."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from monitoring.cascade_metrics import CascadeMetrics

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "monitoring" / "prometheus" / "alerts.yml"
DASHBOARD = REPO / "monitoring" / "grafana" / "roadwork-miner.json"
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def exported_families() -> set[str]:
    """Metric family names of the miner's registry with the cascade metrics added."""
    from monitoring.metrics import MinerMetrics

    registry = CollectorRegistry()
    MinerMetrics(registry)
    CascadeMetrics(registry)
    return {m.name for m in registry.collect()}


def family(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def referenced(expr: str) -> set[str]:
    return {family(n) for n in re.findall(r"\broadwork_[a-z0-9_]+", expr)}


def alert_rules() -> list[dict]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_referenced_metric_is_exported(source):
    exprs = [r["expr"] for r in alert_rules()] if source == "alerts" else dashboard_exprs()
    names = set().union(*(referenced(e) for e in exprs))
    missing = names - exported_families()
    assert names and not missing, f"{source} names metrics nobody exports: {sorted(missing)}"


def test_alerts_cover_deadline_errors_and_open_breakers():
    rules = {r["alert"]: r for r in alert_rules()}
    assert {"RoadworkDeadlineMisses", "RoadworkErrorRate", "RoadworkBreakerOpen"} <= set(rules)
    assert "roadwork_cascade_breaker_state" in rules["RoadworkBreakerOpen"]["expr"]
    assert all(r["labels"]["severity"] in ("page", "warn") and r["annotations"]["summary"] for r in rules.values())


def test_dashboard_shows_level_latency_agreement_and_breakers():
    panels = json.loads(DASHBOARD.read_text())["panels"]
    text = json.dumps(panels)
    for metric in (
        "roadwork_cascade_level_seconds_bucket",
        "roadwork_cascade_votes_total",
        "roadwork_cascade_breaker_state",
        "roadwork_request_latency_seconds_bucket",
    ):
        assert metric in text
    assert len({p["id"] for p in panels}) == len(panels)
    boxes = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in panels]
    assert len(set(boxes)) == len(boxes), "panels overlap"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
def test_promtool_accepts_the_rules():
    done = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
def test_alerts_fire_as_their_unit_tests_expect():
    tests = ALERTS.parent / "alerts_test.yml"
    done = subprocess.run(["promtool", "test", "rules", str(tests)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
