"""Voter kinds by name: one `Kind` entry per config `kind`, imported lazily.

An entry names the adapter class (a `detectors.base.Detector` subclass with `from_config`), the
pydantic model of its `params`, the pyproject extra its libraries come from, where its released
weights come from (`weights`), which of our trained files it names (`artefacts`) and how to build
it with random weights (`random`). The params model and those forms live beside the adapter in a
module that imports no torch at the top, so `check_profile_voters` can refuse a misspelt kind or
param when the profile loads, with the key named, before any model is built. To add a model:
write its adapter file and add one entry here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from cascade.config import VoterConfig, error_lines
from detectors.base import Detector, Voter


@dataclass(frozen=True)
class Kind:
    adapter: str
    """"module:Class" of the adapter."""
    params: str
    """"module:Model" of its `params` section (pydantic, extra keys forbidden)."""
    extra: str = ""
    """`pip install -e .[extra]` that brings its libraries ("" when the base install does)."""
    about: str = ""
    random: str = ""
    """"module:function" that turns a voter entry of this kind into one that builds the same
    architecture with random weights and no download (speed runs: detectors/random_weights.py);
    "" when the kind has none (VLM tiers run on servers)."""
    weights: str = ""
    """"module:function" listing the released checkpoints a voter entry needs and where they come
    from (detectors/weights.py; `roadwork fetch-weights`); "" for none."""
    artefacts: str = ""
    """"module:function" listing the files of this project that a voter entry names (trained heads,
    checkpoints), each with the command that makes it (detectors/artefacts.py); "" for none."""
    reads_prior_votes: bool = False
    """The adapter reads earlier levels' votes (their boxes, in `frame.meta["prior_votes"]`), so it
    can only start once they are in; the others may start before their level (`runtime.start_early`)."""


KINDS: dict[str, Kind] = {
    "backbone-head": Kind(
        "detectors.backbone_head:BackboneHead",
        "detectors.backbone_head:BackboneHeadParams",
        about="L0: backbone embedding + trained linear head (optionally max over tiles)",
        random="detectors.random_weights:backbone_head_params",
        artefacts="detectors.backbone_head:artefacts",
        weights="detectors.backbone_head:weights",
    ),
    "ultralytics": Kind(
        "detectors.ultralytics_yolo:UltralyticsDetector",
        "detectors.ultralytics_yolo:UltralyticsParams",
        "vision",
        "YOLO / RT-DETR / YOLOE boxes",
        random="detectors.random_weights:ultralytics_params",
        artefacts="detectors.ultralytics_yolo:artefacts",
        weights="detectors.ultralytics_yolo:weights",
    ),
    "hf-detector": Kind(
        "detectors.hf_detr:HFDetector",
        "detectors.hf_detr:HFDetectorParams",
        "hf",
        "OWLv2, Grounding DINO, D-FINE, RT-DETR v2 through transformers",
        random="detectors.random_weights:hf_params",
        weights="detectors.weights:hub_model",
        artefacts="detectors.hf_detr:artefacts",
    ),
    "rfdetr": Kind(
        "detectors.rfdetr:RFDETRDetector",
        "detectors.rfdetr:RFDETRParams",
        "vision",
        "RF-DETR boxes",
        random="detectors.random_weights:rfdetr_params",
        weights="detectors.rfdetr:weights",
    ),
    "rcnn-mobilenet": Kind(
        "detectors.rcnn_detector:RcnnDetector",
        "detectors.rcnn_detector:RcnnParams",
        about="our roadwork-box Faster R-CNN (`roadwork train boxes`)",
        random="detectors.random_weights:unchanged_params",
        artefacts="detectors.rcnn_detector:artefacts",
    ),
    "wbf-ensemble": Kind(
        "detectors.ensemble:WBFEnsemble",
        "detectors.ensemble:EnsembleParams",
        "vision",
        "several box detectors fused with weighted boxes fusion",
        random="detectors.random_weights:ensemble_params",
        weights="detectors.ensemble:weights",
    ),
    "depth-size": Kind(
        "detectors.depth_size:DepthSizeValidator",
        "detectors.depth_size:DepthSizeParams",
        "hf",
        "L2: Depth Anything + object size check",
        reads_prior_votes=True,
        random="detectors.random_weights:hf_params",
        weights="detectors.weights:hub_model",
    ),
    "sam-mask": Kind(
        "detectors.sam_mask:SamMaskValidator",
        "detectors.sam_mask:SamParams",
        "hf",
        "L2: SAM mask shape / colour check",
        reads_prior_votes=True,
        random="detectors.random_weights:hf_params",
        weights="detectors.weights:hub_model",
    ),
    "ocr-signs": Kind(
        "detectors.ocr_signs:OcrSignVoter",
        "detectors.ocr_signs:OcrParams",
        "vision",
        "L2: roadwork words on signs (rapidocr PP-OCR)",
        random="detectors.random_weights:unchanged_params",
        weights="detectors.ocr_signs:weights",
    ),
    "scene-zero-shot": Kind(
        "detectors.scene_clip:SceneVoter",
        "detectors.scene_clip:SceneParams",
        "hf",
        "L2: CLIP / SigLIP zero-shot scene + night/rain/clear tag",
        random="detectors.random_weights:hf_params",
        weights="detectors.weights:hub_model",
    ),
    "vlm-http": Kind(
        "vlm_tiers.http_tier:HttpVLMTier",
        "vlm_tiers.config:HttpTierParams",
        "vlm",
        "L3-L5 over vLLM / any OpenAI-compatible server",
        weights="vlm_tiers.config:weights",
    ),
    "vlm-transformers": Kind(
        "vlm_tiers.local_tier:TransformersVLMTier",
        "vlm_tiers.config:LocalTierParams",
        "hf",
        "in-process Qwen-VL (CPU / development)",
        weights="vlm_tiers.config:weights",
    ),
}
ENSEMBLES = {"wbf-ensemble"}
"""Kinds whose `params.members` are voter entries of their own (checked like top-level voters)."""


OLD_PRECISION = ("half", "fp16", "dtype")
PRECISION_HINT = "; the precision is the voter's own `dtype` (voters[].dtype, or voter_defaults.dtype)"


class UnknownDetectorError(KeyError):
    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def _unknown(kind: str) -> str:
    return f"unknown voter kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}"


def _load(target: str, kind: str) -> Any:
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        extra = KINDS[kind].extra
        hint = f"; install it with `pip install -e .[{extra}]`" if extra else ""
        raise ModuleNotFoundError(
            f"voter kind {kind!r} needs {exc.name!r}, which is not installed{hint}", name=exc.name
        ) from exc
    return getattr(module, attr)


def entry(kind: str) -> Kind:
    try:
        return KINDS[kind]
    except KeyError:
        raise UnknownDetectorError(f"{_unknown(kind)}. Fix `voters[].kind` in the profile.") from None


def resolve(kind: str) -> type[Detector]:
    cls = _load(entry(kind).adapter, kind)
    if not (isinstance(cls, type) and issubclass(cls, Detector)):
        raise TypeError(f"registry entry {kind!r} -> {KINDS[kind].adapter} is not a Detector subclass")
    return cls


def params_model(kind: str) -> type[BaseModel]:
    return _load(entry(kind).params, kind)


def random_form(kind: str) -> Callable[[VoterConfig, bool], dict[str, Any]] | None:
    """The entry's `random` form: (voter entry, tiny) -> params of the same architecture with random
    weights; None when the kind has none."""
    form = entry(kind).random
    return _load(form, kind) if form else None


def _problems(kind: str, params: dict[str, Any], key: str) -> Iterator[str]:
    if kind not in KINDS:
        yield f"{key}.kind: {_unknown(kind)}"
        return
    try:
        parsed = params_model(kind).model_validate(params)
    except ValidationError as exc:
        for err, line in zip(exc.errors(), error_lines(exc, f"{key}.params"), strict=True):
            old = err["type"] == "extra_forbidden" and err["loc"] and err["loc"][-1] in OLD_PRECISION
            yield line + (PRECISION_HINT if old else "")
        return
    if kind in ENSEMBLES:
        for j, member in enumerate(getattr(parsed, "members", [])):
            mkey = f"{key}.params.members.{j}"
            if not isinstance(member.get("kind"), str):
                yield f"{mkey}.kind: each member needs a kind"
                continue
            yield from _problems(member["kind"], member.get("params") or {}, mkey)


def weights_form(kind: str) -> Callable[..., list[Any]] | None:
    """The entry's `weights` form: (voter entry, Where) -> the released checkpoints it needs."""
    form = entry(kind).weights
    return _load(form, kind) if form else None


