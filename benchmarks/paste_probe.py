"""Does the shipped cascade already call frames with drawn work-zone devices roadwork?

`--paste-sprites` (training/sprites.py) adds drawn US drums, channelizers, Type III barricades and
diamond signs to the objects copy-paste puts into dashcam negatives. Before training with them,
this asks what the shipped networks make of them: N training negatives of CamVid and of GTSDB
(the vehicle cameras the tile voters score whole: both over 448 px), each three times, as is, with
a row of photo cut-outs pasted in (what the shipped networks trained on), and with a row of drawn
devices pasted in at the same place (the same draw), scored by `roadwork eval --regime full` with
the shipped profile. Reported per camera and version: the share called roadwork and the mean
probability, pooled and per voter.

    PYTHONPATH=. python benchmarks/paste_probe.py --data ../shared/data \
        --out benchmarks/results/paste_probe_sprites_cpu.json      # ~5 min on 2 cores

The negatives are training rows, which the networks saw unpasted, and the photo cut-outs come from
the rows they trained on: "photo" is what the networks learnt, "drawn" the new objects.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # frame_probe

from frame_probe import run, summary

from training.copy_paste import PasteBank, drawn_cutouts
from training.datasets import load_folder

CAMERAS = ("camvid", "gtsdb")
VERSIONS = ("as_is", "photo", "drawn")


def build(data: Path, out: Path, per_camera: int, sprites: int, seed: int) -> int:
    """The probe's labelled folder under `out`; returns its row count."""
    train = [s for s in load_folder(data).samples if s.split == "train"]
    photo = PasteBank.from_samples(data, train)
    banks = {"as_is": None, "photo": photo, "drawn": PasteBank(drawn_cutouts(sprites))}
    (out / "images").mkdir(parents=True)
    lines = ["path,label,source,split,group"]
    pick = np.random.default_rng(seed)
    for camera in CAMERAS:
        negatives = [s for s in train if s.source == camera and s.label == 0]
        for j in pick.choice(len(negatives), min(per_camera, len(negatives)), replace=False):
            s = negatives[int(j)]
            image, stem = s.load(), Path(s.key).stem
            for version, bank in banks.items():
                pasted = image if bank is None else bank.paste(image, np.random.default_rng(int(j)))
                path = f"images/{camera}_{version}_{stem}.jpg"
                Image.fromarray(pasted).save(out / path, quality=90)
                lines.append(f"{path},{int(bank is not None)},{camera}:{version},train,{stem}")
        print(f"[paste-probe] {camera}: {min(per_camera, len(negatives))} negatives x {len(VERSIONS)}", flush=True)
    (out / "labels.csv").write_text("\n".join(lines) + "\n")
    return len(lines) - 1


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the labelled data folder (../shared/data)")
    ap.add_argument("--out", type=Path, required=True, help="JSON to write")
    ap.add_argument("--config", default="configs/cpu.yaml", help="the cascade profile scored")
    ap.add_argument("--per-camera", type=int, default=60, help="training negatives drawn from each camera")
    ap.add_argument("--sprites", type=int, default=300, help="drawn devices to paste from")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    result = run(
        "paste_probe.py",
        __doc__,
        argv,
        args.out,
        args.config,
        lambda folder: build(args.data, folder, args.per_camera, args.sprites, args.seed),
        lambda predictions: {"by_camera": summary(predictions)},
        per_camera=args.per_camera,
        sprites=args.sprites,
    )["by_camera"]
    for camera, versions in result.items():
        for version, voters in versions.items():
            print(camera, version, {v: x["called_roadwork"] for v, x in voters.items()})


if __name__ == "__main__":
    main()
