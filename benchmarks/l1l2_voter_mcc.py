"""Score every voter of a profile alone, and their pooled vote, on a labelled split.

Each image goes through the validator transform, then through every enabled voter in level order
(later levels see earlier votes in `frame.meta['prior_votes']`, as in the cascade, but nothing
exits early). Writes `OUT/voters.json` (MCC at 0.5 over answered frames, coverage, AUROC per
voter and for the pool) and `OUT/predictions.jsonl` in the format `roadwork fit --run OUT` reads.
Fit consensus only on a run whose voters never trained on its images (never on dev).

    python benchmarks/l1l2_voter_mcc.py --config configs/cpu.yaml --data ../shared/data --split dev --out runs/voters-dev
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def score(labels: list[int], probs: list[float | None]) -> dict[str, Any]:
    from sklearn.metrics import matthews_corrcoef, roc_auc_score

    idx = [i for i, p in enumerate(probs) if p is not None]
    y = np.array([labels[i] for i in idx])
    p = np.array([probs[i] for i in idx], dtype=float)
    out: dict[str, Any] = {"n": len(labels), "answered": len(idx), "coverage": len(idx) / max(len(labels), 1)}
    if len(idx) and len(set(y)) == 2:
        out["mcc_at_0.5"] = float(matthews_corrcoef(y, (p > 0.5).astype(int)))
        out["auroc"] = float(roc_auc_score(y, p))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "cpu.yaml")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--transform", default="v0.2", choices=["v0.2", "letterbox", "full", "validator", "none"])
    ap.add_argument("--limit", type=int, default=0, help="only the first N images (0: all)")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "voters")
    args = ap.parse_args(argv)

    from roadwork.env import configure_process, set_torch_threads

    configure_process()
    from cascade.pipeline import Cascade
    from cascade.types import Frame
    from miner.profile import load_profile
    from training.datasets import load_dataset
    from training.evaluate import progress_bar
    from training.transforms import make_transform

    cfg = load_profile(args.config)
    set_torch_threads(cfg.runtime.torch_threads)
    cascade = Cascade.from_config(cfg, warmup=False)
    ds = load_dataset(args.data).select(split=args.split)
    samples = list(ds)[: args.limit or None]
    transform = make_transform(args.transform, 0)
    args.out.mkdir(parents=True, exist_ok=True)
    per_voter: dict[str, list[float | None]] = {d.name: [] for d in cascade.detectors}
    pooled: list[float | None] = []
    labels: list[int] = []
    with open(args.out / "predictions.jsonl", "w") as f, progress_bar() as bar:
        task = bar.add_task(f"voters on {args.split}", total=len(samples))
        for s in samples:
            frame = Frame(transform(s.load(), s.key), source=s.source, frame_id=s.key)
            votes = []
            for _, dets in cascade.levels:
                seen = dataclasses.replace(frame, meta={"prior_votes": tuple(votes)}) if votes else frame
                for d in dets:
                    t0 = time.monotonic()
                    (v,) = d.predict([seen])
                    votes.append(dataclasses.replace(v, latency_ms=(time.monotonic() - t0) * 1000))
            for v in votes:
                per_voter[v.voter].append(v.prob)
            p = cascade.pool(votes, frame.long_side)
            pooled.append(p)
            labels.append(s.label)
            f.write(
                json.dumps(
                    {
                        "key": s.key,
                        "label": s.label,
                        "source": s.source,
                        "group": s.group,
                        "prob": p,
                        "votes": [v.to_dict() for v in votes],
                    }
                )
                + "\n"
            )
            bar.advance(task)
    result = {
        "config": str(args.config),
        "split": args.split,
        "transform": args.transform,
        "voters": {k: score(labels, v) for k, v in per_voter.items()},
        "pooled_all_levels": score(labels, pooled),
    }
    (args.out / "voters.json").write_text(json.dumps(result, indent=2) + "\n")
    for k, r in {**result["voters"], "POOLED": result["pooled_all_levels"]}.items():
        print(
            f"{k:20s} MCC {r.get('mcc_at_0.5', float('nan')):.3f}  AUROC {r.get('auroc', float('nan')):.3f}  "
            f"coverage {r['coverage']:.2f}"
        )
    cascade.close()
    return result


if __name__ == "__main__":
    main()
