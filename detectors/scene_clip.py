"""L2: zero-shot scene check with CLIP / SigLIP (transformers), plus a night / rain / clear tag.

The image is compared with roadwork prompts ("a road with construction work and traffic cones")
and ordinary-road prompts ("an ordinary street with normal traffic"); the vote is the softmax
mass on the roadwork prompts. A second softmax over condition prompts gives a context tag
(`evidence['scene'] = {'tag': 'night', 'scores': {...}}`) the consensus may use. Text embeddings
are computed once when the voter is built.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ConfigDict, Field, model_validator

from cascade.config import VoterConfig
from cascade.types import AbstainCause, Frame, Level, Vote
from detectors.base import Detector
from detectors.box_detector import map_with_fallback
from detectors.hf_common import HFSource, image_kwargs, load_model, load_processor, tiny_tokenizer, to_device

ROADWORK_PROMPTS = [
    "a photo of road construction work with traffic cones",
    "a road work zone with barriers and construction signs",
    "construction machinery and workers on a road",
]
ORDINARY_PROMPTS = [
    "a photo of an ordinary street with normal traffic",
    "an empty road with no construction",
    "a city street with parked cars",
]
CONDITION_PROMPTS = {
    "night": "a photo of a road at night",
    "rain": "a photo of a road in the rain",
    "clear": "a photo of a road on a clear day",
}


class SceneParams(HFSource):
    model_config = ConfigDict(extra="forbid")

    roadwork: list[str] = Field(default_factory=lambda: list(ROADWORK_PROMPTS), min_length=1)
    ordinary: list[str] = Field(default_factory=lambda: list(ORDINARY_PROMPTS), min_length=1)
    conditions: dict[str, str] = Field(default_factory=lambda: dict(CONDITION_PROMPTS))
    """Context tag name -> prompt; empty to skip tagging."""
    temperature: float = Field(default=1.0, gt=0)
    """Divides the model's logits before the softmax (calibration)."""
    image_size: int = Field(default=224, ge=16)

    @model_validator(mode="after")
    def _distinct(self) -> SceneParams:
        both = set(self.roadwork) & set(self.ordinary)
        if both:
            raise ValueError(f"params.roadwork and params.ordinary share prompts {sorted(both)}")
        return self


def random_scene_processor(model: Any, params: SceneParams) -> Any:
    import transformers as T

    texts = params.roadwork + params.ordinary + list(params.conditions.values())
    side = params.image_size
    tok = tiny_tokenizer(texts, model.config.text_config.max_position_embeddings)
    if model.config.model_type == "siglip":
        return T.SiglipProcessor(
            image_processor=T.SiglipImageProcessor(size={"height": side, "width": side}), tokenizer=tok
        )
    ip = T.CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    return T.CLIPProcessor(image_processor=ip, tokenizer=tok)


def _features(out: Any) -> Any:
    """get_*_features returns a tensor (transformers 4) or an output with pooler_output (5)."""
    return out if hasattr(out, "norm") else out.pooler_output


class SceneVoter(Detector):
    def __init__(
        self,
        name: str,
        level: Level,
        model: Any,
        processor: Any,
        params: SceneParams,
        weight: float = 1.0,
        batch: int = 16,
    ) -> None:
        super().__init__(name, level, weight)
        self.model, self.processor, self.params, self.batch = model, processor, params, batch
        self.siglip = model.config.model_type == "siglip"
        self.text_feats = self._encode_texts(params.roadwork + params.ordinary + list(params.conditions.values()))

    @classmethod
    def from_config(cls, cfg: VoterConfig, base_dir: Path) -> SceneVoter:
        from transformers import AutoModel

        params = SceneParams.model_validate(cfg.params)
        key = f"voters[{cfg.name}].params.model"
        model = load_model(params, AutoModel, base_dir, key, cfg.device, cfg.dtype)
        processor = load_processor(params, base_dir, key, lambda: random_scene_processor(model, params))
        return cls(cfg.name, cfg.level, model, processor, params, cfg.weight, cfg.batch)

    def _encode_texts(self, texts: list[str]) -> Any:
        import torch

        pad = "max_length" if self.siglip else True
        inputs = self.processor(text=texts, return_tensors="pt", padding=pad, truncation=True)
        with torch.inference_mode():
            feats = _features(self.model.get_text_features(**to_device(inputs, self.model))).float()
        return feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-6)

    def logits(self, images: list[np.ndarray]) -> np.ndarray:
        import torch

        side = self.params.image_size
        kw = {"size": {"height": side, "width": side}} if self.siglip else {}
        inputs = self.processor(images=images, return_tensors="pt", **image_kwargs(self.model), **kw)
        with torch.inference_mode():
            img = _features(self.model.get_image_features(**to_device(inputs, self.model))).float()
            img = img / img.norm(dim=-1, keepdim=True).clamp_min(1e-6)
            logits = img @ self.text_feats.T * self.model.logit_scale.float().exp()
        return logits.cpu().numpy() / self.params.temperature

    def predict(self, frames: Sequence[Frame]) -> list[Vote]:
        p = self.params
        n_rw, n_ord = len(p.roadwork), len(p.ordinary)
        tags = list(p.conditions)
        votes = []
        for start in range(0, len(frames), self.batch):
            chunk = frames[start : start + self.batch]
            t0 = time.monotonic()
            logits = map_with_fallback([f.image for f in chunk], self.logits)
            ms = (time.monotonic() - t0) * 1000 / len(chunk)
            for row in logits:
                if isinstance(row, Exception):
                    votes.append(
                        Vote.abstain(
                            self.name,
                            self.level,
                            f"frame failed: {type(row).__name__}: {row}",
                            ms,
                            cause=AbstainCause.ERROR,
                        )
                    )
                    continue
                scene = _softmax(row[: n_rw + n_ord])
                prob = float(np.clip(scene[:n_rw].sum(), 0.0, 1.0))
                ev: dict[str, Any] = {}
                if tags:
                    cond = _softmax(row[n_rw + n_ord :])
                    ev["scene"] = {
                        "tag": tags[int(np.argmax(cond))],
                        "scores": {t: round(float(s), 4) for t, s in zip(tags, cond, strict=True)},
                    }
                votes.append(Vote(self.name, self.level, prob, self.weight, ms, evidence=ev))
        return votes


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - np.max(x))
    return z / z.sum()
