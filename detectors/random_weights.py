"""Build a profile's voters with random weights at their real size (or tiny), with no downloads.

A production profile names released checkpoints (`params.model: google/owlv2-base-patch16-ensemble`,
`params.weights: yolo11x.pt`). A GPU speed run must not download them, so `random_voter(cfg)` turns
each voter entry into one that builds the same architecture from its config:

  ultralytics      yolo11x.pt -> yolo11x.yaml (the packaged model yaml); YOLOE/World prompts are
                   dropped (their text encoder is another download)
  hf kinds         params.model <hub id> -> params.random_init <that checkpoint's config sizes>
                   (FULL_CONFIGS below, copied from each hub config.json's key sizes)
  rfdetr           weights -> null (the variant's architecture with random weights)
  backbone-head    built by `build_random` directly: the backbone from FULL_CONFIGS plus a random
                   linear head of the right width (the trained head file is not needed)
  ocr-signs        unchanged (its PP-OCR models ship in the rapidocr wheel)

`tiny=True` maps every voter to the tiny configs of detectors/model_specs.py instead (CPU smoke
runs). The probabilities of a random model mean nothing; only speed and memory are real.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cascade.config import VoterConfig
from detectors.base import Detector, Voter
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


def _ultralytics(params: dict[str, Any], tiny: bool) -> dict[str, Any]:
    weights = str(params["weights"])
    yaml_name = tiny_yaml(weights) if tiny else Path(weights).stem + ".yaml"
    out = {**params, "weights": yaml_name, "allow_download": False}
    out.pop("prompts", None)  # YOLOE / World text encoders would be downloaded
    if tiny:
        out.update(imgsz=64)
    return out


def _hf(params: dict[str, Any], kind: str, name: str, tiny: bool) -> dict[str, Any]:
    if params.get("random_init") is not None:
        init = dict(params["random_init"])
    else:
        init = full_config(str(params.get("model")), f"voters[{name}].params.model")
    if tiny:
        init = tiny_config(init)
    out = {k: v for k, v in params.items() if k not in ("model", "allow_download")}
    out["random_init"] = init
    if tiny:
        out.update(image_size=TINY_SIZES[kind])
    return out


def random_voter(cfg: VoterConfig, tiny: bool = False, dtype: str | None = None) -> VoterConfig:
    """The same voter built from configs with random weights; `dtype` overrides the voter's own
    (tiny voters run float32)."""
    p = dict(cfg.params)
    run_as = "float32" if tiny else (dtype or cfg.dtype)
    if cfg.kind == "ultralytics":
        p = _ultralytics(p, tiny)
        run_as = "float16" if run_as == "float16" else "float32"  # ultralytics runs fp16 or fp32 only
    elif cfg.kind in HF_KINDS:
        p = _hf(p, cfg.kind, cfg.name, tiny)
    elif cfg.kind == "rfdetr":
        p = {**p, "weights": None, "allow_download": False}
        if tiny:
            p.update(variant="nano", resolution=128)
    elif cfg.kind == "wbf-ensemble":
        members = []
        for m in p.get("members", []):
            mcfg = VoterConfig.model_validate({"level": cfg.level, "dtype": cfg.dtype, **m})
            built = random_voter(mcfg, tiny, dtype)
            members.append({**m, "params": built.params, "dtype": built.dtype})
        p["members"] = members
    elif cfg.kind in ("backbone-head", "ocr-signs"):
        pass  # backbone-head: see build_random; OCR ships its models
    else:
        raise NoRandomConfigError(
            f"voter {cfg.name!r}: kind {cfg.kind!r} has no random-weights form "
            f"(in-process kinds only; {', '.join(IN_PROCESS_EXCLUDED)} run on servers)"
        )
    batch = min(cfg.batch, 4) if tiny else cfg.batch
    return cfg.model_copy(update={"params": p, "batch": batch, "dtype": run_as})


def random_backbone_head(
    cfg: VoterConfig, tiny: bool = False, dtype: str | None = None, seed: int = 0, base_dir: Path = Path(".")
) -> Detector:
    """L0: a random-weight transformers backbone of the configured hub id + a random linear head."""
    import numpy as np
    from transformers import AutoModel, ViTImageProcessor

    from detectors.backbone_head import BackboneHead, BackboneHeadParams
    from detectors.backbones import HFAutoModelBackbone
    from detectors.heads import LinearHead
    from detectors.hf_common import random_config, random_model, torch_dtype
    from detectors.mobilenet import IMAGENET_MEAN, IMAGENET_STD

    params = BackboneHeadParams.model_validate(cfg.params)
    spec = params.backbone
    if spec.kind != "hf-automodel":  # the bundled MobileNetV2 has real weights already (paths: the profile's)
        from detectors.registry import resolve

        return resolve(cfg.kind).from_config(cfg, base_dir)
    init = full_config(str(spec.model), f"voters[{cfg.name}].params.backbone.model")
    if tiny:
        init = tiny_config(init)
    dt = "float32" if tiny else (dtype or cfg.dtype)
    model = random_model(AutoModel, random_config(init), cfg.device, torch_dtype(dt))
    side = 56 if tiny else spec.input_size
    proc = ViTImageProcessor(
        size={"height": side, "width": side}, image_mean=IMAGENET_MEAN.tolist(), image_std=IMAGENET_STD.tolist()
    )
    spec = spec.model_copy(update={"device": cfg.device, "dtype": dt})
    dim = int(model.config.hidden_size)
    backbone = HFAutoModelBackbone(model, proc, spec, dim)
    rng = np.random.default_rng(seed)
    head = LinearHead(
        mean=np.zeros(dim), scale=np.ones(dim), coef=rng.normal(0, 0.01, dim), intercept=0.0, backbone=backbone.name
    )  # random too: it only has to fit the backbone it rides on
    return BackboneHead(cfg.name, cfg.level, backbone, head, cfg.weight, min(cfg.batch, 4) if tiny else cfg.batch)


def build_random(cfg: VoterConfig, base_dir: Path, tiny: bool = False, dtype: str | None = None) -> Voter:
    """The voter with random weights, wrapped in a MicroBatcher when the profile batches it."""
    from detectors.registry import build

    if cfg.kind == "backbone-head":
        det = random_backbone_head(cfg, tiny, dtype, base_dir=base_dir)
        if cfg.batch_wait_ms > 0:
            from detectors.batching import MicroBatcher

            det = MicroBatcher(det, min(cfg.batch, 4) if tiny else cfg.batch, cfg.batch_wait_ms, cfg.batch_pad)
        return det
    return build(random_voter(cfg, tiny, dtype), base_dir)
