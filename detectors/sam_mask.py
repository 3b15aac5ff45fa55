"""L2: segment each L1 roadwork box with SAM (transformers) and check the mask's shape and colour.

A real cone fills part of its box (a triangle: about half), is mostly one object, and is orange,
red or yellow; a false box on a shadow or a wall gives a mask that fills nearly nothing or the
whole box, or has the wrong colour. For the best `max_boxes` roadwork boxes the validator prompts
SAM with the box, measures

    fill   = mask area / box area              (plausible in [min_fill, max_fill])
    colour = share of mask pixels that are saturated orange/red/yellow (classes in `colour_classes`)

and down-weights a box that fails (`fail_weight`). The vote is the L1 noisy-OR recomputed with
those weights. The image encoder runs batched over the frames; the mask decoder per frame.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict, Field

from cascade.config import VoterConfig
from cascade.types import AbstainCause, Frame, Level, Vote
from detectors.base import Detector
from detectors.evidence import Boxes, ClassMap, norm_name, split_by_prior_boxes
from detectors.hf_common import (
    CompileOption,
    HFSource,
    compile_on_cuda,
    image_kwargs,
    load_model,
    load_processor,
    to_device,
)

log = logging.getLogger(__name__)


class SamParams(HFSource, CompileOption):
    """`compile` applies to the image encoder. With transformers' attention its four
    global-attention layers build a relative-position bias of 4096 x 4096 per head, which eager
    SDPA materialises in separate elementwise kernels (60 of 88 ms of GPU time per batch of 8 on an
    H200, op_profile_h200/sam_mask_b_224x224_eager.txt); compiled, they are one fused kernel a
    layer and the batch takes 36 ms (..._compiled.txt). End to end (2 workers x 4 lanes, H200) it
    did not lower the p95 at 10 frames and made the first query 57 s instead of 12-14 s
    (gpu_bench_1gpu_workers2_lanes4_sam_compiled_h200_j.json): off in the profiles. `attention:
    folded` (the default) removes the bias without compiling: 84.8 -> 46.4 ms for the encoder on a
    batch of 8 on an H100 (sam_attention_h100.json)."""

    model_config = ConfigDict(extra="forbid")

    max_boxes: int = Field(default=8, ge=1)
    """Prompt SAM with at most this many of the strongest boxes (the others keep their L1 weight)."""
    max_checked: int = Field(default=32, ge=1)
    """Consider at most this many of the strongest L1 boxes per frame (bounded work per frame)."""
    min_fill: float = Field(default=0.15, ge=0, le=1)
    max_fill: float = Field(default=0.97, ge=0, le=1)
    colour_classes: list[str] = Field(
        default_factory=lambda: [
            "cone",
            "traffic cone",
            "road cone",
            "barrel",
            "drum",
            "construction barrel",
            "safety vest",
        ]
    )
    min_colour: float = Field(default=0.15, ge=0, le=1)
    fail_weight: float = Field(default=0.2, ge=0, le=1)
    """Weight left to a box whose mask fails a check."""
    image_size: int = Field(default=1024, ge=16)
    """SAM's longest edge (1024 for the public checkpoints)."""
    attention: Literal["folded", "transformers"] = "folded"
    """`folded`: the image encoder's relative-position bias rides in the query and key, so SDPA
    runs one fused kernel with no bias tensor (`detectors/sam_attention.py`; the same answer up to
    float rounding). `transformers`: the library's own attention, which materialises the bias."""
    from_levels: list[int] = Field(default_factory=lambda: [1])
    evidence: ClassMap = Field(default_factory=ClassMap)


def warm_colour_share(pixels: np.ndarray) -> float:
    """Share of RGB pixels (n, 3) that are saturated orange / red / yellow (cone and vest colours)."""
    if len(pixels) == 0:
        return 0.0
    rgb = pixels.astype(np.float64) / 255.0
    mx, mn = rgb.max(1), rgb.min(1)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-9), 0.0)
    r, g, b = rgb.T
    warm = (r >= g) & (g >= b) | (r >= b) & (b >= g) & (b - g < 0.1)  # hue in red..yellow
    return float(np.mean(warm & (sat > 0.45) & (mx > 0.35)))


def mask_checks(
    mask: np.ndarray, box_xyxy: np.ndarray, image: np.ndarray, colour: bool, p: SamParams
) -> tuple[float, dict[str, float]]:
    """Weight factor for one box from its full-resolution boolean mask (H, W)."""
    H, W = mask.shape
    x1, y1, x2, y2 = (box_xyxy * np.array([W, H, W, H])).round().astype(int)
    x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
    inside = mask[y1:y2, x1:x2]
    fill = float(inside.mean()) if inside.size else 0.0
    ok = p.min_fill <= fill <= p.max_fill
    info = {"fill": round(fill, 3)}
    if colour:
        share = warm_colour_share(image[y1:y2, x1:x2][inside])
        info["colour"] = round(share, 3)
        ok = ok and share >= p.min_colour
    return (1.0 if ok else p.fail_weight), info


