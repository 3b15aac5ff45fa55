"""Detector training: class-schema mapping, the symlinked YOLO dataset, a tiny CPU training run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.box_schema import SCHEMA, SCHEMA_PROMPTS, map_class
from training.datasets import load_dataset
from training.train_detector import DetectorTrainConfig, build_yolo_dataset


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
@pytest.mark.parametrize(
    "model, family", [("yolo11n.yaml", "yolo"), ("rtdetr-l.yaml", "rtdetr"), ("rfdetr-nano", "rfdetr")]
)
def test_tiny_training_run_writes_weights_and_manifest(tmp_path: Path, model: str, family: str) -> None:
    pytest.importorskip("ultralytics" if family != "rfdetr" else "pytorch_lightning")
    from detectors.heads import sha256_file
    from training.train_detector import train_detector

    ds = load_dataset(make_folder(tmp_path / "data")).select(split="train")
    out = tmp_path / "models" / "det.pt"
    cfg = DetectorTrainConfig(model=model, imgsz=64, epochs=1, time_h=0.05, batch=4, workers=0)
    info = train_detector(ds, out, tmp_path / "work", cfg)
    manifest = json.loads(out.with_suffix(".manifest.json").read_text())
    assert manifest["sha256"] == sha256_file(out) and manifest["classes"] == list(SCHEMA)
    assert manifest["data_hash"] == ds.fingerprint() and info["epochs_run"] >= 1
    assert manifest["format"] == (f"ultralytics-{family}" if family != "rfdetr" else "rfdetr")
    # and the L1 adapter of that family loads it, with the roadwork classes
    if family == "rfdetr":
        from cascade.config import VoterConfig
        from detectors.rfdetr import RFDETRDetector

        v = VoterConfig(name="rf", kind="rfdetr", level="L1", params={"variant": "nano", "weights": str(out)})
        assert list(RFDETRDetector.from_config(v, tmp_path).model.class_names) == list(SCHEMA)
    else:
        from detectors.ultralytics_yolo import load_ultralytics

        assert list(load_ultralytics(str(out), family, None).names.values()) == list(SCHEMA)


def make_coco(root: Path) -> Path:
    """A ROADWork-style COCO file: two sequences, category names as that dataset spells them."""
    (root / "images").mkdir(parents=True)
    cats = ["Police Officer", "Cone", "Drum", "Tubular Marker", "Temporary Traffic Control Sign", "Road"]
    images, anns = [], []
    for i, name in enumerate(["pgh01_0001.jpg", "pgh01_0002.jpg", "boston_7_3_0001.jpg", "empty_0001.jpg"]):
        Image.fromarray(np.full((50, 100, 3), 90, np.uint8)).save(root / "images" / name)
        images.append({"id": i, "file_name": name, "width": 100, "height": 50})
    for i, (image_id, cat, bbox) in enumerate(
        [
            (0, 3, [10, 10, 20, 30]),
            (0, 1, [0, 0, 5, 5]),
            (1, 5, [50, 0, 50, 25]),
            (2, 4, [0, 0, 10, 10]),
            (3, 6, [0, 0, 9, 9]),
        ]
    ):
        anns.append({"id": i, "image_id": image_id, "category_id": cat, "bbox": bbox, "segmentation": []})
    path = root / "instances_train.json"
    categories = [{"id": j + 1, "name": n} for j, n in enumerate(cats)]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    return path


def test_rows_from_one_group_are_refused_before_ultralytics_sees_an_empty_val_slice(tmp_path: Path) -> None:
    # given a folder whose usable rows all share one group (ultralytics would fail on "images/val not found")
    from typer.testing import CliRunner

    from roadwork.cli import app

    root = make_folder(tmp_path / "data")
    labels = root / "labels.csv"
    rows = labels.read_text().splitlines()
    labels.write_text("\n".join([rows[0]] + [",".join(r.split(",")[:4] + ["g0"]) for r in rows[1:]]) + "\n")
    # when a detector is trained on it, then it is refused with the reason, before any training
    args = ["train", "detector", "--data", str(root), "--model", "yolo11n.yaml", "--work", str(tmp_path / "w")]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "d.pt")])
    assert result.exit_code == 2 and "in 1 group(s)" in result.output and "at least two groups" in result.output
    assert not (tmp_path / "d.pt").exists()


def test_coco_boxes_join_the_same_schema(tmp_path: Path) -> None:
    from training.train_detector import CocoBoxes

    ds = load_dataset(make_folder(tmp_path / "data")).select(split="train")
    coco = CocoBoxes(make_coco(tmp_path / "roadwork"), tmp_path / "roadwork" / "images", source="roadwork")
    _, stats = build_yolo_dataset(ds, tmp_path / "yolo", coco=(coco,))
    # the police officer and the road are background; an image with only background boxes is left out
    assert stats["images_roadwork"] == 3 and stats["dropped:roadwork:Police Officer"] == 1
    label = next((tmp_path / "yolo" / "labels").rglob("roadwork__pgh01_0001.txt")).read_text().split()
    cls, cx, cy, w, h = label  # the drum: a barrier, centre (20, 25) of a 100x50 frame
    assert int(cls) == SCHEMA.index("barrier") and [float(v) for v in (cx, cy, w, h)] == [0.2, 0.5, 0.2, 0.6]
    sign = next((tmp_path / "yolo" / "labels").rglob("roadwork__pgh01_0002.txt")).read_text().split()
    assert int(sign[0]) == SCHEMA.index("sign")


@pytest.mark.parametrize(
    "given, torch_name", [("0", "cuda:0"), ("1,2", "cuda:1"), ("cpu", "cpu"), ("cuda:1", "cuda:1")]
)
def test_one_device_spelling_serves_every_family(given: str, torch_name: str) -> None:
    # `--device 0` (ultralytics' spelling, as the README says) reaches RF-DETR as torch's name
    from training.train_detector import torch_device

    assert torch_device(given) == torch_name


def test_only_the_families_this_command_trains_are_accepted() -> None:
    from training.train_detector import detector_family

    assert detector_family("rtdetr-x.pt") == "rtdetr" and detector_family("yolo11x.pt") == "yolo"
    assert detector_family("rf-detr-large-2026.pth") == "rfdetr"
    assert detector_family("ustc-community/dfine-large-coco") == "transformers"
    assert detector_family("yoloe-11l-seg.pt") == "yoloe"
    with pytest.raises(ValueError, match="world trainers"):
        detector_family("yolov8s-worldv2.pt")


@pytest.mark.slow
def test_yoloe_is_fine_tuned_to_the_roadwork_classes(tmp_path: Path) -> None:
    # a random YOLOE-11s from its yaml: its head is set to the schema classes with random class
    # embeddings (a released checkpoint would embed SCHEMA_PROMPTS with YOLOE's text encoder)
    from detectors.ultralytics_yolo import load_ultralytics
    from training.train_detector import train_detector

    ds = load_dataset(make_folder(tmp_path / "data")).select(split="train")
    out = tmp_path / "models" / "roadwork_yoloe.pt"
    cfg = DetectorTrainConfig(model="yoloe-11s.yaml", imgsz=64, epochs=1, batch=4, workers=0)
    info = train_detector(ds, out, tmp_path / "work", cfg)
    assert info["format"] == "ultralytics-yoloe" and "no text encoder" in info["started_from"]
    # the L1 adapter loads it without prompts and names its boxes with the roadwork classes
    model = load_ultralytics(str(out), "yoloe", None)
    assert list(model.names.values()) == list(SCHEMA)
    result = model.predict(np.zeros((64, 64, 3), np.uint8), imgsz=64, conf=0.0, verbose=False)[0]
    assert {model.names[int(c)] for c in result.boxes.cls.tolist()} <= set(SCHEMA)


@pytest.mark.slow
def test_a_released_yoloe_seg_checkpoint_is_fine_tuned_as_a_detector(tmp_path: Path, monkeypatch) -> None:
    # given a released-like YOLOE -seg checkpoint (random weights; the box folders have no masks)
    # and a stand-in for YOLOE's text encoder, which is a download
    import torch
    import ultralytics.nn.tasks as tasks
    from ultralytics import YOLOE

    from training.train_detector import train_detector

    start = tmp_path / "yoloe-11s-seg.pt"
    YOLOE("yoloe-11s-seg.yaml").save(str(start))
    asked: list[list[str]] = []

    def encoder(self, text, *args, **kwargs):
        asked.append(list(text))
        return torch.randn(1, len(text), self.model[-1].embed)

    monkeypatch.setattr(tasks.YOLOEModel, "get_text_pe", encoder)
    ds = load_dataset(make_folder(tmp_path / "data")).select(split="train")
    out = tmp_path / "models" / "roadwork_yoloe.pt"
    cfg = DetectorTrainConfig(model=str(start), imgsz=64, epochs=1, batch=4, workers=0)
    # when it is fine-tuned
    info = train_detector(ds, out, tmp_path / "work", cfg)
    # then the classes were embedded from their descriptions, and a detection model comes out
    assert asked == [[SCHEMA_PROMPTS[c] for c in SCHEMA]] and "yoloe-11s-seg.pt" in info["started_from"]
    trained = YOLOE(str(out))
    assert trained.task == "detect" and list(trained.names.values()) == list(SCHEMA)


def test_a_released_yoloe_without_its_text_encoder_is_refused_by_name(tmp_path: Path, monkeypatch) -> None:
    import ultralytics.nn.tasks as tasks
    from ultralytics import YOLOE

    from training.train_detector import yoloe_start

    def no_encoder(*args, **kwargs):  # offline: the encoder is a download
        raise FileNotFoundError("mobileclip_blt.ts")

    start = tmp_path / "yoloe-11s-seg.pt"  # a released-like checkpoint: a -seg model, head not fused
    YOLOE("yoloe-11s-seg.yaml").save(str(start))
    monkeypatch.setattr(tasks.YOLOEModel, "get_text_pe", no_encoder)
    from training.train_detector import DetectorTrainError

    with pytest.raises(DetectorTrainError, match=r"text encoder \(mobileclip_blt.ts\).*fetch-weights"):
        yoloe_start(str(start), tmp_path / "work", seed=0)


@pytest.mark.slow
def test_a_transformers_detector_is_fine_tuned_to_the_roadwork_classes(tmp_path: Path) -> None:
    # a tiny D-FINE saved as a checkpoint folder stands in for ustc-community/dfine-large-coco
    import transformers as T

    from cascade.config import VoterConfig
    from detectors.hf_common import random_config
    from detectors.hf_detr import HFDetector
    from detectors.model_specs import TINY_DFINE
    from training.train_detector import detector_family, train_detector

    start = tmp_path / "tiny-dfine"
    T.AutoModelForObjectDetection.from_config(random_config(dict(TINY_DFINE))).save_pretrained(start)
    T.RTDetrImageProcessor(size={"height": 64, "width": 64}).save_pretrained(start)
    assert detector_family(str(start)) == "transformers"
    ds = load_dataset(make_folder(tmp_path / "data")).select(split="train")
    out = tmp_path / "models" / "roadwork_dfine"
    cfg = DetectorTrainConfig(model=str(start), imgsz=64, epochs=1, batch=2, workers=0)
    info = train_detector(ds, out, tmp_path / "work", cfg)
    assert info["format"] == "transformers" and info["epochs_run"] == 1
    assert json.loads((tmp_path / "models" / "roadwork_dfine.manifest.json").read_text())["classes"] == list(SCHEMA)
    # the hf-detector voter loads the folder, naming its boxes with the roadwork classes
    v = VoterConfig(name="dfine", kind="hf-detector", level="L1", params={"model": str(out), "threshold": 0.0})
    det = HFDetector.from_config(v, tmp_path)
    assert list(det.model.config.id2label.values()) == list(SCHEMA)
