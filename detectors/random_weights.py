"""Build a profile's voters with random weights at their real size (or tiny), with no downloads.

A production profile names released checkpoints (`params.model: google/owlv2-base-patch16-ensemble`,
`params.weights: yolo11x.pt`). A GPU speed run must not download them, so `random_voter(cfg)` turns
each voter entry into one that builds the same architecture from its config, by the `random` form
its kind's registry entry names (detectors/registry.py); the voter is then built the production
way. The forms are the `*_params` functions here:

  ultralytics      yolo11x.pt -> yolo11x.yaml (the packaged model yaml); YOLOE/World prompts are
                   dropped (their text encoder is another download)
  hf kinds         params.model <hub id> -> params.random_init <that checkpoint's config sizes>
                   (FULL_CONFIGS below, copied from each hub config.json's key sizes)
  rfdetr           weights -> null (the variant's architecture with random weights)
  backbone-head    a transformers backbone -> backbone.random_init from FULL_CONFIGS and a random
                   linear head of its width (head: null; the trained head file is not needed)
  ocr-signs        unchanged (its PP-OCR models ship in the rapidocr wheel)

`tiny=True` maps every voter to the tiny configs of detectors/model_specs.py instead (CPU smoke
runs). The probabilities of a random model mean nothing; only speed and memory are real.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cascade.config import MEMORY_DTYPE, VoterConfig
from detectors.base import Voter
from detectors.model_specs import TINY_CLIP, TINY_DEPTH, TINY_DFINE, TINY_GDINO, TINY_OWLV2, TINY_SAM, TINY_SIGLIP

_DA_L = dict(
    model_type="depth_anything",
    neck_hidden_sizes=[256, 512, 1024, 1024],
    fusion_hidden_size=256,
    reassemble_hidden_size=1024,
    backbone_config=dict(
        model_type="dinov2",
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        patch_size=14,
        image_size=518,
        reshape_hidden_states=False,
        out_indices=[5, 12, 18, 24],
    ),
)
_DA_B_METRIC = dict(
    model_type="depth_anything",
    neck_hidden_sizes=[96, 192, 384, 768],
    fusion_hidden_size=128,
    reassemble_hidden_size=768,
    depth_estimation_type="metric",
    max_depth=80,
    backbone_config=dict(
        model_type="dinov2",
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        patch_size=14,
        image_size=518,
        reshape_hidden_states=False,
        out_indices=[3, 6, 9, 12],
    ),
)
_SO400M = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16)

# hub id -> {model_type, ...key sizes of its config.json}; transformers fills in the rest.
FULL_CONFIGS: dict[str, dict[str, Any]] = {
    "facebook/dinov2-large": dict(
        model_type="dinov2",
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        patch_size=14,
        image_size=518,
    ),
    "facebook/dinov3-vitl16-pretrain-lvd1689m": dict(
        model_type="dinov3_vit",
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        patch_size=16,
        num_register_tokens=4,
        layerscale_value=1e-5,
    ),
    "google/owlv2-base-patch16-ensemble": dict(model_type="owlv2", vision_config=dict(image_size=960, patch_size=16)),
    "IDEA-Research/grounding-dino-tiny": dict(model_type="grounding-dino"),  # defaults: Swin-T + BERT-base
    "ustc-community/dfine-large-coco": dict(model_type="d_fine", num_labels=80),  # library default (HGNetV2-B4)
    "PekingU/rtdetr_v2_r50vd": dict(model_type="rt_detr_v2", num_labels=80),  # library default: ResNet-50-vd
    "depth-anything/Depth-Anything-V2-Large-hf": _DA_L,
    "depth-anything/Depth-Anything-V2-Metric-Outdoor-Base-hf": _DA_B_METRIC,
    "facebook/sam-vit-base": dict(model_type="sam"),  # library default: ViT-B image encoder at 1024
    "google/siglip-so400m-patch14-384": dict(
        model_type="siglip",
        vision_config=dict(**_SO400M, patch_size=14, image_size=384),
        text_config=dict(**_SO400M, vocab_size=32000, max_position_embeddings=64),
    ),
    "google/siglip2-base-patch16-224": dict(
        model_type="siglip", text_config=dict(vocab_size=256000, max_position_embeddings=64)
    ),
    "openai/clip-vit-large-patch14-336": dict(
        model_type="clip",
        projection_dim=768,
        vision_config=dict(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            patch_size=14,
            image_size=336,
        ),
        text_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
    ),
}
TINY_BY_TYPE: dict[str, dict[str, Any]] = {
    "owlv2": TINY_OWLV2,
    "grounding-dino": TINY_GDINO,
    "d_fine": TINY_DFINE,
    "rt_detr_v2": TINY_DFINE,
    "depth_anything": TINY_DEPTH,
    "sam": TINY_SAM,
    "siglip": TINY_SIGLIP,
    "clip": TINY_CLIP,
    "dinov2": dict(
        model_type="dinov2",
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        patch_size=14,
        image_size=56,
    ),
    "dinov3_vit": dict(
        model_type="dinov3_vit",
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        patch_size=16,
        num_register_tokens=1,
    ),
}
HF_KINDS = ("hf-detector", "depth-size", "sam-mask", "scene-zero-shot")
TINY_SIZES = {"hf-detector": 64, "depth-size": 56, "sam-mask": 64, "scene-zero-shot": 32}
IN_PROCESS_EXCLUDED = ("vlm-http", "vlm-transformers")
"""Kinds the GPU bench does not build: VLM tiers run on vLLM servers, measured separately."""


class NoRandomConfigError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def full_config(hub_id: str, key: str) -> dict[str, Any]:
    try:
        return dict(FULL_CONFIGS[hub_id])
    except KeyError:
        raise NoRandomConfigError(
            f"{key}={hub_id!r} has no random-weights config; known: {', '.join(sorted(FULL_CONFIGS))}. "
            "Add its config.json key sizes to FULL_CONFIGS in detectors/random_weights.py"
        ) from None


def tiny_config(full: dict[str, Any]) -> dict[str, Any]:
    mtype = full["model_type"]
    if mtype not in TINY_BY_TYPE:
        raise NoRandomConfigError(f"no tiny config for model_type {mtype!r}; known: {sorted(TINY_BY_TYPE)}")
    return dict(TINY_BY_TYPE[mtype])


def tiny_yaml(weights: str) -> str:
    """yolo11x.pt -> yolo11n.yaml, rtdetr-x.pt -> rtdetr-l.yaml (the smallest RT-DETR yaml)."""
    stem = Path(weights).stem
    if stem.startswith("rtdetr"):
        return "rtdetr-l.yaml"
    if stem.startswith("yoloe"):
        return re.sub(r"^(yoloe-\w*?\d+)[nslmx]", r"\1s", stem) + ".yaml"
    return re.sub(r"^(yolo\w*?\d+)[nslmx]", r"\1n", stem) + ".yaml"


def ultralytics_params(cfg: VoterConfig, tiny: bool) -> dict[str, Any]:
    """yolo11x.pt -> yolo11x.yaml (tiny: yolo11n.yaml at 64 px); prompts dropped (their text encoder
    would be downloaded)."""
    params = dict(cfg.params)
    weights = str(params["weights"])
    yaml_name = tiny_yaml(weights) if tiny else Path(weights).stem + ".yaml"
    out = {**params, "weights": yaml_name, "allow_download": False}
    out.pop("prompts", None)
    if tiny:
        out.update(imgsz=64)
    return out


def hf_params(cfg: VoterConfig, tiny: bool) -> dict[str, Any]:
    """params.model <hub id> -> params.random_init <its FULL_CONFIGS entry> (tiny: TINY_BY_TYPE)."""
    params = dict(cfg.params)
    if params.get("random_init") is not None:
        init = dict(params["random_init"])
    else:
        init = full_config(str(params.get("model")), f"voters[{cfg.name}].params.model")
    if tiny:
        init = tiny_config(init)
    out = {k: v for k, v in params.items() if k not in ("model", "allow_download")}
    out["random_init"] = init
    if tiny:
        out.update(image_size=TINY_SIZES[cfg.kind])
    return out


def rfdetr_params(cfg: VoterConfig, tiny: bool) -> dict[str, Any]:
    """The variant's architecture with no checkpoint (tiny: nano at 128 px)."""
    out = {**cfg.params, "weights": None, "allow_download": False}
    if tiny:
        out.update(variant="nano", resolution=128)
    return out


