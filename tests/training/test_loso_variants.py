"""Comparing one recipe's leave-one-source-out networks across seeds and training lengths."""

from __future__ import annotations

import argparse
import gzip
import json

import numpy as np
import pytest

from tests.conftest import REPO, benchmark_script, small_training_rows


def _votes(probs: list[float]) -> list[dict]:
    labels = [1, 0, 1, 0]
    return [
        {
            "key": f"k{i}",
            "label": y,
            "source": "camvid" if i < 2 else "vtti_wz",
            "probs": {"v0.2": {"224": p}, "full": {"224": p, "tiles": p}},
        }
        for i, (y, p) in enumerate(zip(labels, probs, strict=True))
    ]


@pytest.fixture
def variants(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # it imports loso_networks from beside it
    return benchmark_script("loso_variants")


def test_variants_are_scored_on_the_same_rows_and_seeds_can_be_averaged(variants, tmp_path):
    a = tmp_path / "a.jsonl"
    a.write_text("".join(json.dumps(r) + "\n" for r in _votes([0.9, 0.2, 0.4, 0.6])))
    b = tmp_path / "b.jsonl.gz"  # committed vote files are gzipped
    b.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in _votes([0.7, 0.4, 0.8, 0.2])).encode()))
    out = tmp_path / "out.json"
    variants.main(
        [
            f"seed0={a}",
            f"seed1={b}",
            "--mean",
            "both=seed0,seed1",
            "--write-mean",
            str(tmp_path / "m"),
            "--out",
            str(out),
        ]
    )
    res = json.loads(out.read_text())
    assert res["n_rows"] == 4
    seed0 = res["variants"]["seed0"]
    # k2 (roadwork, 0.4) is missed and k3 (street, 0.6) called roadwork: MCC at 0.5 is 0
    assert seed0["views"]["v0.2@224"]["mcc_at_0.5"] == 0.0
    assert seed0["accuracy_by_source"]["v0.2@224"] == {"camvid": 1.0, "vtti_wz": 0.0}
    # the two seeds' mean gets every row right, and its votes are written for `loso_networks.py score`
    assert res["variants"]["both"]["views"]["full@tiles"]["mcc_at_0.5"] == 1.0
    # how far the two seeds land apart, on each camera (the mean is not a run of its own)
    assert res["spread"]["variants"] == ["seed0", "seed1"]
    assert res["spread"]["accuracy_by_source"]["v0.2@224"] == {"camvid": [1.0, 1.0], "vtti_wz": [0.0, 1.0]}
    assert res["spread"]["auroc"]["full@tiles"] == [0.75, 1.0]
    mean = [json.loads(x) for x in (tmp_path / "m" / "both.jsonl").read_text().splitlines()]
    assert np.isclose(mean[2]["probs"]["full"]["tiles"], 0.6)
    with pytest.raises(SystemExit):
        variants.main([f"seed0={a}", "--mean", "both=seed0,seed9", "--out", str(out)])


def test_each_variant_may_be_described_right_after_it(variants, tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps(r) + "\n" for r in _votes([0.9, 0.2, 0.4, 0.6])))
    b.write_text("".join(json.dumps(r) + "\n" for r in _votes([0.7, 0.4, 0.8, 0.2])))
    out = tmp_path / "out.json"
    variants.main(
        [f"seed0={a}", "--describe", "seed0=first", f"seed1={b}", "--describe", "seed1=second", "--out", str(out)]
    )
    res = json.loads(out.read_text())["variants"]
    assert {n: v["made_by"] for n, v in res.items()} == {"seed0": "first", "seed1": "second"}


