"""The L1 roadwork-object detector as an ultralytics YOLO, called the way torchvision's detectors are.

`training/finetune_detector.py` trains the Faster R-CNN of detectors/mnv2_rcnn.py on views of all
three validator regimes, with boxed objects pasted into dashcam negatives; `YoloBoxes` lets the
same loop, views and held-out scoring drive an ultralytics `DetectionModel` instead:

- in train mode `model(images, targets)` returns the loss dict (ultralytics' own
  `v8DetectionLoss`: box, class and distribution-focal terms), images and boxes letterboxed onto
  one `imgsz` square batch as ultralytics does;
- in eval mode `model(images)` returns, per image, `{"boxes", "labels", "scores"}` in the image's
  pixels with torchvision's labels (1 + index into `CLASSES`), after ultralytics' NMS, so
  `mnv2_rcnn.detections` reads it unchanged.

The network starts from an ultralytics checkpoint (`start`: e.g. the COCO YOLOv8n recovered from
its TFLite export by training/tflite_start.py; every layer whose shape fits is kept, the class
layers start afresh) or from a yaml (random weights). `save_yolo` writes an ultralytics checkpoint
(`{"model": DetectionModel}` in fp16, class names set) that the `ultralytics` voter loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from detectors.mnv2_rcnn import CLASSES

PAD = 114 / 255.0
"""Ultralytics' letterbox grey."""


def _module() -> Any:
    import torch

    class YoloBoxes(torch.nn.Module):
        def __init__(self, net: Any, imgsz: int, conf: float = 0.05, iou: float = 0.5, max_det: int = 30) -> None:
            super().__init__()
            self.net, self.imgsz, self.conf, self.iou, self.max_det = net, imgsz, conf, iou, max_det
            self.classes = CLASSES
            self.train_batchnorm = True  # ultralytics trains its batch norms; the R-CNN loop freezes its own

        def letterbox(self, images: list[Any]) -> tuple[Any, list[tuple[float, float, float]]]:
            """(3, h, w) [0, 1] tensors -> (B, 3, S, S) on grey bars, and each image's (scale, left, top)."""
            import torch.nn.functional as F

            s = self.imgsz
            batch = images[0].new_full((len(images), 3, s, s), PAD)
            geo = []
            for k, img in enumerate(images):
                h, w = img.shape[1:]
                r = s / max(h, w)
                nh, nw = max(1, round(h * r)), max(1, round(w * r))
                top, left = (s - nh) // 2, (s - nw) // 2
                batch[k, :, top : top + nh, left : left + nw] = F.interpolate(
                    img[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=r < 1
                )[0]
                geo.append((r, float(left), float(top)))
            return batch, geo

        def forward(self, images: list[Any], targets: list[dict[str, Any]] | None = None) -> Any:
            import torch

            x, geo = self.letterbox(images)
            if self.training:
                if targets is None:
                    raise ValueError("YoloBoxes in train mode needs targets")
                idx, cls, xywh = [], [], []
                for k, (t, (r, left, top)) in enumerate(zip(targets, geo, strict=True)):
                    b = t["boxes"].float() * r + torch.tensor([left, top, left, top], device=x.device)
                    xywh.append(
                        torch.stack(
                            [(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1
                        )
                        / self.imgsz
                    )
                    cls.append(t["labels"].float() - 1)
                    idx.append(torch.full((len(b),), float(k), device=x.device))
                preds = self.net(x)
                batch = {
                    "img": x,
                    "batch_idx": torch.cat(idx),
                    "cls": torch.cat(cls)[:, None],
                    "bboxes": torch.cat(xywh),
                }
                preds = {k: [f.float() for f in v] if k == "feats" else v.float() for k, v in preds.items()}
                with torch.autocast(x.device.type, enabled=False):  # the assigner wants float32
                    loss, _ = self.net.loss(batch, preds)
                names = ("box", "cls", "dfl")
                return {f"loss_{n}": v / len(images) for n, v in zip(names, loss, strict=True)}
            from ultralytics.utils.nms import non_max_suppression

            out = self.net(x)
            found = non_max_suppression(
                out[0] if isinstance(out, tuple) else out, self.conf, self.iou, max_det=self.max_det
            )
            result = []
            for d, (r, left, top), img in zip(found, geo, images, strict=True):
                h, w = img.shape[1:]
                b = (d[:, :4] - torch.tensor([left, top, left, top], device=d.device)) / r
                b[:, [0, 2]] = b[:, [0, 2]].clamp(0, w)
                b[:, [1, 3]] = b[:, [1, 3]].clamp(0, h)
                result.append({"boxes": b, "scores": d[:, 4], "labels": d[:, 5].long() + 1})
            return result

    return YoloBoxes


def build_yolo(start: str, imgsz: int = 512) -> Any:
    """A `YoloBoxes` for `CLASSES` from an ultralytics checkpoint (weights kept where shapes fit) or a yaml."""
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    if not start:
        raise ValueError(
            "the yolo detector needs a start: an ultralytics .pt (e.g. from training.tflite_start) or a yaml"
        )
    if Path(start).suffix in (".yaml", ".yml"):
        net = DetectionModel(start, nc=len(CLASSES), verbose=False)
    else:
        if not Path(start).is_file():
            raise FileNotFoundError(f"yolo start checkpoint {start!r} does not exist")
        src = ultralytics_network(start, "yolo start")
        net = DetectionModel(src.yaml, nc=len(CLASSES), verbose=False)
        net.load(src, verbose=False)
    net.args = get_cfg()  # the loss gains (box 7.5, cls 0.5, dfl 1.5)
    net.names = dict(enumerate(CLASSES))
    for p in net.parameters():
        p.requires_grad_(True)
    net.model[-1].dfl.conv.weight.requires_grad_(False)  # fixed arange weights
    return _module()(net, imgsz)


def ultralytics_network(path: str | Path, what: str) -> Any:
    """The float network an ultralytics checkpoint holds (under `model`; a pickled module, so this
    reads code: only for a file ultralytics or training.tflite_start wrote), or an error naming it."""
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), torch.nn.Module):
        raise ValueError(f"{what} {str(path)!r} is not an ultralytics checkpoint (no network under 'model')")
    return ckpt["model"].float()


def save_yolo(model: Any, path: str | Path, info: dict[str, Any]) -> Path:
    """An ultralytics checkpoint (fp16 DetectionModel, class names, our training record)."""
    import copy

    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = copy.deepcopy(model.net).cpu().half().eval()
    net.args = {"imgsz": model.imgsz, "task": "detect"}
    torch.save({"model": net, "train_args": {"imgsz": model.imgsz}, "roadwork_info": json.dumps(info)}, path)
    return path


def read_yolo_info(path: str | Path) -> dict[str, Any] | None:
    """The training record of a `save_yolo` checkpoint; None for any other file. Ultralytics
    checkpoints hold a pickled network, so this reads code: only for a file `save_yolo` wrote."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # not a torch file at all: the caller's own reader names the problem
        return None
    if not isinstance(ckpt, dict) or "roadwork_info" not in ckpt:
        return None
    return json.loads(ckpt["roadwork_info"])
