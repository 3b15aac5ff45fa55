"""L1: transformers detectors. Zero-shot with text prompts (OWLv2, Grounding DINO) and closed-set
DETR-family models (D-FINE, RT-DETR v2, DETR) behind the same `BoxDetector` body.

Zero-shot prompts live in config (`params.prompts`), e.g. ["traffic cone", "road barrier",
"roadwork sign", "excavator", "worker in safety vest"]; each prompt is a class name for the
class map (`params.evidence.classes`). Closed-set models use their own `id2label` names (COCO for
the public D-FINE checkpoints: truck, person, stop sign -> weak evidence).

Conversion of raw outputs to `Boxes` happens here, next to the adapters.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict, Field

from cascade.config import VoterConfig
from cascade.types import Level
from detectors.artefacts import Artefact, Shown
from detectors.box_detector import BoxDetector
from detectors.evidence import Boxes, ClassMap
from detectors.hf_common import HFSource, image_kwargs, load_model, load_processor, tiny_tokenizer, to_device

log = logging.getLogger(__name__)

ZERO_SHOT_TYPES = ("owlv2", "owlvit", "grounding-dino")
DEFAULT_PROMPTS = [
    "traffic cone",
    "road barrier",
    "construction barrel",
    "roadwork sign",
    "excavator",
    "worker in safety vest",
]


class HFDetectorParams(HFSource):
    model_config = ConfigDict(extra="forbid")

    prompts: list[str] = Field(default_factory=lambda: list(DEFAULT_PROMPTS))
    """Zero-shot text queries (ignored by closed-set models)."""
    threshold: float = Field(default=0.2, ge=0, le=1)
    text_threshold: float = Field(default=0.2, ge=0, le=1)
    """Grounding DINO: token score needed to name a box."""
    max_det: int = Field(default=100, ge=1)
    """Keep at most this many boxes per image (the highest-scoring queries), before post-processing."""
    image_size: int | None = Field(default=None, ge=16)
    """Override the processor's input size (shortest edge / square side)."""
    deformable_sampling: Literal["by-level", "transformers"] = "by-level"
    """Models with multi-scale deformable attention (Grounding DINO): `by-level` sums each
    feature level's samples as it goes (`detectors/deformable_sampling.py`; the same answer up to
    float rounding); `transformers` runs the library's module, which stacks them all first."""
    evidence: ClassMap = Field(default_factory=ClassMap)


def artefacts(cfg: VoterConfig, shown: Shown) -> list[Artefact]:
    """A detector fine-tuned here is a folder named by path (`roadwork train detector` writes it)."""
    from detectors.weights import is_path

    model = HFDetectorParams.model_validate(cfg.params).model
    if model is None or not is_path(model):
        return []
    made = f"roadwork train detector --data DIR --model <hub id, e.g. ustc-community/dfine-large-coco> --out {shown(Path(model))}"
    return [Artefact("params.model", Path(model) / "config.json", made)]


def model_type_of(model: Any) -> str:
    return str(model.config.model_type)


