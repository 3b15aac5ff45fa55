"""benchmarks/flip_tta.py: each served view scored as sent and averaged with its mirror image."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import benchmark_script


@pytest.fixture(scope="module")
def flip_tta():
    return benchmark_script("flip_tta")


def test_each_view_is_averaged_with_its_mirror_and_a_small_frame_has_no_tile_vote(flip_tta):
    from training.finetune import build_network
    from training.sample import draw_scene

    net = build_network().eval()
    big = np.asarray(draw_scene(np.random.default_rng(3), True, w=640, h=360))  # large enough to tile
    small = np.asarray(draw_scene(np.random.default_rng(4), False, w=224, h=224))
    got = flip_tta.both_ways(net, [big, small])
    sent = flip_tta.view_probs(net, [big, small])
    mirrored = flip_tta.view_probs(net, [big[:, ::-1].copy(), small[:, ::-1].copy()])
    assert got["as_sent"] == sent
    for view in ("224", "448"):
        for i in range(2):
            assert got["with_mirror"][view][i] == pytest.approx((sent[view][i] + mirrored[view][i]) / 2)
            assert got["with_mirror"][view][i] != pytest.approx(sent[view][i], abs=1e-6)  # the mirror moved it
    assert got["with_mirror"]["tiles"][0] == pytest.approx((sent["tiles"][0] + mirrored["tiles"][0]) / 2)
    assert got["as_sent"]["tiles"][1] is None and got["with_mirror"]["tiles"][1] is None


def test_a_frame_that_is_its_own_mirror_image_keeps_its_votes(flip_tta):
    from training.finetune import build_network
    from training.sample import draw_scene

    net = build_network().eval()
    half = np.asarray(draw_scene(np.random.default_rng(5), True, w=320, h=360))
    frame = np.concatenate([half, half[:, ::-1]], axis=1)
    got = flip_tta.both_ways(net, [frame])
    for view in ("224", "448", "tiles"):
        assert got["with_mirror"][view][0] == pytest.approx(got["as_sent"][view][0], abs=1e-5)
