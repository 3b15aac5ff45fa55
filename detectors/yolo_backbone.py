"""COCO YOLOv8n's backbone as an L0 backbone (`yolov8n-coco`): pretrained on street scenes, not ImageNet.

Every other L0 backbone here learned from ImageNet's object-centred photos. The one network on this
machine pretrained on whole scenes is ultralytics' COCO YOLOv8n (cars, people, traffic lights, stop
signs: the street), recovered from its TFLite export by training/tflite_start.py. Its backbone
(the yaml's layers 0-9, CSPDarknet to SPPF: 1.3 M parameters) gives a 256-channel map at stride
32, so it drops in where MobileNetV2's `features` sits, with the same pooling and a head of
2 x 256 inputs. As a backbone it ranked cameras it never saw lower than MobileNetV2
(docs/new-camera-levers.md), so it is a training option, not served.

YOLO takes pixels in [0, 1]; the L0 input is ImageNet-normalised (`detectors.mobilenet.
to_tensor_batch`), so `YoloFeatures` undoes that as its first step and every L0 path keeps one
input. The recovered checkpoint keeps the export's licence (AGPL-3.0) and is never committed: it
is named by `$ROADWORK_YOLO_COCO` (default `runs/yolov8n_coco.pt`, where `python -m
training.tflite_start --tflite ../shared/weights/yolov8n_coco_int8.tflite --out
runs/yolov8n_coco.pt` writes it). Needs `ultralytics` (the `vision` extra).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

COCO_ENV = "ROADWORK_YOLO_COCO"
DEFAULT_START = Path("runs/yolov8n_coco.pt")
YAML = "yolov8n.yaml"
LAYERS = 10
"""The yaml's backbone: layers 0-9 (each reads the one before), ending in SPPF."""
CHANNELS = 256


def coco_start() -> Path:
    """The recovered COCO checkpoint, or an error that says how to make it."""
    path = Path(os.environ.get(COCO_ENV, DEFAULT_START))
    if not path.is_file():
        raise FileNotFoundError(
            f"backbone 'yolov8n-coco' needs the COCO YOLOv8n recovered from its TFLite export at {path} "
            f"(${COCO_ENV} names another place): python -m training.tflite_start "
            f"--tflite ../shared/weights/yolov8n_coco_int8.tflite --out {path}"
        )
    return path


def coco_state() -> tuple[Path, dict[str, Any]]:
    """The checkpoint and its backbone's state, keyed as `yolo_features`' module holds it."""
    from detectors.yolo_boxes import ultralytics_network

    path = coco_start()
    net = ultralytics_network(path, "backbone weights")
    state = {f"features.net.{k}": v for k, v in net.model[:LAYERS].state_dict().items()}
    return path, state


def yolo_features(input_mean: np.ndarray, input_std: np.ndarray) -> Any:
    """A module whose `features(x)` maps (n, 3, s, s) input, normalised by `input_mean` and
    `input_std`, to the (n, 256, s/32, s/32) map; `channels` says 256. Weights random: the caller
    loads `coco_state()` or a fine-tuned state."""
    import torch
    from torch import nn
    from ultralytics.nn.tasks import DetectionModel

    class YoloFeatures(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(*DetectionModel(YAML, nc=80, verbose=False).model[:LAYERS])
            self.register_buffer("in_std", torch.as_tensor(np.float32(input_std)).reshape(1, 3, 1, 1), persistent=False)
            self.register_buffer(
                "in_mean", torch.as_tensor(np.float32(input_mean)).reshape(1, 3, 1, 1), persistent=False
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x * self.in_std + self.in_mean)

    class YoloBackbone(nn.Module):
        channels = CHANNELS

        def __init__(self) -> None:
            super().__init__()
            self.features = YoloFeatures()

    return YoloBackbone()
