"""Which rows to fit the pool on, judged on a camera the fit never saw (nested leave-one-source-out).

    PYTHONPATH=. python benchmarks/fit_rows.py --out benchmarks/results/fit_rows_cpu.json

`roadwork fit` learns the pool's weights, calibration and threshold from in-fold OOF votes: other
images of the same source were in the networks' training, so the votes are surer than on a camera
never seen, and the threshold lands where known cameras want it. The LOSO votes
(`benchmarks/loso_networks.py`: for each vehicle-camera source, networks trained without it) show
how the same networks vote on a new camera. This script asks whether fitting on both kinds of rows
makes a pool that holds up better on a new camera, without reading the held-out camera in the fit.

For each held-out source S (every source with LOSO votes), each recipe fits on train rows only:
- `in_fold`: every in-fold row (what ships today; it has seen S's in-fold rows),
- `in_fold_minus_s`: in-fold rows of every other source (the control for the next two),
- `mixed`: in-fold rows of every other source plus the LOSO rows of every other source,
- `mixed_x2`: the same with each LOSO row counted twice,
- `loso_only`: the LOSO rows of every other source;
and is scored on S's LOSO rows. The figures are MCC at 0.5 over all held-out rows together (one row
per image and regime), per regime, and accuracy per source. `in_fold_mcc` is each recipe fitted
on all rows (no source left out) scored on the in-fold rows: the known-camera side of the trade
(the same fit-set measure as oof_pooling.py's "in fold").
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from oof_pooling import CANDIDATES, LOSO, mcc_by_regime, sides_by_size, vote_runs  # benchmarks/
from sklearn.metrics import matthews_corrcoef, roc_auc_score

from consensus.fitting import artefact_probs, fit_consensus, rows_from_predictions
from training.evaluate import merge_runs

SHIPPED = ["l0_head", "l0_paste_erase", "l0_paste_erase_detail", "l0_tiles", "l0_paste_erase_tiles"]
SETS = [
    SHIPPED,
    ["l0_head", "l0_paste_erase", "l0_paste_erase_detail", "l0_paste_erase_tiles"],
    ["l0_paste_erase", "l0_paste_erase_detail", "l0_tiles", "l0_paste_erase_tiles"],
]
Rows = list[dict]
RECIPES: dict[str, Callable[[Rows, Rows, str | None], Rows]] = {
    # (in-fold rows, LOSO rows, held-out source or None) -> the rows to fit on
    "in_fold": lambda oof, loso, s: oof,
    "in_fold_minus_s": lambda oof, loso, s: [r for r in oof if r["source"] != s],
    "mixed": lambda oof, loso, s: [r for r in oof + loso if r["source"] != s],
    "mixed_x2": lambda oof, loso, s: [r for r in oof + loso + loso if r["source"] != s],
    "loso_only": lambda oof, loso, s: [r for r in loso if r["source"] != s],
}


def joined(runs: dict[str, Rows], voters: list[str]) -> Rows:
    """Rows that carry a vote from every whole-frame voter (tile voters abstain on small frames)."""
    rows = merge_runs([runs[v] for v in voters])
    return [r for r in rows if {v["voter"] for v in r["votes"]} & set(voters)]


def score_set(voters: list[str], runs: dict[str, Rows], loso_runs: dict[str, Rows]) -> dict:
    oof, loso = joined(runs, voters), joined(loso_runs, voters)
    loso_keys_by_source: dict[str, set[str]] = {}
    for r in loso:
        loso_keys_by_source.setdefault(r["source"], set()).add(r["key"])
    # keep LOSO rows that every voter voted on where it runs (as oof_pooling.py does)
    sides = sides_by_size(voters)
    out: dict = {"voters": voters, "held_out_sources": sorted(loso_keys_by_source), "recipes": {}}
    for name, recipe in RECIPES.items():
        held_rows, held_p = [], []
        for s in sorted(loso_keys_by_source):
            fit_rows = rows_from_predictions(recipe(oof, loso, s))
            art = fit_consensus(fit_rows, voter_sides=sides)
            test = [r for r in loso if r["source"] == s]
            held_rows += test
            held_p.append(artefact_probs(art, rows_from_predictions(test)))
        p = np.concatenate(held_p)
        y = np.array([int(r["label"]) for r in held_rows])
        per_source = {
            s: round(float(((p[m] >= 0.5) == y[m]).mean()), 3)
            for s in sorted(loso_keys_by_source)
            if (m := np.array([r["source"] == s for r in held_rows])).any()
        }
        full_fit = fit_consensus(rows_from_predictions(recipe(oof, loso, None)), voter_sides=sides)
        oof_rows = rows_from_predictions(oof)
        oof_y = np.array([r.label for r in oof_rows])
        oof_p = artefact_probs(full_fit, oof_rows)
        out["recipes"][name] = {
            "loso_mcc": round(float(matthews_corrcoef(y, p >= 0.5)), 4),
            "loso_auroc": round(float(roc_auc_score(y, p)), 4),
            "loso_mcc_by_regime": mcc_by_regime(held_rows, y, p, {"held_out": None}),
            "loso_accuracy_by_source": per_source,
            "in_fold_mcc": round(float(matthews_corrcoef(oof_y, oof_p >= 0.5)), 4),
            "in_fold_mcc_by_regime": mcc_by_regime(oof, oof_y, oof_p, {"all": None}),
            "thresholds_all_rows": [pool.threshold_raw for pool in full_fit.pools],
            "weights_all_rows": [pool.weights for pool in full_fit.pools],
        }
        r = out["recipes"][name]
        print(
            f"{' + '.join(voters):80s} {name:16s} new camera {r['loso_mcc']:.3f} "
            + " ".join(f"{k.split('/')[0]} {v:.3f}" for k, v in r["loso_mcc_by_regime"].items())
            + f" | in fold {r['in_fold_mcc']:.3f} "
            + " ".join(f"{k.split('/')[0]} {v:.3f}" for k, v in r["in_fold_mcc_by_regime"].items()),
            flush=True,
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("runs/fit_rows"))
    args = ap.parse_args()
    names = sorted({v for s in SETS for v in s})
    runs = vote_runs({v: CANDIDATES[v] for v in names}, args.work)
    loso_runs = vote_runs({v: LOSO[v] for v in names}, args.work / "loso")
    results = [score_set(voters, runs, loso_runs) for voters in SETS]
    args.out.write_text(json.dumps({"recipes": list(RECIPES), "sets": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
