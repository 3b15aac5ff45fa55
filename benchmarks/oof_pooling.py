"""Which L0 voters to pool, decided out of fold: `roadwork fit` on every candidate set of voters,
built from the `roadwork train backbone --folds` OOF files (train split only, dev never read).

    python benchmarks/oof_pooling.py --out benchmarks/results/oof_pooling_cpu.json

Each OOF file holds, per training image and regime, the held-out probability at each view size.
A candidate voter is (file, size); the fit-set MCC is that of the fitted, calibrated pool at its
fitted threshold, over one row per (image, regime).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from consensus.fitting import fit_consensus, rows_from_predictions
from training.evaluate import merge_runs
from training.finetune import write_oof_run

CANDIDATES = {  # voter name: (OOF file, view size)
    "l0_head": ("models/l0_backbone.oof.jsonl", "224"),
    "l0_detail": ("models/l0_backbone.oof.jsonl", "448"),
    "l0_paste": ("models/l0_backbone_paste.oof.jsonl", "224"),
    "l0_paste_448": ("models/l0_backbone_paste.oof.jsonl", "448"),
}
SETS = [["l0_head"], ["l0_detail"], ["l0_paste"], ["l0_head", "l0_detail"],
        ["l0_head", "l0_detail", "l0_paste"], ["l0_head", "l0_detail", "l0_paste", "l0_paste_448"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("runs/oof_pooling"))
    args = ap.parse_args()
    runs = {}
    for name, (path, size) in CANDIDATES.items():
        folder = write_oof_run(path, args.work / name, {size: name})
        runs[name] = [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]
    results = []
    for voters in SETS:
        art = fit_consensus(rows_from_predictions(merge_runs([runs[v] for v in voters])))
        results.append({"voters": voters, "oof_mcc": round(art.metrics["mcc"], 4),
                        "oof_accuracy": round(art.metrics["accuracy"], 4),
                        "threshold": art.threshold_raw, "weights": art.weights})
        print(f"{' + '.join(voters):48s} OOF MCC {art.metrics['mcc']:.3f} (threshold {art.threshold_raw:.3f})")
    args.out.write_text(json.dumps({"candidates": CANDIDATES, "sets": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
