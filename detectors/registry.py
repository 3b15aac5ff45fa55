"""Adapters by name, imported lazily: torch or transformers load only for the models you pick.

Each entry maps a config `kind` to "module:Class"; the class must subclass
`detectors.base.Detector` and implement `from_config(cfg, base_dir)`. To add a model, write one
adapter file and add one line here.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from cascade.config import VoterConfig
from detectors.base import Detector

REGISTRY: dict[str, str] = {
    "backbone-head": "detectors.backbone_head:BackboneHead",
    "ultralytics": "detectors.ultralytics_yolo:UltralyticsDetector",
    "hf-detector": "detectors.hf_detr:HFDetector",  # OWLv2, Grounding DINO, D-FINE, RT-DETR v2
    "rfdetr": "detectors.rfdetr:RFDETRDetector",
    "rcnn-mobilenet": "detectors.rcnn_detector:RcnnDetector",  # our roadwork-box Faster R-CNN (`train boxes`)
    "wbf-ensemble": "detectors.ensemble:WBFEnsemble",  # several box detectors fused with WBF
    "depth-size": "detectors.depth_size:DepthSizeValidator",  # Depth Anything + size check (L2)
    "sam-mask": "detectors.sam_mask:SamMaskValidator",  # SAM mask shape/colour check (L2)
    "ocr-signs": "detectors.ocr_signs:OcrSignVoter",  # rapidocr roadwork words (L2)
    "scene-zero-shot": "detectors.scene_clip:SceneVoter",  # CLIP/SigLIP + night/rain/clear tag (L2)
    "vlm-http": "vlm_tiers.http_tier:HttpVLMTier",  # L3-L5 over vLLM / any OpenAI-compatible server
    "vlm-transformers": "vlm_tiers.local_tier:TransformersVLMTier",  # in-process Qwen-VL (CPU/dev)
}


class UnknownDetectorError(KeyError):
    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def resolve(kind: str) -> type[Detector]:
    try:
        target = REGISTRY[kind]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownDetectorError(f"unknown voter kind {kind!r}; known kinds: {known}. "
                                   "Fix `voters[].kind` in the profile.") from None
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Detector)):
        raise TypeError(f"registry entry {kind!r} -> {target} is not a Detector subclass")
    return cls


def build(cfg: VoterConfig, base_dir: Path) -> Detector:
    detector = resolve(cfg.kind).from_config(cfg, base_dir)
    if cfg.batch_wait_ms > 0:  # gather concurrent frames into micro-batches
        from detectors.batching import MicroBatcher

        detector = MicroBatcher(detector, cfg.batch, cfg.batch_wait_ms, cfg.batch_pad)
    return detector
