"""L2: depth + physical size check of the L1 boxes (Depth Anything V2/V3 via transformers).

A 5 cm cone or a 20 m barrier is not real. With a depth map Z and a nominal focal length f (in
pixels, `focal` x image width), a box of pixel height h has a physical height of about

    H = h * Z / f                                   (pinhole camera)

Each roadwork class has a plausible height range in metres (`sizes`); a box outside it is
down-weighted by exp(-|ln(H / nearest bound)| / tolerance). The validator's vote is the L1 noisy-OR
recomputed with those weights, so impossible boxes stop counting as evidence. It reads the boxes
that earlier voters put in their evidence (the cascade passes them in `frame.meta`) and abstains
where there are none.

Depth Anything V2's base models give relative inverse depth; `depth_mode: inverse` converts it
with `depth_scale / value`. Its metric variants (and V3 metric) give metres: `depth_mode: metric`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict, Field, field_validator

from cascade.config import VoterConfig
from cascade.types import AbstainCause, Frame, Level, Vote
from detectors.base import Detector
from detectors.box_detector import map_with_fallback
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

# Plausible physical heights (metres) of roadwork objects.
DEFAULT_SIZES: dict[str, tuple[float, float]] = {
    "cone": (0.25, 1.3),
    "traffic cone": (0.25, 1.3),
    "road cone": (0.25, 1.3),
    "barrier": (0.3, 2.5),
    "road barrier": (0.3, 2.5),
    "barricade": (0.3, 2.5),
    "barrel": (0.6, 1.4),
    "drum": (0.6, 1.4),
    "construction barrel": (0.6, 1.4),
    "sign": (0.3, 4.0),
    "roadwork sign": (0.3, 4.0),
    "machinery": (1.0, 8.0),
    "excavator": (1.5, 8.0),
    "worker": (1.0, 2.2),
    "worker in safety vest": (1.0, 2.2),
    "person": (0.9, 2.2),
}


class DepthSizeParams(HFSource, CompileOption):
    """`compile` applies to the whole depth model (ViT encoder, neck and head)."""

    model_config = ConfigDict(extra="forbid")

    focal: float = Field(default=0.8, gt=0)
    """Nominal focal length as a fraction of image width (0.8 ~ a 64 degree dashcam)."""
    depth_mode: Literal["metric", "inverse"] = "inverse"
    depth_scale: float = Field(default=10.0, gt=0)
    """metric: metres per model unit; inverse: Z = depth_scale / model value."""
    image_size: int = Field(default=518, ge=14)
    """Square input side for batching (a multiple of the ViT patch, 14)."""
    tolerance: float = Field(default=0.5, gt=0)
    """How fast weight falls outside the range: exp(-|ln(H/bound)| / tolerance)."""
    sizes: dict[str, tuple[float, float]] = Field(default_factory=lambda: dict(DEFAULT_SIZES))
    from_levels: list[int] = Field(default_factory=lambda: [1])
    max_boxes: int = Field(default=24, ge=1)
    """Check at most this many of the strongest L1 boxes per frame (bounded work per frame)."""
    evidence: ClassMap = Field(default_factory=ClassMap)

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, v: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        bad = {k: r for k, r in v.items() if not 0 < r[0] <= r[1]}
        if bad:
            raise ValueError(f"params.sizes ranges must satisfy 0 < min <= max metres, got {bad}")
        return {norm_name(k): (float(a), float(b)) for k, (a, b) in v.items()}


def physical_height(box_xyxy: np.ndarray, depth: np.ndarray, focal_frac: float) -> float:
    """Height in metres of a normalised box on a metric depth map (H, W): h_px * Z / f_px."""
    H, W = depth.shape
    x1, y1, x2, y2 = (box_xyxy * np.array([W, H, W, H])).round().astype(int)
    x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
    patch = depth[max(y1, 0) : min(y2, H), max(x1, 0) : min(x2, W)]
    z = float(np.median(patch)) if patch.size else float(np.median(depth))
    return (box_xyxy[3] - box_xyxy[1]) * H * z / (focal_frac * W)


def plausibility(height_m: float, size_range: tuple[float, float] | None, tolerance: float) -> float:
    """1 inside the range, exp(-|ln(H / nearest bound)| / tolerance) outside; 1 for unknown classes."""
    if size_range is None or not math.isfinite(height_m):
        return 1.0
    lo, hi = size_range
    if height_m <= 0:
        return 0.0
    if lo <= height_m <= hi:
        return 1.0
    bound = lo if height_m < lo else hi
    return float(math.exp(-abs(math.log(height_m / bound)) / tolerance))


def random_depth_processor(params: DepthSizeParams) -> Any:
    from transformers import DPTImageProcessor

    side = params.image_size
    return DPTImageProcessor(
        size={"height": side, "width": side}, keep_aspect_ratio=False, ensure_multiple_of=14, do_pad=False
    )


class DepthSizeValidator(Detector):
    def __init__(
        self,
        name: str,
        level: Level,
        model: Any,
        processor: Any,
        params: DepthSizeParams,
        weight: float = 1.0,
        batch: int = 8,
    ) -> None:
        super().__init__(name, level, weight)
        self.model, self.processor, self.params, self.batch = model, processor, params, batch

    @classmethod
    def from_config(cls, cfg: VoterConfig, base_dir: Path) -> DepthSizeValidator:
        from transformers import AutoModelForDepthEstimation

        params = DepthSizeParams.model_validate(cfg.params)
        key = f"voters[{cfg.name}].params.model"
        model = load_model(params, AutoModelForDepthEstimation, base_dir, key, cfg.device, cfg.dtype)
        compile_on_cuda(model, params.compile, cfg.device, cfg.name)
        processor = load_processor(params, base_dir, key, lambda: random_depth_processor(params))
        return cls(cfg.name, cfg.level, model, processor, params, cfg.weight, cfg.batch)

    def depth_maps(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Metric depth (metres) per image, at the image's own size."""
        import torch
        import torch.nn.functional as F

        side = self.params.image_size
        inputs = self.processor(
            images=images, return_tensors="pt", size={"height": side, "width": side}, **image_kwargs(self.model)
        )
        with torch.inference_mode():
            pred = self.model(**to_device(inputs, self.model)).predicted_depth.float()
        out = []
        for i, im in enumerate(images):
            d = F.interpolate(pred[i][None, None], size=im.shape[:2], mode="bilinear", align_corners=False)
            d = d[0, 0].cpu().numpy()
            if self.params.depth_mode == "inverse":
                d = self.params.depth_scale / np.maximum(d, 1e-3)
            else:
                d = d * self.params.depth_scale
            out.append(d)
        return out

    def check(self, boxes: Boxes, depth: np.ndarray) -> tuple[np.ndarray, list[float]]:
        heights = [physical_height(b, depth, self.params.focal) for b in boxes.xyxy]
        plaus = np.array(
            [
                plausibility(h, self.params.sizes.get(norm_name(lbl)), self.params.tolerance)
                for h, lbl in zip(heights, boxes.labels, strict=True)
            ]
        )
        return plaus, heights

    def predict(self, frames: Sequence[Frame]) -> list[Vote]:
        votes, todo = split_by_prior_boxes(
            frames,
            self.params.from_levels,
            lambda why: Vote.abstain(self.name, self.level, why, cause=AbstainCause.NO_EVIDENCE),
            self.params.evidence,
            self.params.max_boxes,
        )
        for start in range(0, len(todo), self.batch):
            chunk = todo[start : start + self.batch]
            t0 = time.monotonic()
            depths = map_with_fallback([frames[i].image for i, _ in chunk], self.depth_maps)
            ms = (time.monotonic() - t0) * 1000 / len(chunk)
            for (i, boxes), depth in zip(chunk, depths, strict=True):
                if isinstance(depth, Exception):
                    votes[i] = Vote.abstain(
                        self.name,
                        self.level,
                        f"frame failed: {type(depth).__name__}: {depth}",
                        ms,
                        cause=AbstainCause.ERROR,
                    )
                    continue
                plaus, heights = self.check(boxes, depth)
                prob = self.params.evidence.image_probability(boxes, extra_weights=plaus)
                ev = [
                    {**row, "height_m": round(float(h), 3), "plausible": round(float(p), 3)}
                    for row, h, p in zip(boxes.to_evidence(), heights, plaus, strict=True)
                ]
                votes[i] = Vote(self.name, self.level, prob, self.weight, ms, evidence={"boxes": ev})
        return [v for v in votes if v is not None]
