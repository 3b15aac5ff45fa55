"""Deformable attention summed level by level answers as transformers' stacked form does, and
Grounding DINO voters use it unless told otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers.models.grounding_dino.modeling_grounding_dino import MultiScaleDeformableAttention

from detectors.deformable_sampling import LevelSummedDeformableAttention, sum_levels_in_place

REPO = Path(__file__).resolve().parents[2]


def test_level_sums_give_transformers_answer() -> None:
    # given the inputs of one deformable attention over three levels of unequal size
    torch.manual_seed(0)
    shapes = [(8, 10), (4, 5), (2, 3)]
    batch, queries, heads, dim, points = 2, 7, 3, 4, 4
    value = torch.randn(batch, sum(h * w for h, w in shapes), heads, dim)
    locations = torch.rand(batch, queries, heads, len(shapes), points, 2) * 1.2 - 0.1  # some outside
    weights = torch.randn(batch, queries, heads, len(shapes) * points).softmax(-1)
    weights = weights.view(batch, queries, heads, len(shapes), points)
    args = (value, torch.tensor(shapes), shapes, torch.tensor([0, 80, 100]), locations, weights, 64)
    # when transformers' module and the level-summed one run them
    expected = MultiScaleDeformableAttention()(*args)
    got = LevelSummedDeformableAttention()(*args)
    # then the outputs agree, and they are not trivially small
    assert got.shape == expected.shape == (batch, queries, heads * dim)
    assert expected.abs().max() > 0.1
    assert torch.allclose(got, expected, atol=1e-5)


def gdino_voter(sampling: str | None):
    from detectors.random_weights import build_random
    from miner.profile import load_profile

    cfg = load_profile(REPO / "configs" / "h100x2.yaml")
    entry = next(v for v in cfg.voters if v.name == "gdino_t")
    params = {**entry.params, **({"deformable_sampling": sampling} if sampling else {})}
    return build_random(entry.model_copy(update={"device": "cpu", "params": params}), REPO / "configs", tiny=True)


def test_a_grounding_dino_voter_sums_by_level_and_finds_the_same_boxes() -> None:
    # given the profile's Grounding DINO voter built tiny, as transformers has it and as shipped
    torch.manual_seed(0)
    plain = gdino_voter("transformers")
    state = plain.inner.unwrap().model.state_dict()
    shipped = gdino_voter(None)
    shipped.inner.unwrap().model.load_state_dict(state)
    kinds = [type(m) for m in shipped.inner.unwrap().model.modules()]
    assert LevelSummedDeformableAttention in kinds
    assert not any(type(m) is MultiScaleDeformableAttention for m in shipped.inner.unwrap().model.modules())
    assert any(type(m) is MultiScaleDeformableAttention for m in plain.inner.unwrap().model.modules())
    # when both detect on the same frames
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(2)]
    a, b = plain.inner.unwrap().detect(images), shipped.inner.unwrap().detect(images)
    plain.close()
    shipped.close()
    # then they find the same boxes with the same scores
    for x, y in zip(a, b, strict=True):
        assert x.labels == y.labels
        np.testing.assert_allclose(x.xyxy, y.xyxy, atol=1e-4)
        np.testing.assert_allclose(x.scores, y.scores, atol=1e-4)


def test_a_model_without_deformable_attention_is_left_as_it_is() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    assert sum_levels_in_place(model) == 0 and isinstance(model[0], torch.nn.Linear)


def test_an_unknown_sampling_form_is_refused_with_its_key() -> None:
    from pydantic import ValidationError

    from detectors.hf_detr import HFDetectorParams

    with pytest.raises(ValidationError, match="deformable_sampling"):
        HFDetectorParams(random_init={"model_type": "grounding-dino"}, deformable_sampling="stacked")
