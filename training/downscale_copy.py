"""A small copy of a labelled data folder, for training on a machine the full folder cannot reach.

The lent GPU takes at most 64 MiB per call, and ../shared/data is larger: this writes the rows of
one split with each image's long side cut to `--long-side` (JPEG), `labels.csv` with the same
columns, and the `boxes/` folder as it is (YOLO boxes are normalised, so they still fit). Images
already smaller are re-encoded only.

    python -m training.downscale_copy --data ../shared/data --out .carry/data --split train --long-side 640
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import time
from pathlib import Path

from PIL import Image


def downscale_copy(data: Path, out: Path, split: str, long_side: int, quality: int) -> dict[str, int]:
    rows = list(csv.DictReader((data / "labels.csv").open(newline="")))
    if not rows:
        raise ValueError(f"{data / 'labels.csv'} has no rows")
    keep = [r for r in rows if not split or r.get("split") == split]
    out.mkdir(parents=True, exist_ok=True)
    t0, written = time.monotonic(), 0
    for i, row in enumerate(keep):
        src, dst = data / row["path"], out / row["path"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(src) as im:
            im = im.convert("RGB")
            if max(im.size) > long_side:
                im.thumbnail((long_side, long_side), Image.BILINEAR)
            # optimised Huffman tables, progressive scans: the same pixels, ~4 % fewer bytes to carry
            im.save(dst, "JPEG", quality=quality, optimize=True, progressive=True)
        written += dst.stat().st_size
        if (i + 1) % 200 == 0 or i + 1 == len(keep):
            print(
                f"[downscale] {i + 1}/{len(keep)} images, {written / 2**20:.1f} MiB ({time.monotonic() - t0:.0f} s)",
                flush=True,
            )
    with (out / "labels.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(keep)
    if (data / "boxes").is_dir():
        shutil.copytree(data / "boxes", out / "boxes", dirs_exist_ok=True)
    return {"rows": len(keep), "bytes": written}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path, help="Folder with labels.csv.")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--split", default="train", help="Rows of this split only ('' for all).")
    ap.add_argument("--long-side", type=int, default=640)
    ap.add_argument("--quality", type=int, default=90)
    args = ap.parse_args(argv)
    if not (args.data / "labels.csv").is_file():
        sys.exit(f"{args.data} has no labels.csv")
    info = downscale_copy(args.data, args.out, args.split, args.long_side, args.quality)
    print(f"[downscale] wrote {info['rows']} rows, {info['bytes'] / 2**20:.1f} MiB of images to {args.out}")


if __name__ == "__main__":
    main()
