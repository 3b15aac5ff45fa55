"""benchmarks/tile_contrast.py: frame-relative tile scores against the max, on LOSO votes with crops."""

from __future__ import annotations

import gzip
import json
import sys

import numpy as np
import pytest

from tests.conftest import benchmark_script


def _rows(rng: np.random.Generator) -> list[dict]:
    """Two held-out cameras; the second lifts every crop's logit by 4 (its look, not its content).
    A positive frame has one crop well above the frame's others."""

    def sigmoid(z: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-z))

    rows = []
    for source, shift in (("cam_a", 0.0), ("cam_b", 4.0)):
        for i in range(40):
            label = i % 2
            z = rng.normal(-3 + shift, 0.5, 18)
            if label:
                z[rng.integers(18)] += 4
            crops = [round(float(p), 6) for p in sigmoid(z)]
            rows.append(
                {
                    "key": f"{source}/{i}.jpg",
                    "label": label,
                    "held_out": source,
                    "probs": {"full": {"tiles": max(crops)}},
                    "crops": {"full": crops},
                }
            )
    return rows


def test_a_frame_relative_score_survives_a_camera_that_lifts_every_crop(tmp_path, monkeypatch):
    tc = benchmark_script("tile_contrast")
    votes = tmp_path / "v.jsonl.gz"
    votes.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in _rows(np.random.default_rng(0))).encode()))
    out = tmp_path / "out.json"
    monkeypatch.setattr(sys, "argv", ["tile_contrast.py", str(votes), "--out", str(out)])
    tc.main()
    got = json.loads(out.read_text())
    assert got["rows"] == 80 and got["rows_by_source"] == {"cam_a": [40, 20], "cam_b": [40, 20]}
    shipped, relative = got["scores"]["max (shipped)"], got["scores"]["max - mean"]
    # within one camera both rank well; pooled over both, the lifted camera's negatives outrank the
    # other's positives on the max, not on the relative score
    assert shipped["auroc_by_source"]["cam_b"] > 0.9 and relative["auroc_by_source"]["cam_b"] > 0.9
    assert relative["auroc"] > 0.95 and shipped["auroc"] < relative["auroc"] - 0.1
    # a threshold fitted on one camera misplaces the other's on the max
    assert relative["fitted_without_the_source"]["mcc"] > shipped["fitted_without_the_source"]["mcc"] + 0.3


def test_votes_without_crops_are_refused_with_the_flag_that_writes_them(tmp_path, monkeypatch):
    tc = benchmark_script("tile_contrast")
    votes = tmp_path / "v.jsonl"
    row = {k: v for k, v in _rows(np.random.default_rng(1))[0].items() if k != "crops"}
    votes.write_text(json.dumps(row) + "\n")
    monkeypatch.setattr(sys, "argv", ["tile_contrast.py", str(votes), "--out", str(tmp_path / "o.json")])
    with pytest.raises(SystemExit, match="--crops"):
        tc.main()


def test_a_grid_written_beyond_the_voters_own_is_scored_alone_and_left_out_of_the_max(tmp_path, monkeypatch):
    tc = benchmark_script("tile_contrast")
    # given crops of the voter's 18 and then of an extra 4x6 grid, where only the 4x6 crops see the object
    rng = np.random.default_rng(3)
    rows = []
    for source in ("cam_a", "cam_b"):
        for i in range(20):
            own, extra = rng.uniform(0.01, 0.2, 18), rng.uniform(0.01, 0.2, 24)
            extra[5] = 0.99 if i % 2 else extra[5]
            crops = [round(float(p), 6) for p in (*own, *extra)]
            probs = {"full": {"tiles": max(crops[:18])}}
            rows.append(
                {"key": f"{source}/{i}", "label": i % 2, "held_out": source, "probs": probs, "crops": {"full": crops}}
            )
            rows[-1]["crop_grids"] = [[2, 3], [3, 4], [4, 6]]
    votes, out = tmp_path / "v.jsonl", tmp_path / "out.json"
    votes.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(sys, "argv", ["tile_contrast.py", str(votes), "--out", str(out)])
    tc.main()
    scores = json.loads(out.read_text())["scores"]
    # then the 4x6 grid alone ranks every frame right, and the voter's own max (which never saw it) does not
    assert scores["max, 4x6 grid only"]["auroc"] == 1.0
    assert scores["max (shipped)"]["auroc"] < 0.8
    assert {"max, 2x3 grid only", "max, 3x4 grid only"} <= set(scores)
    # with the extra grid, each pair of grids is scored too (the voter's own pair is the shipped max)
    assert scores["max, 3x4 and 4x6 grids"]["auroc"] == scores["max, 2x3 and 4x6 grids"]["auroc"] == 1.0
    assert "max, 2x3 and 3x4 grids" not in scores
    # and a file whose rows mix grids is refused
    rows[0]["crop_grids"] = [[2, 3], [3, 4]]
    votes.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(SystemExit, match="different grids"):
        tc.main()


def test_out_of_fold_votes_are_scored_by_source(tmp_path, monkeypatch):
    tc = benchmark_script("tile_contrast")
    rows = _rows(np.random.default_rng(2))
    for r in rows:  # an OOF row: its fold, not a held-out name
        r["source"], r["fold"] = r.pop("held_out"), 0
    votes, out = tmp_path / "oof.jsonl", tmp_path / "out.json"
    votes.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(sys, "argv", ["tile_contrast.py", str(votes), "--out", str(out)])
    tc.main()
    assert json.loads(out.read_text())["rows_by_source"] == {"cam_a": [40, 20], "cam_b": [40, 20]}
