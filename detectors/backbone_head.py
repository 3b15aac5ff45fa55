"""L0: backbone embedding + trained head -> one probability per frame."""
from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cascade.config import VoterConfig
from cascade.types import Frame, Level, Vote
from detectors.backbones import Backbone, BackboneSpec, build_backbone
from detectors.base import Detector
from detectors.heads import LinearHead, verify_manifest


class BackboneHeadParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backbone: BackboneSpec = Field(default_factory=BackboneSpec)
    head: Path
    """The trained head (.npz) from `roadwork train head`."""


class BackboneHead(Detector):
    def __init__(self, name: str, level: Level, backbone: Backbone, head: LinearHead,
                 weight: float = 1.0, batch: int = 16) -> None:
        super().__init__(name, level, weight)
        if head.dim != backbone.dim:
            raise ValueError(f"voter {name!r}: head expects {head.dim}-d features but backbone "
                             f"{backbone.name} gives {backbone.dim}-d")
        self.backbone = backbone
        self.head = head
        self.batch = batch

    @classmethod
    def from_config(cls, cfg: VoterConfig, base_dir: Path) -> BackboneHead:
        params = BackboneHeadParams.model_validate(cfg.params)
        head_path = params.head if params.head.is_absolute() else (base_dir / params.head).resolve()
        verify_manifest(head_path)
        head = LinearHead.load(head_path)
        update: dict = {"device": cfg.device}
        weights = params.backbone.weights
        if weights is not None and not weights.is_absolute():
            update["weights"] = (base_dir / weights).resolve()
        spec = params.backbone.model_copy(update=update)
        return cls(cfg.name, cfg.level, build_backbone(spec), head, cfg.weight, cfg.batch)

    def predict(self, frames: Sequence[Frame]) -> list[Vote]:
        votes: list[Vote] = []
        for start in range(0, len(frames), self.batch):
            chunk = frames[start:start + self.batch]
            t0 = time.monotonic()
            probs = self.head.predict_proba(self.backbone.embed([f.image for f in chunk]))
            ms = (time.monotonic() - t0) * 1000 / len(chunk)
            votes.extend(Vote(self.name, self.level, float(p), self.weight, ms) for p in probs)
        return votes
