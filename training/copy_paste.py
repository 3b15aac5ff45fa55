"""Counterfactual augmentation: boxed roadwork objects pasted into dashcam negatives, or erased
from positives.

Dashcam positives are rare in the data while dashcam negatives and boxed objects (cones, drums,
barricades, roadwork signs in photo sources) are plentiful. A `PasteBank` cuts the boxed objects
out of training images once; `paste()` puts a row of 2-5 of them into a street frame, receding
along one side of the road (the nearest 5-22 % of the frame height), with a feathered mask, half
the destination's brightness change and, for half of them, a little blur. The mask is a feathered
ellipse over the box (`cut="box"`), or the object's own outline found by OpenCV's GrabCut inside
its box (`cut="grabcut"`; `object_alpha`), so that a pasted cone brings no patch of its photo's
pavement along.
The pasted frame is labelled roadwork. `EraseBank` does the opposite: it erases the boxed objects
from a positive photo, which becomes a negative of the same scene. Measure what they add on real
rows only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from training.box_schema import map_class
from training.datasets import Sample, read_yolo_boxes
from training.images import ImageLoadError

DASHCAM_SOURCES = frozenset({"camvid", "idd_lite", "gtsdb", "dawn_fog", "vtti_nds", "vtti_wz"})
"""Vehicle-camera sources: their negatives receive pasted objects."""
VEHICLE_SOURCES = DASHCAM_SOURCES | {"pp_nightwork"}
"""Sources seen from a vehicle: the paste targets and the night work-zone clips (phones through the
windscreen); the "vehicle" part of the dev and OOF reports."""


PASTE_CUTS = ("box", "grabcut")
"""How a boxed object is cut out: a feathered ellipse over its box, or its GrabCut outline."""


@dataclass(frozen=True)
class Cutout:
    pixels: np.ndarray  # (h, w, 3) uint8
    kind: str  # schema class: cone, barrier, sign, ...
    alpha: np.ndarray | None = None
    """(h, w) float32 in [0, 1]: the object's outline (`object_alpha`, or as drawn); None pastes it
    through a feathered ellipse over its box."""
    drawn: bool = False
    """Drawn by training/sprites.py, not cut from a photo."""


def box_file(root: Path, sample: Sample) -> Path:
    return root / "boxes" / sample.source / (Path(sample.key).stem + ".txt")


class PasteBank:
    """Object cut-outs from the boxed training images (schema classes only, tiny boxes skipped)."""

    def __init__(self, cutouts: list[Cutout]) -> None:
        if not cutouts:
            raise ValueError(
                "copy-paste: no boxed roadwork object found in the training rows "
                "(expected <data>/boxes/<source>/*.txt with classes.txt)"
            )
        self.cutouts = cutouts

    @property
    def outlined(self) -> int:
        """How many photo cut-outs carry their own outline (the rest paste through an ellipse)."""
        return sum(c.alpha is not None and not c.drawn for c in self.cutouts)

    @property
    def drawn(self) -> int:
        """How many objects were drawn (training/sprites.py)."""
        return sum(c.drawn for c in self.cutouts)

    def __str__(self) -> str:
        parts = [f"{n} {what}" for n, what in ((self.outlined, "outlined by GrabCut"), (self.drawn, "drawn")) if n]
        return f"{len(self.cutouts)} objects to paste" + (f" ({', '.join(parts)})" if parts else "")

    @classmethod
    def from_samples(
        cls,
        root: Path,
        samples: list[Sample],
        min_side: int = 12,
        max_per_image: int = 4,
        cut: str = "box",
        sprites: int = 0,
    ) -> PasteBank:
        """The schema-class boxes of `samples` cut out. With `cut="grabcut"` each keeps the outline
        GrabCut finds in its box; a box where it finds no object shape (blurred, dark or cut off
        at the frame's edge: over 40 % of them here) pastes through the ellipse (`outlined`
        counts the others). `sprites` adds that many drawn work-zone devices (`drawn_cutouts`)."""
        if cut not in PASTE_CUTS:
            raise ValueError(f"paste cut: {cut!r} is not one of {list(PASTE_CUTS)}")
        cutouts: list[Cutout] = []
        for s, boxes in schema_boxes(root, samples):
            try:
                image = s.load()
            except ImageLoadError:
                continue
            h, w = image.shape[:2]
            for kind, cx, cy, bw, bh in boxes[:max_per_image]:
                x0, x1 = int((cx - bw / 2) * w), int(np.ceil((cx + bw / 2) * w))
                y0, y1 = int((cy - bh / 2) * h), int(np.ceil((cy + bh / 2) * h))
                x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
                if min(x1 - x0, y1 - y0) < min_side:
                    continue
                alpha = object_alpha(image, (x0, y0, x1, y1)) if cut == "grabcut" else None
                cutouts.append(Cutout(np.ascontiguousarray(image[y0:y1, x0:x1]), kind, alpha))
        return cls(cutouts + drawn_cutouts(sprites))

    def paste(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A copy of `image` with a receding row of 2-5 objects pasted in."""
        return self.paste_boxes(image, rng)[0]

    def paste_boxes(
        self, image: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, list[tuple[str, int, int, int, int]]]:
        """`paste`, and where each object went: (schema kind, x0, y0, x1, y1) in pixels, for the
        detector's training (training/finetune_detector.py)."""
        canvas = Image.fromarray(image)
        placed: list[tuple[str, int, int, int, int]] = []
        h, w = image.shape[:2]
        count = int(rng.integers(2, 6))
        height = h * rng.uniform(0.05, 0.22)  # the nearest object; the rest recede
        side = rng.choice([-1, 1])
        x_frac, bottom_frac = 0.5 + side * rng.uniform(0.15, 0.42), rng.uniform(0.7, 0.97)
        kind_pool = [int(rng.integers(len(self.cutouts))) for _ in range(2)]  # a row uses 1-2 kinds
        for _ in range(count):
            cut = self.cutouts[kind_pool[int(rng.integers(2))]]
            ch, cw = cut.pixels.shape[:2]
            th = max(4, int(height * rng.uniform(0.9, 1.1)))
            tw = max(3, int(cw * th / ch))
            if tw >= w // 2 or th >= h // 2:
                break
            cx = int(np.clip(x_frac, 0.02, 0.98) * w)
            bottom = int(h * bottom_frac)
            left, top = max(0, min(w - tw, cx - tw // 2)), max(0, min(h - th, bottom - th))
            # the next one further down the road: smaller, nearer the centre and the horizon
            height *= 0.75
            x_frac = 0.5 + (x_frac - 0.5) * 0.8
            bottom_frac = 0.5 + (bottom_frac - 0.5) * 0.8
            obj = Image.fromarray(cut.pixels).resize((tw, th), Image.BILINEAR)
            if cut.alpha is None:
                mask = _feather_mask(tw, th)
            else:
                mask = Image.fromarray((cut.alpha * 255).astype(np.uint8)).resize((tw, th), Image.BILINEAR)
            obj = _match_light(obj, canvas.crop((left, top, left + tw, top + th)), None if cut.alpha is None else mask)
            if rng.random() < 0.5:
                obj = obj.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
            canvas.paste(obj, (left, top), mask)
            placed.append((cut.kind, left, top, left + tw, top + th))
        return np.asarray(canvas), placed


def drawn_cutouts(count: int) -> list[Cutout]:
    """`count` drawn North American work-zone devices (training/sprites.py), the kinds in turn, in
    their schema classes; always the same ones (a fixed seed), whichever rows a bank is cut from."""
    from training.sprites import SPRITE_KINDS, SPRITE_SCHEMA, draw_sprite

    rng = np.random.default_rng(0)
    cutouts = []
    for i in range(count):
        kind = SPRITE_KINDS[i % len(SPRITE_KINDS)]
        pixels, alpha = draw_sprite(kind, rng)
        cutouts.append(Cutout(pixels, SPRITE_SCHEMA[kind], alpha, drawn=True))
    return cutouts


def schema_boxes(root: Path, samples: list[Sample]):
    """(sample, [(schema kind, cx, cy, w, h), ...]) for each positive row with boxes of roadwork
    classes (normalised YOLO boxes; other classes, such as cars, are left out)."""
    names_cache: dict[str, list[str]] = {}
    for s in samples:
        path = box_file(root, s)
        if s.label != 1 or not path.is_file():
            continue
        names = names_cache.setdefault(s.source, _class_names(root / "boxes" / s.source / "classes.txt"))
        boxes = []
        for cls_id, cx, cy, bw, bh in read_yolo_boxes(path):
            kind = map_class(names[int(cls_id)] if int(cls_id) < len(names) else "", s.source)
            if kind is not None:
                boxes.append((kind, float(cx), float(cy), float(bw), float(bh)))
        if boxes:
            yield s, boxes


def schema_xyxy(boxes: list[tuple[str, float, float, float, float]]) -> np.ndarray:
    """`schema_boxes`' (kind, cx, cy, w, h) rows as an (n, 4) float32 array of normalised x0, y0, x1, y1."""
    return np.array([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2] for _, cx, cy, w, h in boxes], np.float32)


def _class_names(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines()] if path.is_file() else []


def _match_light(obj: Image.Image, under: Image.Image, mask: Image.Image | None = None) -> Image.Image:
    """Scale the object's brightness halfway toward the patch it covers (night frames stay dark);
    with `mask`, the object's brightness is read inside its outline only."""
    a = np.asarray(obj, dtype=np.float32)
    target = float(np.asarray(under, dtype=np.float32).mean()) + 1.0
    if mask is None:
        own = float(a.mean())
    else:
        weight = np.asarray(mask, dtype=np.float32)[..., None]
        own = float((a * weight).sum() / (weight.sum() * 3 + 1e-6))
    ratio = np.clip((target / (own + 1.0)) ** 0.5, 0.35, 1.5)
    return Image.fromarray(np.clip(a * ratio, 0, 255).astype(np.uint8))


def object_alpha(
    image: np.ndarray,
    box: tuple[int, int, int, int],
    margin: float = 0.25,
    share: tuple[float, float] = (0.25, 0.97),
    work_side: int = 128,
) -> np.ndarray | None:
    """The outline of the object boxed by (x0, y0, x1, y1) in an RGB `image`: OpenCV's GrabCut,
    started from the box with a `margin` of the frame around it as background, then closed, its
    largest part kept and its holes filled (a cone's white stripes are part of the cone), with a
    soft edge. (h, w) float32 alpha over the box, or None where the outline covers less or more of
    the box than `share` allows: GrabCut found no object shape there.

    GrabCut runs on the box and its margin shrunk to at most `work_side` px (a pasted object is
    seldom larger; full size costs ~10x the time). Its colour models start from OpenCV's global
    random state, which is seeded here so that the same box always gives the same outline."""
    import cv2

    x0, y0, x1, y1 = box
    h, w = image.shape[:2]
    mx, my = max(4, int((x1 - x0) * margin)), max(4, int((y1 - y0) * margin))
    cx0, cy0, cx1, cy1 = max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)
    scale = min(1.0, work_side / max(cx1 - cx0, cy1 - cy0))
    size = (max(1, round((cx1 - cx0) * scale)), max(1, round((cy1 - cy0) * scale)))
    crop = cv2.resize(np.ascontiguousarray(image[cy0:cy1, cx0:cx1, ::-1]), size, interpolation=cv2.INTER_AREA)
    rx0, ry0 = int((x0 - cx0) * scale), int((y0 - cy0) * scale)
    rx1, ry1 = max(rx0 + 1, round((x1 - cx0) * scale)), max(ry0 + 1, round((y1 - cy0) * scale))
    labels = np.zeros(crop.shape[:2], np.uint8)
    cv2.setRNGSeed(0)
    bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.grabCut(crop, labels, (rx0, ry0, rx1 - rx0, ry1 - ry0), bgd, fgd, 3, cv2.GC_INIT_WITH_RECT)
    found = np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD))[ry0:ry1, rx0:rx1].astype(np.uint8)
    k = max(3, min(found.shape) // 6) | 1
    found = cv2.morphologyEx(found, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    count, parts, stats, _ = cv2.connectedComponentsWithStats(found, connectivity=8)
    if count <= 1:
        return None
    solid = (parts == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    outside = np.pad(solid, 1)
    cv2.floodFill(outside, None, (0, 0), 1)  # what the border reaches; the zeros left are holes
    solid |= (outside[1:-1, 1:-1] == 0).astype(np.uint8)
    if not share[0] <= solid.mean() <= share[1]:
        return None
    alpha = cv2.resize(solid.astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    return np.clip(cv2.GaussianBlur(alpha, (3, 3), 0.8), 0.0, 1.0)


def _feather_mask(w: int, h: int) -> Image.Image:
    """An elliptical alpha mask with soft edges (cut-outs are boxes; objects are not)."""
    yy, xx = np.mgrid[0:h, 0:w]
    d = ((xx + 0.5 - w / 2) / (w / 2)) ** 2 + ((yy + 0.5 - h / 2) / (h / 2)) ** 2
    alpha = np.clip((1.15 - d) / 0.3, 0, 1)
    return Image.fromarray((alpha * 255).astype(np.uint8))


class EraseBank:
    """The counterpart of `PasteBank`: roadwork objects erased from positive photos, which become
    negatives of the same source, camera and light.

    Sources whose rows are nearly all roadwork (night work-zone video, cone photos, barricades)
    otherwise teach the network that the source's look is the answer: trained without them, a
    fine-tuned network called 16-33 % of the night work-zone frames roadwork
    (benchmarks/results/loso_networks_cpu.json). Each schema box (cone, barrier, sign, ...) is
    filled with a smooth estimate of what surrounds it, with a feathered edge and a little noise.
    Only frames whose boxes cover at most `max_cover` of the area are used: erasing a close-up
    cone leaves a blur, not a scene.
    """

    def __init__(self, boxes: dict[str, np.ndarray]) -> None:
        if not boxes:
            raise ValueError("erase: no positive training row has schema boxes under <data>/boxes/<source>/")
        self.boxes = boxes

    @classmethod
    def from_samples(cls, root: Path, samples: list[Sample], max_cover: float = 0.25) -> EraseBank:
        found = {
            s.key: np.asarray([b[1:] for b in boxes])
            for s, boxes in schema_boxes(root, samples)
            if sum(bw * bh for _, _, _, bw, bh in boxes) <= max_cover
        }
        return cls(found)

    def __contains__(self, key: str) -> bool:
        return key in self.boxes

    def erase(self, image: np.ndarray, key: str, rng: np.random.Generator) -> np.ndarray:
        """A copy of `image` with every schema box of `key` filled from its surroundings."""
        out = image.astype(np.float32)
        h, w = image.shape[:2]
        for cx, cy, bw, bh in self.boxes[key]:
            # the box grown by 30 % (its edge fades out there), and a ring twice that size around it
            x0, x1 = int(max(0, (cx - bw * 0.65) * w)), int(min(w, np.ceil((cx + bw * 0.65) * w)))
            y0, y1 = int(max(0, (cy - bh * 0.65) * h)), int(min(h, np.ceil((cy + bh * 0.65) * h)))
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            rx0, rx1 = int(max(0, x0 - (x1 - x0))), int(min(w, x1 + (x1 - x0)))
            ry0, ry1 = int(max(0, y0 - (y1 - y0))), int(min(h, y1 + (y1 - y0)))
            ring = out[ry0:ry1, rx0:rx1].copy()
            inner = np.zeros(ring.shape[:2], bool)
            inner[y0 - ry0 : y1 - ry0, x0 - rx0 : x1 - rx0] = True
            if (~inner).sum() < 4:  # the box is the whole frame: nothing to take the fill from
                continue
            ring[inner] = ring[~inner].mean(axis=0)
            # a 4x4 summary of the ring, blown up: a smooth guess of the background under the box
            coarse = Image.fromarray(np.clip(ring, 0, 255).astype(np.uint8)).resize((4, 4), Image.BOX)
            fill = np.asarray(coarse.resize((rx1 - rx0, ry1 - ry0), Image.BILINEAR), np.float32)
            fill = fill[y0 - ry0 : y1 - ry0, x0 - rx0 : x1 - rx0]
            fill = fill + rng.normal(0, float(ring[~inner].std()) * 0.15 + 1.0, fill.shape)
            alpha = _soft_rect(x1 - x0, y1 - y0, edge=0.3 / 1.3)[..., None]
            out[y0:y1, x0:x1] = out[y0:y1, x0:x1] * (1 - alpha) + fill * alpha
        return np.clip(out, 0, 255).astype(np.uint8)


def _soft_rect(w: int, h: int, edge: float) -> np.ndarray:
    """(h, w) alpha: 1 inside, falling linearly to 0 over the outer `edge` share of each side."""

    def ramp(n: int) -> np.ndarray:
        t = (np.arange(n) + 0.5) / n
        return np.clip(np.minimum(t, 1 - t) / (edge / 2), 0, 1)

    return np.minimum(ramp(h)[:, None], ramp(w)[None, :]).astype(np.float32)
