"""benchmarks/frozen_prefix_tiles.py: the frozen blocks' output cached per crop and draw, and LOSO
networks trained on it, tiny, on the CPU."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, benchmark_script

ORANGE, BLUE = (255, 110, 0), (20, 40, 230)


@pytest.fixture(scope="module")
def fp():
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(REPO / "benchmarks"))  # it imports loso_networks and tile_contrast from beside it
        yield benchmark_script("frozen_prefix_tiles")


def _folder(root: Path) -> Path:
    """640x480 frames: `tracon` photos with a boxed orange cone (a source no LOSO network holds
    out); held out: `gtsdb` with a boxed blue sign on two of four, `camvid` street negatives and
    `pp_nightwork`, four boxed orange cones."""
    lines = ["path,label,source,split,group"]
    for source, colour in (("tracon", ORANGE), ("gtsdb", BLUE), ("camvid", None), ("pp_nightwork", ORANGE)):
        (root / "images" / source).mkdir(parents=True)
        (root / "boxes" / source).mkdir(parents=True)
        (root / "boxes" / source / "classes.txt").write_text("traffic_cone\n")
        for i in range(4):
            img = np.full((480, 640, 3), 90, np.uint8)
            img[300:] = 60  # the road
            label = int(colour is not None and (i < 2 or source == "pp_nightwork"))
            if label:
                img[320:400, 300:340] = colour
                (root / "boxes" / source / f"{i}.txt").write_text("0 0.5 0.75 0.0625 0.1667\n")
            Image.fromarray(img).save(root / "images" / source / f"{i}.jpg", quality=95)
            lines.append(f"images/{source}/{i}.jpg,{label},{source},train,{source}{i}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def cache(fp, tmp_path_factory):
    root = tmp_path_factory.mktemp("fp")
    _folder(root / "data")
    fp.main(["features", "--data", str(root / "data"), "--cache", str(root / "cache"), "--draws", "3"])
    return root / "cache"


def test_draw_zero_is_the_frozen_networks_view_of_the_frame_as_sent(fp, cache):
    import torch

    from detectors.mobilenet import mobilenetv2_features, tile_crops, to_tensor_batch
    from training.datasets import load_folder

    maps, rows, draws = fp.load_cache(cache)
    assert draws == 3 and maps.shape == (16 * 3, 12, 160, 7, 7)  # every 640x480 frame, 3 draws, 12 crops
    first = next(i for i, r in enumerate(rows) if r["draw"] == 0 and r["source"] == "gtsdb")
    sample = next(s for s in load_folder(cache.parent / "data") if s.key == rows[first]["key"])
    prefix = mobilenetv2_features(None).features[: fp.SPLIT_BLOCK].eval()
    with torch.no_grad():
        want = prefix(torch.from_numpy(to_tensor_batch(tile_crops(sample.load(), fp.GRID), 224))).numpy()
    np.testing.assert_allclose(np.asarray(maps[first], np.float32), want, atol=0.05, rtol=0.02)


def test_counterfactual_draws_flip_the_label_only_where_they_can(fp, cache):
    _, rows, _ = fp.load_cache(cache)
    pasted = [r for r in rows if r["kind"] == "pasted"]
    erased = [r for r in rows if r["kind"] == "erased"]
    assert pasted and erased, "3 draws of 16 frames at chance 0.5 give both"
    # objects go into dashcam negatives only (camvid, gtsdb), never into tracon's photos
    assert all(r["source"] in {"camvid", "gtsdb"} and r["label"] == 1 and r["draw"] > 0 for r in pasted)
    assert all(r["source"] != "camvid" and r["label"] == 0 and r["draw"] > 0 for r in erased)
    assert all(r["kind"] == "as sent" for r in rows if r["draw"] == 0)


def test_the_paste_bank_holds_no_object_of_a_held_out_source(fp, tmp_path, capsys):
    _folder(tmp_path / "data")
    fp.main(["features", "--data", str(tmp_path / "data"), "--cache", str(tmp_path / "c"), "--limit", "1"])
    assert "2 objects to paste" in capsys.readouterr().out  # tracon's two cones; held-out sources' are out


def test_votes_score_each_held_out_frame_once_by_a_network_that_never_saw_its_source(fp, cache, tmp_path):
    out = tmp_path / "votes.json"
    fp.main(
        ["votes", "--cache", str(cache), "--modes", "head,tail", "--seeds", "0", "--epochs", "2"]
        + ["--batch", "2", "--no-compare", "--out", str(out)]
    )
    result = json.loads(out.read_text())
    assert set(result["scores"]) == {"head, seed 0", "tail, seed 0"}
    assert result["rows_by_source"] == {"camvid": [4, 0], "gtsdb": [4, 2], "pp_nightwork": [4, 4]}
    crops = [json.loads(x) for x in gzip.decompress(fp.crops_file(out).read_bytes()).decode().splitlines()]
    for run in ("head, seed 0", "tail, seed 0"):
        mine = [r for r in crops if r["run"] == run]
        # tracon is never held out; each held-out frame is scored once, by the network without its source
        assert sorted(r["key"] for r in mine) == sorted({r["key"] for r in mine}) and len(mine) == 12
        assert all(r["held_out"] == r["source"] and len(r["crops"]) == 12 for r in mine)


def test_head_mode_leaves_the_imagenet_blocks_as_they_were(fp, cache):
    import argparse

    import torch

    from detectors.mobilenet import mobilenetv2_features

    maps, rows, _ = fp.load_cache(cache)
    args = argparse.Namespace(epochs=2, batch=2, lr=1e-2)
    net = fp.train_tail(maps, rows, list(range(len(rows))), "head", 0, args)
    imagenet = mobilenetv2_features(None).features[fp.SPLIT_BLOCK :].state_dict()
    assert all(torch.equal(v, imagenet[k]) for k, v in net.blocks.state_dict().items())
    tail = fp.train_tail(maps, rows, list(range(len(rows))), "tail", 0, args)
    assert not all(torch.equal(v, imagenet[k]) for k, v in tail.blocks.state_dict().items())


def test_a_cache_whose_files_disagree_is_refused_by_name(fp, tmp_path):
    (tmp_path / "c").mkdir()
    np.save(tmp_path / "c" / "maps.npy", np.zeros((2, 12, 160, 7, 7), np.float16))
    (tmp_path / "c" / "meta.json").write_text(json.dumps({"draws": 1, "rows": [{}]}))
    with pytest.raises(SystemExit, match="maps.npy has 2 draws, meta.json 1"):
        fp.load_cache(tmp_path / "c")
