"""Leave-one-source-out check of the fitted consensus: for each source, fit weights, calibration
and threshold on the OOF votes of every other source, then score the held-out source's OOF votes.

It checks that the threshold survives a source the fit has not seen. The networks behind the votes
were still trained (in group folds) on other images of that source, so this is not a LOSO of the
networks themselves.

    python benchmarks/loso_fit.py --run models/l0_head.oof --run models/l0_paste_head.oof \\
        --out benchmarks/results/loso_fit_cpu.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from consensus.fitting import artefact_probs as pooled
from consensus.fitting import fit_consensus, rows_from_predictions
from training.evaluate import merge_runs, read_predictions
from training.metrics import summarise


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, action="append", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    preds = merge_runs([read_predictions(r) for r in args.run])
    by_source: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(preds):
        by_source[r["source"]].append(i)
    rows = rows_from_predictions(preds)
    everyone = fit_consensus(rows)
    out = {"runs": [str(r) for r in args.run], "threshold_all_sources": everyone.threshold_raw, "sources": {}}
    held_y, held_p, all_p = [], [], pooled(everyone, rows)
    for source, idx in sorted(by_source.items()):
        rest = [rows[i] for i in range(len(rows)) if i not in set(idx)]
        art = fit_consensus(rest)
        p = pooled(art, [rows[i] for i in idx])
        y = np.array([rows[i].label for i in idx])
        held_y.append(y)
        held_p.append(p)
        out["sources"][source] = {
            "threshold_without_it": art.threshold_raw,
            "loso": {k: v for k, v in summarise(y, p).items() if k != "confusion"},
            "all_sources_fit": {k: v for k, v in summarise(y, all_p[idx]).items() if k != "confusion"},
        }
        print(
            f"{source:16s} n={len(idx):4d} threshold {art.threshold_raw:.3f} | accuracy LOSO "
            f"{out['sources'][source]['loso']['accuracy']:.3f} vs all-source fit "
            f"{out['sources'][source]['all_sources_fit']['accuracy']:.3f}"
        )
    y, p = np.concatenate(held_y), np.concatenate(held_p)
    out["pooled_loso"] = {k: v for k, v in summarise(y, p).items() if k != "confusion"}
    print(
        f"all held-out sources together: MCC {out['pooled_loso']['mcc']:.3f} (fit on all: "
        f"{everyone.metrics['mcc']:.3f})"
    )
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
