"""MixStyle: training passes take other images' channel statistics; eval passes and checkpoints do not change."""

import pytest
import torch

from training.finetune import FinetuneConfig, build_network
from training.mixstyle import attach_mixstyle, mix_styles


def _styled_batch() -> torch.Tensor:
    """Four images of one content under four 'cameras' (channel gain and offset)."""
    g = torch.Generator().manual_seed(0)
    content = torch.randn(1, 3, 64, 64, generator=g)
    gains = torch.tensor([0.5, 1.0, 2.0, 4.0]).view(4, 1, 1, 1)
    offsets = torch.tensor([-1.0, 0.0, 1.0, 3.0]).view(4, 1, 1, 1)
    return content * gains + offsets


def test_mixing_keeps_each_maps_content_and_moves_its_statistics_towards_another_images():
    torch.manual_seed(1)
    x = _styled_batch()
    y = mix_styles(x, alpha=0.1)
    for i in range(4):
        for c in range(3):
            a, b = x[i, c].flatten(), y[i, c].flatten()
            # the same map up to a positive scale and a shift: content kept, style changed
            assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.9999
    means_in, means_out = x.mean(dim=(2, 3)), y.mean(dim=(2, 3))
    assert torch.all(means_out >= means_in.min(dim=0).values - 1e-4)
    assert torch.all(means_out <= means_in.max(dim=0).values + 1e-4)
    assert not torch.allclose(means_in, means_out, atol=1e-3)
    # one image has no other to borrow from
    assert torch.equal(mix_styles(x[:1], alpha=0.1), x[:1])


def test_the_network_mixes_in_training_only_and_its_weights_are_unchanged():
    torch.manual_seed(0)
    plain, mixed = build_network(), build_network()
    mixed.load_state_dict(plain.state_dict())
    handles = attach_mixstyle(mixed.backbone.features, p=1.0)
    assert len(handles) == 3
    assert set(mixed.state_dict()) == set(plain.state_dict())
    x = _styled_batch()
    with torch.no_grad():
        plain.eval(), mixed.eval()
        assert torch.allclose(plain(x), mixed(x))
        plain.backbone.train(), mixed.backbone.train()
        assert not torch.allclose(plain.backbone.features(x), mixed.backbone.features(x))
    for h in handles:
        h.remove()


def test_bad_settings_are_refused_with_the_value_named():
    features = build_network().backbone.features
    with pytest.raises(ValueError, match="probability"):
        attach_mixstyle(features, p=0.0)
    with pytest.raises(ValueError, match="outside the 19 feature blocks"):
        attach_mixstyle(features, p=0.5, at=(25,))
    with pytest.raises(ValueError, match="1.5"):
        FinetuneConfig(mixstyle=1.5)
