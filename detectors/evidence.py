"""From boxes to roadwork evidence: class mapping, image probability, fusion across detectors.

Every L1 detector turns its raw output into `Boxes` (normalised xyxy, score, class name). A
`ClassMap` (from config) gives each class name a roadwork weight in [0, 1]: a cone is strong
evidence, a COCO truck or person weak, a cat none. The image probability is a noisy-OR over the
weighted confidences (each kept box is an independent chance that roadwork is there), passed
through a Platt calibration (`scale`, `bias` on the logit; `fit_calibration` learns them from
held-out frames). Boxes from several detectors are fused with weighted boxes fusion from the
maintained `ensemble-boxes` package.

    p_raw = 1 - (1 - leak) * prod_i (1 - w(class_i) * score_i)     (top `per_class_top` per class)
    p     = sigmoid(scale * logit(p_raw) + bias)
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

# Roadwork evidence by default; COCO classes that co-occur with roadwork get small weights.
DEFAULT_CLASS_WEIGHTS: dict[str, float] = {
    "cone": 0.9,
    "traffic cone": 0.9,
    "road cone": 0.9,
    "barrier": 0.8,
    "road barrier": 0.8,
    "barricade": 0.8,
    "worker in safety vest": 0.7,
    "barrel": 0.7,
    "drum": 0.7,
    "construction barrel": 0.8,
    "sign": 0.5,
    "roadwork sign": 0.9,
    "road work sign": 0.9,
    "construction sign": 0.9,
    "machinery": 0.7,
    "excavator": 0.8,
    "bulldozer": 0.8,
    "road roller": 0.8,
    "worker": 0.6,
    "construction worker": 0.7,
    "safety vest": 0.6,
    "worker vest": 0.6,
    "hi vis vest": 0.6,
    # COCO: weak evidence
    "truck": 0.1,
    "person": 0.05,
    "stop sign": 0.1,
}


@functools.lru_cache(maxsize=4096)
def _norm(name: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[_\-]+", " ", name)).strip().lower()


def norm_name(name: str) -> str:
    """'Traffic_Cone' / 'traffic-cone' / ' traffic cone ' -> 'traffic cone'.

    Cached: every box of every vote goes through here, and detectors repeat a few class names.
    """
    return _norm(str(name))


@dataclass(frozen=True)
class Boxes:
    """Parallel arrays: xyxy (n, 4) normalised to [0, 1], scores (n,), labels (n,) class names."""

    xyxy: np.ndarray
    scores: np.ndarray
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float64)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must have shape (n, 4), got {np.shape(self.xyxy)}")
        scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if not (len(xyxy) == len(scores) == len(self.labels)):
            raise ValueError(
                f"Boxes arrays disagree: {len(xyxy)} boxes, {len(scores)} scores, {len(self.labels)} labels"
            )
        if not np.all(np.isfinite(xyxy)) or not np.all(np.isfinite(scores)):
            raise ValueError("Boxes must be finite (got NaN or inf)")
        object.__setattr__(self, "xyxy", np.clip(xyxy, 0.0, 1.0))
        object.__setattr__(self, "scores", np.clip(scores, 0.0, 1.0))
        object.__setattr__(self, "labels", tuple(str(x) for x in self.labels))

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Boxes:
        return cls(np.zeros((0, 4)), np.zeros(0), ())

    @classmethod
    def from_pixels(cls, xyxy: Any, scores: Any, labels: Sequence[str], width: int, height: int) -> Boxes:
        arr = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
        return cls(arr / np.array([width, height, width, height], dtype=np.float64), scores, tuple(labels))

    def filter(self, keep: np.ndarray) -> Boxes:
        keep = np.asarray(keep, dtype=bool)
        return Boxes(self.xyxy[keep], self.scores[keep], tuple(np.array(self.labels, dtype=object)[keep]))

    def to_evidence(self, weights: np.ndarray | None = None) -> list[dict[str, Any]]:
        """JSON-ready list for `Vote.evidence['boxes']`."""
        # rounded in numpy and converted with one tolist(): this runs for every box of every vote
        xyxy, scores = np.round(self.xyxy, 5).tolist(), np.round(self.scores, 5).tolist()
        out = [{"xyxy": b, "score": s, "label": lbl} for b, s, lbl in zip(xyxy, scores, self.labels, strict=True)]
        if weights is not None:
            for row, w in zip(out, np.round(np.asarray(weights, dtype=np.float64), 4).tolist(), strict=True):
                row["weight"] = w
        return out

    @classmethod
    def from_evidence(cls, rows: Sequence[Mapping[str, Any]]) -> Boxes:
        if not rows:
            return cls.empty()
        return cls(
            np.array([r["xyxy"] for r in rows], dtype=np.float64),
            np.array([r["score"] for r in rows], dtype=np.float64),
            tuple(r["label"] for r in rows),
        )


class ClassMap(BaseModel):
    """Config: class name -> roadwork weight, plus the noisy-OR and its calibration."""

    model_config = ConfigDict(extra="forbid")

    classes: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_CLASS_WEIGHTS))
    """Roadwork weight in [0, 1] per class name (names are compared lower-case, '_'/'-' as space)."""
    default: float = Field(default=0.0, ge=0, le=1)
    """Weight of a class not listed under `classes`."""
    min_score: float = Field(default=0.25, ge=0, le=1)
    """Boxes below this confidence are ignored."""
    per_class_top: int = Field(default=3, ge=1)
    """Only the best N boxes of each class count (ten persons are not ten pieces of evidence)."""
    leak: float = Field(default=0.02, ge=0, lt=1)
    """Probability with no box at all (a detector that sees nothing is not certain)."""
    scale: float = Field(default=1.0, gt=0)
    bias: float = 0.0
    """Platt calibration on the logit of the noisy-OR."""

    @field_validator("classes")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {k: w for k, w in v.items() if not 0.0 <= float(w) <= 1.0}
        if bad:
            raise ValueError(f"class weights must lie in [0, 1]; fix params.evidence.classes: {bad}")
        return {norm_name(k): float(w) for k, w in v.items()}

    def weight_of(self, label: str) -> float:
        return self.classes.get(norm_name(label), self.default)

    def box_weights(self, boxes: Boxes) -> np.ndarray:
        return np.array([self.weight_of(lbl) for lbl in boxes.labels], dtype=np.float64)

    def strongest(self, boxes: Boxes, k: int) -> Boxes:
        """The k boxes that count most (weight x score, at least min_score), strongest first.

        An L2 validator checks these only: its work per frame stays bounded however many boxes
        the detectors report (a low-threshold detector can give hundreds), and the noisy-OR counts
        just the best `per_class_top` of each class anyway.
        """
        contrib = self.box_weights(boxes) * boxes.scores
        order = [
            int(i) for i in np.argsort(-contrib, kind="stable") if contrib[i] > 0 and boxes.scores[i] >= self.min_score
        ][:k]
        return Boxes(boxes.xyxy[order], boxes.scores[order], tuple(boxes.labels[i] for i in order))

    def image_probability(self, boxes: Boxes, extra_weights: np.ndarray | None = None) -> float:
        """Calibrated noisy-OR over the boxes' weighted confidences (see module docstring)."""
        w = self.box_weights(boxes)
        if extra_weights is not None:
            w = w * np.asarray(extra_weights, dtype=np.float64)
        raw = noisy_or(boxes.scores, w, boxes.labels, self.min_score, self.per_class_top, self.leak)
        return calibrate(raw, self.scale, self.bias)


