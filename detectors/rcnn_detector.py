"""L1: the project's own roadwork-object detector (Faster R-CNN on MobileNetV2, detectors/mnv2_rcnn.py).

`params.weights` is a checkpoint from `roadwork train boxes`; it finds cones, drums and barricades,
roadwork signs, machinery and workers. Boxes become the voter's probability through
`params.evidence` (the noisy-OR of detectors/evidence.py), the same rule its out-of-fold votes
were computed with (training/finetune_detector.py `package`), so the fitted consensus applies.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cascade.config import VoterConfig
from cascade.types import Level
from detectors.box_detector import BoxDetector
from detectors.evidence import Boxes, ClassMap
from detectors.heads import verify_manifest
from detectors.mnv2_rcnn import detections, load_rcnn


class RcnnParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weights: Path
    """The checkpoint from `roadwork train boxes` (relative to the profile)."""
    evidence: ClassMap = Field(default_factory=ClassMap)


class RcnnDetector(BoxDetector):
    def __init__(self, name: str, level: Level, model: Any, params: RcnnParams, weight: float = 1.0,
                 batch: int = 4, device: str = "cpu") -> None:
        super().__init__(name, level, params.evidence, weight, batch)
        self.model = model.to(device)
        self.device = device

    @classmethod
    def from_config(cls, cfg: VoterConfig, base_dir: Path) -> RcnnDetector:
        params = RcnnParams.model_validate(cfg.params)
        path = params.weights if params.weights.is_absolute() else (base_dir / params.weights).resolve()
        verify_manifest(path)
        return cls(cfg.name, cfg.level, load_rcnn(path), params, cfg.weight, cfg.batch, cfg.device)

    def detect(self, images: list[np.ndarray]) -> list[Boxes]:
        out = []
        for dets in detections(self.model, images, self.device):
            out.append(Boxes(np.array([d[2:6] for d in dets], np.float32).reshape(-1, 4),
                             np.array([d[1] for d in dets], np.float32), tuple(d[0] for d in dets)))
        return out
