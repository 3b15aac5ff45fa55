"""L1: ultralytics detectors (YOLOv8 / YOLO11 / YOLO26, RT-DETR, YOLOE / YOLO-World) behind one adapter.

`params.weights` is a local `.pt`, `.onnx` or `.tflite` file (relative to the profile), a model
yaml such as `yolo11n.yaml` or `rtdetr-l.yaml` (the architecture with random weights, no
download), or a hub name such as `yolo11x.pt` when `allow_download: true`. Open-vocabulary models
(YOLOE, YOLO-World) take `prompts`, e.g. ["traffic cone", "road barrier", "roadwork sign"]; their
text encoder must be available locally (or `allow_download: true`).

Raw ultralytics `Results` are converted to `Boxes` in `boxes_from_result`, next to the adapter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cascade.config import VoterConfig
from cascade.types import Level
from detectors.artefacts import Artefact, Shown
from detectors.box_detector import BoxDetector, resolve_weights
from detectors.evidence import Boxes, ClassMap
from detectors.weights import WeightItem, Where

Family = Literal["auto", "yolo", "rtdetr", "yoloe", "world"]
EXPORTED = (".onnx", ".tflite", ".engine", ".torchscript", ".xml")


class UltralyticsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weights: str
    """Local .pt/.onnx/.tflite, a model yaml (random weights) or a hub name (needs allow_download)."""
    family: Family = "auto"
    """Model class; `auto` picks from the file name (rtdetr*, yoloe*, *-world*, else YOLO)."""
    imgsz: int = Field(default=640, ge=32)
    conf: float = Field(default=0.25, ge=0, le=1)
    iou: float = Field(default=0.7, gt=0, le=1)
    max_det: int = Field(default=100, ge=1)
    prompts: list[str] | None = None
    """Text prompts for YOLOE / YOLO-World (open vocabulary)."""
    native_batch: int | None = Field(default=None, ge=1)
    """Frames per backend call; default `batch` for .pt/.yaml and 1 for exported files (fixed batch)."""
    allow_download: bool = False
    evidence: ClassMap = Field(default_factory=ClassMap)


def weights(cfg: VoterConfig, where: Where) -> list[WeightItem]:
    """A released asset named bare (yolo11x.pt, fetched next to the profile), and YOLOE's text
    encoder when it has prompts; a checkpoint in a folder is ours (`artefacts`), a yaml needs none."""
    params = UltralyticsParams.model_validate(cfg.params)
    w = Path(params.weights)
    items = []
    if w.suffix not in (".yaml", ".yml") and w.parent == Path("."):
        items.append(WeightItem(cfg.name, cfg.kind, "ultralytics", w.name, str(where.resolve(params.weights))))
    if params.prompts and pick_family(params.weights, params.family) == "yoloe":
        note = "YOLOE's text encoder for the prompts (ultralytics fetches it)"
        items.append(WeightItem(cfg.name, cfg.kind, "ultralytics", "mobileclip_blt.ts", "", note=note))
    return items


def artefacts(cfg: VoterConfig, shown: Shown) -> list[Artefact]:
    """A checkpoint in a folder is ours (`roadwork train detector`); a bare asset name (yolo11x.pt)
    is a released checkpoint, which `roadwork fetch-weights` fetches; a yaml needs no file."""
    weights = Path(UltralyticsParams.model_validate(cfg.params).weights)
    if weights.suffix in (".yaml", ".yml") or weights.parent == Path("."):
        return []
    made = f"roadwork train detector --data DIR --model <released checkpoint, e.g. yolo11x.pt> --out {shown(weights)}"
    return [Artefact("params.weights", weights, made)]


def pick_family(weights: str, family: Family) -> Family:
    if family != "auto":
        return family
    stem = Path(weights).name.lower()
    if stem.startswith("rtdetr"):
        return "rtdetr"
    if stem.startswith("yoloe"):
        return "yoloe"
    if "-world" in stem:
        return "world"
    return "yolo"


def load_ultralytics(weights: str, family: Family, prompts: list[str] | None) -> Any:
    """Build the ultralytics model object (heavy import happens here)."""
    import ultralytics

    cls = {
        "yolo": ultralytics.YOLO,
        "rtdetr": ultralytics.RTDETR,
        "yoloe": ultralytics.YOLOE,
        "world": ultralytics.YOLOWorld,
    }[family]
    model = cls(weights)
    if prompts:
        if family == "yoloe":
            model.set_classes(prompts, model.get_text_pe(prompts))
        elif family == "world":
            model.set_classes(prompts)
        else:
            raise ValueError(
                f"params.prompts={prompts!r} needs an open-vocabulary model "
                f"(family yoloe or world), but {weights!r} is family {family!r}"
            )
    return model


def boxes_from_result(result: Any) -> Boxes:
    """ultralytics `Results` -> Boxes (normalised xyxy, score, class name)."""
    b = result.boxes
    if b is None or len(b) == 0:
        return Boxes.empty()
    names = result.names
    cls_ids = b.cls.cpu().numpy().astype(int)
    return Boxes(
        b.xyxyn.cpu().numpy(),
        b.conf.cpu().numpy(),
        tuple(str(names.get(int(c), c)) if isinstance(names, dict) else str(names[int(c)]) for c in cls_ids),
    )


class UltralyticsDetector(BoxDetector):
    def __init__(
        self,
        name: str,
        level: Level,
        model: Any,
        params: UltralyticsParams,
        weight: float = 1.0,
        batch: int = 16,
        device: str = "cpu",
        half: bool = False,
    ) -> None:
        native = params.native_batch or (1 if params.weights.endswith(EXPORTED) else batch)
        super().__init__(name, level, params.evidence, weight, min(batch, native))
        self.model = model
        self.params = params
        self.device = device
        self.half = half
        """fp16 inference (the voter's `dtype: float16`; CUDA only)."""

    @classmethod
    def from_config(cls, cfg: VoterConfig, base_dir: Path) -> UltralyticsDetector:
        params = UltralyticsParams.model_validate(cfg.params)
        if cfg.dtype == "bfloat16":
            raise ValueError(f"voters[{cfg.name}].dtype: ultralytics runs float32 or float16, not bfloat16")
        weights = resolve_weights(params.weights, base_dir, params.allow_download, f"voters[{cfg.name}].params.weights")
        model = load_ultralytics(weights, pick_family(weights, params.family), params.prompts)
        return cls(
            cfg.name,
            cfg.level,
            model,
            params.model_copy(update={"weights": weights}),
            cfg.weight,
            cfg.batch,
            cfg.device,
            half=cfg.dtype == "float16",
        )

    def detect(self, images: list[np.ndarray]) -> list[Boxes]:
        p = self.params
        bgr = [np.ascontiguousarray(img[..., ::-1]) for img in images]  # ultralytics reads numpy as BGR
        extra = {"quantize": 16} if self.half else {}
        results = self.model.predict(
            bgr, imgsz=p.imgsz, conf=p.conf, iou=p.iou, max_det=p.max_det, device=self.device, verbose=False, **extra
        )
        return [boxes_from_result(r) for r in results]
