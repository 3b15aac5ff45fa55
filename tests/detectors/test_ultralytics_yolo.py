"""The ultralytics adapter: real COCO YOLOv8n (tflite) on bus.jpg, tiny random yaml models, bad frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ultralytics")

from cascade.config import VoterConfig
from cascade.types import Frame, Level
from detectors.ultralytics_yolo import UltralyticsDetector, pick_family

SHARED_WEIGHTS = Path(__file__).resolve().parents[3] / "shared" / "weights"


@pytest.fixture(scope="module")
def bus() -> Frame:
    import ultralytics
    from PIL import Image

    path = Path(ultralytics.__file__).parent / "assets" / "bus.jpg"
    return Frame(np.asarray(Image.open(path).convert("RGB")), source="bus.jpg")


def make(params: dict, tmp: Path = Path("."), batch: int = 4) -> UltralyticsDetector:
    cfg = VoterConfig(name="yolo", kind="ultralytics", level="L1", batch=batch, params=params)
    return UltralyticsDetector.from_config(cfg, tmp)


@pytest.mark.slow
def test_real_coco_yolov8n_finds_people_and_bus(bus: Frame) -> None:
    weights = SHARED_WEIGHTS / "yolov8n_coco_int8.tflite"
    if not weights.is_file():
        pytest.skip("../shared/weights/yolov8n_coco_int8.tflite is not present on this machine")
    pytest.importorskip("ai_edge_litert")
    det = make({"weights": str(weights), "conf": 0.25})
    (vote,) = det.predict([bus])
    labels = sorted(b["label"] for b in vote.evidence["boxes"])
    assert labels == ["bus", "person", "person", "person", "person"]
    bus_box = next(b for b in vote.evidence["boxes"] if b["label"] == "bus")
    assert bus_box["xyxy"][2] - bus_box["xyxy"][0] > 0.8  # the bus spans the picture
    # persons and a bus are weak evidence at most: no roadwork claimed
    assert vote.level == Level.L1 and 0.0 < vote.prob < 0.3


@pytest.mark.parametrize("yaml_name", ["yolo11n.yaml", "yolov8n.yaml", "rtdetr-l.yaml"])
@pytest.mark.slow
def test_random_models_from_yaml_vote_per_frame(yaml_name: str, bus: Frame) -> None:
    det = make({"weights": yaml_name, "imgsz": 64})
    bad = Frame(np.zeros((1, 1, 3), np.uint8), source="tiny")
    votes = det.predict([bus, bad, bus])
    assert [v.voter for v in votes] == ["yolo"] * 3
    for v in votes:
        assert v.abstained or (0.0 <= v.prob <= 1.0 and isinstance(v.evidence["boxes"], list))


def test_missing_weights_without_download_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"params.weights='yolo11x.pt'.*allow_download"):
        make({"weights": "yolo11x.pt"}, tmp_path)


def test_prompts_need_open_vocabulary_model() -> None:
    with pytest.raises(ValueError, match="open-vocabulary"):
        make({"weights": "yolo11n.yaml", "prompts": ["traffic cone"]})


@pytest.mark.parametrize(
    "name, family",
    [
        ("rtdetr-x.pt", "rtdetr"),
        ("yoloe-11s-seg.pt", "yoloe"),
        ("yolov8s-world.pt", "world"),
        ("yolo26x.pt", "yolo"),
        ("models/roadwork.onnx", "yolo"),
    ],
)
def test_family_from_name(name: str, family: str) -> None:
    assert pick_family(name, "auto") == family


def test_exported_files_run_one_frame_per_call() -> None:
    from detectors.ultralytics_yolo import UltralyticsParams

    det = UltralyticsDetector("x", Level.L1, model=None, params=UltralyticsParams(weights="m.tflite"), batch=8)
    assert det.batch == 1