def random_processor(model_type: str, params: HFDetectorParams, model: Any) -> Any:
    """Processor for a random-init model: the real image processor + an in-memory tokenizer."""
    import transformers as T

    size = params.image_size
    if model_type in ("owlv2", "owlvit"):
        side = size or model.config.vision_config.image_size
        ip = T.Owlv2ImageProcessor(size={"height": side, "width": side})
        tok = tiny_tokenizer(params.prompts, model.config.text_config.max_position_embeddings)
        return T.Owlv2Processor(image_processor=ip, tokenizer=tok)
    if model_type == "grounding-dino":
        side = size or 64
        ip = T.GroundingDinoImageProcessor(size={"shortest_edge": side, "longest_edge": side * 1333 // 800})
        tok = tiny_tokenizer(params.prompts, model.config.max_text_len)
        return T.GroundingDinoProcessor(image_processor=ip, tokenizer=tok)
    side = size or 640
    return T.RTDetrImageProcessor(size={"height": side, "width": side})


def keep_top_queries(outputs: Any, k: int) -> Any:
    """Cut a DETR-style output (`logits` (b, q, c), `pred_boxes` (b, q, 4)) to its k best queries.

    OWLv2 scores 3,600 patches and Grounding DINO 900 queries per image; post-processing and our
    evidence rows are per box in Python, so a low threshold (or a random model) would make
    thousands of boxes. The cut runs on the device, before anything leaves it.
    """
    import torch

    logits = outputs.logits
    if logits.shape[1] <= k:
        return outputs
    idx = logits.max(dim=-1).values.topk(k, dim=1).indices
    outputs.logits = torch.gather(logits, 1, idx[..., None].expand(-1, -1, logits.shape[-1]))
    outputs.pred_boxes = torch.gather(outputs.pred_boxes, 1, idx[..., None].expand(-1, -1, 4))
    return outputs


def prompt_of_token(tokenizer: Any, prompts: list[str]) -> tuple[str, Any]:
    """Grounding DINO's one text for all prompts ("a. b. c.") and, for each of its token positions,
    the index of the prompt the token belongs to (-1: special tokens and the dots between)."""
    import torch

    text = ". ".join(q.lower() for q in prompts) + "."
    spans, at = [], 0
    for q in prompts:
        spans.append((at, at + len(q)))
        at += len(q) + 2
    enc = tokenizer(text, return_offsets_mapping=True)
    owner = [
        next((i for i, (lo, hi) in enumerate(spans) if end > start and lo <= start and end <= hi), -1)
        for start, end in enc["offset_mapping"]
    ]
    return text, torch.tensor(owner, dtype=torch.long)


def grounded_labels(probs: Any, owner: Any, n_prompts: int, text_threshold: float) -> Any:
    """Per query, the prompt whose tokens score highest among those over `text_threshold`; -1 where
    no token of any prompt does. `probs` (b, q, t) are the token scores, `owner` (<= t,) as made by
    `prompt_of_token`. One tensor expression for the whole batch, on the device: transformers'
    post-processing finds each box's tokens with a nonzero() and decodes them one box at a time
    (op profile on the H200: about 100 host syncs per image, most of the adapter's CPU time)."""
    import torch

    t = min(probs.shape[-1], owner.shape[0])
    owner = owner[:t].to(probs.device)
    member = torch.nn.functional.one_hot(owner.clamp(min=0), n_prompts).to(probs.dtype) * (owner >= 0)[:, None]
    over = torch.where(probs[..., :t] > text_threshold, probs[..., :t], 0)
    best = (over[..., :, None] * member).amax(dim=-2).max(dim=-1)  # (b, q, n_prompts) -> (b, q)
    return torch.where(best.values > 0, best.indices, -1)


def to_boxes(r: dict[str, Any], labels: list[str], size: tuple[int, int]) -> Boxes:
    h, w = size
    return Boxes.from_pixels(r["boxes"].float().cpu().numpy(), r["scores"].float().cpu().numpy(), labels, w, h)


class HFDetector(BoxDetector):
    """OWLv2 / Grounding DINO (zero-shot, prompts) or D-FINE / RT-DETR (closed-set) -> Boxes."""

    def __init__(
        self,
        name: str,
        level: Level,
        model: Any,
        processor: Any,
        params: HFDetectorParams,
        weight: float = 1.0,
        batch: int = 8,
    ) -> None:
        super().__init__(name, level, params.evidence, weight, batch)
        self.model, self.processor, self.params = model, processor, params
        self.model_type = model_type_of(model)
        self.zero_shot = self.model_type in ZERO_SHOT_TYPES
        if self.model_type == "grounding-dino":
            self.gdino_text, self.gdino_owner = prompt_of_token(processor.tokenizer, params.prompts)

    @classmethod
    def from_config(cls, cfg: VoterConfig, base_dir: Path) -> HFDetector:
        from transformers import AutoModelForObjectDetection, AutoModelForZeroShotObjectDetection

        from detectors.deformable_sampling import sum_levels_in_place

        params = HFDetectorParams.model_validate(cfg.params)
        key = f"voters[{cfg.name}].params.model"
        mtype = (params.random_init or {}).get("model_type", "")
        zero_shot = mtype in ZERO_SHOT_TYPES or (
            params.model is not None
            and any(t.replace("-", "") in params.model.lower().replace("-", "") for t in ZERO_SHOT_TYPES)
        )
        auto = AutoModelForZeroShotObjectDetection if zero_shot else AutoModelForObjectDetection
        model = load_model(params, auto, base_dir, key, cfg.device, cfg.dtype)
        if params.deformable_sampling == "by-level" and (n := sum_levels_in_place(model)):
            log.info("%s: %d deformable attention modules sum by level", cfg.name, n)
        processor = load_processor(params, base_dir, key, lambda: random_processor(model_type_of(model), params, model))
        return cls(cfg.name, cfg.level, model, processor, params, cfg.weight, cfg.batch)

    def detect(self, images: list[np.ndarray]) -> list[Boxes]:
        import torch

        sizes = [(int(im.shape[0]), int(im.shape[1])) for im in images]
        with torch.inference_mode():
            if self.zero_shot:
                return self._zero_shot(images, sizes)
            inputs = to_device(
                self.processor(images=images, return_tensors="pt", **image_kwargs(self.model)), self.model
            )
            out = keep_top_queries(self.model(**inputs), self.params.max_det)
            res = self.processor.post_process_object_detection(out, threshold=self.params.threshold, target_sizes=sizes)
        id2label = self.model.config.id2label
        return [
            to_boxes(r, [str(id2label.get(i, i)) for i in r["labels"].tolist()], size)
            for r, size in zip(res, sizes, strict=True)
        ]

    def _zero_shot(self, images: list[np.ndarray], sizes: list[tuple[int, int]]) -> list[Boxes]:
        p = self.params
        if self.model_type == "grounding-dino":
            return self._grounding_dino(images)
        inputs = self.processor(
            text=[p.prompts] * len(images),
            images=images,
            return_tensors="pt",
            padding="max_length",
            truncation=True,
            **image_kwargs(self.model),
        )
        out = keep_top_queries(self.model(**to_device(inputs, self.model)), p.max_det)
        squares = [(max(h, w), max(h, w)) for h, w in sizes]  # OWLv2 pads to a square before resizing
        res = self.processor.post_process_grounded_object_detection(out, threshold=p.threshold, target_sizes=squares)
        return [
            to_boxes(r, [p.prompts[i] for i in r["labels"].tolist()], size) for r, size in zip(res, sizes, strict=True)
        ]

    def _grounding_dino(self, images: list[np.ndarray]) -> list[Boxes]:
        """Boxes over `threshold`, each named by `grounded_labels` ("unknown" where no prompt's
        token passes `text_threshold`); one copy to the host per batch."""
        from transformers.image_transforms import center_to_corners_format

        p = self.params
        inputs = self.processor(
            images=images,
            text=[self.gdino_text] * len(images),
            return_tensors="pt",
            padding=True,
            **image_kwargs(self.model),
        )
        out = keep_top_queries(self.model(**to_device(inputs, self.model)), p.max_det)
        probs = out.logits.float().sigmoid()
        scores = probs.max(dim=-1).values
        labels = grounded_labels(probs, self.gdino_owner, len(p.prompts), p.text_threshold)
        boxes = center_to_corners_format(out.pred_boxes.float())
        keep, scores, labels, boxes = (x.cpu().numpy() for x in (scores > p.threshold, scores, labels, boxes))
        names = [*p.prompts, "unknown"]  # label -1 picks "unknown"
        return [
            Boxes(b[k], s[k], tuple(names[i] for i in lab[k]))
            for k, s, lab, b in zip(keep, scores, labels, boxes, strict=True)
        ]
