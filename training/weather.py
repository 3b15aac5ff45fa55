"""Weather on training frames, for either label: rain, snow, light fog, sun glare, shadows and dusk.

Why: every fog, haze, rain and snow frame in ../shared/data is a negative (DAWN), and the positives
are mostly clear-day photos and night clips. A network can then learn "bad weather means no
roadwork", which costs exactly the work zones that dashcams film in rain. Drawing the same weather
onto positives and negatives alike makes weather carry no label.

Measured and not adopted: the shipped recipe's leave-one-source-out networks with `--weather 0.3`
(seed 0) ranked the held-out sources lower than both seeds without it, at 224 px and on tiles, and
called held-out fog frames roadwork more often (docs/new-camera-levers.md, "Weather on training frames";
benchmarks/results/loso_variants_weather_h200.json). Off by default.

The effects are albumentations' own (RandomRain, RandomSnow, RandomFog, RandomSunFlare,
RandomShadow, and a darker, lower-contrast frame for dusk), one a frame, drawn from the caller's
numpy Generator so that a training run stays reproducible from its seed.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

EFFECTS = ("rain", "snow", "fog", "glare", "shadow", "dusk")


def _effects() -> dict[str, Any]:
    # offline, as roadwork.env's defaults: albumentations looks for a newer release at import otherwise
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    try:
        import albumentations as A
    except ImportError as exc:  # the `train` extra
        raise ImportError("weather augmentation needs albumentations: pip install -e '.[train]'") from exc
    return {
        "rain": A.RandomRain(rain_type="drizzle", brightness_coefficient=0.85, blur_value=3, p=1.0),
        "snow": A.RandomSnow(snow_point_range=(0.05, 0.15), brightness_coeff=1.8, p=1.0),
        # light to moderate: the library's default range (0.3-1) leaves a dashcam frame unreadable
        "fog": A.RandomFog(fog_coef_range=(0.1, 0.35), alpha_coef=0.08, p=1.0),
        "glare": A.RandomSunFlare(src_radius=160, num_flare_circles_range=(3, 6), p=1.0),
        "shadow": A.RandomShadow(num_shadows_limit=(1, 2), shadow_intensity_range=(0.3, 0.6), p=1.0),
        "dusk": A.Compose(
            [
                A.RandomBrightnessContrast(brightness_limit=(-0.35, -0.15), contrast_limit=(-0.3, -0.1), p=1.0),
                A.RandomGamma(gamma_limit=(110, 150), p=1.0),
            ]
        ),
    }


class Weather:
    """Draws one weather effect onto an RGB uint8 frame: `Weather()(frame, rng)`."""

    def __init__(self) -> None:
        self.effects = _effects()

    def __call__(self, frame: np.ndarray, rng: np.random.Generator, effect: str | None = None) -> np.ndarray:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"weather wants an RGB uint8 frame (H, W, 3), got {frame.dtype} {frame.shape}")
        name = effect if effect is not None else EFFECTS[int(rng.integers(len(EFFECTS)))]
        if name not in self.effects:
            raise ValueError(f"unknown weather effect {name!r}; choose from {', '.join(EFFECTS)}")
        transform = self.effects[name]
        transform.set_random_seed(int(rng.integers(1 << 31)))
        return np.ascontiguousarray(transform(image=np.ascontiguousarray(frame))["image"])
