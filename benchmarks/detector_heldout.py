"""How L1 detectors do on cameras they never saw, next to the L0 networks, from committed votes.

Reads each detector's held-out votes (`roadwork train boxes --held-out ...`, or the raw rows of
`python -m training.finetune_detector train --without ...`: every training row scored by a
detector trained without its source) and the L0 networks' leave-one-source-out votes
(benchmarks/loso_networks.py), and writes per regime and detector: AUROC and MCC at 0.5 over all
its rows and accuracy per source; then, on the rows every detector and network has (the six
held-out vehicle-camera sources), AUROC of each detector, of each L0 network and of each
detector's and the paste-and-erase network's mean logit. With `--manifest`, a checkpoint's training
record is copied in.

    PYTHONPATH=. python benchmarks/detector_heldout.py --out benchmarks/results/heldout_l1_yolo_coco.json \\
        --detector l1_rcnn=benchmarks/results/heldout_votes_l1_rcnn.jsonl \\
        --detector l1_yolo_coco=runs/yolo/half_a_s0.loso.jsonl,runs/yolo/half_b_s0.loso.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from loso_networks import read_votes  # benchmarks/, beside this script
from sklearn.metrics import matthews_corrcoef, roc_auc_score

DETECTOR = "l1_rcnn=benchmarks/results/heldout_votes_l1_rcnn.jsonl"
L0 = {
    "l0_head (224)": ("benchmarks/results/loso_votes_l0_backbone.jsonl", "224"),
    "l0_detail (448)": ("benchmarks/results/loso_votes_l0_backbone.jsonl", "448"),
    "l0_paste_erase (224)": ("benchmarks/results/loso_votes_l0_backbone_paste_erase.jsonl", "224"),
    "l0_paste_erase_detail (448)": ("benchmarks/results/loso_votes_l0_backbone_paste_erase.jsonl", "448"),
}
REGIMES = ("v0.2", "letterbox", "full")


def read_detector(paths: list[str]) -> dict[str, dict]:
    """Held-out votes, from packaged files (with `probs`) or the trainer's raw box rows (`*.loso.jsonl`,
    plain or gzipped: turned into the voter's probability with the default class map, as `package` does)."""
    from detectors.evidence import ClassMap
    from training.finetune_detector import box_votes

    rows = [r for p in paths for r in read_votes(p).values()]
    raw = [r for r in rows if "probs" not in r]
    return {r["key"]: r for r in [r for r in rows if "probs" in r] + box_votes(raw, ClassMap())}


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def _detector_rows(det: dict[str, dict], regime: str) -> dict:
    keys = sorted(det)
    y = np.array([det[k]["label"] for k in keys])
    p = np.array([det[k]["probs"][regime]["det"] for k in keys])
    src = np.array([det[k]["source"] for k in keys])
    per_source = {}
    for s in sorted(set(src)):
        m = src == s
        per_source[s] = {
            "n": int(m.sum()),
            "positives": int(y[m].sum()),
            "accuracy": round(float(((p[m] >= 0.5) == y[m]).mean()), 4),
        }
    return {
        "n": len(keys),
        "auroc": round(float(roc_auc_score(y, p)), 4),
        "mcc_at_0.5": round(float(matthews_corrcoef(y, p >= 0.5)), 4),
        "per_source": per_source,
    }


def report(detectors: dict[str, list[str]], manifest: Path | None = None) -> dict:
    dets = {name: read_detector(paths) for name, paths in detectors.items()}
    l0 = {name: (read_votes(path), view) for name, (path, view) in L0.items()}
    shared = sorted(set.intersection(*(set(d) for d in dets.values()), *(set(v[0]) for v in l0.values())))
    first = next(iter(dets.values()))
    ys = np.array([first[k]["label"] for k in shared])
    out: dict = {
        "detector_votes": detectors,
        "l0_loso_votes": L0,
        "note": __doc__.split("\n\n")[1].replace("\n", " "),
        "regimes": {},
    }
    for regime in REGIMES:
        pe = np.array([l0["l0_paste_erase (224)"][0][k]["probs"][regime]["224"] for k in shared])
        auroc = {}
        for name, det in dets.items():
            auroc[name] = round(float(roc_auc_score(ys, [det[k]["probs"][regime]["det"] for k in shared])), 4)
        for name, (votes, view) in l0.items():
            auroc[name] = round(float(roc_auc_score(ys, [votes[k]["probs"][regime][view] for k in shared])), 4)
        for name, det in dets.items():
            ps = np.array([det[k]["probs"][regime]["det"] for k in shared])
            auroc[f"mean logit of {name} and l0_paste_erase"] = round(
                float(roc_auc_score(ys, _logit(ps) + _logit(pe))), 4
            )
        out["regimes"][regime] = {
            "detectors": {name: _detector_rows(det, regime) for name, det in dets.items()},
            "held_out_vehicle_rows": {"n": len(shared), "positives": int(ys.sum()), "auroc": auroc},
        }
        print(f"{regime:10s} held-out vehicle rows AUROC " + " ".join(f"{k} {v:.3f}" for k, v in auroc.items()))
    if manifest is not None:
        out["training"] = json.loads(manifest.read_text())
    return out


def parse_detector(spec: str) -> tuple[str, list[str]]:
    """`NAME=PATH[,PATH...]` -> (NAME, paths)."""
    name, sep, paths = spec.partition("=")
    if not sep or not name or not paths:
        raise argparse.ArgumentTypeError(f"--detector {spec!r}: expected NAME=PATH[,PATH...]")
    return name, paths.split(",")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--manifest", type=Path, default=None, help="A checkpoint's manifest (its training record).")
    ap.add_argument(
        "--detector",
        type=parse_detector,
        action="append",
        default=[],
        metavar="NAME=PATH[,PATH...]",
        help=f"A detector's held-out votes (packaged, or `train --without`'s OUT.loso.jsonl, .gz too); "
        f"repeat for several side by side. Default: {DETECTOR}.",
    )
    args = ap.parse_args()
    detectors = dict(args.detector or [parse_detector(DETECTOR)])
    args.out.write_text(json.dumps(report(detectors, args.manifest), indent=2) + "\n")


if __name__ == "__main__":
    main()
