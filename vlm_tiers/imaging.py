"""Image preparation for VLM prompts: shrink to a pixel budget, encode as a JPEG data URL.

Qwen2/2.5-VL models turn every 28x28 pixel patch into one visual token (Qwen3-VL: 32x32), so the pixel budget
(`image.max_pixels`) sets the prefill cost: 224 px is 64 tokens, 448 px 256, 896 px 1024.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np
from PIL import Image

PATCH = 28  # Qwen2-VL / Qwen2.5-VL: 14-px patches merged 2x2


def fit_pixels(
    width: int, height: int, max_pixels: int, min_pixels: int = PATCH * PATCH, factor: int = PATCH
) -> tuple[int, int]:
    """(w, h) with the aspect kept, sides multiples of `factor`, area within [min, max] pixels.

    The same rule as Qwen's `smart_resize`, so the server does not resize a second time.
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return w, h


def visual_tokens(width: int, height: int, max_pixels: int, min_pixels: int = PATCH * PATCH) -> int:
    w, h = fit_pixels(width, height, max_pixels, min_pixels)
    return (w // PATCH) * (h // PATCH)


def resize_rgb(image: np.ndarray, max_pixels: int, min_pixels: int = PATCH * PATCH, factor: int = PATCH) -> Image.Image:
    pil = Image.fromarray(image)
    size = fit_pixels(pil.width, pil.height, max_pixels, min_pixels, factor)
    return pil if size == pil.size else pil.resize(size, Image.Resampling.BICUBIC)


def to_data_url(
    image: np.ndarray, max_pixels: int, min_pixels: int = PATCH * PATCH, quality: int = 90, factor: int = PATCH
) -> str:
    """A `data:image/jpeg;base64,...` URL of the resized image, as OpenAI-style `image_url`."""
    buf = io.BytesIO()
    resize_rgb(image, max_pixels, min_pixels, factor).save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
