"""The roadwork-box detector (detectors/mnv2_rcnn.py) behind the `rcnn-mobilenet` voter kind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cascade.config import VoterConfig
from cascade.types import Frame
from detectors import registry
from detectors.heads import write_manifest
from detectors.mnv2_rcnn import CLASSES, build_rcnn, detections, load_rcnn, save_rcnn


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A detector with its box predictor biased towards 'cone', so that a random net finds some."""
    torch.manual_seed(0)
    model = build_rcnn(imagenet=True)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias[1 + CLASSES.index("cone")] += 6.0
        model.rpn.head.cls_logits.bias += 4.0
    path = tmp_path_factory.mktemp("rcnn") / "l1_rcnn.pt"
    save_rcnn(model.eval(), path, {"test": True})
    write_manifest(path, {"from": "test"})
    return path


def street(seed: int = 0, h: int = 180, w: int = 320) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_a_saved_detector_loads_back_with_the_same_answers(checkpoint):
    model = load_rcnn(checkpoint)
    again = load_rcnn(checkpoint)
    a, b = detections(model, [street()]), detections(again, [street()])
    assert a == b and a[0], "the cone-biased detector should report boxes"
    name, score, x0, y0, x1, y1 = a[0][0]
    assert name in CLASSES and 0 <= score <= 1 and 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1


def test_a_file_that_is_not_a_detector_is_refused_with_its_name(tmp_path):
    bad = tmp_path / "other.pt"
    torch.save({"format": "something-else/1"}, bad)
    with pytest.raises(ValueError, match="other.pt.*something-else"):
        load_rcnn(bad)
    with pytest.raises(FileNotFoundError, match="roadwork train boxes"):
        load_rcnn(tmp_path / "missing.pt")


def test_a_checkpoint_edited_after_its_manifest_is_refused_at_load(checkpoint, tmp_path):
    copy = tmp_path / "l1_rcnn.pt"
    copy.write_bytes(checkpoint.read_bytes() + b"x")
    (tmp_path / "l1_rcnn.manifest.json").write_text(checkpoint.with_suffix(".manifest.json").read_text())
    cfg = VoterConfig.model_validate(
        {"name": "l1", "kind": "rcnn-mobilenet", "level": "L1", "params": {"weights": str(copy)}}
    )
    with pytest.raises(ValueError, match="does not match its manifest"):
        registry.build(cfg, tmp_path)


def test_the_voter_answers_every_frame_with_boxes_as_evidence(checkpoint):
    cfg = VoterConfig.model_validate(
        {"name": "l1_rcnn", "kind": "rcnn-mobilenet", "level": "L1", "batch": 2, "params": {"weights": checkpoint.name}}
    )
    det = registry.build(cfg, checkpoint.parent)
    frames = [
        Frame(street(1), frame_id="a"),
        Frame(np.zeros((1, 1, 3), np.uint8), frame_id="tiny"),
        Frame(street(2, 224, 224), frame_id="b"),
    ]
    votes = det.predict(frames)
    assert [v.voter for v in votes] == ["l1_rcnn"] * 3
    for v in votes:
        assert v.prob is not None and 0.0 <= v.prob <= 1.0
        json.dumps(v.to_dict())
    assert votes[0].evidence["n_boxes"] > 0 and votes[0].prob > 0.5
    assert {b["label"] for b in votes[0].evidence["boxes"]} <= set(CLASSES)
    # one frame alone gets the answer it got in the batch
    assert det.predict(frames[:1])[0].prob == pytest.approx(votes[0].prob, abs=1e-4)


def test_unknown_params_are_refused_with_the_key_named(checkpoint):
    cfg = VoterConfig.model_validate(
        {"name": "l1", "kind": "rcnn-mobilenet", "level": "L1", "params": {"weights": str(checkpoint), "halff": True}}
    )
    with pytest.raises(ValueError, match="halff"):
        registry.build(cfg, checkpoint.parent)
