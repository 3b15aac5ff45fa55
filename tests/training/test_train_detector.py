"""Detector training: class-schema mapping, the symlinked YOLO dataset, a tiny CPU training run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.datasets import load_dataset
from training.train_detector import SCHEMA, DetectorTrainConfig, build_yolo_dataset, map_class


@pytest.mark.parametrize(
    "name, source, expected",
    [
        ("traffic_cone", "tracon", "cone"),
        ("Cone", "rf_trafficcones", "cone"),
        ("road-cone", "x", "cone"),
        ("barricade", "ind_barricade", "barrier"),
        ("road_works_sign_board", "pp_nightwork", "sign"),
        ("person", "pp_nightwork", "worker"),  # people on a night roadwork site are workers
        ("person", "tracon", None),  # elsewhere a person is not roadwork evidence
        ("car", "pp_nightwork", None),
        ("pothole", "ind_barricade", None),
    ],
)
def test_map_class(name: str, source: str, expected: str | None) -> None:
    assert map_class(name, source) == expected


def make_folder(root: Path) -> Path:
    """8 images of one source: 4 with a cone box, 2 negatives with empty box files, 2 positives with none."""
    (root / "images" / "src").mkdir(parents=True)
    (root / "boxes" / "src").mkdir(parents=True)
    (root / "boxes" / "src" / "classes.txt").write_text("car\ntraffic_cone\n")
    rows = ["path,label,source,split,group"]
    rng = np.random.default_rng(0)
    for i in range(8):
        img = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        label = 1 if i < 4 or i >= 6 else 0
        if i < 4:
            img[20:40, 28:36] = (255, 120, 0)
        Image.fromarray(img).save(root / "images" / "src" / f"im{i}.jpg")
        if i < 4:
            (root / "boxes" / "src" / f"im{i}.txt").write_text("1 0.5 0.47 0.13 0.31\n0 0.1 0.1 0.1 0.1\n")
        elif i < 6:
            (root / "boxes" / "src" / f"im{i}.txt").write_text("")
        split = "dev" if i == 7 else "train"
        rows.append(f"images/src/im{i}.jpg,{label},src,{split},g{i % 4}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_yolo_dataset_maps_classes_and_links_images(tmp_path: Path) -> None:
    ds = load_dataset(make_folder(tmp_path / "data")).select(split="train")
    yaml_path, stats = build_yolo_dataset(ds, tmp_path / "yolo", val_fraction=0.25)
    data = json.loads(yaml_path.read_text())
    assert list(data["names"].values()) == list(SCHEMA)
    assert stats["box:cone"] == 4 and stats["dropped:src:car"] == 4
    assert stats["skipped_positive_without_boxes"] == 1  # im6 (train) has no box file
    images = list((tmp_path / "yolo" / "images").rglob("*.jpg"))
    assert len(images) == 6 and all(p.is_symlink() for p in images)  # nothing copied
    label = next((tmp_path / "yolo" / "labels").rglob("src__im0.txt")).read_text().split()
    assert label[0] == str(SCHEMA.index("cone")) and len(label) == 5


def test_dev_split_is_refused(tmp_path: Path) -> None:
    ds = load_dataset(make_folder(tmp_path / "data"))
    with pytest.raises(ValueError, match="dev"):
        build_yolo_dataset(ds, tmp_path / "yolo")


@pytest.mark.slow
def test_tiny_training_run_writes_weights_and_manifest(tmp_path: Path) -> None:
    pytest.importorskip("ultralytics")
    from detectors.heads import sha256_file
    from training.train_detector import train_detector

    ds = load_dataset(make_folder(tmp_path / "data")).select(split="train")
    out = tmp_path / "models" / "det.pt"
    info = train_detector(
        ds, out, tmp_path / "work", DetectorTrainConfig(imgsz=64, epochs=1, time_h=0.05, batch=4, workers=0)
    )
    manifest = json.loads(out.with_suffix(".manifest.json").read_text())
    assert manifest["sha256"] == sha256_file(out) and manifest["classes"] == list(SCHEMA)
    assert manifest["data_hash"] == ds.fingerprint() and info["epochs_run"] >= 1
    from ultralytics import YOLO

    assert list(YOLO(str(out)).names.values()) == list(SCHEMA)
