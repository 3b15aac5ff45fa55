"""The tile votes of an OOF or LOSO votes file again, from some of the tile voter's grids only.

The tile voter answers with the max over the crops of every grid it is given (`tiles: {grids:
...}`; by default 2x3 and 3x4, 18 crops). To fit a pool for a profile whose tile voters use fewer
grids, its out-of-fold votes must be that max too. A votes file written with crops (`roadwork train
backbone --oof-crops`, `benchmarks/loso_networks.py train --crops`) holds every crop's probability
in `tile_crops` order; this replaces each row's "tiles" vote by the max over the chosen grids'
crops and leaves every other view as it was, so `roadwork fit`, `benchmarks/oof_pooling.py` and
`benchmarks/loso_networks.py score` read the result as they read the original.

    python -m training.oof_regrid --votes models/l0_backbone_paste_erase.oof.jsonl --grids 3x4 \\
        --out runs/regrid/l0_backbone_paste_erase.oof.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from detectors.mobilenet import TILE_GRIDS, crop_count, grid_slices, parse_grids


def regrid(rows: list[dict], grids: Sequence[tuple[int, int]]) -> list[dict]:
    """`rows` with each tile vote the max over `grids`' crops (rows without a tile vote unchanged).
    A row's crops are those of its `crop_grids` (the tile voter's default grids when it has none).
    A row that has a tile vote but no crops for that regime, or not the grids asked for, is
    refused: its max cannot be redone."""
    out = []
    for r in rows:
        r = json.loads(json.dumps(r))  # a copy: the caller's rows stay as read
        have = [tuple(g) for g in r.get("crop_grids", TILE_GRIDS)]
        slices = grid_slices(have)
        for regime, views in r["probs"].items():
            if "tiles" not in views:
                continue
            crops = r.get("crops", {}).get(regime)
            if crops is None:
                raise ValueError(
                    f"{r['key']}: a tile vote at {regime} without its crops; write the votes with "
                    "`roadwork train backbone --oof-crops` (or `loso_networks.py train --crops`)"
                )
            want = crop_count(have)
            if len(crops) != want:
                raise ValueError(f"{r['key']}: {len(crops)} crops at {regime}, not the {want} of grids {have}")
            if missing := [g for g in grids if g not in slices]:
                raise ValueError(f"{r['key']}: no crops of grids {missing}; its crops are of {have}")
            views["tiles"] = max(p for g in grids for p in crops[slices[g]])
        out.append(r)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--votes", type=Path, required=True, help="OOF or LOSO votes with crops (.jsonl or .jsonl.gz).")
    ap.add_argument("--grids", required=True, help="The grids to keep, e.g. 3x4 (of those the crops hold).")
    ap.add_argument("--out", type=Path, required=True, help="Votes file to write (.jsonl, or .jsonl.gz).")
    args = ap.parse_args(argv)
    from training.finetune import votes_text, write_votes

    try:
        grids = parse_grids(args.grids)
        rows = regrid([json.loads(x) for x in votes_text(args.votes).splitlines() if x.strip()], grids)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_votes(args.out, rows)
    tiled = sum("tiles" in v for r in rows for v in r["probs"].values())
    print(f"wrote {args.out}: {len(rows)} rows, {tiled} tile votes from grids {args.grids}")


if __name__ == "__main__":
    main()