def test_ranking_inside_each_camera_is_scored_where_it_has_both_labels(variants, tmp_path):
    rows = _votes([0.9, 0.2, 0.4, 0.6]) + [
        {"key": "k4", "label": 0, "source": "idd_lite", "probs": {"v0.2": {"224": 0.7}}},
        {"key": "k5", "label": 1, "source": "idd_lite", "probs": {"v0.2": {"224": 0.3}}},
        {"key": "k6", "label": 1, "source": "idd_lite", "probs": {"v0.2": {"224": 0.8}}},
        {"key": "k7", "label": 0, "source": "dawn_fog", "probs": {"v0.2": {"224": 0.1}}},
    ]
    votes = tmp_path / "oof.jsonl"
    votes.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.json"
    variants.main([f"in_fold={votes}", "--out", str(out)])
    by_source = json.loads(out.read_text())["variants"]["in_fold"]["auroc_by_source"]
    # idd_lite: one positive above its negative, one below; dawn_fog has one label, nothing to rank
    assert by_source["v0.2@224"] == {"camvid": 1.0, "dawn_fog": None, "idd_lite": 0.5, "vtti_wz": 0.0}
    assert by_source["full@224"] == {"camvid": 1.0, "vtti_wz": 0.0}  # idd_lite's rows have no full view


