"""Would the tile voter's max over crops rank 224-px validator frames better than the whole frame?

    PYTHONPATH=. python benchmarks/small_frame_tiles.py --data ../shared/data \\
        --votes benchmarks/results/loso_votes_l0_backbone_paste_erase_tb4_seed0.jsonl.gz \\
        --nets runs/tb4_nets/loso --out benchmarks/results/small_frame_tiles_tb4_seed0_cpu.json

On full-size frames the max over overlapping crops is what finds a small, distant cone: it ranks a
new camera's frames far better than the whole frame at 224 px. The tile voter abstains on frames
under 448 px, so every 224-px validator frame (v0.2 and letterbox) is scored whole. Cropping such
a frame adds no pixels, but each crop is enlarged to the network's 224-px input, and the max over
crops is the multiple-instance answer the paste-and-erase network was trained to give on tiles.

This scores, with saved leave-one-source-out networks (`--votes` and `--nets`, from
`loso_networks.py train --save-nets`), each held-out row's v0.2 and letterbox view
(`training.finetune.held_out_transform`, the run's view seed) whole at 224 px and as the max over
its crops of a 2x2 grid, of the tile voter's 2x3 and 3x4 grids apart and of both (18 crops), and
of the 3x4 grid with its crops at 160 and 112 px instead of 224 (cheaper), with
the network that never saw the row's source; or with `--served CHECKPOINT` the dev split's rows
with that one network. It reports AUROC over the rows and within each source with both labels: a
paired comparison, no pool, since a new voter would need in-fold votes to be pooled. About 11
minutes on 2 CPU cores for the 792 LOSO rows, 5 for dev.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # flip_tta, beside this script

REGIMES_SMALL = ("v0.2", "letterbox")
WAYS = ("whole_224", "max_2x2", "max_2x3", "max_3x4", "max_tile_grids", "max_3x4_at_160", "max_3x4_at_112")
CHEAP_SIZES = (160, 112)
"""The 3x4 grid's crops also at these input sizes: a MobileNetV2 pass costs about the square of
its side, so 12 crops at 160 px cost about half of 12 at 224."""


def way_probs(net, views: list[np.ndarray]) -> dict[str, list[float]]:
    """{way: each view's probability}: whole at 224 px, or the max over the crops (each enlarged to
    224 px) of a 2x2 grid, of the tile voter's 2x3 or 3x4 grid, or of both (its 18 crops), and the
    max over the 3x4 grid's crops resized to each of CHEAP_SIZES instead of 224."""
    from detectors.mobilenet import TILE_GRIDS, grid_slices, tile_crops
    from training.finetune import predict_crops, predict_views

    out = {"whole_224": [float(p) for p in predict_views(net, views, 224, "cpu", 16)]}
    grids = ((2, 2), *TILE_GRIDS)  # every view is cropped, whatever its size
    per_view = np.array(predict_crops(net, views, "cpu", 16, grids, long_sides=(0, None)))
    for (rows, cols), part in grid_slices(grids).items():
        out[f"max_{rows}x{cols}"] = [float(p) for p in per_view[:, part].max(axis=1)]
    out["max_tile_grids"] = [float(p) for p in np.maximum(out["max_2x3"], out["max_3x4"])]
    crops_3x4 = [c for v in views for c in tile_crops(v, ((3, 4),))]
    for size in CHEAP_SIZES:
        per_view = predict_views(net, crops_3x4, size, "cpu", 16).reshape(len(views), -1)
        out[f"max_3x4_at_{size}"] = [float(p) for p in per_view.max(axis=1)]
    return out


def main() -> None:
    import torch
    from flip_tta import auroc_by_source

    from training.datasets import load_folder
    from training.finetune import held_out_transform, load_network, votes_text
    from training.oof_rescore import network_name

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the labelled photos (../shared/data)")
    ap.add_argument("--votes", type=Path, help="LOSO votes a run wrote: the rows to score, each by its network")
    ap.add_argument("--nets", help="with --votes, prefix of the saved networks: PREFIX.<held-out>.pt")
    ap.add_argument("--served", type=Path, help="instead, score the dev split with this network (a checkpoint)")
    ap.add_argument("--seed", type=int, default=0, help="the run's view seed (0 unless changed)")
    ap.add_argument("--out", type=Path, required=True, help="the result JSON")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    args = ap.parse_args()
    if (args.served is None) == (args.votes is None or args.nets is None):
        ap.error("give --votes and --nets (LOSO networks), or --served (the dev split)")
    torch.set_num_threads(args.threads)
    data = load_folder(args.data)
    if args.served:
        dev = data.select(split="dev").samples
        rows = [{"key": s.key, "label": s.label, "source": s.source} for s in dev]
        samples = {s.key: s for s in dev}
        jobs = {args.served: list(range(len(rows)))}
    else:
        rows = [json.loads(x) for x in votes_text(args.votes).splitlines() if x.strip()]
        samples = {s.key: s for s in data.select(split="train").samples}
        names = sorted({network_name(r) for r in rows})
        jobs = {Path(f"{args.nets}.{n}.pt"): [i for i, r in enumerate(rows) if network_name(r) == n] for n in names}
    probs: dict[str, dict[str, list[float]]] = {r: {w: [0.0] * len(rows) for w in WAYS} for r in REGIMES_SMALL}
    t0 = time.time()
    for path, held in jobs.items():
        if not path.is_file():
            raise SystemExit(f"{path}: not found (LOSO networks: `loso_networks.py train --save-nets PREFIX`)")
        net = load_network(path)
        for regime in REGIMES_SMALL:
            transform = held_out_transform(regime, args.seed)
            views = [transform(samples[rows[i]["key"]].load(), rows[i]["key"]) for i in held]
            for way, ps in way_probs(net, views).items():
                for i, p in zip(held, ps, strict=True):
                    probs[regime][way][i] = p
        print(f"{path.name}: {len(held)} rows after {time.time() - t0:.0f} s", flush=True)
    y = np.array([r["label"] for r in rows])
    src = np.array([r["source"] for r in rows])
    out = {
        "note": __doc__.split("\n\n")[3].replace("\n", " "),
        "rows_scored": f"dev split, {args.served}" if args.served else f"{args.votes}, networks {args.nets}.*.pt",
        "rows": len(rows),
        "auroc": {r: {w: auroc_by_source(y, np.array(probs[r][w]), src) for w in WAYS} for r in REGIMES_SMALL},
        "seconds": round(time.time() - t0),
    }
    for r in REGIMES_SMALL:
        print(r, {w: out["auroc"][r][w]["all"] for w in WAYS})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
