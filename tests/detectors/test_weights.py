"""Where each voter's weights come from (detectors/weights.py, each kind's registry entry): one list
for `roadwork fetch-weights`, released checkpoints and our trained files each said once."""

from __future__ import annotations

from pathlib import Path

from cascade.config import CascadeConfig, VoterConfig
from detectors.weights import profile_weights


def profile(tmp_path: Path, voters: list[dict]) -> CascadeConfig:
    cfg = CascadeConfig.model_validate({"name": "t", "voters": voters})
    return cfg.model_copy(update={"base_dir": tmp_path})


def test_a_released_asset_is_fetched_and_our_checkpoint_is_trained(tmp_path: Path) -> None:
    cfg = profile(
        tmp_path,
        [
            {"name": "coco", "kind": "ultralytics", "level": "L1", "params": {"weights": "yolo11x.pt"}},
            {"name": "ours", "kind": "ultralytics", "level": "L1", "params": {"weights": "models/rw_yolo11x.pt"}},
            {"name": "cfg", "kind": "ultralytics", "level": "L1", "params": {"weights": "yolo11n.yaml"}},
        ],
    )
    items = {(i.voter, i.source): i for i in profile_weights(cfg)}
    assert set(items) == {("coco", "ultralytics"), ("ours", "trained")}
    assert items[("coco", "ultralytics")].target == str(tmp_path / "yolo11x.pt")
    ours = items[("ours", "trained")]
    assert ours.present is False and "roadwork train detector" in ours.note


def test_an_ensemble_lists_its_members_under_its_own_name(tmp_path: Path) -> None:
    members = [
        {"name": "a", "kind": "ultralytics", "params": {"weights": "yolo11x.pt"}},
        {"name": "b", "kind": "hf-detector", "params": {"model": "PekingU/rtdetr_v2_r50vd"}},
    ]
    cfg = profile(tmp_path, [{"name": "ens", "kind": "wbf-ensemble", "level": "L1", "params": {"members": members}}])
    assert [(i.voter, i.source, i.id) for i in profile_weights(cfg)] == [
        ("ens", "ultralytics", "yolo11x.pt"),
        ("ens", "hf", "PekingU/rtdetr_v2_r50vd"),
    ]


def test_a_tier_names_the_checkpoint_its_server_serves(tmp_path: Path) -> None:
    tier = VoterConfig(name="vlm", kind="vlm-http", level="L3", params={"model": "fast", "endpoints": ["http://x:1"]})
    cfg = profile(tmp_path, [tier.model_dump()])
    (known,) = profile_weights(cfg, served={"fast": "Qwen/Qwen2.5-VL-7B-Instruct"})
    assert known.id == "Qwen/Qwen2.5-VL-7B-Instruct" and "served as 'fast'" in known.note
    (unknown,) = profile_weights(cfg)
    assert unknown.present is None and "no launch spec" in unknown.note


def test_a_transformers_detector_of_ours_is_a_trained_folder_not_a_hub_id(tmp_path: Path) -> None:
    cfg = profile(
        tmp_path,
        [
            {
                "name": "coco",
                "kind": "hf-detector",
                "level": "L1",
                "params": {"model": "ustc-community/dfine-large-coco"},
            },
            {"name": "ours", "kind": "hf-detector", "level": "L1", "params": {"model": "../models/roadwork_dfine"}},
        ],
    )
    items = [(i.voter, i.source) for i in profile_weights(cfg)]
    assert items == [("coco", "hf"), ("ours", "trained")]
