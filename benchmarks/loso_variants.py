"""How much of a new-camera score is the recipe, and how much the draw: one recipe's
leave-one-source-out networks (`benchmarks/loso_networks.py train`) trained again with another
seed or another schedule, each variant's votes scored per regime and view on the same held-out
rows, with per-source accuracy, and AUROC inside each source that has both labels (where a
camera's look cannot tell the classes apart). In-fold OOF votes (`models/*.oof.jsonl`) read the
same way, to compare recipes by source on cameras they trained on. `--mean NAME=A,B` adds the
mean of variants' probabilities (an ensemble of those networks) and `--write-mean` writes its
votes, for `loso_networks.py score --loso-votes`. `spread` gives, per view, the lowest and highest
AUROC, and per held-out source the lowest and highest accuracy, over the variants read (means
left out): how far runs of one recipe, or of several, land apart on each camera.

    python benchmarks/loso_variants.py --out benchmarks/results/loso_variants_h200.json \\
        shipped=benchmarks/results/loso_votes_l0_backbone_paste_erase.jsonl \\
        seed1=benchmarks/results/loso_votes_l0_backbone_paste_erase_seed1.jsonl.gz \\
        --mean seeds_0_1=shipped,seed1 --write-mean runs/loso_variants
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from loso_networks import read_votes  # benchmarks/, beside this script

REGIMES = ("v0.2", "letterbox", "full")


def mean_votes(variants: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each row's probabilities averaged over the variants (the first variant's other fields)."""
    keys = set.intersection(*(set(v) for v in variants))
    out = {}
    for key in sorted(keys):
        row = dict(variants[0][key])
        row["probs"] = {
            regime: {view: float(np.mean([v[key]["probs"][regime][view] for v in variants])) for view in views}
            for regime, views in row["probs"].items()
        }
        out[key] = row
    return out


def by_view(rows: list[dict[str, Any]]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """regime@view -> (labels, probabilities, sources) of the rows that have that view."""
    scored: dict[str, list[tuple[int, float, str]]] = defaultdict(list)
    for r in rows:
        for regime, views in r["probs"].items():
            for view, p in views.items():
                scored[f"{regime}@{view}"].append((int(r["label"]), p, r["source"]))
    return {rv: tuple(np.array(column) for column in zip(*cols, strict=True)) for rv, cols in sorted(scored.items())}


def per_source_accuracy(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Accuracy at 0.5 (0.5 itself is "no roadwork") per source, for each regime@view."""
    return {
        rv: {s: round(float(np.mean((p[src == s] > 0.5) == (y[src == s] == 1))), 3) for s in sorted(set(src))}
        for rv, (y, p, src) in by_view(rows).items()
    }


def per_source_auroc(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """AUROC per source (None where it has one label), for each regime@view: how a view ranks inside
    one camera, where the camera's look cannot tell the classes apart."""
    from tile_contrast import auroc_by_source  # benchmarks/, beside this script

    return {rv: auroc_by_source(y, p, src) for rv, (y, p, src) in by_view(rows).items()}


def spread(scored: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Over these variants' scores (`main`'s per-variant entries): per regime@view the [lowest,
    highest] AUROC, and per source the [lowest, highest] accuracy."""

    def low_high(values: list[float]) -> list[float]:
        return [min(values), max(values)]

    views = sorted(set.intersection(*(set(v["views"]) for v in scored.values())))
    return {
        "variants": sorted(scored),
        "auroc": {rv: low_high([v["views"][rv]["auroc"] for v in scored.values()]) for rv in views},
        "accuracy_by_source": {
            rv: {
                source: low_high([v["accuracy_by_source"][rv][source] for v in scored.values()])
                for source in sorted(set.intersection(*(set(v["accuracy_by_source"][rv]) for v in scored.values())))
            }
            for rv in views
        },
    }


def main(argv: list[str] | None = None) -> None:
    from training.finetune import oof_metrics

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+", metavar="NAME=PATH", help="a variant's LOSO votes")
    ap.add_argument("--mean", action="append", default=[], metavar="NAME=A,B", help="mean of named variants")
    ap.add_argument("--write-mean", type=Path, default=None, help="folder to write each --mean's votes to")
    ap.add_argument("--describe", action="append", default=[], metavar="NAME=TEXT", help="how a variant was made")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_intermixed_args(argv)  # a --describe may follow the variant it describes

    votes, paths = {}, {}
    for item in args.variants:
        name, _, path = item.partition("=")
        if not path:
            ap.error(f"{item!r}: write NAME=PATH")
        votes[name], paths[name] = read_votes(path), path
    for item in args.mean:
        name, _, members = item.partition("=")
        if unknown := [m for m in members.split(",") if m not in votes]:
            ap.error(f"--mean {item!r}: no variant named {unknown}")
        votes[name] = mean_votes([votes[m] for m in members.split(",")])
        paths[name] = f"mean of {members}"
        if args.write_mean is not None:
            args.write_mean.mkdir(parents=True, exist_ok=True)
            path = args.write_mean / f"{name}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in votes[name].values()))
            paths[name] += f" (written to {path})"
    made_by = dict(item.partition("=")[::2] for item in args.describe)
    keys = sorted(set.intersection(*(set(v) for v in votes.values())))
    if short := {name: len(by_key) for name, by_key in votes.items() if len(by_key) > len(keys)}:
        print(f"scoring the {len(keys)} rows every variant has; more in {short} (a run cut short?)")
    out: dict[str, Any] = {"note": __doc__.split("\n\n")[0].replace("\n", " "), "n_rows": len(keys), "variants": {}}
    for name, by_key in votes.items():
        rows = [by_key[k] for k in keys]
        out["variants"][name] = {
            "votes": paths[name],
            "made_by": made_by.get(name),
            "config": rows[0].get("config"),
            "views": oof_metrics(rows),
            "accuracy_by_source": per_source_accuracy(rows),
            "auroc_by_source": per_source_auroc(rows),
        }
        views = out["variants"][name]["views"]
        print(
            f"{name:20s} "
            + " ".join(f"{rv} {m['auroc']:.3f}/{m['mcc_at_0.5']:.3f}" for rv, m in views.items() if "@448" not in rv)
        )
    out["spread"] = spread({name: out["variants"][name] for name in votes if not paths[name].startswith("mean of")})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
