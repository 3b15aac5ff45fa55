"""Early-exit shares and the expected GPU cost per query (roadwork/bench/expected_cost.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roadwork.bench.expected_cost import expected_cost, l0_continue_share, parse_pairs, report
from roadwork.bench.results import parse_gpu_bench
from roadwork.cli import app

COSTS = {"L0": 2.0, "L1": 20.0, "L2": 10.0, "L3": 40.0, "L4": 80.0, "L5": 1000.0}


@pytest.mark.parametrize(
    "cont, expected_ms",
    [
        # case: everything exits at L0 -> only L0 is paid
        ({"L0": 0.0}, 2.0),
        # case: nothing ever exits -> every level is paid
        ({"L0": 1, "L1": 1, "L2": 1, "L3": 1, "L4": 1}, 1152.0),
        # case: half continue at every level: 2 + 20/2 + 10/4 + 40/8 + 80/16 + 1000/32
        ({"L0": 0.5, "L1": 0.5, "L2": 0.5, "L3": 0.5, "L4": 0.5}, 2 + 10 + 2.5 + 5 + 5 + 31.25),
    ],
)
def test_expected_cost_weights_each_level_by_its_reach(cont: dict, expected_ms: float) -> None:
    r = expected_cost(cont, COSTS)
    assert r["expected_ms_per_query"] == pytest.approx(expected_ms)
    assert sum(row["exit"] for row in r["levels"].values()) == pytest.approx(1.0)  # every query exits once
    assert r["all_levels_ms"] == pytest.approx(1152.0)


def test_expected_cost_rejects_a_share_outside_0_1() -> None:
    with pytest.raises(ValueError, match="L1 must be in"):
        expected_cost({"L0": 1.0, "L1": 1.5}, COSTS)


def _rows(probs: list[float]) -> list[dict]:
    return [{"prob": p, "answered": True, "exit_level": "L0", "label": int(p > 0.5)} for p in probs]


def test_l0_continue_share_counts_probs_inside_the_band() -> None:
    r = l0_continue_share(_rows([0.01, 0.1, 0.5, 0.9, 0.99]), (0.05, 0.95))
    assert r["continue"] == pytest.approx(0.6) and r["exit_low"] == pytest.approx(0.2)
    assert r["exit_high"] == pytest.approx(0.2) and r["n"] == 5
    assert r["exit_accuracy"] == 1.0  # labels follow the probabilities here


def test_l0_continue_share_needs_l0_rows() -> None:
    with pytest.raises(ValueError, match="L0-only"):
        l0_continue_share([{"prob": 0.5, "exit_level": "L2"}], (0.1, 0.9))


@pytest.mark.parametrize(
    "items, ok", [(["L1=0.4", "l3=0.5"], {"L1": 0.4, "L3": 0.5}), (["L9=1"], None), (["L1"], None), (["L1=x"], None)]
)
def test_parse_pairs(items: list[str], ok: dict | None) -> None:
    if ok is None:
        with pytest.raises(ValueError, match="--continue: expected LEVEL=NUMBER"):
            parse_pairs(items, "--continue")
    else:
        assert parse_pairs(items, "--continue") == ok


def test_level_costs_sum_each_levels_models() -> None:
    bench = {
        "voters": {
            "a": {"level": "L1", "native": {"ms_per_image": 3.0}},
            "b": {"level": "L1", "native": {"ms_per_image": 4.0}},
            "c": {"level": "L0", "native": {"ms_per_image": 1.0}},
        }
    }
    assert parse_gpu_bench(bench).level_costs() == {"L1": 7.0, "L0": 1.0}


def _run(tmp_path: Path, probs: list[float]) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(probs)))
    return run


def test_report_marks_measured_bench_and_prior_sources(tmp_path: Path) -> None:
    bench = {"voters": {"a": {"level": "L1", "native": {"ms_per_image": 30.0}}}}
    r = report(_run(tmp_path, [0.01, 0.5, 0.5, 0.99]), (0.1, 0.9), bench, cost_over={"L5": 500.0})
    assert r["continue_shares"]["L0"] == pytest.approx(0.5) and r["continue_sources"]["L0"] == "measured"
    assert r["cost_sources"]["L1"] == "bench" and r["levels"]["L1"]["cost_ms"] == 30.0
    assert r["cost_sources"]["L5"] == "flag" and r["cost_sources"]["L3"] == "prior"


def test_cli_expected_cost_writes_json(tmp_path: Path) -> None:
    artefact = tmp_path / "consensus.json"
    artefact.write_text(
        json.dumps({"schema_version": 1, "labels": [0, 1], "weights": {"l0_head": 1.0}, "bands": {"L0": [0.1, 0.9]}})
    )
    out = tmp_path / "cost.json"
    res = CliRunner().invoke(
        app,
        [
            "bench",
            "--expected-cost",
            str(_run(tmp_path, [0.01, 0.5, 0.99, 0.95])),
            "--artefact",
            str(artefact),
            "--continue",
            "L1=0",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert r["l0"]["continue"] == pytest.approx(0.25)
    assert r["levels"]["L2"]["reach"] == 0.0  # --continue L1=0: nothing goes past L1
