"""benchmarks/small_frame_tiles.py: a 224-px frame scored whole and as the max over its crops."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import benchmark_script


def test_each_way_is_the_max_over_its_own_grid_of_crops_of_a_small_frame():
    from detectors.mobilenet import tile_crops
    from training.finetune import build_network, predict_views
    from training.sample import draw_scene

    small_frame_tiles = benchmark_script("small_frame_tiles")
    net = build_network().eval()
    rng = np.random.default_rng(6)
    views = [np.asarray(draw_scene(rng, bool(i), w=224, h=224)) for i in range(2)]
    got = small_frame_tiles.way_probs(net, views)
    assert set(got) == set(small_frame_tiles.WAYS)
    assert got["whole_224"] == pytest.approx(list(predict_views(net, views, 224, "cpu")), abs=1e-5)
    for way, grid in (("max_2x2", (2, 2)), ("max_2x3", (2, 3)), ("max_3x4", (3, 4))):
        want = [float(predict_views(net, tile_crops(v, (grid,)), 224, "cpu").max()) for v in views]
        assert got[way] == pytest.approx(want, abs=1e-5), way
    for size in small_frame_tiles.CHEAP_SIZES:  # the same 3x4 crops, each resized to `size`
        want = [float(predict_views(net, tile_crops(v, ((3, 4),)), size, "cpu").max()) for v in views]
        assert got[f"max_3x4_at_{size}"] == pytest.approx(want, abs=1e-5), size
    # the tile voter's answer: the max over both of its grids, unlike the whole frame's
    assert got["max_tile_grids"] == pytest.approx(np.maximum(got["max_2x3"], got["max_3x4"]).tolist())
    assert got["max_tile_grids"] != pytest.approx(got["whole_224"], abs=1e-4)
