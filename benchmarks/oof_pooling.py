"""Which L0 voters to pool, decided out of fold: `roadwork fit` on every candidate set of voters,
built from the `roadwork train backbone --folds` OOF files (train split only, dev never read).

    python benchmarks/oof_pooling.py --cut-off-margin 0.01 --out benchmarks/results/oof_pooling_cpu.json

Each OOF file holds, per training image and regime, the held-out probability at each view size.
A candidate voter is (file, size); the fit-set MCC is that of the fitted, calibrated pool at its
fitted threshold, over one row per (image, regime), and per regime, on all sources and on the
vehicle-camera ones. A set with only the tile voter covers just the full-size rows (it abstains
on 224-px views).

A set marked "by size" is fitted as `roadwork fit --profile` fits a profile whose whole-frame
voters score frames under 448 px and whose tile voters score the larger ones (`voters[].long_side`):
one pool per part, each on its own rows with its own voters.

Then the same fitted pool is scored on leave-one-source-out votes (`benchmarks/loso_networks.py`:
for each vehicle-camera source, a network trained without it), the closest thing on train to a
camera the project has never seen. Voters whose recipe has no LOSO network are absent there (the
pool renormalises over the rest), as the `loso_voters` field says.

`--balance source` fits every pool with each source weighing the same (`roadwork fit --balance`):
    python benchmarks/oof_pooling.py --by-size-only --balance source \
        --out benchmarks/results/oof_pooling_balanced_source_cpu.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from loso_networks import PASTE_ERASE_VIEWS, VOTES, loso_overrides  # benchmarks/, beside this script
from sklearn.metrics import matthews_corrcoef

from cascade.types import Level
from consensus.fitting import BALANCE, LabelledVotes, artefact_probs, fit_consensus, rows_from_predictions
from detectors.mobilenet import parse_grids
from training.copy_paste import VEHICLE_SOURCES
from training.evaluate import merge_runs
from training.finetune import votes_text, write_oof_run
from training.oof_regrid import regrid

CANDIDATES = {  # voter name: (OOF file, view size)
    "l0_head": ("models/l0_backbone.oof.jsonl", "224"),
    "l0_detail": ("models/l0_backbone.oof.jsonl", "448"),
    "l0_paste": ("benchmarks/results/oof_votes_l0_backbone_paste.jsonl", "224"),
    "l0_paste_detail": ("benchmarks/results/oof_votes_l0_backbone_paste.jsonl", "448"),
    "l0_tiles": ("models/l0_backbone.oof.jsonl", "tiles"),
    "l0_paste_erase": ("models/l0_backbone_paste_erase.oof.jsonl", "224"),
    "l0_paste_erase_detail": ("models/l0_backbone_paste_erase.oof.jsonl", "448"),
    "l0_paste_erase_tiles": ("models/l0_backbone_paste_erase.oof.jsonl", "tiles"),
    # the plain recipe also trained through the tile voter (--tiles-batch 8; 3 folds, tiles rescored at full size)
    "l0_head_mil": ("benchmarks/results/oof_votes_l0_backbone_tiles_mil.jsonl", "224"),
    "l0_tiles_mil": ("benchmarks/results/oof_votes_l0_backbone_tiles_mil.jsonl", "tiles"),
    # paste/erase 0.5 instead of 0.3, --tiles-batch 8 (3 folds, tiles rescored at full size)
    "l0_pe50": ("benchmarks/results/oof_votes_l0_backbone_pe50.jsonl", "224"),
    "l0_pe50_detail": ("benchmarks/results/oof_votes_l0_backbone_pe50.jsonl", "448"),
    "l0_pe50_tiles": ("benchmarks/results/oof_votes_l0_backbone_pe50.jsonl", "tiles"),
    # the shipped paste-and-erase recipe with --seed 1 (3 folds, tiles on the 544-px copy as seed 0's)
    "l0_paste_erase_seed1": ("benchmarks/results/oof_votes_l0_backbone_paste_erase_seed1.jsonl", "224"),
    "l0_paste_erase_seed1_detail": ("benchmarks/results/oof_votes_l0_backbone_paste_erase_seed1.jsonl", "448"),
    "l0_paste_erase_seed1_tiles": ("benchmarks/results/oof_votes_l0_backbone_paste_erase_seed1.jsonl", "tiles"),
    "l1_rcnn": ("benchmarks/results/heldout_votes_l1_rcnn.jsonl", "det"),  # held-out-source votes (`train boxes`)
    # the paste-and-erase network before --tiles-batch (_v1: 5 folds, its tiles rescored at full size)
    # and before --average-from (_v2: 3 folds, tiles on the 544-px copy, as now): their OOF votes as
    # loso_networks.VOTES names them
    **{
        f"{voter}{version}": (VOTES[f"{voter}{version}"][1], view)
        for version in ("_v1", "_v2")
        for voter, view in PASTE_ERASE_VIEWS
    },
}
# the shipped paste-and-erase recipe trained again (3 folds, fold networks kept; workers and data copy
# differ, so a second draw of it: benchmarks/results/train_folds_nets_paste_erase_h200.log), its tiles
# rescored at full resolution with crops of the 2x3, 3x4 and 4x6 grids (`python -m training.oof_rescore
# --views tiles --crops --crop-grids 4x6`); "tiles:GRIDS" is the max over those grids' crops only
R2_OOF = "benchmarks/results/oof_votes_l0_backbone_paste_erase_r2_fullres.jsonl.gz"
R2_LOSO = "benchmarks/results/loso_votes_l0_backbone_paste_erase_fullres.jsonl.gz"  # the shipped seed's LOSO networks
R2_GRIDS = {"": "tiles", "_3x4": "tiles:3x4", "_4x6": "tiles:4x6", "_2x3_4x6": "tiles:2x3,4x6"}
CANDIDATES |= {f"l0_pe_r2_tiles{suffix}": (R2_OOF, view) for suffix, view in R2_GRIDS.items()}
LOSO = {voter: (loso, view) for voter, (loso, _, view) in VOTES.items()} | {
    f"l0_pe_r2_tiles{suffix}": (R2_LOSO, view) for suffix, view in R2_GRIDS.items()
}
"""voter name: (LOSO votes of its recipe, view), as loso_networks.py scores them."""
ABSTAINING = {voter for voter, (_, view) in {**CANDIDATES, **LOSO}.items() if view.startswith("tiles")}
"""Voters that abstain on part of the rows: tile voters, on frames under 448 px."""
LEVELS = {"l1_rcnn": "L1"}
"""Voters that run after L0 (the rest are L0)."""
PE = ["l0_paste_erase", "l0_paste_erase_detail"]
PE1 = ["l0_paste_erase_v1", "l0_paste_erase_detail_v1"]
PE50 = ["l0_pe50", "l0_pe50_detail"]
PE_S1 = ["l0_paste_erase_seed1", "l0_paste_erase_seed1_detail"]
PE2 = ["l0_paste_erase_v2", "l0_paste_erase_detail_v2"]
BY_SIZE = 448
"""Where "by size" sets split the frames: whole-frame voters below, tile voters from here up."""
SETS = [
    ["l0_head"],
    ["l0_detail"],
    ["l0_paste"],
    ["l0_tiles"],
    ["l0_head", "l0_detail"],
    ["l0_paste_erase_v1"],
    PE1,
    ["l0_head", "l0_detail", *PE1],
    ["l0_head", "l0_detail", *PE1, "l0_paste_erase_tiles_v1"],
    ["l0_paste_erase_tiles_v1"],
    ["l0_head", "l0_detail", "l0_paste"],
    ["l0_head", "l0_detail", "l0_paste", "l0_paste_detail"],
    ["l0_head", "l0_detail", "l0_tiles"],
    ["l0_head", "l0_detail", "l0_paste", "l0_tiles"],
    ["l0_paste_erase"],
    PE,
    ["l0_head", "l0_detail", *PE],
    ["l0_head", "l0_detail", "l0_paste", "l0_paste_detail", *PE],
    ["l1_rcnn"],
    ["l0_head", "l0_detail", "l1_rcnn"],
    [*PE, "l1_rcnn"],
    ["l0_head", "l0_detail", *PE, "l1_rcnn"],
    ["l0_head", "l0_detail", *PE, "l0_tiles"],
    ["l0_head", "l0_detail", *PE, "l0_paste_erase_tiles"],
    ["l0_head", "l0_detail", *PE, "l0_paste_erase_tiles", "l1_rcnn"],
    ["l0_head", "l0_detail", *PE, "l0_tiles", "l0_paste_erase_tiles"],
    ["l0_tiles", "l0_paste_erase_tiles"],
    ["l0_paste_erase_tiles"],
    ["l0_tiles_mil"],
    ["l0_head_mil"],
    ["l0_tiles_mil", "l0_paste_erase_tiles"],
    ["l0_tiles", "l0_tiles_mil", "l0_paste_erase_tiles"],
    ["l0_pe50", "l0_pe50_detail"],
    ["l0_pe50_tiles"],
    ["l0_tiles", "l0_pe50_tiles"],
    ["l0_paste_erase_tiles", "l0_pe50_tiles"],
]
SETS_BY_SIZE = [
    ["l0_head", *PE2, "l0_tiles", "l0_paste_erase_tiles_v2"],  # the shipped set until --average-from
    ["l0_head", "l0_detail", *PE1, "l0_tiles", "l0_paste_erase_tiles_v1"],
    ["l0_head", "l0_detail", *PE, "l0_paste_erase_tiles"],
    ["l0_head", "l0_detail", *PE, "l0_tiles", "l0_paste_erase_tiles"],
    [*PE, "l0_tiles", "l0_paste_erase_tiles"],
    ["l0_head", *PE, "l0_tiles", "l0_paste_erase_tiles"],
    ["l0_head", "l0_paste_erase_detail", "l0_tiles", "l0_paste_erase_tiles"],
    ["l0_head", *PE, "l0_paste_erase_tiles"],
    ["l0_head", *PE, "l0_tiles_mil", "l0_paste_erase_tiles"],
    ["l0_head", *PE, "l0_tiles", "l0_tiles_mil", "l0_paste_erase_tiles"],
    ["l0_head", *PE50, "l0_tiles", "l0_pe50_tiles"],
    ["l0_head", "l0_pe50_detail", "l0_tiles", "l0_pe50_tiles"],
    [*PE50, "l0_tiles", "l0_pe50_tiles"],
    ["l0_head", *PE50, "l0_paste_erase_tiles", "l0_pe50_tiles"],
    ["l0_head", *PE, *PE50, "l0_tiles", "l0_paste_erase_tiles", "l0_pe50_tiles"],
    # two seeds of the shipped paste-and-erase recipe
    ["l0_head", *PE_S1, "l0_tiles", "l0_paste_erase_seed1_tiles"],
    ["l0_head", *PE, "l0_paste_erase_tiles", "l0_paste_erase_seed1_tiles"],
    ["l0_head", *PE, "l0_tiles", "l0_paste_erase_tiles", "l0_paste_erase_seed1_tiles"],
    ["l0_head", "l0_paste_erase", "l0_paste_erase_seed1", "l0_paste_erase_tiles", "l0_paste_erase_seed1_tiles"],
    ["l0_head", *PE, "l0_paste_erase_seed1", "l0_paste_erase_tiles", "l0_paste_erase_seed1_tiles"],
    ["l0_head", *PE, *PE_S1, "l0_paste_erase_tiles", "l0_paste_erase_seed1_tiles"],
    [*PE, *PE_S1, "l0_paste_erase_tiles", "l0_paste_erase_seed1_tiles"],
    # the recipe's second draw, tiles at full size, by grid (see R2_OOF)
    *(["l0_head", *PE, "l0_tiles", f"l0_pe_r2_tiles{suffix}"] for suffix in R2_GRIDS),
    *(["l0_head", *PE, f"l0_pe_r2_tiles{suffix}"] for suffix in R2_GRIDS),
]


def sides_by_size(voters: list[str]) -> dict[str, tuple[int, int | None]]:
    """Whole-frame voters on frames under BY_SIZE px, tile voters on the rest."""
    return {v: (BY_SIZE, None) if v in ABSTAINING else (0, BY_SIZE) for v in voters}


def vote_runs(mapping: dict[str, tuple[str, str]], work: Path) -> dict[str, list[dict]]:
    """voter -> its labelled run (one row per image and regime), from (votes file, view). A view
    "tiles:GRIDS" is the tile vote redone from those grids' crops (`training.oof_regrid`)."""
    runs = {}
    for name, (path, view) in mapping.items():
        if view.startswith("tiles:"):
            grids = parse_grids(view.removeprefix("tiles:"))
            rows = regrid([json.loads(x) for x in votes_text(path).splitlines() if x.strip()], grids)
            path, view = work / name / "votes.jsonl", "tiles"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        folder = write_oof_run(path, work / name, {view: name}, LEVELS.get(name, "L0"))
        runs[name] = [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]
    return runs


