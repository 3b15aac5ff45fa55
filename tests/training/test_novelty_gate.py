"""The camera-novelty gate study: what its familiarity scores call known and new."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import REPO, benchmark_script


@pytest.fixture
def gate(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # it imports loso_networks from beside it
    return benchmark_script("novelty_gate")


def _cameras(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    """n rows of each camera: (rows, 3 regimes, 2560) features scattered around its centre."""
    return np.concatenate([c + 0.3 * rng.standard_normal((n, 3, centres.shape[-1])) for c in centres])


def test_a_frame_from_a_camera_never_fitted_is_less_familiar_than_a_known_one(gate):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 2560))
    feats = _cameras(rng, centres[:3], 60)  # three known cameras
    sources = np.repeat(["camvid", "gtsdb", "idd_lite"], 60)
    known = _cameras(rng, centres[:3], 5)[:, 0]
    new = _cameras(rng, centres[3:], 15)[:, 0]  # a fourth camera, never fitted
    fam = gate.fit_rows(gate.NearestViews, feats, sources, np.arange(len(sources)))
    assert fam(known).min() > fam(new).max()
    # the source classifier is sure of its own cameras, and less of a frame half-way between two
    clf = gate.fit_rows(gate.SourceClassifier, feats, sources, np.arange(len(sources)))
    between = (centres[0] + centres[1])[None] / 2
    assert clf(known).min() > 0.9 and clf(between)[0] < clf(known).min()


def test_exactly_one_half_and_a_missing_vote_count_as_no_roadwork(gate):
    y = np.array([1, 0, 1, 0])
    assert gate.mcc(y, np.array([0.9, 0.5, 0.8, 0.1])) == 1.0
    assert gate.mcc(y, np.array([0.5, 0.1, np.nan, 0.2])) == 0.0  # every answer "no roadwork"
