"""The alert rules against what a real miner exports before its first request.

An alert whose selector matches no series at start-up cannot fire on the first errors: `rate()`
of a series that does not exist yet is empty, and so is a sum over it. These tests read the side
port's /metrics of a real, idle miner (the axon, the service and a cascade whose voters run
nothing) and check every selector of the alerts that apply to any miner against it. The promtool
unit test is generated from that same exposition, so it cannot assume series the miner lacks.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request

import pytest
import yaml

from tests.conftest import REPO, FakeVoter
from tests.monitoring.helpers import make_cascade

ALERTS = REPO / "monitoring" / "prometheus" / "alerts.yml"
EVERY_MINER = (
    "RoadworkDeadlineMisses",
    "RoadworkDeadlineTight",
    "RoadworkErrorRate",
    "RoadworkVoterFailing",
    "RoadworkNotReady",
)
"""Alerts that apply to any profile; the breaker and device-worker alerts need VLM tiers or GPU workers."""
SELECTOR = re.compile(r"(roadwork_[a-z_]+)(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


@pytest.fixture(scope="module")
def idle_exposition() -> str:
    pytest.importorskip("bittensor")
    from miner.config import MinerConfig
    from miner.rig import LocalRig

    with (
        make_cascade([FakeVoter("l0_head", "L0", 0.9), FakeVoter("l1_boxes", "L1", 0.9)]) as cascade,
        LocalRig(cascade, MinerConfig()) as rig,
    ):
        with urllib.request.urlopen(rig.health.url + "/metrics", timeout=5) as r:
            return r.read().decode()


def idle_series(text: str) -> list[tuple[str, dict[str, str], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    return [
        (s.name, dict(s.labels), float(s.value)) for fam in text_string_to_metric_families(text) for s in fam.samples
    ]


def matches(labels: dict[str, str], matchers: list[tuple[str, str, str]]) -> bool:
    ok = {
        "=": lambda v, x: v == x,
        "!=": lambda v, x: v != x,
        "=~": lambda v, x: re.fullmatch(x, v) is not None,
        "!~": lambda v, x: re.fullmatch(x, v) is None,
    }
    return all(ok[op](labels.get(k, ""), x) for k, op, x in matchers)


def rule_field(alert: str, key: str) -> str:
    rule = next(r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"] if r["alert"] == alert)
    return rule["annotations"][key]


def rules() -> dict[str, str]:
    return {r["alert"]: r["expr"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}


@pytest.mark.parametrize("alert", EVERY_MINER)
def test_every_selector_of_the_alert_matches_a_series_of_an_idle_miner(idle_exposition, alert):
    series = idle_series(idle_exposition)
    selectors = SELECTOR.findall(rules()[alert])
    assert selectors, f"{alert} selects no roadwork_ series"
    for name, inside in selectors:
        wanted = MATCHER.findall(inside or "")
        hits = [labels for n, labels, _ in series if n == name and matches(labels, wanted)]
        assert hits, f"{alert}: {name}{{{inside}}} has no series before the first request, so it cannot fire"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
def test_deadline_misses_fire_from_the_idle_exposition(idle_exposition, tmp_path):
    """promtool on a scenario that starts from the real idle series: one deadline miss every 10 s."""
    inputs = []
    for name, labels, value in idle_series(idle_exposition):
        series = name + "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
        if name == "roadwork_errors_total" and labels.get("kind") == "deadline":
            values = f"{value:g} {value:g} {value:g}+6x18"
        elif name == "roadwork_answers_total":
            values = f"{value:g}+60x20"
        else:
            values = f"{value:g}+0x20"
        inputs.append({"series": series, "values": values})
    test = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": inputs,
                "alert_rule_test": [
                    {
                        "eval_time": "12m",
                        "alertname": "RoadworkDeadlineMisses",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "page"},
                                "exp_annotations": {
                                    "summary": "Deadline misses: 100m/s answers came too late",
                                    "description": rule_field("RoadworkDeadlineMisses", "description"),
                                },
                            }
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "idle_test.yml"
    path.write_text(yaml.safe_dump(test))
    done = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
