"""In-process tier over transformers (kind `vlm-transformers`): Qwen2-VL / Qwen2.5-VL family.

The same question as the HTTP tier, scored the same way: one forward pass, and P(roadwork) is
the yes-mass over yes+no at the first answer position (all single-token spellings of each word
count). It runs in the cascade's thread pool through plain `predict`. For CPU and development;
production serves the tiers with vLLM (`vlm-http`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cascade.config import VoterConfig
from cascade.types import Frame, Level, Vote
from detectors.base import Detector
from vlm_tiers.config import LocalTierParams
from vlm_tiers.imaging import resize_rgb


def qwen_prompt(question: str, system: str | None = None) -> str:
    """Qwen's chat format with one image, ending where the assistant's answer starts."""
    head = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
    return (
        f"{head}<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{question}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def single_token_ids(tokenizer: Any, spellings: Sequence[str]) -> list[int]:
    """Ids of the spellings that are exactly one (known) token; duplicates dropped."""
    ids: list[int] = []
    unk = getattr(tokenizer, "unk_token_id", None)
    for s in spellings:
        enc = tokenizer.encode(s, add_special_tokens=False)
        if len(enc) == 1 and enc[0] != unk and enc[0] not in ids:
            ids.append(int(enc[0]))
    return ids


class TransformersVLMTier(Detector):
    def __init__(
        self,
        name: str,
        level: Level,
        model: Any,
        processor: Any,
        params: LocalTierParams,
        weight: float = 1.0,
        batch: int = 4,
    ) -> None:
        super().__init__(name, level, weight)
        self.model, self.processor, self.params, self.batch = model, processor, params, batch
        tok = processor.tokenizer
        self.yes_ids = single_token_ids(tok, params.yes_tokens)
        self.no_ids = single_token_ids(tok, params.no_tokens)
        if not self.yes_ids or not self.no_ids:
            raise ValueError(
                f"voter {name!r}: the tokenizer has no single-token spelling of "
                f"yes_tokens {params.yes_tokens} or no_tokens {params.no_tokens}; "
                "fix `params.yes_tokens` / `params.no_tokens`"
            )
        tok.padding_side = "left"  # the answer position is the last one in every row

    @classmethod
    def from_config(cls, cfg: VoterConfig, base_dir: Path) -> TransformersVLMTier:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        params = LocalTierParams.model_validate(cfg.params)
        path = Path(params.model).expanduser()
        local = path if path.is_absolute() else (base_dir / path)
        if local.is_dir():
            source, offline = str(local.resolve()), True
        elif params.allow_download:
            source, offline = params.model, False
        else:
            raise FileNotFoundError(
                f"voter {cfg.name!r}: params.model {params.model!r} is not a folder "
                f"(looked at {local}); give a local model folder, or set "
                "params.allow_download: true to fetch this hub id"
            )
        processor = AutoProcessor.from_pretrained(source, local_files_only=offline)
        model = (
            AutoModelForImageTextToText.from_pretrained(
                source, local_files_only=offline, dtype=getattr(torch, cfg.dtype)
            )
            .to(cfg.device)
            .eval()
        )
        return cls(cfg.name, cfg.level, model, processor, params, cfg.weight, cfg.batch)

    def scores(self, frames: Sequence[Frame]) -> list[float]:
        """P(yes | yes or no) at the answer position, one per frame."""
        import torch

        p = self.params
        images = [resize_rgb(f.image, p.image.max_pixels, p.image.min_pixels) for f in frames]
        prompt = qwen_prompt(p.question, p.system)
        inputs = self.processor(text=[prompt] * len(frames), images=images, return_tensors="pt", padding=True).to(
            self.model.device
        )
        with torch.inference_mode():
            logits = self.model(**inputs).logits[:, -1, :].float()
        probs = torch.softmax(logits, dim=-1)
        p_yes = probs[:, self.yes_ids].sum(-1)
        p_no = probs[:, self.no_ids].sum(-1)
        return (p_yes / (p_yes + p_no).clamp_min(1e-12)).clamp(0.0, 1.0).tolist()

    def predict(self, frames: Sequence[Frame]) -> list[Vote]:
        votes: list[Vote] = []
        for start in range(0, len(frames), self.batch):
            chunk = frames[start : start + self.batch]
            t0 = time.monotonic()
            probs = self.scores(chunk)
            ms = (time.monotonic() - t0) * 1000 / len(chunk)
            votes.extend(
                Vote(
                    self.name,
                    self.level,
                    prob,
                    self.weight,
                    ms,
                    evidence={"answer": "yes" if prob >= 0.5 else "no", "method": "logits"},
                )
                for prob in probs
            )
        return votes
