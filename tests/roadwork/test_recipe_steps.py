"""benchmarks/recipe_steps.py: each recipe step run as the operator runs it, timed, with what it wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import benchmark_script


@pytest.mark.slow
def test_recipe_steps_time_each_step_and_name_its_files(tmp_path: Path) -> None:
    pytest.importorskip("ultralytics")
    from tests.test_recipe import make_data

    rs = benchmark_script("recipe_steps")
    data = make_data(tmp_path / "data")
    out = tmp_path / "steps.json"
    # given the tiny forms of an L0 backbone, an ultralytics and a transformers detector
    only = ["l0_dinov2_l", "yolo11x", "dfine_l"]
    rs.main(
        ["--data", str(data), "--limit", "16", "--tiny", "--device", "cpu", "--work", str(tmp_path / "w")]
        + ["--out", str(out)]
        + [a for name in only for a in ("--only", name)]
    )
    # then each ran the operator's command and the result names its time and what it wrote
    r = json.loads(out.read_text())
    assert r["complete"] is True and r["tiny"] is True
    assert list(r["steps"]) == ["train head l0_dinov2_l", "train detector yolo11x", "train detector dfine_l"]
    for name, step in r["steps"].items():
        assert step["ok"], (name, step.get("error"))
        assert step["command"].startswith("roadwork train ") and step["seconds"] > 0 and step["wrote"]
    assert any(p.endswith("roadwork_yolo11x.pt") for p in r["steps"]["train detector yolo11x"]["wrote"])
    assert any(p.endswith("model.safetensors") for p in r["steps"]["train detector dfine_l"]["wrote"])
