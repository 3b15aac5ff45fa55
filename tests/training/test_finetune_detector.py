"""`roadwork train boxes`: the L1 detector's views, rows and held-out votes, tiny, on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_cli import invoke
from training.datasets import load_folder
from training.finetune_detector import DetectorConfig, detector_rows, train_view

ORANGE = (255, 110, 0)


def boxed_folder(root: Path) -> Path:
    """Two sources, each with two boxed orange 'cones', one unboxed positive and two negatives."""
    lines = ["path,label,source,split,group"]
    for source in ("web", "cam"):
        (root / "images" / source).mkdir(parents=True)
        (root / "boxes" / source).mkdir(parents=True)
        (root / "boxes" / source / "classes.txt").write_text("traffic_cone\ncar\n")
        for i in range(5):
            img = np.full((120, 160, 3), 90, np.uint8)
            label = int(i < 3)
            if label:
                img[40:100, 60:90] = ORANGE
            Image.fromarray(img).save(root / "images" / source / f"{i}.jpg", quality=95)
            if i < 2:  # i == 2 is a positive nobody boxed
                (root / "boxes" / source / f"{i}.txt").write_text("0 0.46875 0.58333 0.1875 0.5\n1 0.1 0.1 0.05 0.05\n")
            lines.append(f"images/{source}/{i}.jpg,{label},{source},train,{source}{i}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_rows_keep_boxed_positives_and_negatives_and_drop_unboxed_positives(tmp_path):
    ds = load_folder(boxed_folder(tmp_path))
    rows = detector_rows(ds.root, list(ds.samples))
    assert sorted((r.sample.source, Path(r.sample.key).stem) for r in rows) == [
        ("cam", "0"),
        ("cam", "1"),
        ("cam", "3"),
        ("cam", "4"),
        ("web", "0"),
        ("web", "1"),
        ("web", "3"),
        ("web", "4"),
    ]
    boxed = [r for r in rows if r.sample.label == 1]
    assert all(r.kinds == [1] for r in boxed), "the cone maps to class 1; the car is dropped"
    np.testing.assert_allclose(boxed[0].boxes[0], [0.375, 0.3333, 0.5625, 0.8333], atol=1e-3)


def test_every_view_keeps_its_boxes_on_the_object(tmp_path):
    ds = load_folder(boxed_folder(tmp_path))
    row = next(r for r in detector_rows(ds.root, list(ds.samples)) if r.kinds)
    image = row.sample.load()
    sizes = set()
    for seed in range(40):  # frame crops, letterboxes, square crops, flips
        view, px, labels = train_view(image, row.boxes, row.kinds, np.random.default_rng(seed), DetectorConfig())
        sizes.add(view.shape[:2])
        assert len(px) == len(labels)
        for x0, y0, x1, y1 in px:
            inner = view[int(y0) + 2 : int(y1) - 2, int(x0) + 2 : int(x1) - 2].reshape(-1, 3).astype(float)
            if len(inner):  # orange stays redder than blue inside the box, whatever the colour jitter
                r, _, b = inner.mean(0)
                whole = view.reshape(-1, 3).astype(float).mean(0)
                assert r - b > 20 + (whole[0] - whole[2]), f"seed {seed}: the box no longer covers the cone"
    assert (224, 224) in sizes and len(sizes) > 2


def test_train_boxes_writes_a_checkpoint_and_held_out_votes_that_fit_reads(tmp_path):
    data = boxed_folder(tmp_path / "data")
    out = tmp_path / "m" / "l1.pt"
    invoke(
        "train",
        "boxes",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--workers",
        "0",
        "--held-out",
        "web",
        "--held-out",
        "cam",
        "--paste-prob",
        "0",
        "--erase-prob",
        "0",
    )
    manifest = json.loads(out.with_suffix(".manifest.json").read_text())
    assert manifest["cv"]["full@det"]["n"] == 10 and manifest["held_out_votes"] == ["l1.loso.jsonl"]
    held = [json.loads(x) for x in out.with_suffix(".loso.jsonl").read_text().splitlines()]
    assert sorted(r["held_out"] for r in held) == ["group0"] * 5 + ["group1"] * 5
    rows = [json.loads(x) for x in (tmp_path / "m" / "l1.oof" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 10 * 3
    assert {(v["voter"], v["level"]) for r in rows for v in r["votes"]} == {("l1_rcnn", "L1")}
    invoke("fit", "--run", str(tmp_path / "m" / "l1.oof"), "--out", str(tmp_path / "c.json"))
    assert "l1_rcnn" in json.loads((tmp_path / "c.json").read_text())["pools"][0]["weights"]


def test_train_boxes_refuses_an_unknown_held_out_source(tmp_path):
    data = boxed_folder(tmp_path / "data")
    from typer.testing import CliRunner

    from roadwork.cli import app

    result = CliRunner().invoke(app, ["train", "boxes", "--data", str(data), "--held-out", "webb"])
    assert result.exit_code != 0 and "webb" in result.output and "cam, web" in result.output


@pytest.fixture(autouse=True)
def _few_threads():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)
