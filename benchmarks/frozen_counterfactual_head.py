"""Does paste-and-erase help a head on frozen ImageNet features on a camera it never saw? (CPU only)

The fine-tuned networks gained most on new cameras from counterfactual views: dashcam negatives with
cones pasted in (labelled roadwork) and boxed positives with their objects erased (labelled none).
A linear head on the frozen ImageNet MobileNetV2 (the old `train head` default) costs minutes on two
cores, and with frozen features every measure, leave-one-source-out included, needs no GPU. This
embeds each training photo in the three regimes (v0.2, letterbox, full at 224 px), and one
counterfactual copy of each dashcam negative (pasted) and each erasable boxed positive (erased),
then for each held-out vehicle source (benchmarks/loso_networks.HELD_OUT) fits the head on the other
sources' rows, with and without the counterfactual rows, and scores the held-out source's photos.

Pasted objects come from the photo sources only (not from any vehicle source), and for a fold's
head from photos outside that fold; a counterfactual row counts only where the photo it was made
from is in training. The heads' votes are then pooled with the shipped set by size, added to it or
in `l0_head`'s place, as benchmarks/oof_pooling.py pools its sets. Result: rejected (near chance on
a new camera; the plain head lifts the pool in fold and lowers it on a new camera, the one with the
copies adds nothing; docs/new-camera-levers.md).

    PYTHONPATH=.:benchmarks python benchmarks/frozen_counterfactual_head.py --data ../shared/data \\
        --out benchmarks/results/frozen_counterfactual_head_cpu.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from loso_networks import HELD_OUT, HELD_OUT_SOURCES, VOTES  # benchmarks/, beside this script
from PIL import Image
from sklearn.metrics import matthews_corrcoef, roc_auc_score

from training.balance import sample_weights
from training.finetune import votes_text
from training.train_head import fit_logistic

REGIMES = ("v0.2", "letterbox", "full")
VOTES_PREFIX = Path("benchmarks/results/votes_l0_frozen")
MARGIN = 0.01
"""The pools' cut-off margin, `roadwork fit`'s default (as the shipped pool was fitted)."""
SHIPPED_LOSO, SHIPPED_OOF, _ = VOTES["l0_paste_erase"]
"""The shipped network's vote files: the folds, long sides and groups the frozen heads' votes copy."""


def regime_view(image: np.ndarray, regime: str, key: str, seed: int) -> np.ndarray:
    from training.transforms import make_transform

    if regime == "full":
        return np.asarray(Image.fromarray(image).resize((224, 224), Image.BILINEAR))
    return make_transform(regime, seed)(image, key)


def embed_copies(items: list[tuple[object, np.ndarray, int, bool]], backbone, seed: int) -> dict[str, np.ndarray]:
    """(sample, picture, label, counterfactual) -> one row per regime: its features and where it came from."""
    rows: dict[str, list] = {k: [] for k in ("feat", "label", "source", "key", "regime", "counterfactual")}
    for s, picture, label, made in items:
        tag = f"{s.key}#cf" if made else s.key
        views = [regime_view(picture, r, tag, seed) for r in REGIMES]
        for regime, feat in zip(REGIMES, backbone.embed(views), strict=True):
            for k, v in zip(rows, (feat, label, s.source, s.key, regime, made), strict=True):
                rows[k].append(v)
    return {k: np.asarray(v) for k, v in rows.items()}


def join(*parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def embed(data: Path, seed: int, folds: dict[str, int], pool: str) -> tuple[dict, dict, dict[int, dict], list]:
    """The training photos in each regime; the counterfactual copies for the leave-one-source-out
    heads (objects pasted from every photo source); and for each group fold's head the copies of
    the photos outside the fold, pasted with objects from outside it only."""
    from detectors.backbones import build_backbone
    from training.copy_paste import DASHCAM_SOURCES, EraseBank, PasteBank
    from training.datasets import load_folder

    ds = load_folder(data).select(split="train")
    samples = list(ds.samples)
    root = Path(ds.root)
    backbone = build_backbone({"kind": "mobilenetv2-deepsort", "pool": pool})
    t0 = time.time()
    images = {s.key: s.load() for s in samples}
    print(f"[embed] {len(images)} photos read, {time.time() - t0:.0f} s", flush=True)
    originals = embed_copies([(s, images[s.key], s.label, False) for s in samples], backbone, seed)
    print(f"[embed] originals, {time.time() - t0:.0f} s", flush=True)
    erase = EraseBank.from_samples(root, samples)
    rng = np.random.default_rng(seed)
    erased = embed_copies(
        [(s, erase.erase(images[s.key], s.key, rng), 0, True) for s in samples if s.label == 1 and s.key in erase],
        backbone,
        seed,
    )
    negatives = [s for s in samples if s.label == 0 and s.source in DASHCAM_SOURCES]

    def pasted(bank_rows: list, into: list) -> dict[str, np.ndarray]:
        bank = PasteBank.from_samples(root, [s for s in bank_rows if s.source not in HELD_OUT_SOURCES])
        return embed_copies([(s, bank.paste(images[s.key], rng), 1, True) for s in into], backbone, seed)

    loso_cf = join(erased, pasted(samples, negatives))
    print(f"[embed] counterfactuals for the held-out sources, {time.time() - t0:.0f} s", flush=True)
    fold_cf = {}
    for f in sorted(set(folds.values())):
        outside = [s for s in samples if folds[s.key] != f]
        fold_cf[f] = join(erased, pasted(outside, [s for s in negatives if folds[s.key] != f]))
        print(f"[embed] counterfactuals for fold {f}, {time.time() - t0:.0f} s", flush=True)
    return originals, loso_cf, fold_cf, samples


def fit_head(
    originals: dict, counterfactuals: dict | None, train_base: np.ndarray, cf_base: np.ndarray | None, C: float
) -> object:
    """The head fitted on the originals where `train_base` holds, plus the counterfactual rows where
    `cf_base` holds (their photo is in training)."""
    x, y, src = originals["feat"][train_base], originals["label"][train_base], originals["source"][train_base]
    if counterfactuals is not None:
        x = np.concatenate([x, counterfactuals["feat"][cf_base]])
        y = np.concatenate([y, counterfactuals["label"][cf_base]])
        src = np.concatenate([src, counterfactuals["source"][cf_base]])
    # as `train head` fits: classes and (source, label) cells balanced
    return fit_logistic(x, y, sample_weights(y, list(src), True), C)


def predict_into(out: dict[str, dict], model: object, originals: dict, rows: np.ndarray, tag: dict) -> None:
    """The head's probability for each of those rows, under its photo's key (with `tag`) and regime."""
    for i, p in zip(rows, model.predict_proba(originals["feat"][rows])[:, 1], strict=True):
        out.setdefault(originals["key"][i], dict(tag))[originals["regime"][i]] = float(p)


def votes(originals, loso_cf, fold_cf, folds, with_cf: bool, C: float) -> tuple[dict[str, dict], dict[str, dict]]:
    """key -> {regime: p}: each photo's probability from the head that never saw its source (LOSO),
    and from the head of the other group folds (OOF)."""
    loso: dict[str, dict] = {}
    for name, sources in HELD_OUT.items():
        held = np.isin(originals["source"], sources)
        cf_in = None if not with_cf else ~np.isin(loso_cf["source"], sources)
        model = fit_head(originals, loso_cf if with_cf else None, ~held, cf_in, C)
        predict_into(loso, model, originals, np.flatnonzero(held), {"held_out": name})
    oof: dict[str, dict] = {}
    fold_of = np.array([folds[k] for k in originals["key"]])
    for f, cf in fold_cf.items():
        inside = fold_of == f
        cf_in = None if not with_cf else np.array([folds[k] != f for k in cf["key"]])
        model = fit_head(originals, cf if with_cf else None, ~inside, cf_in, C)
        predict_into(oof, model, originals, np.flatnonzero(inside), {"fold": f})
    return loso, oof


def write_votes(path: Path, probs: dict[str, dict], like: dict[str, dict]) -> None:
    """Votes in the form of the networks' OOF and LOSO files (view "224"), each row's label, source,
    group and long sides copied from `like` (the shipped network's file) by key."""
    lines = []
    for key, by in probs.items():
        ref = like[key]
        extra = {k: by[k] for k in ("fold", "held_out") if k in by}
        lines.append(
            json.dumps(
                {
                    "probs": {r: {"224": by[r]} for r in REGIMES},
                    "long_side": ref["long_side"],
                    "key": key,
                    "label": ref["label"],
                    "source": ref["source"],
                    "group": ref["group"],
                    **extra,
                }
            )
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")


def scores(probs: dict[str, dict], labels: dict[str, int], sources: dict[str, str]) -> dict[str, dict]:
    out = {}
    for regime in REGIMES:
        keys = sorted(probs)
        y = np.array([labels[k] for k in keys])
        p = np.array([probs[k][regime] for k in keys])
        src = np.array([sources[k] for k in keys])
        out[regime] = {
            "n": len(keys),
            "auroc": round(float(roc_auc_score(y, p)), 4),
            "mcc": round(float(matthews_corrcoef(y, p > 0.5)), 4),
            "by_source_auroc": {
                name: round(float(roc_auc_score(y[m], p[m])), 4)
                for name, srcs in HELD_OUT.items()
                if len(set(y[m := np.isin(src, srcs)])) == 2
            },
        }
    return out


def pool_check(vote_files: dict[str, tuple[Path, Path]], work: Path, margin: float) -> list[dict]:
    """The shipped set by size, with the frozen heads added or in `l0_head`'s place: in fold and on the
    held-out sources, as benchmarks/oof_pooling.py scores its sets."""
    import oof_pooling as op

    candidates = dict(op.CANDIDATES) | {v: (str(oof), "224") for v, (_, oof) in vote_files.items()}
    loso_map = dict(op.LOSO) | {v: (str(loso), "224") for v, (loso, _) in vote_files.items()}
    shipped = ["l0_head", *op.PE, "l0_tiles", "l0_paste_erase_tiles"]
    sets = [shipped]
    for v in vote_files:
        sets += [[*shipped, v], [v if x == "l0_head" else x for x in shipped]]
    need = sorted({v for s in sets for v in s})
    runs = op.vote_runs({v: candidates[v] for v in need}, work)
    loso_runs = op.vote_runs({v: loso_map[v] for v in need}, work / "loso")
    return [op.score_set(voters, True, runs, loso_runs, cut_off_margin=margin) for voters in sets]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--votes-prefix", type=Path, default=VOTES_PREFIX)
    ap.add_argument("--work", type=Path, default=Path("runs/frozen_counterfactual_head"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--pool", choices=("mean", "meanmax"), default="mean", help="the frozen map pooled by mean, or mean and max"
    )
    ap.add_argument(
        "--C", type=float, default=0.01, help="the heads' inverse regularisation (chosen before the pool check)"
    )
    args = ap.parse_args()
    t0 = time.time()
    shipped_oof = {r["key"]: r for r in map(json.loads, votes_text(SHIPPED_OOF).splitlines())}
    shipped_loso = {r["key"]: r for r in map(json.loads, votes_text(SHIPPED_LOSO).splitlines())}
    folds = {k: int(r["fold"]) for k, r in shipped_oof.items()}
    originals, loso_cf, fold_cf, samples = embed(args.data, args.seed, folds, args.pool)
    embed_s = time.time() - t0
    labels = {s.key: s.label for s in samples}
    sources = {s.key: s.source for s in samples}
    heads, vote_files = {}, {}
    for voter, with_cf in (("l0_frozen", False), ("l0_frozen_cf", True)):
        loso, oof = votes(originals, loso_cf, fold_cf, folds, with_cf, args.C)
        files = (
            Path(f"{args.votes_prefix}{'_cf' if with_cf else ''}.loso.jsonl.gz"),
            Path(f"{args.votes_prefix}{'_cf' if with_cf else ''}.oof.jsonl.gz"),
        )
        write_votes(files[0], loso, shipped_loso)
        write_votes(files[1], oof, shipped_oof)
        vote_files[voter] = files
        heads[voter] = {"loso": scores(loso, labels, sources), "oof": scores(oof, labels, sources)}
        for part, by in heads[voter].items():
            print(
                f"{voter:14s} {part:5s} " + " | ".join(f"{r} {v['auroc']:.3f} / {v['mcc']:.3f}" for r, v in by.items())
            )
    result = {
        "machine": f"{platform.node()} ({platform.processor() or platform.machine()}), {os.cpu_count()} cores",
        "command": "PYTHONPATH=.:benchmarks python benchmarks/frozen_counterfactual_head.py "
        f"--data {args.data} --out {args.out} --seed {args.seed} --C {args.C} --pool {args.pool}"
        + (f" --votes-prefix {args.votes_prefix}" if args.votes_prefix != VOTES_PREFIX else ""),
        "photos": len(samples),
        "counterfactual_photos_loso": int(len(loso_cf["label"]) // len(REGIMES)),
        "embed_seconds": round(embed_s),
        "heads": heads,
        "votes": {v: [str(p) for p in files] for v, files in vote_files.items()},
        "pool_cut_off_margin": MARGIN,
        "pools": pool_check(vote_files, args.work, MARGIN),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
