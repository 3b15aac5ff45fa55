"""`--probe-epochs`: the linear layer trained alone on the frozen ImageNet backbone before fine-tuning."""

import pytest
import torch

from tests.conftest import small_training_rows
from training.finetune import FinetuneConfig, build_network, train_networks


def test_the_probe_moves_the_linear_layer_and_leaves_the_imagenet_backbone_as_it_was():
    # given a few small scenes of either label, and the network the trainer starts from
    samples, images = small_training_rows(5)
    torch.manual_seed(0)
    start = build_network(None)
    # when only the probe runs (no fine-tuning epochs)
    cfg = FinetuneConfig(epochs=0, probe_epochs=2, batch=4, workers=0, seed=0)
    net = train_networks(samples, images, cfg, "cpu", None)["final"]
    # then the linear layer has learnt, while every backbone weight and batch-norm statistic is ImageNet's
    assert not torch.equal(net.head.weight, start.head.weight)
    got, want = net.backbone.state_dict(), start.backbone.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
    # and the backbone trains again afterwards
    assert all(p.requires_grad for p in net.backbone.parameters())


def test_a_negative_probe_length_is_refused():
    with pytest.raises(ValueError, match="probe_epochs is a count of epochs, got -1"):
        FinetuneConfig(probe_epochs=-1)
