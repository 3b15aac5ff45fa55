"""Summarise an `roadwork eval --regime ...` run folder: pooled and each voter alone, per regime,
overall, on the vehicle-camera sources and per source, as JSON for benchmarks/results.

    python benchmarks/dev_summary.py runs/dev --out benchmarks/results/dev_regimes_cpu.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from training.copy_paste import VEHICLE_SOURCES
from training.metrics import summarise


def score(rows: list[dict], prob_of) -> dict | None:
    """Metrics over the rows where the voter answered; None where it abstained on all of them (a
    tile voter on 224-px challenges)."""
    y = np.array([r["label"] for r in rows])
    p = np.array([prob_of(r) for r in rows], dtype=float)
    keep = ~np.isnan(p)
    if not keep.any():
        return None
    return {k: v for k, v in summarise(y[keep], p[keep]).items() if k != "confusion"}


def regime_runs(run: Path) -> dict[str, tuple[Path, dict]]:
    """Each regime's folder and its metrics.json, read: RUN/<regime>/ after `roadwork eval --regime
    A,B`, or RUN itself after one regime (named by its `transform`)."""
    if (run / "metrics.json").is_file():
        metrics = json.loads((run / "metrics.json").read_text())
        return {metrics["transform"]: (run, metrics)}
    found = {m.parent.name: (m.parent, json.loads(m.read_text())) for m in sorted(run.glob("*/metrics.json"))}
    if not found:
        raise SystemExit(f"{run}: no metrics.json in it or in its regime folders; is it a `roadwork eval` run?")
    return found


def summary(run: Path) -> dict:
    out = {}
    for regime, (folder, metrics) in regime_runs(run).items():
        rows = [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines() if x]
        voters = sorted({v["voter"] for r in rows for v in r["votes"]})

        def vote(name):
            return lambda row: next(
                (v["prob"] for v in row["votes"] if v["voter"] == name and v["prob"] is not None), np.nan
            )

        vehicle = [r for r in rows if r["source"] in VEHICLE_SOURCES]
        out[regime] = {
            "pooled": score(rows, lambda r: r["prob"]),
            "pooled_vehicle_sources": score(vehicle, lambda r: r["prob"]),
            "voters": {v: score(rows, vote(v)) for v in voters},
            # the pool on the frames each voter answered: against "voters", whether pooling beats
            # a voter on its own frames (a tile voter answers only the large ones)
            "pooled_where_voter_answered": {
                v: score([r for r in rows if not np.isnan(vote(v)(r))], lambda r: r["prob"]) for v in voters
            },
            "voters_vehicle_sources": {v: score(vehicle, vote(v)) for v in voters},
            "per_source": {
                src: {k: r[k] for k in ("n", "positives", "mcc", "accuracy", "auroc")}
                for src, r in metrics["per_source"].items()
            },
            "latency_ms": metrics["latency_ms"],
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    result = {
        "run": str(args.run),
        "note": args.note,
        "vehicle_sources": sorted(VEHICLE_SOURCES),
        "regimes": summary(args.run),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for regime, r in result["regimes"].items():
        line = f"{regime:9s} pooled MCC {r['pooled']['mcc']:.3f} (vehicle {r['pooled_vehicle_sources']['mcc']:.3f})"
        for v, s in r["voters"].items():
            vehicle = r["voters_vehicle_sources"][v]
            line += (
                f" | {v} abstained"
                if s is None
                else f" | {v} {s['mcc']:.3f} (vehicle {'-' if vehicle is None else format(vehicle['mcc'], '.3f')})"
            )
        print(line)


if __name__ == "__main__":
    main()
