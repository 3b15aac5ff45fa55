"""COCO YOLOv8n recovered from its TFLite export (training/tflite_start.py), and the two places it can
start from: the L1 detector (`finetune_detector --arch yolo`) and the L0 backbone `yolov8n-coco`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from detectors.mnv2_rcnn import CLASSES
from tests.training.test_finetune_detector import boxed_folder
from training import tflite_start

EXPORT = Path(__file__).resolve().parents[3] / "shared" / "weights" / "yolov8n_coco_int8.tflite"


def _random_start(path: Path) -> Path:
    """An ultralytics checkpoint of YOLOv8n with random weights (the shape of a recovered one)."""
    from ultralytics.nn.tasks import DetectionModel

    torch.save({"model": DetectionModel("yolov8n.yaml", nc=80, verbose=False).half()}, path)
    return path


def test_the_recovered_network_finds_on_bus_jpg_what_the_export_finds(tmp_path):
    pytest.importorskip("ai_edge_litert")
    if not EXPORT.is_file():
        pytest.skip(f"{EXPORT} is not on this machine")
    from PIL import Image

    bus = np.asarray(Image.open(tflite_start.calibration_images()[0]).convert("RGB"))
    model, report = tflite_start.recover(EXPORT, [bus])
    # every convolution but the fixed DFL one found its layer, well apart from the next candidate
    assert len(report["layers"]) == 63
    assert all(r["relative_error"] < 0.2 and r["next"] > 3 * r["relative_error"] for r in report["layers"])
    # saved as the trainers read it, it finds the bus and the three people in full view that the export finds
    got = tflite_start.boxes(tflite_start.save(model, tmp_path / "coco.pt", report), bus)
    want = tflite_start.boxes(EXPORT, bus)
    names = model.names
    assert sorted(names[c] for c, s, _ in got if s > 0.5) == sorted(names[c] for c, s, _ in want if s > 0.5)
    assert sorted(names[c] for c, s, _ in got if s > 0.5) == ["bus", "person", "person", "person"]


def test_unfolded_batch_norms_compute_what_the_folded_convolutions_did():
    # given YOLOv8n with random weights, folded as an export folds it
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    folded = DetectionModel("yolov8n.yaml", nc=80, verbose=False).eval()
    for m in folded.modules():  # batch norms that are not the identity, so folding matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2)
    folded.fuse(verbose=False)
    batch = [torch.rand(2, 3, 64, 64)]
    # when its weights go back into the unfolded architecture with statistics from a batch
    model = DetectionModel("yolov8n.yaml", nc=80, verbose=False)
    tflite_start._unfold(model, folded, batch)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        want = folded(x)[0]
        # then in eval mode it computes what the folded network does
        torch.testing.assert_close(model.eval()(x)[0], want, atol=1e-3, rtol=1e-3)
        # and in train mode, on the calibration batch, its batch statistics change little
        model.train()
        feats = model(batch[0])["feats"]
        model.eval()
        ref = model(batch[0])[1]["feats"]
    for a, b in zip(feats, ref, strict=True):
        assert float((a - b).abs().mean() / b.abs().mean()) < 0.05


def test_a_file_that_is_not_an_ultralytics_export_is_refused_by_name(tmp_path):
    bad = tmp_path / "plain.tflite"
    bad.write_bytes(b"TFL3 not really")
    with pytest.raises(tflite_start.TfliteStartError, match="plain.tflite: no ultralytics metadata.json"):
        tflite_start.export_metadata(bad)


def test_the_yolo_detector_trains_on_the_views_scores_held_out_rows_and_serves_through_ultralytics(tmp_path):
    from training.datasets import load_folder
    from training.finetune_detector import DetectorConfig, package, train

    data = load_folder(boxed_folder(tmp_path / "data")).select(split="train")
    start = _random_start(tmp_path / "start.pt")
    cfg = DetectorConfig(
        arch="yolo", start=str(start), imgsz=64, epochs=1, batch=2, workers=0, paste_prob=0, erase_prob=0, lr=0.01
    )
    out = tmp_path / "m" / "l1.pt"
    # a detector that never saw the `cam` source scores its rows in every regime
    train(data, out, cfg, "cpu", without=("cam",), held_out_name="cam")
    held = [json.loads(x) for x in out.with_suffix(".loso.jsonl").read_text().splitlines()]
    assert sorted(Path(r["key"]).stem for r in held) == ["0", "1", "2", "3", "4"]
    assert all(set(r["boxes"]) == {"v0.2", "letterbox", "full"} for r in held)
    assert all(
        b[0] in CLASSES and 0 <= min(b[2:]) and max(b[2:]) <= 1 for r in held for v in r["boxes"].values() for b in v
    )
    # the detector on every row is an ultralytics checkpoint with the schema's classes
    train(data, out, cfg, "cpu", final_only=True)
    from ultralytics import YOLO

    yolo = YOLO(str(out), task="detect")
    assert list(yolo.names.values()) == list(CLASSES)
    yolo.predict(np.zeros((48, 64, 3), np.uint8), imgsz=64, verbose=False)
    info = package(out, "l1_yolo", [out.with_suffix(".loso.jsonl")])
    assert info["config"]["arch"] == "yolo" and info["cv"]["full@det"]["n"] == 5


def test_the_yolo_detector_without_a_start_is_refused():
    from training.finetune_detector import DetectorConfig, build_model

    with pytest.raises(ValueError, match="needs a start"):
        build_model(DetectorConfig(arch="yolo"))
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        build_model(DetectorConfig(arch="yolo", start="nowhere.pt"))


def test_an_unknown_detector_kind_is_refused_naming_the_known_ones():
    from training.finetune_detector import DetectorConfig, build_model

    with pytest.raises(ValueError, match=r"detector arch 'ssd': expected one of \('rcnn', 'yolo'\)"):
        build_model(DetectorConfig(arch="ssd"))


def test_the_coco_backbone_kind_round_trips_through_a_checkpoint(tmp_path, monkeypatch):
    from detectors.yolo_backbone import COCO_ENV
    from training.finetune import build_network, load_network, save_checkpoint

    # without the recovered checkpoint, the error says how to make it
    monkeypatch.setenv(COCO_ENV, str(tmp_path / "missing.pt"))
    with pytest.raises(FileNotFoundError, match="missing.pt .*python -m training.tflite_start"):
        build_network(None, "yolov8n-coco")
    # given one (random weights here), the L0 network has its 256-channel map under the usual head
    monkeypatch.setenv(COCO_ENV, str(_random_start(tmp_path / "coco.pt")))
    net = build_network(None, "yolov8n-coco").eval()
    assert net.kind == "yolov8n-coco" and net.head.in_features == 512
    state = net.backbone.state_dict()
    net.backbone.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in state.items()})
    # when the trainer saves it and it is read back, it is the same network
    back = load_network(save_checkpoint(net, tmp_path / "y.pt", {}))
    x = torch.randn(2, 3, 96, 96)
    with torch.inference_mode():
        torch.testing.assert_close(back(x), net(x), atol=1e-4, rtol=1e-4)
    assert back.kind == "yolov8n-coco"


def test_the_command_says_what_is_wrong_with_its_input_without_a_traceback(tmp_path):
    with pytest.raises(SystemExit, match="error: .*nowhere.tflite: no such file"):
        tflite_start.main(["--tflite", str(tmp_path / "nowhere.tflite"), "--out", str(tmp_path / "x.pt")])
    plain = tmp_path / "plain.tflite"
    plain.write_bytes(b"not a zip")
    with pytest.raises(SystemExit, match="error: .*plain.tflite: no ultralytics metadata.json inside"):
        tflite_start.main(["--tflite", str(plain), "--out", str(tmp_path / "x.pt")])
    assert not (tmp_path / "x.pt").exists()
