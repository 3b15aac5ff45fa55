"""The production recipe end to end on the CPU, with a tiny mirror of configs/h100x2.yaml.

The same steps an operator follows (README, "From an empty GPU box to a serving miner") on the same
kinds and levels: an L0 transformers backbone with a trained head, an L1 ultralytics detector
fine-tuned on roadwork boxes beside a transformers detector, the L2 OCR voter and an L3 VLM tier
over an OpenAI-compatible server (the fake one). Every model is tiny, every file is made here:
`train head`, `train detector`, `plan` (refusing the unfitted profile, one line per missing file),
`eval`, `fit`, `plan` again, then `serve --no-chain` answering a real dendrite query.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from roadwork.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def make_data(root: Path, n: int = 28) -> Path:
    """Street-grey frames; the roadwork ones carry an orange cone, boxed as `cone` (a car, boxed as
    `car`, is background), in groups of four frames; the last group is dev."""
    rng = np.random.default_rng(0)
    (root / "images" / "synth").mkdir(parents=True)
    (root / "boxes" / "synth").mkdir(parents=True)
    (root / "boxes" / "synth" / "classes.txt").write_text("cone\ncar\n")
    rows = ["path,label,source,split,group"]
    for i in range(n):
        img = rng.integers(90, 130, (96, 128, 3), dtype=np.uint8)
        label = i % 2
        x, y, w, h = int(rng.integers(10, 90)), int(rng.integers(30, 60)), 14, 24
        img[y : y + h, x : x + w] = (250, 120, 20) if label else (30, 60, 200)
        Image.fromarray(img).save(root / "images" / "synth" / f"f{i}.jpg")
        line = f"{0 if label else 1} {(x + w / 2) / 128:.4f} {(y + h / 2) / 96:.4f} {w / 128:.4f} {h / 96:.4f}\n"
        (root / "boxes" / "synth" / f"f{i}.txt").write_text(line)
        split = "dev" if i >= n - 4 else "train"
        rows.append(f"images/synth/f{i}.jpg,{label},synth,{split},g{i // 4}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def tiny_dinov2(folder: Path) -> Path:
    """A DINOv2 of a few thousand weights saved as a local checkpoint folder (the hub id's stand-in)."""
    from transformers import Dinov2Config, Dinov2Model, ViTImageProcessor

    cfg = Dinov2Config(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, patch_size=14, image_size=56
    )
    Dinov2Model(cfg).save_pretrained(folder)
    ViTImageProcessor(size={"height": 56, "width": 56}).save_pretrained(folder)
    return folder


def mirror(tmp_path: Path, backbone: Path, vlm_url: str, fitted: bool) -> Path:
    from detectors.model_specs import TINY_DFINE

    models = tmp_path / "models"
    profile = {
        "version": 1,
        "name": "h100x2-mirror",
        "runtime": {"deadline_ms": 8000, "workers": 4, "torch_threads": 1},
        "voters": [
            {
                "name": "l0_dinov2",
                "kind": "backbone-head",
                "level": "L0",
                "params": {
                    "backbone": {"kind": "hf-automodel", "model": str(backbone), "input_size": 56},
                    "head": str(models / "l0_head.npz"),
                },
            },
            {
                "name": "yolo",
                "kind": "ultralytics",
                "level": "L1",
                "params": {"weights": str(models / "roadwork_yolo.pt"), "imgsz": 64, "conf": 0.01},
            },
            {
                "name": "dfine",
                "kind": "hf-detector",
                "level": "L1",
                "params": {"random_init": TINY_DFINE, "image_size": 64},
            },
            {"name": "ocr_signs", "kind": "ocr-signs", "level": "L2"},
            {
                "name": "vlm_fast",
                "kind": "vlm-http",
                "level": "L3",
                "params": {"model": "fast", "endpoints": [vlm_url], "timeout_ms": 3000},
            },
        ],
    }
    if fitted:
        profile["consensus"] = {"weights": str(models / "consensus.json")}
    path = tmp_path / ("mirror.yaml" if fitted else "mirror_unfitted.yaml")
    path.write_text(yaml.safe_dump(profile))
    return path


def test_the_recipe_from_trained_files_to_a_served_answer(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("ultralytics")
    pytest.importorskip("rapidocr_onnxruntime")
    pytest.importorskip("bittensor")
    from tests.miner.helpers import encode, served_miner
    from tests.vlm_tiers.fake_openai import FakeServer

    monkeypatch.chdir(tmp_path)
    data = make_data(tmp_path / "data")
    backbone = tiny_dinov2(tmp_path / "tiny-dinov2")
    models = tmp_path / "models"
    # L0: a head on the backbone's features; a second head reads the kept features, no embedding
    head = ["train", "head", "--data", str(data), "--backbone", str(backbone), "--views", "1"]
    assert "embedded and written" in invoke(*head, "--out", str(models / "l0_head_first.npz")).output
    assert "features read from" in invoke(*head, "--out", str(models / "l0_head.npz")).output
    # L1: an ultralytics detector fine-tuned on the roadwork boxes
    invoke("train", "detector", "--data", str(data), "--model", "yolo11n.yaml", "--imgsz", "64", "--epochs", "1",
           "--time-h", "0.02", "--batch", "4", "--work", str(tmp_path / "work"),
           "--out", str(models / "roadwork_yolo.pt"))  # fmt: skip
    assert (models / "roadwork_yolo.manifest.json").is_file()
    with FakeServer(p_yes=0.7) as vlm:
        unfitted, fitted = (mirror(tmp_path, backbone, vlm.url, f) for f in (False, True))
        # the fitted profile is refused before any model loads: its consensus is not made yet
        refused = runner.invoke(app, ["plan", str(fitted)])
        assert refused.exit_code != 0 and "consensus.weights" in refused.output and "roadwork fit" in refused.output
        # every voter's votes on labelled frames, then the pool fitted on them
        invoke(
            "eval", "--data", str(data), "--split", "train", "--config", str(unfitted), "--out", str(tmp_path / "run")
        )
        invoke("fit", "--profile", str(fitted), "--run", str(tmp_path / "run"), "--out", str(models / "consensus.json"))
        assert "every trained file the profile names is there" in invoke("plan", str(fitted)).output
        assert len(vlm.chats) > 0  # the L3 tier was asked during eval
        # and the miner serves it: a real dendrite query gets a probability
        with served_miner(tmp_path, fitted, ready_s=180) as miner:
            resp = miner.ask(encode(size=(224, 224)))
    assert resp.dendrite.status_code == 200 and 0.0 <= resp.prediction <= 1.0
