"""L2: read roadwork words off signs with PP-OCR (rapidocr-onnxruntime; the models ship in the wheel).

The text found in the frame is upper-cased, stripped of accents and spaces, and searched for
roadwork phrases in several languages (ROAD WORK, WORK ZONE, DETOUR, LANE CLOSED, BAUSTELLE,
TRAVAUX, OBRAS, ...). Each phrase has a weight; the vote is a noisy-OR of weight x OCR confidence
over the phrases found. Text without any roadwork phrase gives `no_match_prob`; a frame with no
text at all abstains (a blank wall says nothing about roadwork), unless `no_text_prob` is set.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cascade.config import VoterConfig
from cascade.types import AbstainCause, Frame, Level, Vote
from detectors.base import Detector
from detectors.evidence import noisy_or
from detectors.weights import WeightItem, Where

DEFAULT_PHRASES: dict[str, float] = {
    # English
    "ROAD WORK": 0.95,
    "ROADWORK": 0.95,
    "ROAD WORKS": 0.95,
    "WORK ZONE": 0.95,
    "CONSTRUCTION": 0.7,
    "DETOUR": 0.8,
    "LANE CLOSED": 0.9,
    "ROAD CLOSED": 0.85,
    "MEN WORKING": 0.9,
    "WORKERS": 0.6,
    "END ROAD WORK": 0.9,
    "PREPARE TO STOP": 0.6,
    "ONE LANE": 0.7,
    "FLAGGER": 0.9,
    # German, French, Spanish, Italian, Portuguese, Dutch, Polish
    "BAUSTELLE": 0.95,
    "UMLEITUNG": 0.8,
    "TRAVAUX": 0.95,
    "DEVIATION": 0.75,
    "CHANTIER": 0.9,
    "OBRAS": 0.95,
    "DESVIO": 0.75,
    "LAVORI": 0.9,
    "LAVORI IN CORSO": 0.95,
    "WERKZAAMHEDEN": 0.95,
    "ROBOTY DROGOWE": 0.95,
}


def fold(text: str) -> str:
    """'Déviation  obras' -> 'DEVIATIONOBRAS': upper-case, no accents, letters and digits only."""
    nfkd = unicodedata.normalize("NFKD", text)
    return "".join(c for c in nfkd if c.isalnum() and not unicodedata.combining(c)).upper()


def match_phrases(lines: Sequence[tuple[str, float]], phrases: dict[str, float]) -> list[dict[str, Any]]:
    """Phrases found in the OCR lines (text, confidence); a phrase may span neighbouring lines."""
    joined = fold(" ".join(t for t, _ in lines))
    hits = []
    for phrase, weight in phrases.items():
        key = fold(phrase)
        if key and key in joined:
            conf = max((s for t, s in lines if fold(t) and (fold(t) in key or key in fold(t))), default=0.0)
            hits.append({"phrase": phrase, "weight": weight, "score": round(float(conf), 4)})
    return hits


class OcrParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phrases: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_PHRASES))
    min_text_score: float = Field(default=0.5, ge=0, le=1)
    no_match_prob: float = Field(default=0.15, ge=0, le=1)
    """Vote when text was read but no roadwork phrase was in it."""
    no_text_prob: float | None = Field(default=None, ge=0, le=1)
    """Vote when no text was read; None abstains."""
    max_side: int = Field(default=960, ge=32)
    """Larger frames are downscaled first (OCR cost grows with area)."""
    engine: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments for rapidocr_onnxruntime.RapidOCR (e.g. text_score)."""


def weights(cfg: VoterConfig, where: Where) -> list[WeightItem]:
    return [WeightItem(cfg.name, cfg.kind, "bundled", "PP-OCRv4 (rapidocr-onnxruntime wheel)", present=True)]


class OcrSignVoter(Detector):
    def __init__(self, name: str, level: Level, engine: Any, params: OcrParams, weight: float = 1.0) -> None:
        super().__init__(name, level, weight)
        self.engine, self.params = engine, params

    @classmethod
    def from_config(cls, cfg: VoterConfig, base_dir: Path) -> OcrSignVoter:
        from rapidocr_onnxruntime import RapidOCR

        params = OcrParams.model_validate(cfg.params)
        return cls(cfg.name, cfg.level, RapidOCR(**params.engine), params, cfg.weight)

    def read(self, image: np.ndarray) -> list[tuple[str, float]]:
        h, w = image.shape[:2]
        scale = self.params.max_side / max(h, w)
        if scale < 1:
            from PIL import Image

            image = np.asarray(Image.fromarray(image).resize((max(int(w * scale), 1), max(int(h * scale), 1))))
        result, _ = self.engine(np.ascontiguousarray(image[..., ::-1]))  # rapidocr reads numpy as BGR
        return [
            (str(text), float(score)) for _, text, score in (result or []) if float(score) >= self.params.min_text_score
        ]

    def predict(self, frames: Sequence[Frame]) -> list[Vote]:
        votes = []
        for f in frames:
            t0 = time.monotonic()
            lines = self.read(f.image)
            ms = (time.monotonic() - t0) * 1000
            hits = match_phrases(lines, self.params.phrases)
            ev = {"text": [t for t, _ in lines][:20], "matches": hits}
            if hits:
                prob = noisy_or(
                    np.array([h["score"] for h in hits]),
                    np.array([h["weight"] for h in hits]),
                    [h["phrase"] for h in hits],
                )
            elif lines:
                prob = self.params.no_match_prob
            elif self.params.no_text_prob is not None:
                prob = self.params.no_text_prob
            else:
                votes.append(Vote.abstain(self.name, self.level, "no text found", ms, cause=AbstainCause.NO_EVIDENCE))
                continue
            votes.append(Vote(self.name, self.level, prob, self.weight, ms, evidence=ev))
        return votes
