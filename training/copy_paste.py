"""Counterfactual augmentation: boxed roadwork objects pasted into dashcam negatives, or erased
from positives.

Dashcam positives are rare in the data while dashcam negatives and boxed objects (cones, drums,
barricades, roadwork signs in photo sources) are plentiful. A `PasteBank` cuts the boxed objects
out of training images once; `paste()` puts a row of 2-5 of them into a street frame, receding
along one side of the road (the nearest 5-22 % of the frame height), with a feathered mask, half
the destination's brightness change and, for half of them, a little blur.
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


@dataclass(frozen=True)
class Cutout:
    pixels: np.ndarray  # (h, w, 3) uint8
    kind: str  # schema class: cone, barrier, sign, ...


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

    @classmethod
    def from_samples(cls, root: Path, samples: list[Sample], min_side: int = 12, max_per_image: int = 4) -> PasteBank:
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
                cutouts.append(Cutout(np.ascontiguousarray(image[y0:y1, x0:x1]), kind))
        return cls(cutouts)

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
            obj = _match_light(obj, canvas.crop((left, top, left + tw, top + th)))
            if rng.random() < 0.5:
                obj = obj.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
            canvas.paste(obj, (left, top), _feather_mask(tw, th))
            placed.append((cut.kind, left, top, left + tw, top + th))
        return np.asarray(canvas), placed


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


def _class_names(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines()] if path.is_file() else []


def _match_light(obj: Image.Image, under: Image.Image) -> Image.Image:
    """Scale the object's brightness halfway toward the patch it covers (night frames stay dark)."""
    a = np.asarray(obj, dtype=np.float32)
    target = float(np.asarray(under, dtype=np.float32).mean()) + 1.0
    ratio = np.clip((target / (a.mean() + 1.0)) ** 0.5, 0.35, 1.5)
    return Image.fromarray(np.clip(a * ratio, 0, 255).astype(np.uint8))


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
