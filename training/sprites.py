"""Drawn roadwork objects for copy-paste: the traffic-control devices of North American work zones.

The boxed objects in the data are cones, police barricades, German roadwork signs and Australian
night-work boards; dashcam work zones in the US are lined with orange-and-white drums, tubular
channelizers, striped Type III barricades and orange diamond signs, which no photo source boxes.
`draw_sprite` draws one of them (colour, fading, proportions, stripes and light drawn at random)
as an RGB picture and its alpha, for `training.copy_paste.PasteBank` to paste like a cut-out.
Drawn at 3x and shrunk, so edges are smooth; shaded across like a cylinder where the object is
round. Measured on new cameras with two seeds (`--paste-sprites 300`) and rejected: they ranked
held-out cameras lower than photo cut-outs alone (docs/new-camera-levers.md).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

SPRITE_KINDS = ("drum", "channelizer", "barricade", "diamond_sign")
"""What `draw_sprite` draws."""
SPRITE_SCHEMA = {"drum": "barrier", "channelizer": "cone", "barricade": "barrier", "diamond_sign": "sign"}
"""The schema class (training/box_schema.py) each kind pastes as: drums count as barriers there."""
_SCALE = 3


def draw_sprite(kind: str, rng: np.random.Generator, height: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """One drawn `kind` about `height` px tall: (h, w, 3) uint8 RGB and (h, w) float32 alpha."""
    if kind not in SPRITE_KINDS:
        raise ValueError(f"sprite kind {kind!r} is not one of {list(SPRITE_KINDS)}")
    orange = _orange(rng)
    white = np.array([235, 235, 228]) * rng.uniform(0.8, 1.0)
    h = height * _SCALE
    draw = {"drum": _drum, "channelizer": _channelizer, "barricade": _barricade, "diamond_sign": _diamond}[kind]
    rgb, mask = draw(h, orange, white, rng)
    rgb = rgb * rng.uniform(0.75, 1.1) + rng.normal(0, 6, rgb.shape)  # light and grime
    w = max(1, rgb.shape[1] // _SCALE)
    small = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).resize((w, height), Image.BOX)
    return np.asarray(small), np.asarray(mask.resize((w, height), Image.BOX), np.float32) / 255.0


def _orange(rng: np.random.Generator) -> np.ndarray:
    """Work-zone orange, new or faded."""
    return np.array([rng.uniform(225, 255), rng.uniform(70, 135), rng.uniform(0, 40)])


def _canvas(h: int, w: int) -> tuple[np.ndarray, Image.Image, ImageDraw.ImageDraw]:
    mask = Image.new("L", (w, h), 0)
    return np.zeros((h, w, 3), np.float32), mask, ImageDraw.Draw(mask)


def _shade(rgb: np.ndarray, rng: np.random.Generator) -> None:
    """Darken the columns away from a lit side, as light falls on a cylinder."""
    t = np.linspace(-1, 1, rgb.shape[1])
    light = rng.uniform(-0.5, 0.5)
    rgb *= (0.55 + 0.45 * np.clip(np.cos((t - light) * np.pi / 2.2), 0, 1))[None, :, None]


def _bands(rgb: np.ndarray, bottom: int, colours: list[np.ndarray]) -> None:
    """Horizontal bands of `colours`, top to bottom, over rows 0..bottom."""
    edges = np.linspace(0, bottom, len(colours) + 1).astype(int)
    for colour, a, b in zip(colours, edges[:-1], edges[1:], strict=True):
        rgb[a:b] = colour


def _drum(h: int, orange, white, rng) -> tuple[np.ndarray, Image.Image]:
    w = int(h * rng.uniform(0.58, 0.7))
    rgb, mask, d = _canvas(h, w)
    base = int(h * 0.08)
    body = (int(w * 0.08), 0, w - int(w * 0.08), h - base)
    d.rounded_rectangle(body, radius=int(w * 0.12), fill=255)
    d.rectangle((0, h - base, w, h), fill=255)  # the black rubber base ring, wider
    _bands(rgb, h - base, [orange, white, orange, white, orange][: int(rng.integers(4, 6))])
    rgb[h - base :] = 25
    _shade(rgb, rng)
    return rgb, mask


def _channelizer(h: int, orange, white, rng) -> tuple[np.ndarray, Image.Image]:
    w = int(h * rng.uniform(0.16, 0.24))
    rgb, mask, d = _canvas(h, w)
    base = int(h * 0.05)
    post = int(w * 0.2)
    d.rounded_rectangle((post, 0, w - post, h - base), radius=max(1, int(w * 0.25)), fill=255)
    d.rectangle((0, h - base, w, h), fill=255)
    top = h - base
    _bands(rgb, top, [orange, white, orange, white, orange, orange, orange])
    rgb[top:] = 25
    _shade(rgb, rng)
    return rgb, mask


def _barricade(h: int, orange, white, rng) -> tuple[np.ndarray, Image.Image]:
    w = int(h * rng.uniform(1.3, 2.0))
    rgb, mask, d = _canvas(h, w)
    rails = int(rng.integers(2, 4))
    rail_h = int(h * 0.14)
    post_w = max(2, int(w * 0.05))
    posts = (int(w * 0.15), w - int(w * 0.15) - post_w)
    for x in posts:
        d.rectangle((x, 0, x + post_w, h), fill=255)
        rgb[:, x : x + post_w] = white * 0.85
    stripe = rail_h * 1.6
    lean = 1 if rng.random() < 0.5 else -1
    yy, xx = np.mgrid[0:rail_h, 0:w]
    pattern = ((xx + lean * yy) // stripe % 2 == 0)[..., None]
    for r in range(rails):
        y = int(h * 0.06) + r * int(h * 0.3)
        d.rectangle((0, y, w, y + rail_h), fill=255)
        rgb[y : y + rail_h] = np.where(pattern, orange, white)
    return rgb, mask


def _diamond(h: int, orange, white, rng) -> tuple[np.ndarray, Image.Image]:
    side = int(h * rng.uniform(0.45, 0.6))
    w = side
    rgb, mask, d = _canvas(h, w)
    c = side // 2
    corners = [(c, 0), (side - 1, c), (c, side - 1), (0, c)]
    pole = max(2, int(w * 0.05))
    d.polygon(corners, fill=255)
    d.rectangle((c - pole // 2, side - 1, c + pole // 2, h), fill=255)
    face = Image.new("RGB", (w, h), (0, 0, 0))
    fd = ImageDraw.Draw(face)
    fd.polygon(corners, fill=(15, 15, 15))
    inset = max(2, side // 14)
    fd.polygon(
        [(c, inset), (side - 1 - inset, c), (c, side - 1 - inset), (inset, c)], fill=tuple(int(v) for v in orange)
    )
    fd.rectangle((c - pole // 2, side - 1, c + pole // 2, h), fill=(150, 150, 150))
    _glyph(fd, c, side, rng)
    rgb[:] = np.asarray(face, np.float32)
    return rgb, mask


def _glyph(fd: ImageDraw.ImageDraw, c: int, side: int, rng: np.random.Generator) -> None:
    """What the diamond says: lines of text (shown as bars, too small to read at paste size), a
    worker with a shovel, or a bent arrow."""
    ink = (10, 10, 10)
    u = side / 10
    choice = int(rng.integers(3))
    if choice == 0:  # ROAD / WORK / AHEAD
        for i, half in enumerate((1.6, 1.9, 2.0)):
            y = c - 1.6 * u + i * 1.3 * u
            fd.rectangle((c - half * u, y, c + half * u, y + 0.75 * u), fill=ink)
    elif choice == 1:  # a worker digging
        fd.ellipse((c - 1.2 * u, c - 3.0 * u, c - 0.2 * u, c - 2.0 * u), fill=ink)
        fd.line((c - 0.7 * u, c - 2.0 * u, c - 0.2 * u, c + 0.4 * u), fill=ink, width=int(0.7 * u))
        fd.line((c - 0.2 * u, c + 0.4 * u, c - 1.2 * u, c + 2.2 * u), fill=ink, width=int(0.6 * u))
        fd.line((c - 0.2 * u, c + 0.4 * u, c + 0.6 * u, c + 2.2 * u), fill=ink, width=int(0.6 * u))
        fd.line((c - 0.5 * u, c - 1.2 * u, c + 1.8 * u, c + 1.0 * u), fill=ink, width=int(0.4 * u))
        fd.polygon([(c + 0.8 * u, c + 1.6 * u), (c + 2.2 * u, c + 1.6 * u), (c + 1.8 * u, c + 2.4 * u)], fill=ink)
    else:  # a lane shift arrow
        fd.line((c, c + 2.5 * u, c, c), fill=ink, width=int(0.8 * u))
        fd.line((c, c, c + 1.5 * u, c - 1.5 * u), fill=ink, width=int(0.8 * u))
        fd.polygon([(c + 0.6 * u, c - 2.6 * u), (c + 2.4 * u, c - 2.4 * u), (c + 2.2 * u, c - 0.6 * u)], fill=ink)
