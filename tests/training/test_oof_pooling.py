"""benchmarks/oof_pooling.py: a candidate voter read from a votes file, or from some of its grids' crops."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO, benchmark_script


@pytest.fixture
def pooling(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # it imports loso_networks from beside it
    return benchmark_script("oof_pooling")


def test_a_tiles_view_with_grids_is_the_max_over_those_grids_crops_only(pooling, tmp_path):
    crops = [0.1] * 6 + [0.2] * 12 + [0.05] * 23 + [0.9]  # 2x3, 3x4, then a 4x6 grid that sees it
    row = {
        "key": "images/a.jpg",
        "label": 1,
        "source": "gtsdb",
        "group": "g",
        "fold": 0,
        "long_side": {"full": 1280},
        "probs": {"full": {"tiles": 0.2}},
        "crops": {"full": crops},
        "crop_grids": [[2, 3], [3, 4], [4, 6]],
    }
    votes = tmp_path / "votes.jsonl"
    votes.write_text(json.dumps(row) + "\n")
    runs = pooling.vote_runs(
        {"own": (str(votes), "tiles"), "fine": (str(votes), "tiles:4x6"), "small": (str(votes), "tiles:3x4")},
        tmp_path / "work",
    )
    prob = {name: run[0]["votes"][0]["prob"] for name, run in runs.items()}
    assert prob == {"own": 0.2, "fine": 0.9, "small": 0.2}
    assert runs["fine"][0]["votes"][0]["voter"] == "fine" and runs["fine"][0]["long_side"] == 1280
    # a grid the crops do not hold is refused by name
    with pytest.raises(ValueError, match="no crops of grids"):
        pooling.vote_runs({"x": (str(votes), "tiles:5x5")}, tmp_path / "work")