def random_sam_processor(params: SamParams) -> Any:
    from transformers import SamImageProcessor, SamProcessor

    side = params.image_size
    return SamProcessor(
        image_processor=SamImageProcessor(size={"longest_edge": side}, pad_size={"height": side, "width": side})
    )


class SamMaskValidator(Detector):
    def __init__(
        self,
        name: str,
        level: Level,
        model: Any,
        processor: Any,
        params: SamParams,
        weight: float = 1.0,
        batch: int = 4,
    ) -> None:
        super().__init__(name, level, weight)
        self.model, self.processor, self.params, self.batch = model, processor, params, batch
        self.colour_classes = {norm_name(c) for c in params.colour_classes}

    @classmethod
    def from_config(cls, cfg: VoterConfig, base_dir: Path) -> SamMaskValidator:
        from transformers import SamModel

        from detectors.sam_attention import fold_relative_position

        params = SamParams.model_validate(cfg.params)
        key = f"voters[{cfg.name}].params.model"
        model = load_model(params, SamModel, base_dir, key, cfg.device, cfg.dtype)
        if params.attention == "folded":
            log.info("%s: %d image-encoder attention layers folded", cfg.name, fold_relative_position(model))
        compile_on_cuda(model.vision_encoder, params.compile, cfg.device, cfg.name)
        processor = load_processor(params, base_dir, key, lambda: random_sam_processor(params))
        return cls(cfg.name, cfg.level, model, processor, params, cfg.weight, cfg.batch)

    def masks(self, image: np.ndarray, embedding: Any, boxes_px: np.ndarray, reshaped: Any) -> np.ndarray:
        """Boolean masks (n, H, W) for pixel boxes, from a precomputed image embedding."""
        import torch

        h, w = image.shape[:2]
        scale = self.params.image_size / max(h, w)
        p = next(self.model.parameters())
        boxes = torch.as_tensor(boxes_px * scale, dtype=p.dtype, device=p.device)[None]
        with torch.inference_mode():
            out = self.model(image_embeddings=embedding[None], input_boxes=boxes, multimask_output=False)
            # upsampling to the frame's size runs where the model is (a 1080p frame: ~10x faster on a GPU)
            masks = self.processor.image_processor.post_process_masks(out.pred_masks.float(), [(h, w)], [reshaped])[0]
        return masks[:, 0].cpu().numpy().astype(bool)

    def predict(self, frames: Sequence[Frame]) -> list[Vote]:
        import torch

        votes, todo = split_by_prior_boxes(
            frames,
            self.params.from_levels,
            lambda why: Vote.abstain(self.name, self.level, why, cause=AbstainCause.NO_EVIDENCE),
            self.params.evidence,
            self.params.max_checked,
        )
        for start in range(0, len(todo), self.batch):
            chunk = todo[start : start + self.batch]
            t0 = time.monotonic()
            images = [frames[i].image for i, _ in chunk]
            inputs = self.processor(images=images, return_tensors="pt", **image_kwargs(self.model))
            with torch.inference_mode():
                emb = self.model.get_image_embeddings(to_device(inputs, self.model)["pixel_values"])
            for k, (i, boxes) in enumerate(chunk):
                votes[i] = self._vote(
                    images[k], boxes, emb[k], inputs["reshaped_input_sizes"][k].tolist(), t0, len(chunk)
                )
        return [v for v in votes if v is not None]

    def _vote(self, image: np.ndarray, boxes: Boxes, emb: Any, reshaped: list[int], t0: float, n: int) -> Vote:
        weights = self.params.evidence.box_weights(boxes) * boxes.scores
        order = [j for j in np.argsort(-weights, kind="stable") if weights[j] > 0][: self.params.max_boxes]
        factors = np.ones(len(boxes))
        info: list[dict[str, Any]] = [{} for _ in range(len(boxes))]
        if order:
            h, w = image.shape[:2]
            px = boxes.xyxy[order] * np.array([w, h, w, h])
            for j, mask in zip(order, self.masks(image, emb, px, reshaped), strict=True):
                colour = norm_name(boxes.labels[j]) in self.colour_classes
                factors[j], info[j] = mask_checks(mask, boxes.xyxy[j], image, colour, self.params)
        prob = self.params.evidence.image_probability(boxes, extra_weights=factors)
        ev = [
            {**row, **extra, "kept": round(float(f), 3)}
            for row, extra, f in zip(boxes.to_evidence(), info, factors, strict=True)
        ]
        ms = (time.monotonic() - t0) * 1000 / n
        return Vote(self.name, self.level, prob, self.weight, ms, evidence={"boxes": ev})
