"""L1: the project's own roadwork-object detector (Faster R-CNN on MobileNetV2, detectors/mnv2_rcnn.py).

`params.weights` is a checkpoint from `roadwork train boxes`; it finds cones, drums and barricades,
roadwork signs, machinery and workers. Boxes become the voter's probability through
`params.evidence` (the noisy-OR of detectors/evidence.py), the same rule its out-of-fold votes
were computed with (training/finetune_detector.py `package`), so the fitted consensus applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cascade.config import VoterConfig
from cascade.types import Level
from detectors.artefacts import Artefact, Shown
from detectors.box_detector import BoxDetector
from detectors.evidence import Boxes, ClassMap
from detectors.heads import verified_artefact
from detectors.mnv2_rcnn import detections, load_rcnn


class RcnnParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weights: Path
    """The checkpoint from `roadwork train boxes` (relative to the profile)."""
    evidence: ClassMap = Field(default_factory=ClassMap)


def artefacts(cfg: VoterConfig, shown: Shown) -> list[Artefact]:
    weights = RcnnParams.model_validate(cfg.params).weights
    return [
        Artefact("params.weights", weights, f"roadwork train boxes --data DIR --device cuda --out {shown(weights)}")
    ]


class RcnnDetector(BoxDetector):
    def __init__(
        self,
        name: str,
        level: Level,
        model: Any,
        params: RcnnParams,
        weight: float = 1.0,
        batch: int = 4,
        device: str = "cpu",
    ) -> None:
        super().__init__(name, level, params.evidence, weight, batch)
        self.model = model.to(device)
        self.device = device

    @classmethod
    def from_config(cls, cfg: VoterConfig, base_dir: Path) -> RcnnDetector:
        params = RcnnParams.model_validate(cfg.params)
        model = load_rcnn(verified_artefact(params.weights, base_dir))
        return cls(cfg.name, cfg.level, model, params, cfg.weight, cfg.batch, cfg.device)

    def detect(self, images: list[np.ndarray]) -> list[Boxes]:
        return [boxes_from_detections(dets) for dets in detections(self.model, images, self.device)]


def boxes_from_detections(dets: Sequence[Sequence[Any]]) -> Boxes:
    """`mnv2_rcnn.detections` rows (class, score, x0, y0, x1, y1), or the same rows read back from a
    held-out votes file, as `Boxes`: one conversion for the voter and its out-of-fold votes."""
    return Boxes(
        np.array([d[2:6] for d in dets], np.float32).reshape(-1, 4),
        np.array([d[1] for d in dets], np.float32),
        tuple(str(d[0]) for d in dets),
    )
