"""benchmarks/dev_summary.py reads what `roadwork eval` writes, with one regime or several."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import benchmark_script


def write_run(folder: Path, transform: str, probs: list[float]) -> None:
    """A `roadwork eval` output folder of four rows (two roadwork), one voter `v`."""
    folder.mkdir(parents=True)
    labels = [1, 1, 0, 0]
    rows = [
        {"label": y, "source": "camvid", "prob": p, "votes": [{"voter": "v", "prob": p}]}
        for y, p in zip(labels, probs, strict=True)
    ]
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    per_source = {"camvid": {"n": 4, "positives": 2, "mcc": 1.0, "accuracy": 1.0, "auroc": 1.0}}
    metrics = {"transform": transform, "per_source": per_source, "latency_ms": {"p95": 10.0}}
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_one_regime_run_is_summarised_under_its_transform(tmp_path):
    ds = benchmark_script("dev_summary")
    write_run(tmp_path / "run", "full", [0.9, 0.8, 0.2, 0.1])
    out = ds.summary(tmp_path / "run")
    assert list(out) == ["full"]
    assert out["full"]["pooled"]["mcc"] == pytest.approx(1.0)


def test_each_regime_folder_is_summarised(tmp_path):
    ds = benchmark_script("dev_summary")
    write_run(tmp_path / "run" / "v0.2", "v0.2", [0.9, 0.8, 0.2, 0.1])
    write_run(tmp_path / "run" / "full", "full", [0.2, 0.1, 0.9, 0.8])
    out = ds.summary(tmp_path / "run")
    assert sorted(out) == ["full", "v0.2"]
    assert out["full"]["voters"]["v"]["mcc"] == pytest.approx(-1.0)


def test_folder_without_a_run_is_refused_by_name(tmp_path):
    ds = benchmark_script("dev_summary")
    with pytest.raises(SystemExit, match="empty"):
        ds.summary(tmp_path / "empty")


def test_the_pool_is_also_scored_on_the_frames_each_voter_answered(tmp_path):
    ds = benchmark_script("dev_summary")
    folder = tmp_path / "run"
    write_run(folder, "full", [0.9, 0.8, 0.2, 0.1])
    rows = [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]
    for r, tile in zip(rows, [0.9, None, 0.7, None], strict=True):  # a tile voter on two frames: one right, one wrong
        r["votes"].append({"voter": "tiles", "prob": tile})
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = ds.summary(folder)["full"]
    assert out["voters"]["tiles"]["n"] == 2 and out["voters"]["tiles"]["accuracy"] == pytest.approx(0.5)
    assert out["pooled_where_voter_answered"]["tiles"]["n"] == 2  # the pool on those two frames
    assert out["pooled_where_voter_answered"]["tiles"]["accuracy"] == pytest.approx(1.0)
    assert out["pooled_where_voter_answered"]["v"]["n"] == 4
