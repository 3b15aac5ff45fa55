"""benchmarks/loso_networks.py train --save-nets: the networks come back, and `training.oof_rescore`
scores their held-out rows again at full size with the network that never saw the row's source."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
import sys

import numpy as np
import pytest

from tests.conftest import benchmark_script


def _two_copies(root) -> None:
    """The same 640x480 street frames as `big`, and downscaled to 320x240 as `small` (the lent GPU
    trains on such a copy): sources camvid (held out below) and two others."""
    from training.sample import draw_scene

    rng = np.random.default_rng(3)
    rows = []
    for name in ("big", "small"):
        (root / name / "images").mkdir(parents=True)
    for i in range(12):
        image = draw_scene(rng, bool(i % 2), w=640, h=480)
        image.save(root / "big" / "images" / f"{i}.jpg")
        image.resize((320, 240)).save(root / "small" / "images" / f"{i}.jpg")
        source = ("camvid", "tracon", "rf_trafficcones")[i % 3]
        rows.append({"path": f"images/{i}.jpg", "label": i % 2, "source": source, "split": "train", "group": f"g{i}"})
    for name in ("big", "small"):
        with open(root / name / "labels.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


@pytest.mark.slow
def test_saved_loso_networks_rescore_their_held_out_rows_at_full_size(tmp_path, monkeypatch, capsys):
    from training.finetune import votes_text
    from training.oof_rescore import main as rescore_main

    _two_copies(tmp_path)
    loso = benchmark_script("loso_networks")
    votes, prefix = tmp_path / "loso.jsonl", tmp_path / "nets" / "loso"
    argv = ["loso_networks.py", "train", "--data", str(tmp_path / "small"), "--out", str(votes), "--device", "cpu"]
    argv += ["--epochs", "1", "--batch", "4", "--workers", "0", "--held-out", "camvid", "--crops"]
    argv += ["--save-nets", str(prefix)]
    monkeypatch.setattr(sys, "argv", argv)
    loso.main()
    # trained on the 320-px copy: the held-out camvid rows have no tile vote (the voter abstains)
    small = [json.loads(x) for x in votes.read_text().splitlines()]
    assert {r["key"] for r in small} == {f"images/{i}.jpg" for i in range(0, 12, 3)}
    assert all("tiles" not in r["probs"]["full"] and "full" not in r["crops"] for r in small)
    assert (tmp_path / "nets" / "loso.camvid.pt").is_file()
    # rescored on the full-size photos by the network that never saw camvid: tiles and crops appear
    out = tmp_path / "re.jsonl"
    rescore_main(
        ["--data", str(tmp_path / "big"), "--oof", str(votes), "--nets", str(prefix)]
        + ["--views", "tiles,224", "--out", str(out)]
    )
    big = [json.loads(x) for x in out.read_text().splitlines()]
    assert {r["long_side"]["full"] for r in big} == {640}
    for r in big:
        assert len(r["crops"]["full"]) == 18 and r["probs"]["full"]["tiles"] == pytest.approx(
            max(r["crops"]["full"]), abs=1e-5
        )
    # the other regimes' votes (224-px views, the same on either copy) are kept as they were
    assert [r["probs"]["v0.2"] for r in big] == [r["probs"]["v0.2"] for r in small]
    # and on the copy it was trained on, the saved network gives the trainer's own votes
    same = tmp_path / "same.jsonl"
    rescore_main(
        ["--data", str(tmp_path / "small"), "--oof", str(votes), "--nets", str(prefix)]
        + ["--views", "224,448", "--out", str(same)]
    )
    for a, b in zip(small, (json.loads(x) for x in same.read_text().splitlines()), strict=True):
        assert b["probs"]["full"] == pytest.approx(a["probs"]["full"], abs=0.03)  # fp16 weights on disk
    # asked for, every row keeps its crops, in the tile voter's grids and any extra ones after them
    # (to a .gz name, as committed vote files are: it is gzipped, and every votes reader takes it)
    gz = tmp_path / "crops.jsonl.gz"
    rescore_main(
        ["--data", str(tmp_path / "big"), "--oof", str(same), "--nets", str(prefix), "--views", "tiles"]
        + ["--crops", "--crop-grids", "4x6", "--out", str(gz)]
    )
    assert gzip.decompress(gz.read_bytes())
    for r in (json.loads(x) for x in votes_text(gz).splitlines()):
        assert r["crop_grids"] == [[2, 3], [3, 4], [4, 6]] and len(r["crops"]["full"]) == 18 + 24
        assert r["probs"]["full"]["tiles"] == pytest.approx(max(r["crops"]["full"][:18]), abs=1e-5)
    with pytest.raises(SystemExit):  # extra grids without --crops
        rescore_main(
            ["--data", str(tmp_path / "big"), "--oof", str(votes), "--nets", str(prefix)]
            + ["--crop-grids", "4x6", "--out", str(out)]
        )
    assert "add --crops" in capsys.readouterr().err
    # --mirror: each view's vote is the mean of the photo's and its mirror image's; the rescored
    # regime's crops (unmirrored) are dropped, the other regimes' votes kept
    from PIL import Image

    shutil.copytree(tmp_path / "big", tmp_path / "flipped")
    for i in range(12):
        path = tmp_path / "flipped" / "images" / f"{i}.jpg"
        with Image.open(path) as im:
            flipped = im.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        flipped.save(path, format="PNG")  # lossless: exactly the decoded photo's mirror image
    mirror, other = tmp_path / "mirror.jsonl", tmp_path / "other.jsonl"
    for data, out_path, flag in (("big", mirror, ["--mirror"]), ("flipped", other, [])):
        rescore_main(
            ["--data", str(tmp_path / data), "--oof", str(votes), "--nets", str(prefix), "--views", "tiles,224"]
            + [*flag, "--out", str(out_path)]
        )
    assert "each averaged with its mirror image" in capsys.readouterr().out
    rows = zip(big, *([json.loads(x) for x in f.read_text().splitlines()] for f in (mirror, other)), strict=True)
    moved = 0.0
    for sent, mean, mirrored in rows:
        for view in ("224", "tiles"):
            want = (sent["probs"]["full"][view] + mirrored["probs"]["full"][view]) / 2
            assert mean["probs"]["full"][view] == pytest.approx(want, abs=1e-5)
            moved = max(moved, abs(mean["probs"]["full"][view] - sent["probs"]["full"][view]))
        assert "full" not in mean["crops"] and mean["probs"]["v0.2"] == sent["probs"]["v0.2"]
    assert moved > 1e-5
    with pytest.raises(SystemExit):
        rescore_main(
            ["--data", str(tmp_path / "big"), "--oof", str(votes), "--nets", str(prefix), "--views", "tiles"]
            + ["--crops", "--mirror", "--out", str(out)]
        )
    assert "--mirror keeps no crops" in capsys.readouterr().err
    # and rows whose network is missing are refused with its file named
    (tmp_path / "nets" / "loso.camvid.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"loso\.camvid\.pt.*--save-nets"):
        rescore_main(["--data", str(tmp_path / "big"), "--oof", str(votes), "--nets", str(prefix), "--out", str(out)])


def test_a_row_no_saved_network_held_out_is_refused_by_key():
    from training.oof_rescore import network_name

    assert network_name({"key": "a", "fold": 2}) == "fold2"
    assert network_name({"key": "b", "held_out": "gtsdb"}) == "gtsdb"
    with pytest.raises(ValueError, match="'c' has neither `fold` nor `held_out`"):
        network_name({"key": "c"})


def test_held_out_scores_rank_a_two_label_camera_and_count_a_one_label_camera_right():
    ln = benchmark_script("loso_networks")
    src = np.array(["gtsdb"] * 4 + ["camvid"] * 3 + ["tracon"] * 2)
    y = np.array([1, 0, 1, 0, 0, 0, 0, 1, 0])
    prob = np.array([0.9, 0.2, 0.4, 0.6, 0.1, 0.7, 0.3, np.nan, np.nan])  # tracon is no held-out camera
    out = ln.held_out_scores(y, prob, src)
    assert out["gtsdb"] == {"n": 4, "auroc": 0.75}  # one pair of four ranked the wrong way
    assert out["camvid"] == {"n": 3, "accuracy": 0.667}  # street scenes only: right below 0.5
    assert "vtti" not in out  # no rows of it: nothing to say
    assert out["auroc"] == 0.8  # the seven held-out rows together: 8 of 10 pairs ranked right


@pytest.mark.slow
def test_loso_networks_kept_without_scoring_normalise_with_each_views_statistics_when_rescored(
    tmp_path, monkeypatch, capsys
):
    from training.oof_rescore import main as rescore_main

    _two_copies(tmp_path)
    loso = benchmark_script("loso_networks")
    prefix = tmp_path / "nets" / "loso"
    base = ["loso_networks.py", "train", "--data", str(tmp_path / "small"), "--device", "cpu", "--held-out", "camvid"]
    for wrong in (["--nets-only"], ["--nets-only", "--save-nets", str(prefix), "--out", str(tmp_path / "v.jsonl")], []):
        monkeypatch.setattr(sys, "argv", base + wrong)
        with pytest.raises(SystemExit, match="--nets-only|--out is needed"):
            loso.main()
    argv = base + ["--nets-only", "--save-nets", str(prefix), "--epochs", "1", "--batch", "4", "--workers", "0"]
    monkeypatch.setattr(sys, "argv", argv)
    loso.main()
    assert "[loso] camvid: trained" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "nets").iterdir()) == ["loso.camvid.pt"]  # no votes written
    # the held-out rows scored afterwards, at full size, with each view's own statistics or the mixed ones
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(
            json.dumps({"key": f"images/{i}.jpg", "label": i % 2, "held_out": "camvid", "probs": {"v0.2": {}}}) + "\n"
            for i in range(0, 12, 3)
        )
    )
    votes = {}
    for view in ("", "224", "448"):
        out = tmp_path / f"re{view}.jsonl"
        rescore_main(
            ["--data", str(tmp_path / "big"), "--oof", str(rows), "--nets", str(prefix), "--regime", "v0.2"]
            + ["--views", "224", "--statistics", view, "--out", str(out)]
        )
        votes[view] = [json.loads(x)["probs"]["v0.2"]["224"] for x in out.read_text().splitlines()]
    assert "normalised with view 448's batch-norm statistics" in capsys.readouterr().out
    assert votes["224"] != votes["448"] and votes[""] not in (votes["224"], votes["448"])
    with pytest.raises(SystemExit):  # trained without --tiles-batch: no tile view's statistics
        rescore_main(
            ["--data", str(tmp_path / "big"), "--oof", str(rows), "--nets", str(prefix), "--statistics", "tiles"]
            + ["--out", str(tmp_path / "x.jsonl")]
        )
    assert "loso.camvid.pt' keep no batch-norm statistics of view 'tiles'" in capsys.readouterr().err
