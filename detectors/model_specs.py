"""Voter configs that build each registered architecture with random weights, no downloads.

`tiny_voters()` are the smallest working sizes (the registry contract test runs them on CPU in
seconds); `production_voters()` are the real production sizes (yolo11x, yolo26x, rtdetr-x,
OWLv2-B/16 at 960, Grounding-DINO-T at 800, Depth-Anything-V2-L at 518, SigLIP2-B/16) for speed
measurements on a GPU, built from the released checkpoints' names by their random forms. Both are plain dicts in VoterConfig form, so
they double as examples of a profile's `voters:` entries.
"""

from __future__ import annotations

from typing import Any

_TINY_TEXT = dict(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=2,
    max_position_embeddings=32,
)
_TINY_VIT = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=16
)

TINY_OWLV2 = dict(
    model_type="owlv2",
    projection_dim=32,
    text_config={**_TINY_TEXT, "max_position_embeddings": 16},
    vision_config={**_TINY_VIT, "image_size": 64},
)
TINY_GDINO = dict(
    model_type="grounding-dino",
    d_model=32,
    encoder_layers=1,
    decoder_layers=2,  # >= 2 decoder layers
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
    num_queries=10,
    max_text_len=32,
    backbone_config=dict(
        model_type="swin", embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], out_indices=[2, 3, 4]
    ),
    text_config=dict(
        model_type="bert",
        vocab_size=128,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    ),
)
TINY_DFINE = dict(
    model_type="d_fine",
    d_model=32,
    encoder_hidden_dim=32,
    decoder_in_channels=[32, 32, 32],
    decoder_layers=2,
    encoder_layers=1,
    num_queries=10,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
    encoder_in_channels=[32, 64, 128],
    id2label={0: "person", 1: "truck", 2: "traffic cone"},
    backbone_config=dict(
        model_type="hgnet_v2",
        out_features=["stage2", "stage3", "stage4"],
        stem_channels=[3, 8, 8],
        stage_in_channels=[8, 16, 32, 64],
        stage_mid_channels=[8, 16, 32, 64],
        stage_out_channels=[16, 32, 64, 128],
        stage_num_blocks=[1, 1, 1, 1],
        stage_numb_of_layers=[1, 1, 1, 1],
        hidden_sizes=[16, 32, 64, 128],
        depths=[1, 1, 1, 1],
    ),
)
TINY_DEPTH = dict(
    model_type="depth_anything",
    neck_hidden_sizes=[8, 16, 32, 32],
    fusion_hidden_size=16,
    head_hidden_size=8,
    reassemble_hidden_size=32,
    backbone_config=dict(
        model_type="dinov2",
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        patch_size=14,
        image_size=56,
        reshape_hidden_states=False,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    ),
)
TINY_SIGLIP = dict(model_type="siglip", text_config=_TINY_TEXT, vision_config=_TINY_VIT)
TINY_CLIP = dict(model_type="clip", projection_dim=32, text_config=_TINY_TEXT, vision_config=_TINY_VIT)
TINY_SAM = dict(
    model_type="sam",
    vision_config=dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_dim=64,
        output_channels=16,
        image_size=64,
        patch_size=16,
        global_attn_indexes=[1],
        window_size=2,
        num_pos_feats=8,
    ),
    prompt_encoder_config=dict(hidden_size=16, image_size=64, patch_size=16, mask_input_channels=4),
    mask_decoder_config=dict(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, mlp_dim=32, iou_head_hidden_dim=16
    ),
)


def _voter(name: str, kind: str, level: str, batch: int, dtype: str = "float32", **params: Any) -> dict[str, Any]:
    return {"name": name, "kind": kind, "level": level, "batch": batch, "dtype": dtype, "params": params}


def tiny_voters() -> list[dict[str, Any]]:
    """One small random-weight voter per registry kind (plus a few per-architecture extras)."""
    return [
        _voter("yolo11n", "ultralytics", "L1", 4, weights="yolo11n.yaml", imgsz=64),
        _voter("rtdetr", "ultralytics", "L1", 4, weights="rtdetr-l.yaml", imgsz=64),
        _voter("owlv2", "hf-detector", "L1", 4, random_init=TINY_OWLV2, threshold=0.0),
        _voter(
            "gdino", "hf-detector", "L1", 4, random_init=TINY_GDINO, threshold=0.0, text_threshold=0.0, image_size=64
        ),
        _voter("dfine", "hf-detector", "L1", 4, random_init=TINY_DFINE, threshold=0.0, image_size=64),
        _voter("rfdetr", "rfdetr", "L1", 4, variant="nano", resolution=128),
        _voter(
            "wbf",
            "wbf-ensemble",
            "L1",
            4,
            members=[
                {"name": "m1", "kind": "ultralytics", "params": {"weights": "yolo11n.yaml", "imgsz": 64, "conf": 0.01}},
                {
                    "name": "m2",
                    "kind": "ultralytics",
                    "weight": 2.0,
                    "params": {"weights": "yolov8n.yaml", "imgsz": 64, "conf": 0.01},
                },
            ],
        ),
        _voter("depth", "depth-size", "L2", 4, random_init=TINY_DEPTH, image_size=56),
        _voter("sam", "sam-mask", "L2", 4, random_init=TINY_SAM, image_size=64),
        _voter("ocr", "ocr-signs", "L2", 4),
        _voter("siglip", "scene-zero-shot", "L2", 4, random_init=TINY_SIGLIP, image_size=32),
        _voter("clip", "scene-zero-shot", "L2", 4, random_init=TINY_CLIP, image_size=32),
    ]


PRODUCTION: list[tuple[str, str, str, int, dict[str, Any]]] = [
    # (name, kind, level, batch, params naming the released checkpoint of configs/h100x2.yaml)
    ("yolo11x", "ultralytics", "L1", 32, {"weights": "yolo11x.pt", "imgsz": 640}),
    ("yolo26x", "ultralytics", "L1", 32, {"weights": "yolo26x.pt", "imgsz": 640}),
    ("rtdetr-x", "ultralytics", "L1", 32, {"weights": "rtdetr-x.pt", "imgsz": 640}),
    ("owlv2-b16", "hf-detector", "L1", 8, {"model": "google/owlv2-base-patch16-ensemble", "image_size": 960}),
    ("gdino-t", "hf-detector", "L1", 8, {"model": "IDEA-Research/grounding-dino-tiny", "image_size": 800}),
    ("da-v2-l", "depth-size", "L2", 16, {"model": "depth-anything/Depth-Anything-V2-Large-hf", "image_size": 518}),
    ("siglip-b16", "scene-zero-shot", "L2", 32, {"model": "google/siglip2-base-patch16-224", "image_size": 224}),
]


def production_voters(fp16: bool = True) -> list[dict[str, Any]]:
    """Production-size architectures with random weights (for GPU speed, not accuracy): each
    checkpoint of PRODUCTION through its kind's random form (detectors/random_weights.py), so the
    sizes are said once, in FULL_CONFIGS."""
    from cascade.config import VoterConfig
    from detectors.random_weights import random_voter

    dtype = "float16" if fp16 else "float32"
    return [
        random_voter(
            VoterConfig(name=name, kind=kind, level=level, batch=batch, dtype=dtype, params=params)
        ).model_dump(mode="json", include={"name", "kind", "level", "batch", "dtype", "params"})
        for name, kind, level, batch, params in PRODUCTION
    ]
