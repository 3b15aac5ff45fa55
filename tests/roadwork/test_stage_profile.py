"""benchmarks/stage_profile.py: the per-model split of time into preprocessing and the rest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, benchmark_script


@pytest.mark.slow
def test_stage_profile_splits_preprocessing_from_the_rest(tmp_path: Path) -> None:
    sp = benchmark_script("stage_profile")
    out = tmp_path / "stages.json"
    # given two tiny transformers voters of the production profile, one an L2 validator
    sp.main(
        [
            "--config",
            str(REPO / "configs" / "h100x2.yaml"),
            "--tiny",
            "--only",
            "dfine_l",
            "depth_da2_l",
            "--sizes",
            "64x64,96x160",
            "--reps",
            "1",
            "--out",
            str(out),
        ]
    )
    # then each size has a time per image that splits into the processor's share and the rest, no failures
    rows = json.loads(out.read_text())["voters"]
    assert sorted(rows) == ["depth_da2_l", "dfine_l"]
    for row in rows.values():
        for size in ("64x64", "96x160"):
            r = row[size]
            assert "abstained" not in r, r
            assert r["ms_per_image"] == pytest.approx(r["preprocess_ms"] + r["rest_ms"], abs=0.01)
            assert 0 < r["preprocess_share"] < 1
