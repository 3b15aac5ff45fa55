"""Does PP-OCR's roadwork sign text (the `ocr-signs` voter, L2) add anything to the shipped L0 pool?

    roadwork eval --data ../shared/data --split train --regime v0.2,letterbox,full \\
        --config benchmarks/ocr_only.yaml --out runs/ocr_train
    PYTHONPATH=.:benchmarks python benchmarks/l2_ocr.py --run runs/ocr_train \\
        --out benchmarks/results/l2_ocr_cpu.json

The OCR models ship in the rapidocr wheel and never saw our data, so their votes on the training
photos are out of fold for every source and camera. The voter abstains where it reads no text, says
`no_match_prob` where it reads text without a roadwork phrase, and a noisy-OR of the phrases' weights
where it finds some. Reported: how often it finds a phrase, per regime, on positives and negatives;
then the shipped set of L0 voters pooled (as `roadwork fit --profile` fits it, one pool per frame
size) with and without it, in fold and on networks that never saw the source (oof_pooling.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from oof_pooling import CANDIDATES, LOSO, mcc_by_regime, sides_by_size, vote_runs  # benchmarks/
from sklearn.metrics import matthews_corrcoef

from consensus.fitting import artefact_probs, fit_consensus, rows_from_predictions
from training.evaluate import merge_runs

SHIPPED = ["l0_head", "l0_paste_erase", "l0_paste_erase_detail", "l0_tiles", "l0_paste_erase_tiles"]
OCR = "l2_ocr_signs"
REGIMES = ("v0.2", "letterbox", "full")


def ocr_rows(run: Path) -> list[dict]:
    """The eval run's rows keyed as the OOF runs are (`image#regime`), with their one vote."""
    rows = []
    for regime in REGIMES:
        for line in (run / regime / "predictions.jsonl").read_text().splitlines():
            r = json.loads(line)
            rows.append({**r, "key": f"{r['key']}#{regime}"})
    return rows


def hit_rates(rows: list[dict]) -> dict:
    out = {}
    for regime in REGIMES:
        sel = [r for r in rows if r["key"].endswith(f"#{regime}")]
        probs = [r["votes"][0]["prob"] for r in sel]
        pos = [p for r, p in zip(sel, probs, strict=True) if r["label"] == 1]
        neg = [p for r, p in zip(sel, probs, strict=True) if r["label"] == 0]
        out[regime] = {
            "rows": len(sel),
            "read_text": round(sum(p is not None for p in probs) / len(sel), 3),
            "phrase_on_positives": f"{sum(p is not None and p > 0.5 for p in pos)} of {len(pos)}",
            "phrase_on_negatives": f"{sum(p is not None and p > 0.5 for p in neg)} of {len(neg)}",
            "sources_with_a_phrase": sorted(
                {r["source"] for r, p in zip(sel, probs, strict=True) if p is not None and p > 0.5}
            ),
            "latency_ms_p50": round(float(np.median([r["votes"][0]["latency_ms"] for r in sel])), 1),
        }
    return out


def pooled(voters: list[str], runs: dict, loso_runs: dict, ocr: list[dict]) -> dict:
    with_ocr = OCR in voters
    l0 = [v for v in voters if v != OCR]
    sides = {**sides_by_size(l0), **({OCR: (0, None)} if with_ocr else {})}
    extra = [ocr] if with_ocr else []
    oof = merge_runs([runs[v] for v in l0] + extra)
    oof = [r for r in oof if {v["voter"] for v in r["votes"]} & set(l0)]  # rows the L0 voters scored
    art = fit_consensus(rows_from_predictions(oof), voter_sides=sides)
    rows = rows_from_predictions(oof)
    y, p = np.array([r.label for r in rows]), artefact_probs(art, rows)
    held = merge_runs([loso_runs[v] for v in l0])
    if with_ocr:  # its votes on the held-out rows: the same votes (it never trained on any source)
        keys = {r["key"] for r in held}
        held = merge_runs([held, [r for r in ocr if r["key"] in keys]])
    lrows = rows_from_predictions(held)
    ly, lp = np.array([r.label for r in lrows]), artefact_probs(art, lrows)
    return {
        "voters": voters,
        "in_fold_mcc": round(float(matthews_corrcoef(y, p >= 0.5)), 4),
        "in_fold_mcc_by_regime": mcc_by_regime(oof, y, p, {"all": None}),
        "new_camera_mcc": round(float(matthews_corrcoef(ly, lp >= 0.5)), 4),
        "new_camera_mcc_by_regime": mcc_by_regime(held, ly, lp, {"held_out": None}),
        "ocr_weight": [pool.weights.get(OCR) for pool in art.pools],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="roadwork eval run of benchmarks/ocr_only.yaml on train")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("runs/l2_ocr"))
    args = ap.parse_args()
    ocr = ocr_rows(args.run)
    runs = vote_runs({v: CANDIDATES[v] for v in SHIPPED}, args.work)
    loso_runs = vote_runs({v: LOSO[v] for v in SHIPPED}, args.work / "loso")
    result = {"hits": hit_rates(ocr), "sets": [pooled(s, runs, loso_runs, ocr) for s in (SHIPPED, [*SHIPPED, OCR])]}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