def noisy_or(
    scores: np.ndarray,
    weights: np.ndarray,
    labels: Sequence[str],
    min_score: float = 0.0,
    per_class_top: int | None = None,
    leak: float = 0.0,
) -> float:
    """1 - (1 - leak) * prod(1 - w_i * s_i) over boxes with s_i >= min_score (top-N per class)."""
    scores = np.asarray(scores, dtype=np.float64)
    contrib = np.clip(np.asarray(weights, dtype=np.float64) * scores, 0.0, 1.0)
    keep = (scores >= min_score) & (contrib > 0)
    if per_class_top is not None:
        counts: dict[str, int] = {}
        for i in np.argsort(-contrib, kind="stable"):
            if keep[i]:
                key = norm_name(labels[i])
                counts[key] = counts.get(key, 0) + 1
                keep[i] = counts[key] <= per_class_top
    miss = (1.0 - leak) * float(np.prod(1.0 - contrib[keep]))
    return float(np.clip(1.0 - miss, 0.0, 1.0))


def calibrate(p: float, scale: float = 1.0, bias: float = 0.0, eps: float = 1e-6) -> float:
    """sigmoid(scale * logit(p) + bias); identity for scale=1, bias=0."""
    if scale == 1.0 and bias == 0.0:
        return float(p)
    q = min(max(p, eps), 1 - eps)
    z = scale * math.log(q / (1 - q)) + bias
    return float(1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0))))


