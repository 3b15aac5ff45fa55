"""`roadwork train backbone` on the CPU, tiny: checkpoint, head, OOF run, fit, and a profile that uses them."""

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from roadwork.cli import app
from tests.conftest import REPO
from tests.test_cli import invoke
from training.copy_paste import PasteBank
from training.datasets import load_folder
from training.sample import make_sample

runner = CliRunner()


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return make_sample(tmp_path_factory.mktemp("ft") / "sample", n=32)  # 16 train rows: two folds of 8


def test_train_backbone_then_fit_then_eval_with_the_two_voter_profile(sample, tmp_path):
    # given a fine-tune of one epoch with two group folds on the sample's train split (batches small
    # enough that every view of a fold's 8 rows trains)
    ckpt, head = tmp_path / "bb.pt", tmp_path / "head.npz"
    invoke(
        "train",
        "backbone",
        "--data",
        str(sample),
        "--out",
        str(ckpt),
        "--head",
        str(head),
        "--epochs",
        "1",
        "--batch",
        "4",
        "--folds",
        "2",
        "--workers",
        "0",
        "--freeze-bn",
        "--lr",
        "1e-4",
    )
    manifest = json.loads((tmp_path / "bb.manifest.json").read_text())
    assert manifest["n_images"] == 16 and set(manifest["cv"]) >= {"v0.2@224", "letterbox@448", "full@224"}
    # the recipe's options reach the network's config, as `python -m training.finetune` passes them
    assert (manifest["config"]["freeze_bn"], manifest["config"]["lr"], manifest["config"]["epochs"]) == (True, 1e-4, 1)
    # a network trained elsewhere (python -m training.finetune on a GPU box) and copied back with its
    # OOF votes gets the same manifest, head and OOF run from `roadwork train package`
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(ckpt, elsewhere / "bb.pt")
    shutil.copy(tmp_path / "bb.oof.jsonl", elsewhere / "bb.oof.jsonl")
    out = invoke("train", "package", "--checkpoint", str(elsewhere / "bb.pt"), "--head", str(elsewhere / "h.npz"))
    assert "OOF run for `roadwork fit`" in out.output and "bb.manifest.json" in out.output.replace("\n", "")
    assert json.loads((elsewhere / "bb.manifest.json").read_text())["cv"] == manifest["cv"]
    assert (elsewhere / "h.oof" / "predictions.jsonl").read_text() == (
        tmp_path / "head.oof" / "predictions.jsonl"
    ).read_text()
    # copied back without its OOF votes, it says what is missing instead of leaving `fit` nothing
    (elsewhere / "bb.oof.jsonl").unlink()
    out = invoke("train", "package", "--checkpoint", str(elsewhere / "bb.pt"), "--head", str(elsewhere / "h2.npz"))
    assert "no OOF run" in out.output and "bb.oof.jsonl is not there" in out.output.replace("\n", "")
    # and a file that is not such a checkpoint is refused with its name: not torch, or torch without
    # the training info (a bare state dict)
    import torch

    (elsewhere / "x.pt").write_bytes(b"not a checkpoint")
    torch.save({"features.0.0.weight": torch.zeros(1)}, elsewhere / "bare.pt")
    bad = runner.invoke(app, ["train", "package", "--checkpoint", str(elsewhere / "x.pt"), "--head", "h.npz"])
    assert bad.exit_code != 0 and "x.pt' cannot be read as a torch checkpoint" in bad.output
    bad = runner.invoke(app, ["train", "package", "--checkpoint", str(elsewhere / "bare.pt"), "--head", "h.npz"])
    assert bad.exit_code != 0 and "holds no training info (key 'info')" in bad.output.replace("\n", "")
    bad = runner.invoke(app, ["train", "package", "--checkpoint", str(elsewhere / "gone.pt"), "--head", "h.npz"])
    assert bad.exit_code != 0 and "gone.pt' not found" in bad.output.replace("\n", "")
    # the OOF run has one row per (image, regime) with both voters' votes
    rows = [json.loads(x) for x in (tmp_path / "head.oof" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 16 * 3 and {v["voter"] for v in rows[0]["votes"]} == {"l0_head", "l0_detail"}
    # when the embedded profile's whole-frame voter, at 224 and 448 px, points at the new network
    profile = yaml.safe_load((REPO / "configs" / "cpu.yaml").read_text())
    (head_voter,) = [v for v in profile["voters"] if v["name"] == "l0_head"]
    detail = copy.deepcopy(head_voter)
    detail["name"] = "l0_detail"
    detail["params"]["backbone"]["input_size"] = 448
    profile["voters"] = [head_voter, detail]
    for voter in profile["voters"]:
        voter["params"]["backbone"]["weights"] = str(ckpt)
        voter["params"]["head"] = str(head)
        voter["long_side"] = [0, None]  # every frame size: these two score the whole frame everywhere
    profile["consensus"]["weights"] = str(tmp_path / "consensus.json")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(profile))
    # and the consensus is fitted for it, then two regimes are scored
    invoke(
        "fit",
        "--profile",
        str(tmp_path / "p.yaml"),
        "--run",
        str(tmp_path / "head.oof"),
        "--out",
        str(tmp_path / "consensus.json"),
    )
    invoke(
        "eval",
        "--data",
        str(sample),
        "--split",
        "dev",
        "--config",
        str(tmp_path / "p.yaml"),
        "--regime",
        "v0.2,full",
        "--out",
        str(tmp_path / "run"),
    )
    # then each regime has its run and the side-by-side table names both
    for regime in ("v0.2", "full"):
        m = json.loads((tmp_path / "run" / regime / "metrics.json").read_text())
        assert m["n"] == 16 and m["transform"] == regime
        votes = json.loads((tmp_path / "run" / regime / "predictions.jsonl").read_text().splitlines()[0])["votes"]
        assert {v["voter"] for v in votes} == {"l0_head", "l0_detail"}
    assert "| | v0.2 | full |" in (tmp_path / "run" / "regimes.md").read_text()


def test_eval_refuses_an_unknown_regime_with_the_choices(sample):
    result = runner.invoke(app, ["eval", "--data", str(sample), "--regime", "v0.2,crop"])
    assert result.exit_code == 2 and "v0.2, letterbox, full" in result.output


def _boxed_folder(root: Path) -> Path:
    """Two positives with a boxed orange 'cone' each, two dashcam-like negatives."""
    (root / "images" / "web").mkdir(parents=True)
    (root / "boxes" / "web").mkdir(parents=True)
    (root / "boxes" / "web" / "classes.txt").write_text("traffic_cone\ncar\n")
    lines = ["path,label,source,split,group"]
    for i in range(2):
        img = np.full((120, 160, 3), 90, np.uint8)
        img[40:100, 60:90] = (255, 110, 0)
        Image.fromarray(img).save(root / "images" / "web" / f"p{i}.jpg")
        (root / "boxes" / "web" / f"p{i}.txt").write_text("0 0.46875 0.583 0.1875 0.5\n1 0.1 0.1 0.05 0.05\n")
        lines.append(f"images/web/p{i}.jpg,1,web,train,g{i}")
    return root, lines


def test_copy_paste_puts_boxed_objects_into_a_street_frame(tmp_path):
    root, lines = _boxed_folder(tmp_path)
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    ds = load_folder(root)
    bank = PasteBank.from_samples(root, ds.samples)
    assert len(bank.cutouts) == 2 and {c.kind for c in bank.cutouts} == {"cone"}  # the car box is not roadwork
    street = np.full((360, 640, 3), 60, np.uint8)
    out = bank.paste(street, np.random.default_rng(0))
    assert out.shape == street.shape and street.mean() == 60  # the input is not modified
    changed = np.abs(out.astype(int) - street).sum(axis=2) > 30
    rows = np.nonzero(changed.any(axis=1))[0]
    assert changed.sum() > 50 and rows.min() > 360 * 0.3  # on the road, not in the sky
    assert out[changed][:, 0].mean() > out[changed][:, 2].mean()  # orange, like the cut-out


def test_copy_paste_without_boxes_says_what_it_expected(tmp_path):
    root, lines = _boxed_folder(tmp_path)
    for f in (root / "boxes" / "web").glob("p*.txt"):
        f.unlink()
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="classes.txt"):
        PasteBank.from_samples(root, load_folder(root).samples)