def loso_rows(loso_runs: dict[str, list[dict]], have: list[str]) -> list[dict]:
    """The merged LOSO rows of the voters `have` that every one of them has votes for (the
    detector's cover every source; the L0 networks' only the held-out vehicle-camera sources). A tile
    voter abstains on frames under its min_long_side: its rows are not required, unless every voter
    is one."""
    keys = set.intersection(
        *({r["key"] for r in loso_runs[v]} for v in have if v not in ABSTAINING or all(h in ABSTAINING for h in have))
    )
    return [r for r in merge_runs([loso_runs[v] for v in have]) if r["key"] in keys]


def mcc_by_regime(preds: list[dict], y: np.ndarray, p: np.ndarray, parts: dict) -> dict[str, float]:
    out = {}
    for regime in ("v0.2", "letterbox", "full"):
        for part, sources in parts.items():
            sel = np.array(
                [r["key"].endswith(f"#{regime}") and (sources is None or r["source"] in sources) for r in preds]
            )
            if sel.any() and len(set(y[sel])) == 2:
                out[f"{regime}/{part}"] = round(float(matthews_corrcoef(y[sel], p[sel] >= 0.5)), 4)
    return out


def routed(art, rows: list[LabelledVotes]) -> tuple[np.ndarray, np.ndarray]:
    """What the cascade answers with the artefact's L0 band: the L0-only pool where it leaves the
    band (the frame exits there, later levels never run), else the whole pool; and which rows
    went past L0. (Sets with a later level have one pool.)"""
    (pool,) = art.pools
    p_all = artefact_probs(art, rows)
    if "L0" not in pool.bands:
        return p_all, np.ones(len(rows), bool)
    l0 = [LabelledVotes(r.label, {v: lp for v, lp in r.votes.items() if lp[0] == Level.L0}, r.long_side) for r in rows]
    p0 = artefact_probs(art, l0)
    lo, hi = pool.bands["L0"]
    past = (p0 >= lo) & (p0 <= hi)
    return np.where(past, p_all, p0), past