def artefacts_form(kind: str) -> Callable[..., list[Any]] | None:
    """The entry's `artefacts` form: (voter entry, shown) -> the project-made files it names."""
    form = entry(kind).artefacts
    return _load(form, kind) if form else None


def check_profile_voters(voters: Sequence[VoterConfig], skip: Collection[int] = ()) -> list[str]:
    """One line per unknown kind or param that its kind's params model refuses, keyed as in the
    profile (`voters.3.params.hallf: Extra inputs are not permitted`). Disabled voters are checked
    too: switching one on must not be the moment a typo shows. `skip`: voters already reported
    (a launch spec that could not be read leaves their params unfilled)."""
    return [line for i, v in enumerate(voters) if i not in skip for line in _problems(v.kind, v.params, f"voters.{i}")]


def build(cfg: VoterConfig, base_dir: Path) -> Voter:
    return wrapped(resolve(cfg.kind).from_config(cfg, base_dir), cfg)


def wrapped(voter: Voter, cfg: VoterConfig) -> Voter:
    """The voter (an adapter, or its worker-process proxy) with what its profile entry puts around
    it: input scaling, then micro-batching."""
    if cfg.input_long_side is not None:  # scale full-resolution frames down once, before the model
        from detectors.input_scale import InputScale

        voter = InputScale(voter, cfg.input_long_side)
    if cfg.batch_wait_ms > 0:  # gather concurrent frames into micro-batches
        from detectors.batching import MicroBatcher

        voter = MicroBatcher(voter, cfg.batch, cfg.batch_wait_ms, cfg.batch_pad, cfg.warm_sizes())
    return voter
