"""L1: several box detectors as one voter, their boxes fused with weighted boxes fusion.

`params.members` are ordinary voter entries (any box-detector kind: ultralytics, hf-detector,
rfdetr); each runs on the whole batch, then, per frame, their boxes are fused with
`ensemble_boxes.weighted_boxes_fusion` (`params.fusion`, member weights from each entry's
`weight`) and the fused boxes become one calibrated noisy-OR probability (`params.evidence`).
Boxes two detectors agree on keep a high score; a box only one of them saw is averaged down.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cascade.config import VoterConfig
from cascade.types import AbstainCause, Frame, Level, Vote
from detectors.base import Detector
from detectors.box_detector import BoxDetector
from detectors.evidence import Boxes, ClassMap, FusionConfig, fuse_boxes
from detectors.weights import WeightItem, Where


class EnsembleParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    members: list[dict[str, Any]] = Field(min_length=2)
    """Voter entries (name, kind, params, weight...) of the detectors to fuse."""
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    evidence: ClassMap = Field(default_factory=ClassMap)


def weights(cfg: VoterConfig, where: Where) -> list[WeightItem]:
    """Each member's, by its own kind's form, listed under the ensemble's name."""
    from dataclasses import replace

    from detectors.registry import weights_form

    items = []
    for m in EnsembleParams.model_validate(cfg.params).members:
        member = VoterConfig.model_validate({"level": cfg.level, "dtype": cfg.dtype, **m})
        form = weights_form(member.kind)
        items += [replace(i, voter=cfg.name) for i in (form(member, where) if form else [])]
    return items


class WBFEnsemble(Detector):
    def __init__(
        self,
        name: str,
        level: Level,
        members: list[BoxDetector],
        member_weights: list[float],
        params: EnsembleParams,
        weight: float = 1.0,
    ) -> None:
        super().__init__(name, level, weight)
        self.members, self.member_weights, self.params = members, member_weights, params

    @classmethod
    def from_config(cls, cfg: VoterConfig, base_dir: Path) -> WBFEnsemble:
        from detectors.registry import resolve

        params = EnsembleParams.model_validate(cfg.params)
        members, weights = [], []
        for i, raw in enumerate(params.members):
            mcfg = VoterConfig.model_validate(
                {"level": cfg.level, "device": cfg.device, "dtype": cfg.dtype, "batch": cfg.batch, **raw}
            )
            det = resolve(mcfg.kind).from_config(mcfg, base_dir)
            if not isinstance(det, BoxDetector):
                raise ValueError(
                    f"voters[{cfg.name}].params.members[{i}] kind {mcfg.kind!r} gives no boxes; "
                    "members must be box detectors (ultralytics, hf-detector, rfdetr)"
                )
            members.append(det)
            weights.append(mcfg.weight)
        return cls(cfg.name, cfg.level, members, weights, params, cfg.weight)

    def predict(self, frames: Sequence[Frame]) -> list[Vote]:
        t0 = time.monotonic()
        per_member = [m.predict(frames) for m in self.members]
        ms = (time.monotonic() - t0) * 1000 / max(len(frames), 1)
        votes = []
        for i in range(len(frames)):
            answered = [
                (per_member[k][i], self.member_weights[k])
                for k in range(len(self.members))
                if not per_member[k][i].abstained
            ]
            if not answered:
                reasons = "; ".join(f"{m.name}: {per_member[k][i].reason}" for k, m in enumerate(self.members))
                causes = {per_member[k][i].cause for k in range(len(self.members))}
                cause = causes.pop() if len(causes) == 1 else AbstainCause.ERROR
                votes.append(
                    Vote.abstain(self.name, self.level, f"every member abstained ({reasons})", ms, cause=cause)
                )
                continue
            fused = fuse_boxes(
                [Boxes.from_evidence(v.evidence.get("boxes", [])) for v, _ in answered],
                [w for _, w in answered],
                self.params.fusion,
            )
            ev = {
                "boxes": fused.to_evidence(self.params.evidence.box_weights(fused)),
                "members": {v.voter: v.prob for v, _ in answered},
            }
            votes.append(
                Vote(self.name, self.level, self.params.evidence.image_probability(fused), self.weight, ms, evidence=ev)
            )
        return votes
