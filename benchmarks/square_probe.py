"""Do the square frames of SDXL challenges throw the tile voters? Vehicle-camera frames, as they are
and made square, scored at full size by the shipped cascade.

Half of all challenges are SDXL images made from dashcam captions, and since May 2026 they go out
at full size: 1024x1024, SDXL's own size. The validator's image-to-image path first resizes a
larger source frame to 1024x1024 (a 1920x1080 frame squashed by 1.9 across), its text-to-image path
composes a square scene. Frames of 448 px and more are answered by the tile voters alone, whose
crops (2x3 and 3x4 grids) are near-square on the wide frames they trained on and tall on a square
one. This scores the split's vehicle-camera frames of 448 px and more in three versions: as they
are, squashed to SQUARE x SQUARE (what image-to-image starts from), and their centre square
scaled to SQUARE (a square composition, losing the sides). Reported per camera, label and version:
the share called roadwork per voter (`by_camera`), and MCC / AUROC per version over all frames
(`by_version`). No diffusion model runs here: the regenerated look of an SDXL image is not tested,
only its shape.

    PYTHONPATH=. python benchmarks/square_probe.py --data ../shared/data \
        --out benchmarks/results/square_probe_dev_cpu.json      # ~3 min on 2 cores

The dev split is the default because the shipped networks trained on every train row; this only
measures, it chooses nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # frame_probe

from frame_probe import answers, run, summary

from detectors.mobilenet import TILE_MIN_LONG_SIDE
from training.copy_paste import VEHICLE_SOURCES
from training.datasets import load_folder
from training.metrics import summarise

SQUARE = 1024
"""SDXL's native size, and what the validator's image-to-image path resizes its source frame to."""
VERSIONS = ("as_is", "squashed", "centre_square")


def versions(image: Image.Image) -> dict[str, Image.Image]:
    """The frame as it is, squashed to SQUARE x SQUARE, and its centre square scaled to SQUARE."""
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    centre = image.crop((left, top, left + side, top + side))
    return {
        "as_is": image,
        "squashed": image.resize((SQUARE, SQUARE), Image.Resampling.LANCZOS),
        "centre_square": centre.resize((SQUARE, SQUARE), Image.Resampling.LANCZOS),
    }


def build(data: Path, out: Path, split: str) -> int:
    """The probe's labelled folder under `out`; returns its row count. Each camera is split by label
    ("gtsdb roadwork", "gtsdb street") so that `summary` reports the labels apart."""
    (out / "images").mkdir(parents=True)
    lines = ["path,label,source,split,group"]
    frames = 0
    for s in load_folder(data).samples:
        if s.split != split or s.source not in VEHICLE_SOURCES:
            continue
        pixels = s.load()
        if max(pixels.shape[:2]) < TILE_MIN_LONG_SIDE:
            continue  # answered by the whole-frame voters, not the tiles
        frames += 1
        camera = f"{s.source} {'roadwork' if s.label else 'street'}"
        for version, image in versions(Image.fromarray(pixels)).items():
            path = f"images/{s.source}_{version}_{Path(s.key).stem}.jpg"
            image.save(out / path, quality=92)
            lines.append(f"{path},{s.label},{camera}:{version},{split},{s.group}")
    if not frames:
        raise SystemExit(f"no {split} rows of {sorted(VEHICLE_SOURCES)} with a side of {TILE_MIN_LONG_SIDE} px or more")
    print(f"[square-probe] {frames} {split} frames x {len(VERSIONS)} versions", flush=True)
    (out / "labels.csv").write_text("\n".join(lines) + "\n")
    return len(lines) - 1


def by_version(predictions: Path) -> dict:
    """{version: {"pooled" or voter: training.metrics.summarise's n, positives, MCC, accuracy and
    AUROC}} over every camera's frames (MCC and AUROC None where a version has one label only)."""
    cells: dict = {}
    for _, version, label, voter, prob in answers(predictions):
        cells.setdefault(version, {}).setdefault(voter, []).append((label, prob))
    out: dict = {}
    for version, voters in cells.items():
        for voter, pairs in voters.items():
            y, p = np.array(pairs).T
            out.setdefault(version, {})[voter] = rounded(summarise(y.astype(int), p))
    return out


def rounded(metrics: dict) -> dict:
    """`summarise`'s figures to 3 places, without its confusion matrix."""
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in metrics.items() if k != "confusion"}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the labelled data folder (../shared/data)")
    ap.add_argument("--out", type=Path, required=True, help="JSON to write")
    ap.add_argument("--split", default="dev", help="the split whose frames are scored (default: dev)")
    ap.add_argument("--config", default="configs/cpu.yaml", help="the cascade profile scored")
    args = ap.parse_args(argv)
    result = run(
        "square_probe.py",
        __doc__,
        argv,
        args.out,
        args.config,
        lambda folder: build(args.data, folder, args.split),
        lambda predictions: {"by_version": by_version(predictions), "by_camera": summary(predictions)},
        split=args.split,
        square=SQUARE,
    )
    for version, voters in result["by_version"].items():
        print(version, {v: (x["mcc"], x["auroc"]) for v, x in voters.items()})


if __name__ == "__main__":
    main()
