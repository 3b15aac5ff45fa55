"""Which L0 voters to pool, decided out of fold: `roadwork fit` on every candidate set of voters,
built from the `roadwork train backbone --folds` OOF files (train split only, dev never read).

    python benchmarks/oof_pooling.py --out benchmarks/results/oof_pooling_cpu.json

Each OOF file holds, per training image and regime, the held-out probability at each view size.
A candidate voter is (file, size); the fit-set MCC is that of the fitted, calibrated pool at its
fitted threshold, over one row per (image, regime), and per regime, on all sources and on the
vehicle-camera ones. A set with only the tile voter covers just the full-size rows (it abstains
on 224-px views).

Then the same fitted pool is scored on leave-one-source-out votes (`benchmarks/loso_networks.py`:
for each vehicle-camera source, a network trained without it), the closest thing on train to a
camera the project has never seen. Voters whose recipe has no LOSO network are absent there (the
pool renormalises over the rest), as the `loso_voters` field says.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from loso_networks import VOTES  # benchmarks/, beside this script
from sklearn.metrics import matthews_corrcoef

from consensus.fitting import artefact_probs, fit_consensus, rows_from_predictions
from training.evaluate import merge_runs
from training.finetune import write_oof_run

CANDIDATES = {  # voter name: (OOF file, view size)
    "l0_head": ("models/l0_backbone.oof.jsonl", "224"),
    "l0_detail": ("models/l0_backbone.oof.jsonl", "448"),
    "l0_paste": ("benchmarks/results/oof_votes_l0_backbone_paste.jsonl", "224"),
    "l0_paste_detail": ("benchmarks/results/oof_votes_l0_backbone_paste.jsonl", "448"),
    "l0_tiles": ("models/l0_backbone.oof.jsonl", "tiles"),
    "l0_paste_erase": ("models/l0_backbone_paste_erase.oof.jsonl", "224"),
    "l0_paste_erase_detail": ("models/l0_backbone_paste_erase.oof.jsonl", "448"),
}
LOSO = {voter: (loso, view) for voter, (loso, _, view) in VOTES.items()}
"""voter name: (LOSO votes of its recipe, view), as loso_networks.py scores them."""
PE = ["l0_paste_erase", "l0_paste_erase_detail"]
VEHICLE_SOURCES = {"vtti_wz", "vtti_nds", "camvid", "gtsdb", "idd_lite", "dawn_fog", "pp_nightwork"}
SETS = [["l0_head"], ["l0_detail"], ["l0_paste"], ["l0_tiles"], ["l0_head", "l0_detail"],
        ["l0_head", "l0_detail", "l0_paste"], ["l0_head", "l0_detail", "l0_paste", "l0_paste_detail"],
        ["l0_head", "l0_detail", "l0_tiles"], ["l0_head", "l0_detail", "l0_paste", "l0_tiles"],
        ["l0_paste_erase"], PE, ["l0_head", "l0_detail", *PE],
        ["l0_head", "l0_detail", "l0_paste", "l0_paste_detail", *PE]]


def vote_runs(mapping: dict[str, tuple[str, str]], work: Path) -> dict[str, list[dict]]:
    """voter -> its labelled run (one row per image and regime), from (votes file, view)."""
    runs = {}
    for name, (path, view) in mapping.items():
        folder = write_oof_run(path, work / name, {view: name})
        runs[name] = [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]
    return runs


def mcc_by_regime(preds: list[dict], y: np.ndarray, p: np.ndarray, parts: dict) -> dict[str, float]:
    out = {}
    for regime in ("v0.2", "letterbox", "full"):
        for part, sources in parts.items():
            sel = np.array([r["key"].endswith(f"#{regime}") and (sources is None or r["source"] in sources)
                            for r in preds])
            if sel.any() and len(set(y[sel])) == 2:
                out[f"{regime}/{part}"] = round(float(matthews_corrcoef(y[sel], p[sel] >= 0.5)), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("runs/oof_pooling"))
    args = ap.parse_args()
    runs = vote_runs(CANDIDATES, args.work)
    loso_runs = vote_runs(LOSO, args.work / "loso")
    results = []
    for voters in SETS:
        preds = merge_runs([runs[v] for v in voters])
        rows = rows_from_predictions(preds)
        art = fit_consensus(rows)
        y, p = np.array([r.label for r in rows]), artefact_probs(art, rows)
        per_regime = mcc_by_regime(preds, y, p, {"all": None, "vehicle": VEHICLE_SOURCES})
        entry = {"voters": voters, "oof_mcc": round(art.metrics["mcc"], 4),
                 "oof_accuracy": round(art.metrics["accuracy"], 4), "oof_mcc_by_regime": per_regime,
                 "threshold": art.threshold_raw, "weights": art.weights}
        have = [v for v in voters if v in loso_runs]
        if have:
            held = merge_runs([loso_runs[v] for v in have])
            lrows = rows_from_predictions(held)
            ly, lp = np.array([r.label for r in lrows]), artefact_probs(art, lrows)
            entry["loso_voters"] = have
            entry["loso_mcc"] = round(float(matthews_corrcoef(ly, lp >= 0.5)), 4)
            entry["loso_mcc_by_regime"] = mcc_by_regime(held, ly, lp, {"held_out": None})
        results.append(entry)
        print(f"{' + '.join(voters):48s} OOF MCC {art.metrics['mcc']:.3f} (threshold {art.threshold_raw:.3f}) | "
              + " ".join(f"{k} {v:.3f}" for k, v in per_regime.items())
              + (f" || LOSO ({', '.join(have)}) {entry['loso_mcc']:.3f}: "
                 + " ".join(f"{k} {v:.3f}" for k, v in entry["loso_mcc_by_regime"].items()) if have else ""))
    args.out.write_text(json.dumps({"candidates": CANDIDATES, "loso": LOSO, "sets": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
