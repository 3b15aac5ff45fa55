"""Score the out-of-fold views again with the saved fold networks, on the full-resolution photos.

The lent GPU trains on a downscaled copy of the photos (long side 640: the copy must fit its 64 MiB
carry), so the tile voter's OOF votes made there see 640-px frames, not the 1-2 MP frames that it
exists for. With the fold networks (`roadwork train backbone --folds 5 --save-folds`) this scores
each training image's held-back `full` view again, here, at the photo's own resolution, with the
network of the fold that held it out, and writes an OOF file of the same form with those views
replaced.

    python -m training.oof_rescore --data ../shared/data --oof models/l0_backbone.oof.jsonl \\
        --folds runs/tiles/l0_backbone --views tiles --out models/l0_backbone.oof.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def rescore(
    data: str | Path,
    oof: Path,
    fold_prefix: str,
    views: list[str],
    regime: str = "full",
    device: str = "cpu",
    seed: int = 0,
) -> list[dict]:
    """`seed` is the fold run's FinetuneConfig.view_seed (0 unless changed; runs made before it
    existed drew their views with FinetuneConfig.seed): the regime's held-back view is drawn as the
    trainer drew it (the `full` view has no randomness)."""
    from training.datasets import load_folder
    from training.finetune import held_out_transform, load_network, predict_tiles, predict_views

    rows = [json.loads(x) for x in oof.read_text().splitlines() if x.strip()]
    samples = {s.key: s for s in load_folder(data).select(split="train").samples}
    missing = [r["key"] for r in rows if r["key"] not in samples]
    if missing:
        raise ValueError(f"{len(missing)} OOF rows are not train rows of {data} (first: {missing[0]!r})")
    transform = held_out_transform(regime, seed)
    t0 = time.time()
    for fold in sorted({r["fold"] for r in rows}):
        path = Path(f"{fold_prefix}.fold{fold}.pt")
        if not path.is_file():
            raise FileNotFoundError(f"fold network {path} not found; train with --save-folds")
        net = load_network(path).to(device)
        held = [r for r in rows if r["fold"] == fold]
        batch = 8 if device == "cpu" else 64  # MobileNetV2 on a CPU is fastest in small batches
        for start in range(0, len(held), 32):  # full-size photos are decoded 32 at a time
            chunk = held[start : start + 32]
            images = [transform(samples[r["key"]].load(), r["key"]) for r in chunk]
            for view in views:
                probs = (
                    predict_tiles(net, images, device, batch)
                    if view == "tiles"
                    else [float(p) for p in predict_views(net, images, int(view), device, batch)]
                )
                for r, p, image in zip(chunk, probs, images, strict=True):
                    r.setdefault("long_side", {})[regime] = int(max(image.shape[:2]))
                    r["probs"][regime].pop(view, None)
                    if p is not None:
                        r["probs"][regime][view] = float(p)
            print(
                f"[rescore] fold {fold}: {min(start + 32, len(held))}/{len(held)} images, {time.time() - t0:.0f} s",
                flush=True,
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="Folder with labels.csv: the full-resolution photos.")
    ap.add_argument("--oof", type=Path, required=True, help="OUT.oof.jsonl of the fold run.")
    ap.add_argument("--folds", required=True, help="Prefix of the fold networks: PREFIX.foldK.pt.")
    ap.add_argument("--views", default="tiles", help="Comma list: tiles and/or sizes (224, 448).")
    ap.add_argument("--regime", default="full")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--seed", type=int, default=0, help="The fold run's view seed, 0 by default (draws the same held-back views)."
    )
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    rows = rescore(args.data, args.oof, args.folds, args.views.split(","), args.regime, args.device, args.seed)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {args.out}: {len(rows)} rows, {args.regime} views {args.views} at full resolution")


if __name__ == "__main__":
    main()
