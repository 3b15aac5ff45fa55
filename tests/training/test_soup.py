"""A weight soup is one network whose weights are its ingredients' mean, and it refuses mismatches."""

import json

import numpy as np
import pytest
import torch

from training.finetune import build_network, load_network, save_checkpoint
from training.soup import main, soup_state, write_soup


def perturbed(seed: int, scale: float = 0.05):
    net = build_network()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return net.eval()


def test_the_soup_loads_as_a_network_whose_weights_are_the_mean(tmp_path):
    a, b = perturbed(1), perturbed(2)
    paths = [save_checkpoint(n, tmp_path / f"{i}.pt", {"seed": i}) for i, n in enumerate((a, b))]
    soup = load_network(write_soup(paths, tmp_path / "soup.pt"))

    loaded = [load_network(p).state_dict() for p in paths]
    for name, value in soup.state_dict().items():
        if value.is_floating_point():  # the mean of the saved (fp16) ingredients, to fp16 precision
            mean = (loaded[0][name].float() + loaded[1][name].float()) / 2
            assert torch.allclose(value.float(), mean, atol=4e-3, rtol=1e-3), name
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        got, first = soup(x), load_network(paths[0])(x)
    assert torch.isfinite(got).all() and not torch.allclose(got, first, atol=1e-2)
    info = json.loads(torch.load(tmp_path / "soup.pt", weights_only=True)["info"])
    assert info["soup_of"] == [str(p) for p in paths] and [i["seed"] for i in info["ingredients"]] == [0, 1]


def test_ingredients_that_do_not_fit_are_refused_with_the_file_named(tmp_path):
    a = save_checkpoint(perturbed(1), tmp_path / "a.pt", {})
    b = save_checkpoint(perturbed(2), tmp_path / "b.pt", {})
    odd = torch.load(b, weights_only=True)
    odd["pool"] = "mean"
    torch.save(odd, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match=r"odd\.pt.*pool"):
        soup_state([a, tmp_path / "odd.pt"])
    odd = torch.load(b, weights_only=True)
    odd["backbone"].pop(next(iter(odd["backbone"])))
    torch.save(odd, tmp_path / "short.pt")
    with pytest.raises(ValueError, match=r"short\.pt.*keys"):
        soup_state([a, tmp_path / "short.pt"])
    with pytest.raises(ValueError, match="at least 2"):
        soup_state([a])


def test_the_command_line_names_a_missing_ingredient(tmp_path, capsys):
    a = save_checkpoint(perturbed(1), tmp_path / "a.pt", {})
    with pytest.raises(SystemExit) as exc:
        main([str(a), str(tmp_path / "gone.pt"), "--out", str(tmp_path / "s.pt")])
    assert exc.value.code == 2 and "gone.pt" in capsys.readouterr().err
    assert not (tmp_path / "s.pt").exists()
    main([str(a), str(a), "--out", str(tmp_path / "s.pt")])
    assert np.isclose(
        float(torch.load(tmp_path / "s.pt", weights_only=True)["head_bias"][0]),
        float(torch.load(a, weights_only=True)["head_bias"][0]),
    )


def test_recalibrated_batch_norm_holds_the_mean_of_the_activations_it_was_shown():
    from training.finetune import recalibrate_bn

    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    batches = [torch.rand(2, 3, 8, 8, generator=g) * (k + 1) for k in range(3)]
    tiles = [torch.rand(1, 2, 3, 8, 8, generator=g) for _ in range(3)]  # (frames, crops, ...) as tiles come
    with torch.no_grad():
        seen = [net[0](x) for x in batches] + [net[0](x.flatten(0, 1)) for x in tiles]
    recalibrate_bn(net, [[(x, 0) for x in batches], [(x, 0) for x in tiles]], batches=3, device="cpu")
    # the cumulative mean over the 6 batches, each batch's channel mean weighed the same
    want = torch.stack([a.mean(dim=(0, 2, 3)) for a in seen]).mean(0)
    assert torch.allclose(net[1].running_mean, want, atol=1e-5)
    assert not net.training and net[1].momentum == 0.1


def test_a_soup_of_networks_that_held_a_source_out_recalibrates_without_that_source(tmp_path):
    import csv

    from training.sample import make_sample
    from training.soup import training_loaders

    data = make_sample(tmp_path / "data", n=24)
    with open(data / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    for i, row in enumerate(rows):
        row["source"] = "left_out" if i % 4 == 0 else "kept"
    with open(data / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    config = {"batch": 4, "big_size": 96, "tiles_batch": 0, "seed": 0, "workers": 7}
    info = {"held_out": "left_out", "sources": ["left_out"], "config": config}
    paths = [save_checkpoint(perturbed(k, 0.005), tmp_path / f"{k}.pt", info) for k in (1, 2)]

    loaders = training_loaders(data, soup_state(paths), workers=0)
    assert len(loaders) == 2  # 224 px and the large view; no tiles without tiles_batch
    assert {s.source for s in loaders[0].dataset.samples} == {"kept"}
    assert loaders[0].batch_size == 4 and loaders[1].batch_size == 8

    plain = torch.load(write_soup(paths, tmp_path / "plain.pt"), weights_only=True)
    fresh = torch.load(write_soup(paths, tmp_path / "bn.pt", bn_data=data, bn_batches=1, workers=0), weights_only=True)
    key = "features.1.conv.1.running_mean"
    assert key in fresh["backbone"] and not torch.allclose(
        fresh["backbone"][key].float(), plain["backbone"][key].float()
    )
    assert json.loads(fresh["info"])["bn_recalibrated"]["batches"] == 1
    assert torch.equal(fresh["head_weight"], plain["head_weight"])
    load_network(tmp_path / "bn.pt")  # and it loads as a network


def test_networks_that_held_out_different_sources_are_not_souped(tmp_path):
    a = save_checkpoint(perturbed(1), tmp_path / "a.pt", {"held_out": "vtti", "sources": ["vtti_wz", "vtti_nds"]})
    b = save_checkpoint(perturbed(2), tmp_path / "b.pt", {"held_out": "gtsdb", "sources": ["gtsdb"]})
    with pytest.raises(ValueError, match=r"b\.pt.*held out \['gtsdb'\].*every source"):
        soup_state([a, b])
    c = save_checkpoint(perturbed(3), tmp_path / "c.pt", {"held_out": "vtti", "sources": ["vtti_nds", "vtti_wz"]})
    soup_state([a, c])  # the same sources, in another order, are one held-out set


def test_too_few_batches_of_a_view_are_refused_rather_than_giving_statistics_of_fewer_views():
    from training.finetune import recalibrate_bn

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    before = net[1].running_mean.clone()
    small = [(torch.rand(2, 3, 8, 8), 0)] * 5
    tiles = [(torch.rand(1, 2, 3, 8, 8), 0)] * 2
    with pytest.raises(ValueError, match=r"loader\(s\) \[1\] hold \[2\] batches.*--bn-batches"):
        recalibrate_bn(net, [small, tiles], batches=3, device="cpu")
    assert torch.equal(net[1].running_mean, before)  # left as it was
    with pytest.raises(ValueError, match="at least 1 batch"):
        recalibrate_bn(net, [small], batches=0, device="cpu")
