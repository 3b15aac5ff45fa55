"""Load labelled images from disk as RGB uint8 arrays, with errors that name the file."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

MAX_PIXELS = 80_000_000


def open_image(fp, formats: list[str] | None = None) -> Image.Image:
    """PIL's own `Image.open`, even after ultralytics has replaced it.

    Importing ultralytics swaps `PIL.Image.open` for a wrapper that, on bytes Pillow cannot
    identify, tries to install and import pi-heif (a network call, then ModuleNotFoundError
    offline). Every decode of ours goes through here so bad input stays an UnidentifiedImageError.
    """
    opener = Image.open
    if getattr(opener, "__module__", "PIL.Image") != "PIL.Image":
        patches = sys.modules.get("ultralytics.utils.patches")
        opener = getattr(patches, "_image_open", opener)
    return opener(fp, formats=formats)


class ImageLoadError(ValueError):
    """An image file that cannot be used; the message names the file and why."""


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; alpha is composited on white, EXIF orientation applied."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() or 1.0
        img = Image.fromarray((arr / top * 255).astype(np.uint8))
    return img.convert("RGB")


def load_rgb(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise ImageLoadError(f"{path}: file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open_image(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ImageLoadError(f"{path}: {img.width}x{img.height} is over {MAX_PIXELS} pixels")
                img.load()
                arr = np.asarray(to_rgb(img), dtype=np.uint8)
    except ImageLoadError:
        raise
    except (OSError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageLoadError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from exc
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ImageLoadError(f"{path}: image is {arr.shape[1]}x{arr.shape[0]}, too small")
    return np.ascontiguousarray(arr)
