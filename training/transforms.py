"""The subnet validator's image transform, written from its documented behaviour.

Each challenge image gets one of four levels, 25 % each:
  level 0: RGB, centre square crop, resize to 224;
  level 1: rotation by up to +-20 degrees, then a random resized crop to 224 (scale 0.2-1, ratio 1);
  level 2: level 1 + saturation, contrast and JPEG distortions of random severity (0-1);
  level 3: level 2 + Gaussian noise and Gaussian blur (sigma 0-2).
The result is stored as a JPEG of quality 75, as the validator sends it. `none` passes a
full-resolution image through unchanged (newer validators). Everything is seeded by
(seed, sample key), so a dataset transforms the same way on every run.
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
TransformName = Literal["validator", "none"]


def centre_square(img: Image.Image) -> Image.Image:
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s))


def random_resized_crop(img: Image.Image, rng: np.random.Generator, scale: tuple[float, float] = (0.2, 1.0)) -> Image.Image:
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


def validator_level(img: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    img = img.convert("RGB")
    if level == 0:
        return centre_square(img).resize((SIZE, SIZE), Image.BILINEAR)
    img = img.rotate(float(rng.uniform(-20, 20)), resample=Image.BILINEAR)
    img = random_resized_crop(img, rng)
    if level >= 2:
        img = distort(img, rng)
    if level >= 3:
        img = noise_and_blur(img, rng)
    return img


@dataclass(frozen=True)
class ValidatorTransform:
    seed: int = 0
    jpeg_quality: int = 75

    def rng(self, key: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(key.encode())])

    def level_for(self, key: str) -> int:
        return int(self.rng(key).integers(0, 4))

    def __call__(self, image: np.ndarray, key: str, level: int | None = None) -> np.ndarray:
        rng = self.rng(key)
        chosen = int(rng.integers(0, 4))
        out = validator_level(Image.fromarray(image), chosen if level is None else level, rng)
        return np.asarray(jpeg_roundtrip(out, self.jpeg_quality), dtype=np.uint8)


@dataclass(frozen=True)
class NoTransform:
    def __call__(self, image: np.ndarray, key: str, level: int | None = None) -> np.ndarray:
        return image


def make_transform(name: str, seed: int = 0) -> ValidatorTransform | NoTransform:
    if name == "validator":
        return ValidatorTransform(seed=seed)
    if name == "none":
        return NoTransform()
    raise ValueError(f"unknown transform {name!r}; choose 'validator' or 'none'")