def fit_calibration(raw_probs: Sequence[float], labels: Sequence[int], eps: float = 1e-4) -> tuple[float, float]:
    """Platt scaling: (scale, bias) so that sigmoid(scale * logit(p_raw) + bias) fits the labels.

    Fit on frames the detector never trained on (out-of-fold or a held-out split, never dev);
    the result goes into `params.evidence.scale` / `bias`.
    """
    from sklearn.linear_model import LogisticRegression

    p = np.clip(np.asarray(raw_probs, dtype=np.float64), eps, 1 - eps)
    y = np.asarray(labels, dtype=int)
    if len(p) != len(y) or len(set(y.tolist())) != 2:
        raise ValueError(
            f"fit_calibration needs matching probs and labels with both classes; got "
            f"{len(p)} probs, labels {sorted(set(y.tolist()))}"
        )
    lr = LogisticRegression(C=1e4).fit(np.log(p / (1 - p))[:, None], y)
    return float(max(lr.coef_[0][0], 1e-3)), float(lr.intercept_[0])


class FusionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    iou_thr: float = Field(default=0.55, gt=0, le=1)
    skip_box_thr: float = Field(default=0.05, ge=0, le=1)
    conf_type: str = "avg"
    """ensemble-boxes' conf_type: avg, max, box_and_model_avg, absent_model_aware_avg."""


def fuse_boxes(
    per_model: Sequence[Boxes], weights: Sequence[float] | None = None, cfg: FusionConfig | None = None
) -> Boxes:
    """Weighted boxes fusion (ensemble_boxes.weighted_boxes_fusion) of several detectors' boxes.

    Class names are matched after `norm_name`, so 'traffic_cone' and 'traffic cone' fuse.
    """
    from ensemble_boxes import weighted_boxes_fusion

    cfg = cfg or FusionConfig()
    if weights is not None and len(weights) != len(per_model):
        raise ValueError(f"fuse_boxes got {len(per_model)} box sets but {len(weights)} weights")
    if not any(len(b) for b in per_model):
        return Boxes.empty()
    vocab = sorted({norm_name(lbl) for b in per_model for lbl in b.labels})
    index = {name: i for i, name in enumerate(vocab)}
    boxes_list = [b.xyxy.tolist() for b in per_model]
    scores_list = [b.scores.tolist() for b in per_model]
    labels_list = [[index[norm_name(lbl)] for lbl in b.labels] for b in per_model]
    xyxy, scores, labels = weighted_boxes_fusion(
        boxes_list,
        scores_list,
        labels_list,
        weights=list(weights) if weights is not None else None,
        iou_thr=cfg.iou_thr,
        skip_box_thr=cfg.skip_box_thr,
        conf_type=cfg.conf_type,
    )
    return Boxes(np.asarray(xyxy).reshape(-1, 4), np.asarray(scores), tuple(vocab[int(i)] for i in labels))


def prior_boxes(frame_meta: Mapping[str, Any], levels: Sequence[int] = (1,)) -> list[tuple[str, Boxes]]:
    """Boxes that earlier voters put in their evidence (the cascade passes them in frame.meta)."""
    out = []
    for vote in frame_meta.get("prior_votes", ()):
        if int(vote.level) in levels and not vote.abstained and vote.evidence.get("boxes"):
            out.append((vote.voter, Boxes.from_evidence(vote.evidence["boxes"])))
    return out


def merged_prior_boxes(frame_meta: Mapping[str, Any], levels: Sequence[int] = (1,)) -> Boxes | None:
    """All earlier voters' boxes in one set, or None when no earlier voter reported boxes."""
    found = prior_boxes(frame_meta, levels)
    if not found:
        return None
    return Boxes(
        np.concatenate([b.xyxy for _, b in found]),
        np.concatenate([b.scores for _, b in found]),
        tuple(lbl for _, b in found for lbl in b.labels),
    )


def split_by_prior_boxes(
    frames: Sequence[Any], levels: Sequence[int], abstain: Any, classes: ClassMap, max_boxes: int
) -> tuple[list[Any], list[tuple[int, Boxes]]]:
    """For L2 validators: frames with earlier voters' boxes to check, and abstentions for the rest.

    Returns (votes, todo): `votes[i]` is `abstain("no L1 boxes to check")` where frame i has no
    boxes and None where it has; `todo` lists (i, boxes) for the frames to check, keeping the
    `max_boxes` strongest under `classes` (possibly none: then the vote is the no-evidence leak).
    """
    votes: list[Any] = [None] * len(frames)
    todo: list[tuple[int, Boxes]] = []
    for i, f in enumerate(frames):
        found = merged_prior_boxes(f.meta, levels)
        if found is None:
            votes[i] = abstain("no L1 boxes to check")
        else:
            todo.append((i, classes.strongest(found, max_boxes)))
    return votes, todo