def ensemble_params(cfg: VoterConfig, tiny: bool) -> dict[str, Any]:
    """Each member through its own kind's random form."""
    members = []
    for m in cfg.params.get("members", []):
        built = random_voter(VoterConfig.model_validate({"level": cfg.level, "dtype": cfg.dtype, **m}), tiny)
        members.append({**m, "params": built.params, "dtype": built.dtype})
    return {**cfg.params, "members": members}


def backbone_head_params(cfg: VoterConfig, tiny: bool) -> dict[str, Any]:
    """A transformers backbone -> `backbone.random_init` and a random head of its width (the trained
    head file is not needed); the bundled MobileNetV2 keeps its real weights and the profile's head."""
    params = dict(cfg.params)
    spec = dict(params.get("backbone") or {})
    if spec.get("kind") != "hf-automodel":
        return params
    init = full_config(str(spec.get("model")), f"voters[{cfg.name}].params.backbone.model")
    spec.update(random_init=tiny_config(init) if tiny else init, allow_download=False)
    if tiny:
        spec.update(input_size=56, compile="none")
    return {**params, "backbone": spec, "head": None}


def unchanged_params(cfg: VoterConfig, tiny: bool) -> dict[str, Any]:
    """Nothing to download (e.g. PP-OCR, which ships in its wheel; our own small checkpoints)."""
    return dict(cfg.params)


def random_voter(cfg: VoterConfig, tiny: bool = False, dtype: str | None = None) -> VoterConfig:
    """The same voter built from configs with random weights, by its registry entry's `random`
    form; `dtype` overrides the voter's own (tiny voters run float32, 4 frames a batch)."""
    from detectors.registry import random_form

    form = random_form(cfg.kind)
    if form is None:
        raise NoRandomConfigError(
            f"voter {cfg.name!r}: kind {cfg.kind!r} has no random-weights form "
            f"(in-process kinds only; {', '.join(IN_PROCESS_EXCLUDED)} run on servers)"
        )
    run_as = "float32" if tiny else (dtype or cfg.dtype)
    if cfg.kind == "ultralytics":
        run_as = "float16" if run_as == "float16" else "float32"  # ultralytics runs fp16 or fp32 only
    update: dict[str, Any] = {"params": form(cfg, tiny), "batch": min(cfg.batch, 4) if tiny else cfg.batch}
    update["dtype"] = run_as
    if cfg.memory is not None and cfg.memory.dtype in MEMORY_DTYPE.values():  # memory follows the dtype
        update["memory"] = cfg.memory.model_copy(update={"dtype": MEMORY_DTYPE[run_as]})
    return cfg.model_copy(update=update)


def build_random(cfg: VoterConfig, base_dir: Path, tiny: bool = False, dtype: str | None = None) -> Voter:
    """The voter with random weights, built the production way (micro-batched when the profile says)."""
    from detectors.registry import build

    return build(random_voter(cfg, tiny, dtype), base_dir)
