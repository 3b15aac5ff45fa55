"""`--freeze-bn`: fine-tuning that keeps ImageNet's batch-norm statistics."""

import torch

from tests.conftest import small_training_rows
from training.finetune import FinetuneConfig, build_network, train_networks


def _running_stats(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in net.backbone.state_dict().items() if k.endswith(("running_mean", "running_var"))}


def _train(freeze_bn: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    samples, images = small_training_rows(5)
    torch.manual_seed(0)
    start = build_network(None)
    cfg = FinetuneConfig(epochs=1, batch=4, workers=0, seed=0, freeze_bn=freeze_bn)
    return start, train_networks(samples, images, cfg, "cpu", None)["final"]


def test_frozen_batch_norm_keeps_the_statistics_while_the_weights_learn():
    # given the network the trainer starts from, fine-tuned for an epoch with batch norm frozen
    start, net = _train(freeze_bn=True)
    # then every running statistic is the starting network's
    got, want = _running_stats(net), _running_stats(start)
    assert want and got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
    # while the convolutions and the batch-norm scales have learnt
    assert not torch.equal(net.backbone.features[0][0].weight, start.backbone.features[0][0].weight)
    assert not torch.equal(net.backbone.features[0][1].weight, start.backbone.features[0][1].weight)


def test_without_it_the_statistics_follow_the_training_batches():
    start, net = _train(freeze_bn=False)
    got, want = _running_stats(net), _running_stats(start)
    assert any(not torch.equal(got[k], want[k]) for k in want)