def test_fit_joins_each_voters_oof_run_by_image_and_refuses_label_conflicts():
    from training.evaluate import merge_runs

    def row(key, label, voter, p):
        return {"key": key, "label": label, "votes": [{"voter": voter, "level": "L0", "prob": p}]}

    a = [row("x#v0.2", 1, "l0_head", 0.9), row("y#v0.2", 0, "l0_head", 0.2)]
    b = [row("x#v0.2", 1, "l0_paste", 0.8), row("z#full", 1, "l0_paste", 0.7)]
    merged = {r["key"]: r for r in merge_runs([a, b])}
    assert [v["voter"] for v in merged["x#v0.2"]["votes"]] == ["l0_head", "l0_paste"]
    assert set(merged) == {"x#v0.2", "y#v0.2", "z#full"}
    with pytest.raises(ValueError, match="disagree on the label of 'y#v0.2'"):
        merge_runs([a, [row("y#v0.2", 1, "l0_paste", 0.5)]])


def test_fold_networks_rescore_the_tile_view_at_full_resolution(tmp_path):
    # given a dataset of 640x480 frames (the lent GPU trains on a downscaled copy of such photos)
    import csv

    from training.finetune import FinetuneConfig, finetune
    from training.oof_rescore import main as rescore_main
    from training.sample import draw_scene

    rng = np.random.default_rng(1)
    (tmp_path / "big" / "images").mkdir(parents=True)
    (tmp_path / "small" / "images").mkdir(parents=True)
    rows = []
    for i in range(16):  # two folds of 8: a full batch of every view
        image = draw_scene(rng, bool(i % 2), w=640, h=480)
        image.save(tmp_path / "big" / "images" / f"{i}.jpg")
        image.resize((320, 240)).save(tmp_path / "small" / "images" / f"{i}.jpg")
        rows.append(
            {"path": f"images/{i}.jpg", "label": i % 2, "source": "synthetic", "split": "train", "group": f"g{i}"}
        )
    for name in ("big", "small"):
        with open(tmp_path / name / "labels.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    # when the folds train on the small copy and keep their networks
    cfg = FinetuneConfig(epochs=1, batch=4, folds=2, workers=0, save_folds=True)
    finetune(load_folder(tmp_path / "small").select(split="train"), tmp_path / "bb.pt", cfg, "cpu")
    small_rows = [json.loads(x) for x in (tmp_path / "bb.oof.jsonl").read_text().splitlines()]
    assert all("tiles" not in r["probs"]["full"] for r in small_rows)  # 320 px: the tile voter abstains
    # and the small-frame tile view is there on every frame under 448 px
    assert all(0.0 <= r["probs"][regime]["small_tiles"] <= 1.0 for r in small_rows for regime in ("v0.2", "full"))
    assert (tmp_path / "bb.fold0.pt").is_file() and (tmp_path / "bb.fold1.pt").is_file()
    # then rescoring on the full-size copy adds the tile votes and keeps every other view
    rescore_main(
        [
            "--data",
            str(tmp_path / "big"),
            "--oof",
            str(tmp_path / "bb.oof.jsonl"),
            "--folds",
            str(tmp_path / "bb"),
            "--views",
            "tiles,small_tiles",
            "--out",
            str(tmp_path / "re.jsonl"),
        ]
    )
    big_rows = [json.loads(x) for x in (tmp_path / "re.jsonl").read_text().splitlines()]
    assert all(0.0 <= r["probs"]["full"]["tiles"] <= 1.0 for r in big_rows)
    assert all("small_tiles" not in r["probs"]["full"] for r in big_rows)  # 640 px: the tile voter's
    # with the size of the frame each vote was made on (`roadwork fit --profile` splits by it)
    assert {r["long_side"]["full"] for r in small_rows} == {320} and {r["long_side"]["full"] for r in big_rows} == {640}
    assert {r["long_side"]["v0.2"] for r in big_rows} == {224}
    assert [r["probs"]["v0.2"] for r in big_rows] == [r["probs"]["v0.2"] for r in small_rows]
    # and a missing fold network is named
    (tmp_path / "bb.fold1.pt").unlink()
    with pytest.raises(FileNotFoundError, match="bb.fold1.pt"):
        rescore_main(
            [
                "--data",
                str(tmp_path / "big"),
                "--oof",
                str(tmp_path / "bb.oof.jsonl"),
                "--folds",
                str(tmp_path / "bb"),
                "--out",
                str(tmp_path / "x.jsonl"),
            ]
        )


def test_erase_turns_a_boxed_positive_into_a_negative_of_the_same_scene(tmp_path):
    from training.copy_paste import EraseBank
    from training.finetune import Banks, FinetuneConfig, _Views

    root, lines = _boxed_folder(tmp_path)
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    samples = list(load_folder(root).samples)
    bank = EraseBank.from_samples(root, samples)
    assert set(bank.boxes) == {"images/web/p0.jpg", "images/web/p1.jpg"}
    image = samples[0].load()
    out = bank.erase(image, samples[0].key, np.random.default_rng(0))
    cone = (slice(45, 95), slice(65, 85))
    assert image[cone][..., 0].mean() - image[cone][..., 2].mean() > 200  # orange before
    assert abs(out[cone][..., 0].mean() - out[cone][..., 2].mean()) < 30  # grey road after
    assert np.abs(out[:, :40].astype(int) - image[:, :40]).max() < 10  # the rest of the frame kept
    # a close-up whose boxes fill most of the frame is not used: erasing it leaves no scene
    with pytest.raises(ValueError, match="no positive training row has schema boxes"):
        EraseBank.from_samples(root, samples, max_cover=0.05)
    # in training, an erased positive is served with label 0
    cfg = FinetuneConfig(erase_prob=1.0)
    views = _Views(samples, [s.load() for s in samples], cfg, 64, Banks.build(root, samples, cfg))
    assert [views[i][1] for i in range(len(samples))] == [0.0, 0.0]


def test_paste_into_limits_which_cameras_negatives_become_pasted_positives(tmp_path):
    from training.finetune import Banks, FinetuneConfig, _Views

    root, lines = _boxed_folder(tmp_path)
    for source in ("camvid", "idd_lite"):  # one street negative from each of two vehicle cameras
        (root / "images" / source).mkdir(parents=True)
        Image.fromarray(np.full((240, 320, 3), 70, np.uint8)).save(root / "images" / source / "n.jpg")
        lines.append(f"images/{source}/n.jpg,0,{source},train,{source}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    samples = list(load_folder(root).samples)

    def served_labels(cfg: FinetuneConfig) -> dict[str, float]:
        views = _Views(samples, [s.load() for s in samples], cfg, 64, Banks.build(root, samples, cfg))
        return {s.source: views[i][1] for i, s in enumerate(samples) if s.label == 0}

    # by default every vehicle camera's negatives may be pasted into
    assert served_labels(FinetuneConfig(paste_prob=1.0)) == {"camvid": 1.0, "idd_lite": 1.0}
    # with paste_into, the cameras left out keep their real negatives
    assert served_labels(FinetuneConfig(paste_prob=1.0, paste_into=("camvid",))) == {"camvid": 1.0, "idd_lite": 0.0}
    # a name that is not a vehicle-camera source (a typo) is refused with the choices
    with pytest.raises(ValueError, match=r"\['idd-lite'\] are not vehicle-camera sources; choose from \[.*'idd_lite'"):
        FinetuneConfig(paste_prob=1.0, paste_into=("camvid", "idd-lite"))
    # and so is the command line's, before any training
    result = runner.invoke(
        app, ["train", "backbone", "--data", str(root), "--paste-prob", "0.3", "--paste-into", "idd-lite"]
    )
    assert result.exit_code != 0 and "not vehicle-camera sources" in result.output


def test_tiles_batch_trains_the_network_through_the_tile_voters_max_over_crops(tmp_path):
    import csv
    from dataclasses import replace

    from training.finetune import Banks, FinetuneConfig, _Views, finetune
    from training.sample import draw_scene

    rng = np.random.default_rng(2)
    rows = []
    for name, size in (("big", (640, 480)), ("small", (320, 240))):
        (tmp_path / name / "images").mkdir(parents=True)
        for i in range(16):  # two folds of 8: a full batch of every view
            draw_scene(rng, bool(i % 2), w=size[0], h=size[1]).save(tmp_path / name / "images" / f"{i}.jpg")
        rows = [
            {"path": f"images/{i}.jpg", "label": i % 2, "source": "synthetic", "split": "train", "group": f"g{i}"}
            for i in range(16)
        ]
        with open(tmp_path / name / "labels.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    big = load_folder(tmp_path / "big").select(split="train")
    cfg = FinetuneConfig(epochs=1, batch=4, workers=0, tiles_batch=2)
    # a full-size frame is served to the network as the tile voter's 18 crops, with its label
    crops, label = _Views(list(big.samples), [s.load() for s in big.samples], cfg, "tiles", Banks())[1]
    assert crops.shape == (18, 3, 224, 224) and label == 1.0
    # training with it writes a checkpoint that records the setting
    from detectors.mobilenet import read_checkpoint

    finetune(big, tmp_path / "bb.pt", replace(cfg, folds=2, oof_crops=True, extra_crop_grids=((4, 6),)), "cpu")
    assert json.loads(read_checkpoint(tmp_path / "bb.pt")["info"])["config"]["tiles_batch"] == 2
    # and with --oof-crops each OOF row keeps its full view's 18 crop probabilities, whose max is the
    # tile vote, then the 24 of the extra 4x6 grid, which the vote leaves out
    oof = [json.loads(x) for x in (tmp_path / "bb.oof.jsonl").read_text().splitlines()]
    assert len(oof) == 16 and all(len(r["crops"]["full"]) == 18 + 24 for r in oof)
    assert all(r["crop_grids"] == [[2, 3], [3, 4], [4, 6]] for r in oof)
    assert all(r["probs"]["full"]["tiles"] == pytest.approx(max(r["crops"]["full"][:18]), abs=1e-5) for r in oof)
    with pytest.raises(ValueError, match="oof_crops writes what the folds held out: it needs folds of 2"):
        FinetuneConfig(oof_crops=True)
    # and data without frames large enough to tile is refused with the size named
    with pytest.raises(ValueError, match="448 px"):
        finetune(load_folder(tmp_path / "small").select(split="train"), tmp_path / "s.pt", cfg, "cpu")


def test_tile_jitter_changes_how_much_of_the_frame_each_crop_covers_and_only_when_asked():
    from training.finetune import FinetuneConfig, tile_view

    # a frame black on its left 240 px and white after: the first crop's share of white grows
    # with the overlap (the crop reaches further right, past x = 240)
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, 240:] = 255

    class NoDistortNoMirror:  # draws as a Generator does, but never distorts or mirrors the frame
        def __init__(self, seed: int) -> None:
            self.uniform = np.random.default_rng(seed).uniform

        def random(self) -> float:
            return 0.9

    def first_crop_mean(jitter: float, seed: int) -> float:
        return float(tile_view(frame, NoDistortNoMirror(seed), jitter)[0].mean())

    plain = {first_crop_mean(0.0, seed) for seed in range(6)}
    jittered = {round(first_crop_mean(0.2, seed), 4) for seed in range(6)}
    assert len(plain) == 1 and len(jittered) == 6
    with pytest.raises(ValueError, match="tile_jitter is a share of a crop in \\[0, 0.5\\]"):
        FinetuneConfig(tile_jitter=0.7, tiles_batch=8)
    with pytest.raises(ValueError, match="set tiles_batch > 0 too"):
        FinetuneConfig(tile_jitter=0.2)


def test_dashcam_positives_draws_real_vehicle_work_zones_more_often_keeping_the_class_balance():
    from training.balance import sample_weights
    from training.datasets import Sample
    from training.finetune import FinetuneConfig, draw_weights

    # photo-source positives (cones), vehicle-camera positives (VTTI, night clips), street negatives
    rows = [("rf_trafficcones", 1)] * 20 + [("vtti_wz", 1)] * 5 + [("pp_nightwork", 1)] * 5 + [("camvid", 0)] * 30
    samples = [Sample(f"images/{i}.jpg", y, src, "train", f"g{i}") for i, (src, y) in enumerate(rows)]
    labels = np.array([y for _, y in rows])
    vehicle_pos = np.array([y == 1 and src != "rf_trafficcones" for src, y in rows])

    def vehicle_share(w: np.ndarray) -> float:
        return float(w[vehicle_pos].sum() / w[labels == 1].sum())

    plain, boosted = draw_weights(samples, FinetuneConfig()), draw_weights(samples, FinetuneConfig(dashcam_positives=3))
    # the default keeps the shipped balance: each (source, label) cell by 1/sqrt(size), then the classes
    assert np.allclose(plain, sample_weights(labels, [src for src, _ in rows], True))
    # three times the weight for the real vehicle work zones: their share of the positive draws
    # goes from 0.5 (two cells of 5 against one of 20) to 0.75
    assert vehicle_share(plain) == pytest.approx(0.5) and vehicle_share(boosted) == pytest.approx(0.75)
    # while the classes still weigh the same and the negatives are drawn as before
    assert boosted[labels == 1].sum() == pytest.approx(boosted[labels == 0].sum())
    assert np.allclose(boosted[labels == 0], plain[labels == 0])
    # a factor that is not positive is refused, by the config and by the command line
    with pytest.raises(ValueError, match="dashcam_positives is a positive factor"):
        FinetuneConfig(dashcam_positives=0)
    result = runner.invoke(app, ["train", "backbone", "--data", ".", "--dashcam-positives", "0"])
    assert result.exit_code != 0 and "dashcam_positives is a positive factor, got 0.0" in result.output


def test_small_tiles_view_is_the_max_over_a_3x4_grid_of_a_small_frame_and_absent_on_a_large_one():
    from detectors.mobilenet import tile_crops
    from training.finetune import build_network, predict_small_tiles, predict_views
    from training.sample import draw_scene

    net = build_network().eval()
    rng = np.random.default_rng(3)
    small, large = (np.asarray(draw_scene(rng, True, w=w, h=h)) for w, h in ((224, 224), (640, 480)))
    got = predict_small_tiles(net, [small, large], "cpu")
    want = float(predict_views(net, tile_crops(small, ((3, 4),)), 224, "cpu").max())
    assert got[0] == pytest.approx(want, abs=1e-5)
    assert got[0] != pytest.approx(float(predict_views(net, [small], 224, "cpu")[0]), abs=1e-4)
    assert got[1] is None  # a full-size frame goes to the tile voter


def test_tile_boxes_label_the_crops_that_hold_an_object_and_only_trust_empty_crops_of_known_frames():
    from detectors.mobilenet import TILE_GRIDS, tile_windows
    from training.finetune import NOTHING_KNOWN, CropTruth, FinetuneConfig, crop_targets

    w, h = 640, 480
    windows = tile_windows(h, w, TILE_GRIDS)
    cone = np.array([[0.05, 0.05, 0.10, 0.12]], np.float32)  # a small object in the top-left corner
    holds = [k for k, (x0, y0, x1, y1) in enumerate(windows) if x0 <= 32 and y0 <= 24 and x1 >= 64 and y1 >= 58]
    # in a frame whose objects are all known (a pasted dashcam negative), crops holding the object
    # are roadwork and crops far from it are not
    known = crop_targets(windows, CropTruth(cone, True), w, h)
    assert holds and all(known[k] == 1 for k in holds)
    assert (known == 0).sum() >= 10 and set(known) <= {0.0, 1.0, -1.0}
    # in a real boxed positive an empty crop may hold an object nobody boxed: left out, not 0
    real = crop_targets(windows, CropTruth(cone, False), w, h)
    assert [k for k in range(len(windows)) if real[k] == 1] == [k for k in range(len(windows)) if known[k] == 1]
    assert not (real == 0).any()
    # a negative: every crop is not roadwork; an unboxed positive: nothing is said
    assert (crop_targets(windows, CropTruth(np.zeros((0, 4), np.float32), True), w, h) == 0).all()
    assert (crop_targets(windows, NOTHING_KNOWN, w, h) == -1).all()
    # a mirrored frame's box is mirrored with it
    np.testing.assert_allclose(CropTruth(cone, True).mirrored().boxes, [[0.90, 0.05, 0.95, 0.12]], atol=1e-6)
    with pytest.raises(ValueError, match="set tiles_batch > 0 too"):
        FinetuneConfig(tile_boxes=1.0)
    with pytest.raises(ValueError, match="tile_boxes is a loss weight"):
        FinetuneConfig(tile_boxes=-1.0, tiles_batch=8)


def test_tile_boxes_give_each_tile_view_its_crop_targets_and_the_recipe_trains_with_them(tmp_path):
    from tests.training.test_finetune_detector import boxed_folder
    from training.finetune import Banks, FinetuneConfig, _Views, train_networks

    # boxed_folder's two sources, one of them renamed a dashcam source (CamVid) so that its
    # negatives get objects pasted in; frames scaled up to be large enough to tile
    data = boxed_folder(tmp_path / "data")
    for part in ("images", "boxes"):
        (data / part / "cam").rename(data / part / "camvid")
    labels = data / "labels.csv"
    labels.write_text(labels.read_text().replace("images/cam/", "images/camvid/").replace(",cam,", ",camvid,"))
    for path in (data / "images").rglob("*.jpg"):
        Image.open(path).resize((640, 480)).save(path)
    ds = load_folder(data).select(split="train")
    samples, images = list(ds.samples), [s.load() for s in ds.samples]
    cfg = FinetuneConfig(
        epochs=1, batch=2, workers=0, tiles_batch=2, tile_boxes=1.0, paste_prob=1.0, paste_into=("camvid",)
    )
    views = _Views(samples, images, cfg, "tiles", Banks.build(ds.root, samples, cfg))
    by_key = {s.key: views[i] for i, s in enumerate(samples)}
    # a boxed positive: the crops holding its cone are roadwork, the rest left to the max
    x, label, t = by_key["images/web/0.jpg"]
    assert x.shape == (18, 3, 224, 224) and label == 1.0 and (t == 1).any() and not (t == 0).any()
    # a dashcam negative with objects pasted in: roadwork where they are, not roadwork elsewhere
    _, label, t = by_key["images/camvid/3.jpg"]
    assert label == 1.0 and (t == 1).any() and (t == 0).any()
    # a negative of another source: every crop not roadwork; a positive nobody boxed: nothing said
    assert (by_key["images/web/4.jpg"][2] == 0).all()
    assert (by_key["images/web/2.jpg"][2] == -1).all()
    # without tile_boxes the tile view is (crops, label), as the max over crops trains on
    assert len(_Views(samples, images, FinetuneConfig(tiles_batch=2), "tiles", Banks())[0]) == 2
    # and the recipe trains with it
    assert train_networks(samples, images, cfg, "cpu", None, ds.root)["final"] is not None


def test_too_few_rows_for_a_full_batch_are_refused_rather_than_training_nothing(tmp_path, capsys):
    # an epoch zips the views' loaders, each dropping its last partial batch: with fewer rows than a
    # batch the network would be written untrained, its loss logged as 0
    from tests.conftest import small_training_rows
    from training.finetune import FinetuneConfig, main, train_networks

    samples, images = small_training_rows(0, n=6)
    with pytest.raises(ValueError, match="6 training rows give no full batch of 8 for the 448 view"):
        train_networks(samples, images, FinetuneConfig(epochs=1, batch=4, workers=0), "cpu", None)
    data = make_sample(tmp_path / "data", n=8)
    with pytest.raises(SystemExit, match="training.finetune: 4 training rows give no full batch of 48 for the 224"):
        main(["--data", str(data), "--out", str(tmp_path / "bb.pt"), "--workers", "0"])
    assert not (tmp_path / "bb.pt").exists()