def test_score_refuses_loso_votes_for_a_voter_outside_the_pool(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    loso = benchmark_script("loso_networks")
    args = argparse.Namespace(
        consensus=REPO / "models" / "consensus-cpu.json",
        out=tmp_path / "out.json",
        loso_votes=["l0_nonesuch=x.jsonl"],
    )
    with pytest.raises(SystemExit, match="l0_nonesuch=x.jsonl.*VOTER=PATH"):
        loso.score(args)


def test_score_on_some_held_out_sources_pools_their_rows_alone(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    loso = benchmark_script("loso_networks")
    args = argparse.Namespace(
        consensus=REPO / "models" / "consensus-cpu.json", out=tmp_path / "out.json", loso_votes=[], held_out="gtsdb"
    )
    loso.score(args)
    out = json.loads(args.out.read_text())
    assert list(out["held_out"]) == ["gtsdb"] and out["scored_held_out"] == ["gtsdb"]
    gtsdb = out["held_out"]["gtsdb"]
    for regime in ("v0.2", "letterbox", "full"):  # every row pooled is a GTSDB row
        assert out["all_held_out"][regime]["loso"] == gtsdb[regime]["loso"]
    args.held_out = "gtsdb,nowhere"
    with pytest.raises(SystemExit, match=r"--held-out 'gtsdb,nowhere': \['nowhere'\] are not among vtti, "):
        loso.score(args)


def test_training_keeps_a_copy_of_the_network_after_a_chosen_epoch(tmp_path):
    import torch

    from training.finetune import FinetuneConfig, train_networks

    samples, images = small_training_rows(3)
    cfg = FinetuneConfig(epochs=2, batch=4, workers=0)
    nets = train_networks(samples, images, cfg, "cpu", None, snapshot_epochs=(1,))
    assert set(nets) == {"epoch1", "final"}
    # the snapshot is a copy: the second epoch moved the final network's weights, not the copy's
    assert not torch.equal(nets["epoch1"].head.weight, nets["final"].head.weight)
    with pytest.raises(ValueError, match=r"snapshot epochs \[2\] are not between 1 and 1"):
        train_networks(samples, images, cfg, "cpu", None, snapshot_epochs=(2,))


def test_a_weight_average_is_the_mean_of_the_steps_from_its_epoch_on_with_the_last_step_beside_it(monkeypatch):
    import torch

    from training.finetune import FinetuneConfig, train_networks

    seen: list[torch.Tensor] = []  # the head's weights each time a step joins the average
    update = torch.optim.swa_utils.AveragedModel.update_parameters

    def recording(self, model):
        seen.append(model.head.weight.detach().clone())
        return update(self, model)

    monkeypatch.setattr(torch.optim.swa_utils.AveragedModel, "update_parameters", recording)
    samples, images = small_training_rows(4)
    steps = {}
    for start in (3, 2):
        seen.clear()
        cfg = FinetuneConfig(epochs=3, batch=4, workers=0, average_from=start)
        nets = train_networks(samples, images, cfg, "cpu", None, snapshot_epochs=(1,))
        assert set(nets) == {"epoch1", "final", "last_step"}
        steps[start] = len(seen)
        assert torch.allclose(nets["final"].head.weight, torch.stack(seen).mean(0), atol=1e-6)
        assert torch.equal(seen[-1], nets["last_step"].head.weight)  # the last step is in the average
        # the average's batch-norm statistics are its own, computed afresh on the training views
        name = "features.1.conv.1.running_mean"
        mean = dict(nets["final"].backbone.named_buffers())[name]
        assert not torch.allclose(mean, dict(nets["last_step"].backbone.named_buffers())[name])
        assert not nets["final"].training
    assert steps[3] > 0 and steps[2] == 2 * steps[3]  # from epoch 2: epochs 2 and 3, from 3: epoch 3 alone


def test_the_last_step_beside_a_weight_average_is_the_network_trained_without_one():
    """The pairing's premise: averaging only watches the trajectory, so a run's last step is the
    network the same seed trains with the option off (on a GPU the two runs' kernels may still differ)."""
    import torch

    from training.finetune import FinetuneConfig, train_networks

    samples, images = small_training_rows(5)
    plain = train_networks(samples, images, FinetuneConfig(epochs=3, batch=4, workers=0), "cpu", None)["final"]
    paired = train_networks(samples, images, FinetuneConfig(epochs=3, batch=4, workers=0, average_from=2), "cpu", None)
    for (name, a), b in zip(plain.state_dict().items(), paired["last_step"].state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not torch.equal(plain.head.weight, paired["final"].head.weight)


def test_a_weight_average_from_outside_the_epochs_is_refused():
    from training.finetune import FinetuneConfig

    with pytest.raises(ValueError, match=r"average_from is the epoch \(1 to epochs, 14\).*got 15"):
        FinetuneConfig(average_from=15)
    with pytest.raises(ValueError, match="got -1"):
        FinetuneConfig(average_from=-1)


def test_loso_last_step_votes_need_a_weight_average(monkeypatch, tmp_path, capsys):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    loso = benchmark_script("loso_networks")
    argv = ["loso_networks.py", "train", "--data", str(tmp_path), "--out", str(tmp_path / "v.jsonl")]
    monkeypatch.setattr("sys.argv", [*argv, "--last-step-out", str(tmp_path / "last.jsonl")])
    with pytest.raises(SystemExit, match="--last-step-out.*set --average-from"):
        loso.main()


def test_an_oof_run_is_built_from_a_gzipped_votes_file_as_from_a_plain_one(tmp_path):
    from training.finetune import write_oof_run

    plain = tmp_path / "v.jsonl"
    plain.write_text("".join(json.dumps({**r, "group": r["key"]}) + "\n" for r in _votes([0.9, 0.2, 0.4, 0.6])))
    packed = tmp_path / "v.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    a = write_oof_run(plain, tmp_path / "a", {"224": "l0_x"})
    b = write_oof_run(packed, tmp_path / "b", {"224": "l0_x"})
    rows = (a / "predictions.jsonl").read_text()
    assert rows == (b / "predictions.jsonl").read_text() and len(rows.splitlines()) == 8


def test_networks_of_different_seeds_are_scored_on_the_same_held_out_views(tmp_path):
    from training.datasets import Sample
    from training.finetune import FinetuneConfig, build_network, held_out_probs
    from training.sample import draw_scene

    rng = np.random.default_rng(4)
    images = [np.asarray(draw_scene(rng, bool(i % 2), w=640, h=360)) for i in range(2)]
    samples = [Sample(key=f"{i}.jpg", label=i % 2, source="synthetic") for i in range(2)]
    net = build_network().eval()
    # the training seed does not move the views (v0.2 draws a random crop and augmentation level)
    a = held_out_probs(net, samples, images, FinetuneConfig(seed=0), "cpu")
    b = held_out_probs(net, samples, images, FinetuneConfig(seed=1), "cpu")
    assert a == b
    # the view seed does
    c = held_out_probs(net, samples, images, FinetuneConfig(view_seed=7), "cpu")
    assert c[0] != a[0]


def test_rows_with_crops_give_every_tile_crop_whose_max_is_the_tile_vote():
    from training.datasets import Sample
    from training.finetune import FinetuneConfig, build_network, held_out_rows
    from training.sample import draw_scene

    rng = np.random.default_rng(5)
    images = [np.asarray(draw_scene(rng, bool(i % 2), w=960, h=540)) for i in range(2)]
    samples = [Sample(key=f"{i}.jpg", label=i % 2, source="synthetic") for i in range(2)]
    net = build_network().eval()
    rows = held_out_rows(net, samples, images, [0, 1], FinetuneConfig(), "cpu", with_crops=True, held_out="x")
    for row in rows:
        # only the full-size view is large enough to tile; 224-px regimes have no crops, as no tile vote
        assert set(row["crops"]) == {r for r, views in row["probs"].items() if "tiles" in views} == {"full"}
        crops = row["crops"]["full"]
        assert len(crops) == 18 and max(crops) == pytest.approx(row["probs"]["full"]["tiles"], abs=1e-5)
    assert "crops" not in held_out_rows(net, samples, images, [0], FinetuneConfig(), "cpu")[0]


def test_a_run_cut_short_is_compared_on_the_rows_it_has_and_the_user_is_told(variants, tmp_path, capsys):
    full, short = tmp_path / "full.jsonl", tmp_path / "short.jsonl"
    full.write_text("".join(json.dumps(r) + "\n" for r in _votes([0.9, 0.2, 0.4, 0.6])))
    short.write_text("".join(json.dumps(r) + "\n" for r in _votes([0.7, 0.4, 0.8, 0.2])[:3]))
    out = tmp_path / "out.json"
    variants.main([f"shipped={full}", f"cut={short}", "--out", str(out)])
    assert json.loads(out.read_text())["n_rows"] == 3
    assert "scoring the 3 rows every variant has; more in {'shipped': 4}" in capsys.readouterr().out


def test_each_view_gets_the_trained_weights_with_batch_norm_statistics_of_its_own():
    """`view_statistics`: one network per training view, the same weights as "final", normalised by
    that view's statistics; a 224-px and a 448-px view of one frame give different activations, so
    the two networks' statistics differ."""
    import torch

    from training.finetune import FinetuneConfig, train_networks, training_views

    samples, images = small_training_rows(7)
    cfg = FinetuneConfig(epochs=2, batch=4, workers=0, average_from=2)
    nets = train_networks(samples, images, cfg, "cpu", None, view_statistics=True)
    assert training_views(cfg) == ("224", "448")
    assert set(nets["views"]) == {"224", "448"}
    final = dict(nets["final"].named_parameters())
    for view in training_views(cfg):
        for name, p in nets["views"][view].named_parameters():
            assert torch.equal(p, final[name]), (view, name)
        assert not nets["views"][view].training
    small, large = (dict(nets["views"][v].named_buffers()) for v in ("224", "448"))
    means = [k for k in small if k.endswith("running_mean")]
    assert any(not torch.allclose(small[k], large[k]) for k in means)


def test_merged_view_rows_take_each_view_from_its_own_network():
    from training.finetune import merge_view_rows

    def rows(tag: float) -> list[dict]:
        return [
            {
                "key": f"{i}.jpg",
                "probs": {"full": {"224": tag, "448": tag, "tiles": tag, "small_tiles": tag}, "v0.2": {"224": tag}},
                "crops": {"full": [tag]},
            }
            for i in range(2)
        ]

    merged = merge_view_rows({"224": rows(0.1), "448": rows(0.2), "tiles": rows(0.3)})
    assert merged[1]["probs"] == {
        "full": {"224": 0.1, "448": 0.2, "tiles": 0.3, "small_tiles": 0.3},
        "v0.2": {"224": 0.1},
    }
    assert merged[0]["crops"] == {"full": [0.3]}
    swapped = rows(0.2)[::-1]
    with pytest.raises(ValueError, match="view 448's row 0 is '1.jpg', not '0.jpg'"):
        merge_view_rows({"224": rows(0.1), "448": swapped})
