"""benchmarks/colour_signal.py: the colour shares a frame holds, by hue band and place."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import benchmark_script


@pytest.fixture(scope="module")
def cs():
    return benchmark_script("colour_signal")


def test_a_traffic_orange_cone_shows_in_the_orange_shares_only(cs):
    frame = np.full((480, 640, 3), 90, np.uint8)  # grey road and sky
    frame[400:460, 180:220] = (255, 110, 0)  # a cone, low in one cell of the 3x4 grid
    f = dict(zip(cs.FEATURES, cs.colour_shares(frame), strict=True))
    assert f["orange_all"] == pytest.approx(60 * 40 / (480 * 640))
    assert f["orange_best_cell"] > 10 * f["orange_all"]  # one cell of 12 holds it all
    assert f["orange_lower"] > f["orange_all"]  # it is in the lower two thirds
    assert f["red_all"] == f["yellow_all"] == 0.0
    assert f["lit"] == 1.0


def test_a_large_frame_is_measured_at_long_side_640(cs):
    frame = np.zeros((1080, 1920, 3), np.uint8)
    frame[:, :960] = (255, 200, 0)  # yellow left half, black right half
    f = dict(zip(cs.FEATURES, cs.colour_shares(frame), strict=True))
    assert f["yellow_all"] == pytest.approx(0.5, abs=0.01) and f["lit"] == pytest.approx(0.5, abs=0.01)
    assert f["yellow_best_cell"] == 1.0 and f["orange_all"] == 0.0
