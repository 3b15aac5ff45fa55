"""L1: RF-DETR (Roboflow, `pip install rfdetr`) behind the box-detector body.

`params.variant` picks the size (nano, small, medium, base, large); `params.weights` is a local
checkpoint (a fine-tuned roadwork model or the published COCO one) or null for random weights
(tests, speed runs). Hub downloads happen only with `allow_download: true` and no local file.
RF-DETR returns `supervision.Detections`; they become `Boxes` in `boxes_from_detections`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cascade.config import VoterConfig
from cascade.types import Level
from detectors.box_detector import BoxDetector, resolve_weights
from detectors.evidence import Boxes, ClassMap
from detectors.weights import WeightItem, Where

VARIANTS = {
    "nano": "RFDETRNano",
    "small": "RFDETRSmall",
    "medium": "RFDETRMedium",
    "base": "RFDETRBase",
    "large": "RFDETRLarge",
}


class RFDETRParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variant: Literal["nano", "small", "medium", "base", "large"] = "medium"
    weights: str | None = None
    """Local checkpoint (.pth); null builds the architecture with random weights."""
    resolution: int | None = Field(default=None, ge=32)
    """Input side (a multiple of the patch size x 4); default the variant's own."""
    threshold: float = Field(default=0.3, ge=0, le=1)
    allow_download: bool = False
    evidence: ClassMap = Field(default_factory=ClassMap)


def weights(cfg: VoterConfig, where: Where) -> list[WeightItem]:
    """The variant's COCO checkpoint (`rfdetr` fetches it next to the profile); none for random weights."""
    params = RFDETRParams.model_validate(cfg.params)
    if params.weights is None:
        return []
    note = f"RF-DETR {params.variant} COCO checkpoint"
    return [WeightItem(cfg.name, cfg.kind, "rfdetr", params.weights, str(where.resolve(params.weights)), note=note)]


def load_rfdetr(params: RFDETRParams, weights: str | None, device: str, dtype: str = "float32") -> Any:
    """The model; below float32 (the voter's `dtype`) it is optimised for inference in that precision."""
    import rfdetr

    cls = getattr(rfdetr, VARIANTS[params.variant])
    kwargs: dict[str, Any] = {"pretrain_weights": weights, "device": device}
    if params.resolution is not None:
        kwargs["resolution"] = params.resolution
    model = cls(**kwargs)
    if dtype != "float32":
        from detectors.hf_common import torch_dtype

        model.inference(compile=False, dtype=torch_dtype(dtype))
    return model


def boxes_from_detections(det: Any, class_names: Any, width: int, height: int) -> Boxes:
    """supervision.Detections (pixel xyxy, confidence, class_id) -> Boxes with class names."""
    if det is None or len(det) == 0:
        return Boxes.empty()
    names = det.data.get("class_name") if isinstance(getattr(det, "data", None), dict) else None
    if names is None or len(names) != len(det):
        lookup = class_names if isinstance(class_names, dict) else dict(enumerate(class_names or []))
        names = [str(lookup.get(int(c), int(c))) for c in det.class_id]
    names = [str(n) if str(n) else "unknown" for n in names]
    return Boxes.from_pixels(det.xyxy, det.confidence, names, width, height)


class RFDETRDetector(BoxDetector):
    def __init__(
        self, name: str, level: Level, model: Any, params: RFDETRParams, weight: float = 1.0, batch: int = 8
    ) -> None:
        super().__init__(name, level, params.evidence, weight, batch)
        self.model, self.params = model, params

    @classmethod
    def from_config(cls, cfg: VoterConfig, base_dir: Path) -> RFDETRDetector:
        params = RFDETRParams.model_validate(cfg.params)
        weights = None
        if params.weights is not None:
            weights = resolve_weights(
                params.weights,
                base_dir,
                params.allow_download,
                f"voters[{cfg.name}].params.weights",
                builtin_suffixes=(),
            )
        return cls(
            cfg.name, cfg.level, load_rfdetr(params, weights, cfg.device, cfg.dtype), params, cfg.weight, cfg.batch
        )

    def detect(self, images: list[np.ndarray]) -> list[Boxes]:
        out = self.model.predict(list(images), threshold=self.params.threshold)
        dets = out if isinstance(out, list) else [out]
        names = getattr(self.model, "class_names", None)
        return [boxes_from_detections(d, names, im.shape[1], im.shape[0]) for d, im in zip(dets, images, strict=True)]
