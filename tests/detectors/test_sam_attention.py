"""SAM's encoder attention with the relative-position bias folded into query and key answers as
transformers' own does, and the SAM voter uses it unless told otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, SamModel
from transformers.models.sam.modeling_sam import SamVisionSdpaAttention

from detectors.model_specs import TINY_SAM
from detectors.sam_attention import FoldedRelPosAttention, fold_relative_position

REPO = Path(__file__).resolve().parents[2]


def tiny_sam_config():
    spec = dict(TINY_SAM)
    return AutoConfig.for_model(spec.pop("model_type"), **spec)


def redrawn(module: torch.nn.Module) -> torch.nn.Module:
    """transformers draws SAM's encoder at std 1e-10 and its position tables at zero: an error in
    the fold would not show. Redraw every matrix so the bias matters."""
    torch.manual_seed(0)
    for p in module.parameters():
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=0.3)
    return module.eval()


@pytest.mark.parametrize("window", [0, 2, 14], ids=["global", "window 2", "window 14"])
@pytest.mark.parametrize("pad_value", [False, True], ids=["value as is", "value padded"])
def test_folded_attention_gives_transformers_answer(window: int, pad_value: bool) -> None:
    # given one attention layer of the encoder (global over a 4x4 grid, or a window) with a bias
    config = tiny_sam_config().vision_config
    config.window_size = max(window, 1)
    layer = redrawn(SamVisionSdpaAttention(config, window))
    side = window or config.image_size // config.patch_size
    hidden = torch.randn(3, side, side, config.hidden_size)
    with torch.inference_mode():
        expected = layer(hidden)[0]
        # when the same layer runs folded
        layer.__class__ = FoldedRelPosAttention
        layer.pad_value = pad_value
        got = layer(hidden)[0]
    # then its output is transformers', and the bias did matter
    assert torch.allclose(got, expected, atol=1e-5)
    without_bias = SamVisionSdpaAttention(config, window)
    without_bias.load_state_dict(layer.state_dict())
    without_bias.use_rel_pos = False
    assert not torch.allclose(without_bias.eval()(hidden)[0], expected, atol=1e-3)


def test_a_folded_encoder_embeds_a_frame_as_transformers_does() -> None:
    model = redrawn(SamModel(tiny_sam_config()))
    pixels = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        expected = model.vision_encoder(pixels).last_hidden_state
        assert fold_relative_position(model) == 2  # the windowed layer and the global one
        got = model.vision_encoder(pixels).last_hidden_state
    assert expected.abs().max() > 0.1
    assert torch.allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("attention, folded", [(None, True), ("transformers", False)])
def test_the_sam_voter_folds_its_encoder_unless_told_otherwise(attention: str | None, folded: bool) -> None:
    from detectors.random_weights import build_random
    from miner.profile import load_profile

    cfg = load_profile(REPO / "configs" / "h100x2.yaml")
    sam = next(v for v in cfg.voters if v.kind == "sam-mask")
    params = {**sam.params, **({"attention": attention} if attention else {})}
    voter = build_random(sam.model_copy(update={"device": "cpu", "params": params}), REPO / "configs", tiny=True)
    kinds = {type(m) for m in voter.inner.unwrap().model.vision_encoder.modules()}
    voter.close()
    assert (FoldedRelPosAttention in kinds) is folded
    assert (SamVisionSdpaAttention in kinds) is not folded


def test_an_unknown_attention_form_is_refused_with_its_key() -> None:
    from pydantic import ValidationError

    from detectors.sam_mask import SamParams

    with pytest.raises(ValidationError, match="attention"):
        SamParams(random_init={"model_type": "sam"}, attention="flash")
