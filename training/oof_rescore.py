"""Score held-out views again with the saved networks that held them out, on the full-resolution photos.

The lent GPU trains on a downscaled copy of the photos (long side 544 or 640: the copy must fit its
64 MiB carry), so the tile voter's votes made there see such frames, not the 1-2 MP frames that it
exists for. With the networks saved, this scores each row's held-back view again, here, at the
photo's own resolution, with the network that held the row out, and writes a votes file of the
same form with those views (and, for tiles, the crops a row keeps) replaced:
- an OOF row (its `fold`) by PREFIX.foldK.pt (`roadwork train backbone --folds 5 --save-folds`);
- a leave-one-source-out row (its `held_out`) by PREFIX.<held-out>.pt
  (`benchmarks/loso_networks.py train --save-nets PREFIX`).

With `--crops` (and `--crop-grids 4x6` for more grids) every rescored row also keeps each tile
crop's probability, so the tile voter's grids can be chosen from in-fold crops at full size
(`python -m training.oof_regrid`) with no GPU.

    python -m training.oof_rescore --data ../shared/data --oof models/l0_backbone.oof.jsonl \\
        --nets runs/tiles/l0_backbone --views tiles --out models/l0_backbone.oof.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def network_name(row: dict) -> str:
    """Which saved network held this row out: "foldK" for an OOF row, its held-out source's name
    for a leave-one-source-out row."""
    if "fold" in row:
        return f"fold{row['fold']}"
    if "held_out" in row:
        return str(row["held_out"])
    raise ValueError(f"row {row.get('key')!r} has neither `fold` nor `held_out`: no saved network held it out")


def view_votes(
    net: Any, images: list[Any], view: str, device: str, batch: int, grids: tuple[tuple[int, int], ...]
) -> tuple[list[float | None], list[list[float] | None] | None]:
    """Each image's vote for `view` (a size; "tiles": the max over the tile voter's own crops, None
    under its long side; or "small_tiles", `predict_small_tiles`), and for tiles every crop's
    probability in `grids`."""
    from detectors.mobilenet import TILE_CROPS
    from training.finetune import predict_crops, predict_small_tiles, predict_views, tile_votes

    if view == "small_tiles":
        return predict_small_tiles(net, images, device, batch), None
    if view != "tiles":
        return [float(p) for p in predict_views(net, images, int(view), device, batch)], None
    crops = predict_crops(net, images, device, batch, grids)
    return tile_votes([None if c is None else c[:TILE_CROPS] for c in crops]), crops


def rescore(
    data: str | Path,
    oof: Path,
    prefix: str,
    views: list[str],
    regime: str = "full",
    device: str = "cpu",
    seed: int = 0,
    crop_grids: tuple[tuple[int, int], ...] | None = None,
    mirror: bool = False,
    statistics: str = "",
) -> list[dict]:
    """`seed` is the run's FinetuneConfig.view_seed (0 unless changed; runs made before it existed
    drew their views with FinetuneConfig.seed): the regime's held-back view is drawn as the trainer
    drew it (the `full` view has no randomness). With `crop_grids` (the tile voter's grids first,
    then any extra), every row rescored for tiles keeps its crops of those grids; without, a row
    that already keeps crops has them rewritten in its own grids. With `mirror`, each view's vote
    is the mean of the view's and its mirror image's (test-time augmentation), and a row's crops of
    the rescored regime are dropped (they are the unmirrored crops). With `statistics` (a view:
    "224", "448", "tiles"), each network normalises with the batch-norm statistics its checkpoint
    keeps for that training view (`view_statistics`), as a voter's `statistics:` option does."""
    import numpy as np

    from detectors.mobilenet import read_checkpoint, with_view_statistics
    from training.datasets import load_folder
    from training.finetune import (
        held_out_transform,
        load_network,
        votes_crop_grids,
        votes_text,
    )

    rows = [json.loads(x) for x in votes_text(oof).splitlines() if x.strip()]
    samples = {s.key: s for s in load_folder(data).select(split="train").samples}
    missing = [r["key"] for r in rows if r["key"] not in samples]
    if missing:
        raise ValueError(f"{len(missing)} rows are not train rows of {data} (first: {missing[0]!r})")
    names = {network_name(r) for r in rows}
    paths = {n: Path(f"{prefix}.{n}.pt") for n in sorted(names)}
    absent = [str(p) for p in paths.values() if not p.is_file()]
    if absent:
        raise FileNotFoundError(
            f"networks {absent} not found; train with --save-folds (fold rows) "
            "or `loso_networks.py train --save-nets` (held-out rows)"
        )
    try:
        grids = crop_grids or votes_crop_grids([r for r in rows if "crops" in r])
    except ValueError as exc:
        raise ValueError(f"{exc}; rescore each kind apart") from None
    if mirror and crop_grids:
        raise ValueError("mirrored votes keep no crops: rescore for crops without mirror")
    if crop_grids:
        for r in rows:
            r["crops"], r["crop_grids"] = {}, [list(g) for g in crop_grids]
    transform = held_out_transform(regime, seed)
    t0 = time.time()
    states = {n: read_checkpoint(p) for n, p in paths.items()}  # every refusal before the first row is scored
    if statistics:
        states = {n: with_view_statistics(states[n], statistics, p) for n, p in paths.items()}
    for name, path in paths.items():
        net = load_network(path, states.pop(name)).to(device)
        held = [r for r in rows if network_name(r) == name]
        batch = 8 if device == "cpu" else 64  # MobileNetV2 on a CPU is fastest in small batches
        for start in range(0, len(held), 32):  # full-size photos are decoded 32 at a time
            chunk = held[start : start + 32]
            images = [transform(samples[r["key"]].load(), r["key"]) for r in chunk]
            mirrored = [np.ascontiguousarray(image[:, ::-1]) for image in images] if mirror else []
            for view in views:
                probs, crops = view_votes(net, images, view, device, batch, grids)
                if mirror:
                    other, _ = view_votes(net, mirrored, view, device, batch, grids)
                    probs = [None if p is None else (p + q) / 2 for p, q in zip(probs, other, strict=True)]
                    for r in chunk:
                        r.get("crops", {}).pop(regime, None)
                    crops = None
                for k, (r, p, image) in enumerate(zip(chunk, probs, images, strict=True)):
                    r.setdefault("long_side", {})[regime] = int(max(image.shape[:2]))
                    r["probs"][regime].pop(view, None)
                    if p is not None:
                        r["probs"][regime][view] = float(p)
                    if crops is not None and "crops" in r:
                        r["crops"].pop(regime, None)
                        if crops[k] is not None:
                            r["crops"][regime] = [round(c, 5) for c in crops[k]]
            print(
                f"[rescore] {name}: {min(start + 32, len(held))}/{len(held)} images, {time.time() - t0:.0f} s",
                flush=True,
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="Folder with labels.csv: the full-resolution photos.")
    ap.add_argument(
        "--oof",
        type=Path,
        required=True,
        help="The votes: OUT.oof.jsonl of a fold run, or LOSO votes (.jsonl or .jsonl.gz).",
    )
    ap.add_argument(
        "--nets",
        "--folds",
        dest="nets",
        required=True,
        help="Prefix of the saved networks: PREFIX.foldK.pt (fold rows), PREFIX.<held-out>.pt (LOSO rows).",
    )
    ap.add_argument("--views", default="tiles", help="Comma list: tiles, small_tiles and/or sizes (224, 448).")
    ap.add_argument("--regime", default="full")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--seed", type=int, default=0, help="The fold run's view seed, 0 by default (draws the same held-back views)."
    )
    ap.add_argument(
        "--crops",
        action="store_true",
        help="Also keep every rescored row's tile crop probabilities (row key `crops`, as `--oof-crops` writes them).",
    )
    ap.add_argument(
        "--crop-grids",
        default="",
        metavar="RxC,...",
        help="With --crops, also the crops of these grids (e.g. 4x6), after the tile voter's own.",
    )
    ap.add_argument(
        "--mirror",
        action="store_true",
        help="Each view's vote the mean of the view's and its mirror image's (test-time augmentation).",
    )
    ap.add_argument(
        "--statistics",
        default="",
        metavar="VIEW",
        help="Normalise with the batch-norm statistics each checkpoint keeps for this training view (224, 448, "
        "tiles: `view_statistics`) in place of the views' together, as a voter's `statistics:` option does.",
    )
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    from detectors.mobilenet import TILE_GRIDS
    from training.finetune import extra_grids_option, write_votes

    try:
        extra = extra_grids_option(args.crop_grids, "--crop-grids", "--crops", args.crops)
    except ValueError as exc:
        ap.error(str(exc))
    if args.crops and "tiles" not in args.views.split(","):
        ap.error("--crops keeps the crops of the tiles view: add tiles to --views")
    grids = TILE_GRIDS + extra if args.crops else None
    if args.mirror and args.crops:
        ap.error("--mirror keeps no crops: leave out --crops")
    try:
        rows = rescore(
            args.data,
            args.oof,
            args.nets,
            args.views.split(","),
            args.regime,
            args.device,
            args.seed,
            grids,
            args.mirror,
            args.statistics,
        )
    except ValueError as exc:  # rows no saved network held out, a checkpoint without the view's statistics
        ap.error(str(exc))
    write_votes(args.out, rows)
    mirrored = ", each averaged with its mirror image" if args.mirror else ""
    normed = f", normalised with view {args.statistics}'s batch-norm statistics" if args.statistics else ""
    print(f"wrote {args.out}: {len(rows)} rows, {args.regime} views {args.views} at full resolution{mirrored}{normed}")


if __name__ == "__main__":
    main()
