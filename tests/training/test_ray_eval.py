"""`roadwork eval --ray`: the same rows scored by cascade replicas on a local Ray cluster give the
single-process run's metrics and predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roadwork.cli import app
from tests.conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # a one-node cluster on 127.0.0.1
    yield ray
    ray.shutdown()


def test_ray_eval_equals_the_single_process_run(tmp_path: Path, local_ray) -> None:
    from training.sample import make_sample

    data = make_sample(tmp_path / "data", 16, seed=3)
    runner = CliRunner()
    args = ["eval", "--data", str(data), "--split", "all", "--config", str(REPO / "configs" / "cpu.yaml")]
    args += ["--regime", "v0.2,full"]
    one = runner.invoke(app, [*args, "--out", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    many = runner.invoke(app, [*args, "--out", str(tmp_path / "ray"), "--ray", "auto", "--ray-replicas", "2"])
    assert many.exit_code == 0, many.output
    assert "on Ray (2 cascade replicas)" in many.output
    for regime in ("v0.2", "full"):
        m1, m2 = (json.loads((tmp_path / r / regime / "metrics.json").read_text()) for r in ("one", "ray"))
        for key in ("n", "mcc", "accuracy", "auroc", "per_source", "exit_levels"):
            assert m1[key] == m2[key], (regime, key)
        p1, p2 = ([json.loads(x) for x in (tmp_path / r / regime / "predictions.jsonl").read_text().splitlines()]
                  for r in ("one", "ray"))  # fmt: skip
        assert [(r["key"], r["prob"]) for r in p1] == [(r["key"], r["prob"]) for r in p2]  # same rows, same order


def test_ray_eval_refuses_to_drop_traces_silently(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from training.sample import make_sample

    data = make_sample(tmp_path / "data", 4, seed=3)
    args = ["eval", "--data", str(data), "--split", "all", "--out", str(tmp_path / "r")]
    traced = CliRunner().invoke(app, [*args, "--ray", "local", "--trace", "http://127.0.0.1:1"])
    assert traced.exit_code != 0 and "--ray does not send traces" in traced.output
