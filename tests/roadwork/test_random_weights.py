"""detectors/random_weights.py: a profile's voter -> the same architecture from configs, no downloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cascade.config import VoterConfig
from cascade.types import Frame
from detectors.random_weights import NoRandomConfigError, build_random, random_voter, tiny_yaml


@pytest.mark.parametrize(
    "weights, tiny",
    [
        ("yolo11x.pt", "yolo11n.yaml"),
        ("yolo26x.pt", "yolo26n.yaml"),
        ("yolov8l.pt", "yolov8n.yaml"),
        ("rtdetr-x.pt", "rtdetr-l.yaml"),
        ("yoloe-11l-seg.pt", "yoloe-11s-seg.yaml"),
    ],
)
def test_tiny_yaml(weights: str, tiny: str) -> None:
    assert tiny_yaml(weights) == tiny


def _voter(kind: str, dtype: str = "float32", **params) -> VoterConfig:
    return VoterConfig(name="v", kind=kind, level="L1", batch=16, dtype=dtype, params=params)


def test_ultralytics_full_size_yaml_and_dtype() -> None:
    v = _voter("ultralytics", dtype="float16", weights="yolo11x.pt", prompts=["cone"], allow_download=True)
    assert random_voter(v).dtype == "float16"
    built = random_voter(v, dtype="float32")
    p = built.params
    assert p["weights"] == "yolo11x.yaml" and built.dtype == "float32" and "prompts" not in p
    assert p["allow_download"] is False
    assert random_voter(v, dtype="bfloat16").dtype == "float32"  # ultralytics runs fp16 or fp32 only


def test_hf_hub_id_becomes_its_full_config() -> None:
    built = random_voter(
        _voter("hf-detector", dtype="float16", model="google/owlv2-base-patch16-ensemble"), dtype="bfloat16"
    )
    p = built.params
    assert "model" not in p and built.dtype == "bfloat16"
    assert p["random_init"]["model_type"] == "owlv2" and p["random_init"]["vision_config"]["image_size"] == 960


def test_tiny_hf_voter_is_small_and_fp32() -> None:
    built = random_voter(
        _voter("depth-size", dtype="float16", model="depth-anything/Depth-Anything-V2-Large-hf"), tiny=True
    )
    p = built.params
    assert built.dtype == "float32" and p["image_size"] == 56
    assert p["random_init"]["backbone_config"]["hidden_size"] == 32


def test_unknown_hub_id_names_the_key_and_the_fix() -> None:
    with pytest.raises(NoRandomConfigError, match=r"voters\[v\]\.params\.model='acme/unknown'.*FULL_CONFIGS"):
        random_voter(_voter("scene-zero-shot", model="acme/unknown"))


def test_vlm_kinds_have_no_random_form() -> None:
    with pytest.raises(NoRandomConfigError, match="run on servers"):
        random_voter(_voter("vlm-http", model="fast", endpoints=["http://127.0.0.1:1"]))


@pytest.mark.parametrize("hub", ["facebook/dinov2-large", "facebook/dinov3-vitl16-pretrain-lvd1689m"])
def test_tiny_backbone_head_predicts_without_a_head_file(hub: str) -> None:
    v = VoterConfig(
        name="l0",
        kind="backbone-head",
        level="L0",
        batch=4,
        batch_wait_ms=2,
        params={"backbone": {"kind": "hf-automodel", "model": hub}, "head": "missing.npz"},
    )
    det = build_random(v, base_dir=Path("."), tiny=True)
    frames = [Frame(np.zeros((40, 60, 3), np.uint8), source="t") for _ in range(3)]
    votes = det.predict(frames)
    assert len(votes) == 3 and all(0.0 <= vote.prob <= 1.0 for vote in votes)
    det.close()


def test_the_bundled_l0_voters_build_from_the_profiles_folder_whatever_the_cwd(tmp_path, monkeypatch):
    """`bench --gpu --random-weights --tiny` without --config: the heads are found from the profile."""
    from cascade.config import load_config
    from detectors.random_weights import build_random
    from tests.conftest import REPO

    cfg = load_config(REPO / "configs" / "cpu.yaml")
    monkeypatch.chdir(tmp_path)
    det = build_random(cfg.voters[0], cfg.base_dir, tiny=True)
    assert det.name == "l0_head" and det.backbone.dim == 2560


def test_only_a_random_backbone_runs_without_a_trained_head() -> None:
    from pydantic import ValidationError

    from detectors.backbone_head import BackboneHeadParams

    with pytest.raises(ValidationError, match="a trained head"):
        BackboneHeadParams.model_validate(
            {"backbone": {"kind": "hf-automodel", "model": "facebook/dinov2-large"}, "head": None}
        )
    with pytest.raises(ValidationError, match="a trained head"):
        BackboneHeadParams.model_validate({"head": None})


def test_production_sizes_come_from_the_checkpoints_configs() -> None:
    # the GPU speed runs' production voters are the released checkpoints through their random forms
    from detectors.model_specs import PRODUCTION, production_voters
    from detectors.random_weights import FULL_CONFIGS
    from detectors.registry import check_profile_voters

    voters = [VoterConfig.model_validate(v) for v in production_voters()]
    assert check_profile_voters(voters) == [] and all(v.dtype == "float16" for v in voters)
    for v, (_, kind, _, _, params) in zip(voters, PRODUCTION, strict=True):
        if "model" in params:
            assert v.params["random_init"] == FULL_CONFIGS[params["model"]]
        else:
            assert v.params["weights"] == params["weights"].replace(".pt", ".yaml") and kind == "ultralytics"
