"""Make a small synthetic labelled sample (roads with and without roadwork) for demos and tests.

Real photographs live in ../shared/data where this workplace has them; this sample is what a
fresh machine can make for itself. Positives show traffic cones, striped barriers or a roadwork
sign on a road; negatives show the same kind of road with cars or nothing.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def _road(draw: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int) -> None:
    sky = tuple(int(c) for c in rng.integers([90, 120, 160], [170, 200, 250]))
    draw.rectangle([0, 0, w, h // 2], fill=sky)
    ground = tuple(int(c) for c in rng.integers([40, 80, 30], [110, 150, 90]))
    draw.rectangle([0, h // 2, w, h], fill=ground)
    grey = int(rng.integers(60, 120))
    draw.polygon([(w * 0.45, h / 2), (w * 0.55, h / 2), (w, h), (0, h)], fill=(grey, grey, grey))
    for y in range(h // 2 + 10, h, 30):
        draw.rectangle([w / 2 - 2, y, w / 2 + 2, y + 12], fill=(230, 230, 230))


def _cone(draw: ImageDraw.ImageDraw, x: float, y: float, s: float) -> None:
    draw.polygon([(x, y - s), (x - s / 3, y), (x + s / 3, y)], fill=(255, 110, 0))
    draw.rectangle([x - s / 5, y - s / 2, x + s / 5, y - s / 2 + s / 8], fill=(250, 250, 250))
    draw.rectangle([x - s / 2.5, y, x + s / 2.5, y + s / 10], fill=(40, 40, 40))


def _barrier(draw: ImageDraw.ImageDraw, x: float, y: float, s: float) -> None:
    for i in range(6):
        colour = (220, 20, 20) if i % 2 == 0 else (245, 245, 245)
        draw.rectangle([x + i * s / 6, y - s / 4, x + (i + 1) * s / 6, y], fill=colour)


def _sign(draw: ImageDraw.ImageDraw, x: float, y: float, s: float) -> None:
    draw.polygon([(x, y - s), (x + s / 2, y - s / 2), (x, y), (x - s / 2, y - s / 2)], fill=(255, 140, 0))
    draw.line([(x, y), (x, y + s)], fill=(90, 90, 90), width=3)


def _car(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, y: float, s: float) -> None:
    colour = tuple(int(c) for c in rng.integers(0, 255, size=3))
    draw.rectangle([x - s, y - s / 2, x + s, y], fill=colour)
    draw.rectangle([x - s / 2, y - s, x + s / 2, y - s / 2], fill=(120, 160, 200))


def draw_scene(rng: np.random.Generator, roadwork: bool, w: int = 320, h: int = 240) -> Image.Image:
    img = Image.new("RGB", (w, h))
    draw = ImageDraw.Draw(img)
    _road(draw, rng, w, h)
    for _ in range(int(rng.integers(0, 3))):
        _car(draw, rng, rng.uniform(0.2, 0.8) * w, rng.uniform(0.6, 0.9) * h, rng.uniform(15, 35))
    if roadwork:
        for _ in range(int(rng.integers(2, 6))):
            _cone(draw, rng.uniform(0.1, 0.9) * w, rng.uniform(0.6, 0.95) * h, rng.uniform(20, 50))
        if rng.random() < 0.5:
            _barrier(draw, rng.uniform(0.05, 0.6) * w, rng.uniform(0.65, 0.9) * h, rng.uniform(60, 120))
        if rng.random() < 0.5:
            _sign(draw, rng.uniform(0.1, 0.9) * w, rng.uniform(0.5, 0.7) * h, rng.uniform(25, 50))
    return img


def make_sample(out_dir: str | Path, n: int = 40, seed: int = 0) -> Path:
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = i % 2
        rel = f"images/synthetic_{i:04d}.jpg"
        draw_scene(rng, bool(label)).save(out / rel, quality=90)
        rows.append(
            {
                "path": rel,
                "label": label,
                "source": "synthetic",
                "split": "train" if i < n // 2 else "dev",
                "group": f"synthetic:{i}",
            }
        )
    with open(out / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out
