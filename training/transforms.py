"""What validators send: the subnet's image regimes, written from their documented behaviour.

One definition of each regime serves eval, simulate, review and training augmentation:

- `v0.2` (2025 to early 2026, alias `validator`): each challenge gets one of four levels, 25 % each
    level 0: RGB, centre square crop, resize to 224;
    level 1: rotation by up to +-20 degrees, then a random resized crop to 224 (scale 0.2-1, ratio 1);
    level 2: level 1 + saturation, contrast and JPEG distortions of random severity (0-1);
    level 3: level 2 + Gaussian noise and Gaussian blur (sigma 0-2);
  then a JPEG of quality 75.
- `letterbox` (from April 2026): the same four levels, but the whole image is fitted into 224x224
  with black bars instead of being cropped (level 0: letterbox only; levels 1-3: rotation, then
  letterbox, then the level's distortions); JPEG q75.
- `full` (from May 2026, alias `none`): the image at full resolution, no augmentation.

Everything is seeded by (seed, sample key), so a dataset transforms the same way on every run.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from training.images import open_image

SIZE = 224
REGIMES: tuple[str, ...] = ("v0.2", "letterbox", "full")
ALIASES = {"validator": "v0.2", "none": "full"}
"""Older names, still accepted (runs written before the regimes existed say `validator` / `none`)."""


def canonical(name: str) -> str:
    """'validator' -> 'v0.2'; raises with the valid names for anything unknown."""
    name = ALIASES.get(name, name)
    if name not in REGIMES:
        raise ValueError(
            f"unknown regime {name!r}; choose one of {', '.join(REGIMES)} (or the older names {', '.join(ALIASES)})"
        )
    return name


def centre_square(img: Image.Image) -> Image.Image:
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s))


def letterbox_geometry(w: int, h: int, size: int = SIZE) -> tuple[float, int, int, int, int]:
    """Where `letterbox` puts a w x h image: (scale, new width, new height, left, top)."""
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    return scale, nw, nh, (size - nw) // 2, (size - nh) // 2


def letterbox(img: Image.Image, size: int = SIZE) -> Image.Image:
    """The whole image fitted into size x size, aspect kept, centred on black bars."""
    _, nw, nh, left, top = letterbox_geometry(*img.size, size)
    canvas = Image.new("RGB", (size, size))
    canvas.paste(img.resize((nw, nh), Image.BILINEAR), (left, top))
    return canvas


def random_resized_crop(
    img: Image.Image, rng: np.random.Generator, scale: tuple[float, float] = (0.2, 1.0)
) -> Image.Image:
    w, h = img.size
    area = w * h * rng.uniform(*scale)
    side = int(round(min(np.sqrt(area), w, h)))
    side = max(side, 1)
    left = int(rng.integers(0, w - side + 1))
    top = int(rng.integers(0, h - side + 1))
    return img.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.BILINEAR)


def jpeg_roundtrip(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with open_image(buf) as out:
        return out.convert("RGB")


def distort(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Level-2 distortions: saturation, contrast, JPEG, each at a random severity in [0, 1]."""
    sev = rng.uniform(0, 1, size=3)
    img = ImageEnhance.Color(img).enhance(1.0 + rng.choice([-1, 1]) * 0.8 * sev[0])
    img = ImageEnhance.Contrast(img).enhance(1.0 + rng.choice([-1, 1]) * 0.6 * sev[1])
    return jpeg_roundtrip(img, quality=int(round(90 - 80 * sev[2])))


def noise_and_blur(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Level-3 degradations: Gaussian noise (std up to 2 % of range per unit sigma) and blur sigma 0-2."""
    sigma = rng.uniform(0, 2)
    img = img.filter(ImageFilter.GaussianBlur(radius=sigma))
    arr = np.asarray(img, dtype=np.float32)
    arr = arr + rng.normal(0.0, rng.uniform(0, 2) * 0.02 * 255, size=arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def regime_level(img: Image.Image, level: int, rng: np.random.Generator, fit: str = "crop") -> Image.Image:
    """One augmentation level; `fit` is how the frame becomes 224x224: 'crop' (v0.2) or 'letterbox'."""
    img = img.convert("RGB")
    if level == 0:
        return centre_square(img).resize((SIZE, SIZE), Image.BILINEAR) if fit == "crop" else letterbox(img)
    angle = float(rng.uniform(-20, 20))
    if fit == "crop":
        img = random_resized_crop(img.rotate(angle, resample=Image.BILINEAR), rng)
    else:
        img = letterbox(img.rotate(angle, resample=Image.BILINEAR, expand=True))
    if level >= 2:
        img = distort(img, rng)
    if level >= 3:
        img = noise_and_blur(img, rng)
    return img


@dataclass(frozen=True)
class ValidatorTransform:
    """The v0.2 regime (`fit='crop'`) or the letterbox regime (`fit='letterbox'`)."""

    seed: int = 0
    jpeg_quality: int = 75
    fit: Literal["crop", "letterbox"] = "crop"

    def rng(self, key: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(key.encode())])

    def level_for(self, key: str) -> int:
        return int(self.rng(key).integers(0, 4))

    def __call__(self, image: np.ndarray, key: str, level: int | None = None) -> np.ndarray:
        rng = self.rng(key)
        chosen = int(rng.integers(0, 4))
        out = regime_level(Image.fromarray(image), chosen if level is None else level, rng, self.fit)
        return np.asarray(jpeg_roundtrip(out, self.jpeg_quality), dtype=np.uint8)


@dataclass(frozen=True)
class NoTransform:
    """The full regime: the frame as it is."""

    def __call__(self, image: np.ndarray, key: str, level: int | None = None) -> np.ndarray:
        return image


Transform = ValidatorTransform | NoTransform


def make_transform(name: str, seed: int = 0) -> Transform:
    name = canonical(name)
    if name == "v0.2":
        return ValidatorTransform(seed=seed)
    if name == "letterbox":
        return ValidatorTransform(seed=seed, fit="letterbox")
    return NoTransform()


def parse_regimes(text: str) -> list[str]:
    """'v0.2,full' -> ['v0.2', 'full'] (canonical names, order kept, no repeats)."""
    out: list[str] = []
    for part in text.split(","):
        if part.strip():
            name = canonical(part.strip())
            if name not in out:
                out.append(name)
    if not out:
        raise ValueError(f"no regime in {text!r}; choose from {', '.join(REGIMES)}")
    return out
