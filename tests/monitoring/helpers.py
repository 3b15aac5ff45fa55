"""Cascade builders and voters with evidence, shared by the monitoring tests."""

from __future__ import annotations

from collections.abc import Sequence

from cascade.config import CascadeConfig
from cascade.pipeline import Cascade
from cascade.types import Frame, Vote
from tests.conftest import FakeVoter

BOXES = [
    {"xyxy": [0.1, 0.2, 0.4, 0.6], "score": 0.91, "label": "traffic_cone"},
    {"xyxy": [0.5, 0.5, 0.7, 0.9], "score": 0.42, "label": "barrier"},
]


class EvidenceVoter(FakeVoter):
    """A FakeVoter whose votes carry evidence (boxes from a detector, prompt/answer from a VLM)."""

    def __init__(self, name: str, level: str, prob: float = 0.5, evidence: dict | None = None, **kw) -> None:
        super().__init__(name, level, prob, **kw)
        self.evidence = evidence or {}

    def predict(self, frames: Sequence[Frame]) -> list[Vote]:
        (vote,) = super().predict(frames)
        return [Vote(vote.voter, vote.level, vote.prob, vote.weight, evidence=dict(self.evidence))]


def make_cascade(voters, bands=None, deadline_ms=2000, margin_ms=50) -> Cascade:
    levels = [{"level": lv, "band": b} for lv, b in (bands or {}).items()]
    cfg = CascadeConfig.model_validate(
        {
            "runtime": {"deadline_ms": deadline_ms, "margin_ms": margin_ms, "cost_prior_ms": 10, "workers": 4},
            "levels": levels,
            "voters": [{"name": v.name, "kind": "fake", "level": v.level.name} for v in voters],
        }
    )
    return Cascade(voters, cfg)


def standard_voters() -> list[FakeVoter]:
    """L0 unsure, an L1 detector with boxes, an L1 voter that fails, an L3 VLM with prompt/answer."""
    return [
        FakeVoter("l0_head", "L0", 0.55),
        EvidenceVoter("yolo", "L1", 0.8, {"boxes": BOXES}),
        FakeVoter("broken", "L1", error=RuntimeError("CUDA out of memory")),
        EvidenceVoter(
            "vlm_fast",
            "L3",
            0.9,
            {"prompt": "Is there roadwork? Answer yes or no.", "answer": "yes", "model": "qwen-vl-tiny"},
        ),
    ]
