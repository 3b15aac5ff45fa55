"""How the L1 detector does on cameras it never saw, next to the L0 networks, from committed votes.

Reads the detector's held-out votes (`roadwork train boxes --held-out ...`: every training row
scored by a detector trained without its source) and the L0 networks' leave-one-source-out votes
(benchmarks/loso_networks.py), and writes per regime: the detector's AUROC and MCC at 0.5 over all
training rows and per source, and AUROC of the detector, of each L0 network and of the detector's
and the paste-and-erase network's mean logit on the rows that both have (the six held-out
vehicle-camera sources). With `--manifest`, the training record of the checkpoint is copied in.

    PYTHONPATH=. python benchmarks/detector_heldout.py --manifest runs/det/l1_rcnn.manifest.json \\
        --out benchmarks/results/heldout_l1_rcnn.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import matthews_corrcoef, roc_auc_score

DETECTOR = "benchmarks/results/heldout_votes_l1_rcnn.jsonl"
L0 = {
    "l0_head (224)": ("benchmarks/results/loso_votes_l0_backbone.jsonl", "224"),
    "l0_detail (448)": ("benchmarks/results/loso_votes_l0_backbone.jsonl", "448"),
    "l0_paste_erase (224)": ("benchmarks/results/loso_votes_l0_backbone_paste_erase.jsonl", "224"),
    "l0_paste_erase_detail (448)": ("benchmarks/results/loso_votes_l0_backbone_paste_erase.jsonl", "448"),
}


def _read(path: str) -> dict[str, dict]:
    return {r["key"]: r for r in (json.loads(x) for x in Path(path).read_text().splitlines() if x.strip())}


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def report(manifest: Path | None) -> dict:
    det = _read(DETECTOR)
    l0 = {name: (_read(path), view) for name, (path, view) in L0.items()}
    keys = sorted(det)
    shared = sorted(set(det).intersection(*(set(v[0]) for v in l0.values())))
    y, ys = np.array([det[k]["label"] for k in keys]), np.array([det[k]["label"] for k in shared])
    src = np.array([det[k]["source"] for k in keys])
    out: dict = {
        "detector_votes": DETECTOR,
        "l0_loso_votes": L0,
        "note": __doc__.split("\n\n")[1].replace("\n", " "),
        "regimes": {},
    }
    for regime in ("v0.2", "letterbox", "full"):
        p = np.array([det[k]["probs"][regime]["det"] for k in keys])
        per_source = {}
        for s in sorted(set(src)):
            m = src == s
            per_source[s] = {
                "n": int(m.sum()),
                "positives": int(y[m].sum()),
                "accuracy": round(float(((p[m] >= 0.5) == y[m]).mean()), 4),
            }
        ps = np.array([det[k]["probs"][regime]["det"] for k in shared])
        pe = np.array([l0["l0_paste_erase (224)"][0][k]["probs"][regime]["224"] for k in shared])
        auroc = {"l1_rcnn": round(float(roc_auc_score(ys, ps)), 4)}
        for name, (votes, view) in l0.items():
            auroc[name] = round(float(roc_auc_score(ys, [votes[k]["probs"][regime][view] for k in shared])), 4)
        auroc["mean logit of l1_rcnn and l0_paste_erase"] = round(float(roc_auc_score(ys, _logit(ps) + _logit(pe))), 4)
        out["regimes"][regime] = {
            "all_rows": {
                "n": len(keys),
                "auroc": round(float(roc_auc_score(y, p)), 4),
                "mcc_at_0.5": round(float(matthews_corrcoef(y, p >= 0.5)), 4),
            },
            "per_source": per_source,
            "held_out_vehicle_rows": {"n": len(shared), "positives": int(ys.sum()), "auroc": auroc},
        }
        print(
            f"{regime:10s} all rows AUROC {out['regimes'][regime]['all_rows']['auroc']:.3f} | held-out vehicle rows "
            + " ".join(f"{k} {v:.3f}" for k, v in auroc.items())
        )
    if manifest is not None:
        out["training"] = json.loads(manifest.read_text())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--manifest", type=Path, default=None, help="The checkpoint's manifest (its training record).")
    args = ap.parse_args()
    args.out.write_text(json.dumps(report(args.manifest), indent=2) + "\n")


if __name__ == "__main__":
    main()