def score_set(
    voters: list[str],
    by_size: bool,
    runs: dict[str, list[dict]],
    loso_runs: dict[str, list[dict]],
    balance: str | None = None,
    cut_off_margin: float = 0.0,
) -> dict:
    """`roadwork fit` on the voters' out-of-fold rows (one pool per part of the size axis when
    `by_size`), scored there and, over the voters with LOSO votes, on their held-out rows; printed
    on one line and returned as the result file's entry."""
    preds = merge_runs([runs[v] for v in voters])
    rows = rows_from_predictions(preds)
    art = fit_consensus(
        rows,
        voter_sides=sides_by_size(voters) if by_size else None,
        balance=balance,
        cut_off_margin=cut_off_margin,
    )
    y, p = np.array([r.label for r in rows]), artefact_probs(art, rows)
    per_regime = mcc_by_regime(preds, y, p, {"all": None, "vehicle": VEHICLE_SOURCES})
    entry = {
        "voters": voters,
        "by_size": by_size,
        "oof_mcc": round(art.metrics["mcc"], 4),
        "oof_accuracy": round(art.metrics["accuracy"], 4),
        "oof_mcc_by_regime": per_regime,
        "pools": [
            {"long_side": pool.long_side, "threshold": pool.threshold_raw, "weights": pool.weights}
            for pool in art.pools
        ],
    }
    have = [v for v in voters if v in loso_runs]
    if have:
        held = loso_rows(loso_runs, have)
        lrows = rows_from_predictions(held)
        ly, lp = np.array([r.label for r in lrows]), artefact_probs(art, lrows)
        entry["loso_voters"] = have
        entry["loso_mcc"] = round(float(matthews_corrcoef(ly, lp >= 0.5)), 4)
        entry["loso_mcc_by_regime"] = mcc_by_regime(held, ly, lp, {"held_out": None})
        if any(v in LEVELS for v in voters):
            rp, past = routed(art, lrows)
            entry["loso_mcc_routed"] = round(float(matthews_corrcoef(ly, rp >= 0.5)), 4)
            entry["loso_share_past_l0"] = round(float(past.mean()), 4)
            op, oof_past = routed(art, rows)
            entry["oof_mcc_routed"] = round(float(matthews_corrcoef(y, op >= 0.5)), 4)
            entry["oof_share_past_l0"] = round(float(oof_past.mean()), 4)
    print(
        f"{' + '.join(voters) + (' (by size)' if by_size else ''):48s} OOF MCC {art.metrics['mcc']:.3f} | "
        + " ".join(f"{k} {v:.3f}" for k, v in per_regime.items())
        + (
            f" || LOSO ({', '.join(have)}) {entry['loso_mcc']:.3f}: "
            + " ".join(f"{k} {v:.3f}" for k, v in entry["loso_mcc_by_regime"].items())
            if have
            else ""
        )
        + (
            f" || routed by the L0 band: OOF {entry['oof_mcc_routed']:.3f} ({entry['oof_share_past_l0']:.0%} past L0),"
            f" LOSO {entry['loso_mcc_routed']:.3f} ({entry['loso_share_past_l0']:.0%} past L0)"
            if "loso_mcc_routed" in entry
            else ""
        )
    )
    return entry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("runs/oof_pooling"))
    ap.add_argument(
        "--loso-votes",
        action="append",
        default=[],
        metavar="VOTER=PATH",
        help="this voter's LOSO votes from PATH instead of its recipe's file (another seed, say); repeatable",
    )
    ap.add_argument("--by-size-only", action="store_true", help="only the sets fitted by size (the profile's shape)")
    ap.add_argument(
        "--balance",
        choices=sorted(BALANCE),
        help="fit with each source (or source and label) weighing the same in all (consensus.fitting.BALANCE)",
    )
    ap.add_argument(
        "--cut-off-margin",
        type=float,
        default=0.0,
        help="keep each pool's cut-off at 0.5 unless another gains more MCC than this (`roadwork fit`'s default: 0.01)",
    )
    args = ap.parse_args()
    try:
        overrides = loso_overrides(args.loso_votes, LOSO)
    except ValueError as exc:
        ap.error(str(exc))
    loso = {voter: (overrides.get(voter, path), view) for voter, (path, view) in LOSO.items()}
    runs = vote_runs(CANDIDATES, args.work)
    loso_runs = vote_runs(loso, args.work / ("loso_overridden" if args.loso_votes else "loso"))
    sets = [] if args.by_size_only else [(v, False) for v in SETS]
    results = [
        score_set(voters, by_size, runs, loso_runs, args.balance, args.cut_off_margin)
        for voters, by_size in sets + [(v, True) for v in SETS_BY_SIZE]
    ]
    out = {
        "candidates": CANDIDATES,
        "loso": loso,
        "balance": args.balance,
        "cut_off_margin": args.cut_off_margin,
        "sets": results,
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
