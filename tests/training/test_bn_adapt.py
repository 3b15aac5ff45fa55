"""benchmarks/bn_adapt.py: batch-norm statistics taken from a set of frames, and put back after."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import benchmark_script


@pytest.fixture(scope="module")
def ba():
    return benchmark_script("bn_adapt")


@pytest.fixture(scope="module")
def net():
    from detectors.mobilenet import mobilenetv2_features

    return mobilenetv2_features(None)


def frames(seed: int, shade: int, n: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(shade, 30, (n, 64, 64, 3)), 0, 255).astype(np.uint8)


def test_a_camera_own_statistics_change_its_features_and_leave_the_network_as_it_was(ba, net):
    dark = frames(0, 40)
    before = ba.features(net, dark, None)
    stats = ba.bn_stats(net, dark)
    adapted = ba.features(net, dark, stats)
    # a dark camera normalised by its own statistics no longer reads as dark to the later layers
    assert np.abs(adapted - before).max() > 0.1
    # measuring and scoring with other statistics put the network's own back: the baseline is kept
    np.testing.assert_array_equal(ba.features(net, dark, None), before)
    assert all(not m.training for m in ba.norms(net))


def test_statistics_differ_between_a_dark_and_a_bright_camera(ba, net):
    dark, bright = ba.bn_stats(net, frames(1, 40)), ba.bn_stats(net, frames(2, 200))
    first_mean_dark, first_mean_bright = dark[0][0], bright[0][0]
    assert not np.allclose(first_mean_dark.numpy(), first_mean_bright.numpy(), atol=1e-3)
