"""Leave-one-source-out of the L0 network itself: how it does on a camera it has never seen.

`train` (GPU): for each held-out source, fine-tune the network with the recipe of `roadwork train
backbone` on the train rows of every other source, then score the held-out source's train rows in
every regime and view (224, 448, tiles). One JSON line per image, appended as each source finishes.

`score` (CPU): pool each held-out image's LOSO votes with a fitted consensus (every voter in it
needs its recipe's LOSO votes: VOTES) and compare, on the same images, with its in-fold OOF votes
(group 5-fold: other images of the same source were in training).

    PYTHONPATH=. python benchmarks/loso_networks.py train --data DIR --out runs/loso_networks.jsonl --device cuda
    PYTHONPATH=. python benchmarks/loso_networks.py score --consensus models/consensus-cpu.json \\
        --out benchmarks/results/loso_networks_cpu.json

The lent GPU trains and scores on a copy of the photos downscaled to fit its carry (long side
544), so the held-out `full` views it scores are that size, not the 1-2 MP frames validators send.
With `train --save-nets PREFIX` each network comes back too (PREFIX.<held-out>.pt), and
`python -m training.oof_rescore --data ../shared/data --oof VOTES --nets PREFIX --views tiles,224,448`
scores its source's rows again here, at full resolution, on the CPU.

`train` imports nothing that needs pydantic (the lent GPU's image lacks it).
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Collection
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

HELD_OUT = {  # name: the sources held out together (the dashcam-like sources of ../shared/data)
    "vtti": ("vtti_wz", "vtti_nds"),
    "camvid": ("camvid",),
    "gtsdb": ("gtsdb",),
    "idd_lite": ("idd_lite",),
    "dawn_fog": ("dawn_fog",),
    "pp_nightwork": ("pp_nightwork",),
}
HELD_OUT_SOURCES: tuple[str, ...] = tuple(s for sources in HELD_OUT.values() for s in sources)
"""Every source some LOSO network holds out (the vehicle sources), as `np.isin` takes them."""


def train(args: argparse.Namespace) -> None:
    from training.datasets import load_folder
    from training.finetune import (
        extra_grids_option,
        held_out_rows,
        merge_view_rows,
        recipe_config,
        save_checkpoint,
        train_networks,
    )

    try:
        extra = extra_grids_option(args.crop_grids, "--crop-grids", "--crops", args.crops)
        cfg = recipe_config(args, extra_crop_grids=extra)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    if (args.snapshot_epoch is None) != (args.snapshot_out is None):
        raise SystemExit("--snapshot-epoch and --snapshot-out go together")
    snapshots = () if args.snapshot_epoch is None else (args.snapshot_epoch,)
    if args.last_step_out is not None and not cfg.average_from:
        raise SystemExit("--last-step-out scores the last step's network beside the weight average: set --average-from")
    votes_out = [args.out, args.snapshot_out, args.last_step_out, args.view_statistics_out]
    if args.nets_only and (not args.save_nets or any(p is not None for p in votes_out)):
        raise SystemExit(
            "--nets-only trains and keeps the networks without scoring: give --save-nets, and none of --out, "
            "--snapshot-out, --last-step-out, --view-statistics-out"
        )
    if not args.nets_only and args.out is None:
        raise SystemExit(
            "--out is needed: the held-out rows' votes are written there (or --nets-only with --save-nets)"
        )
    ds = load_folder(args.data).select(split="train")
    samples = list(ds.samples)
    images = [s.load() for s in samples]
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
    data_hash = ds.fingerprint() if args.save_nets else ""  # every file read once, not once a network
    for name in args.held_out.split(","):
        t0 = time.time()
        sources = HELD_OUT[name]
        keep = [i for i, s in enumerate(samples) if s.source not in sources]
        held = [i for i, s in enumerate(samples) if s.source in sources]
        nets = train_networks(
            [samples[i] for i in keep],
            [images[i] for i in keep],
            cfg,
            args.device,
            None,
            ds.root,
            tag=f"without {name}",
            snapshot_epochs=snapshots,
            view_statistics=args.view_statistics_out is not None or bool(args.save_nets),
        )
        # the trained network's votes, and with --snapshot-epoch those of the same run's earlier
        # network, with --last-step-out those of its last step's weights (--average-from)
        outputs = {args.out: nets["final"]}
        if snapshots:
            outputs[args.snapshot_out] = nets[f"epoch{args.snapshot_epoch}"]
        if args.last_step_out is not None:
            outputs[args.last_step_out] = nets["last_step"]

        rows_of = functools.partial(
            held_out_rows,
            samples=samples,
            images=images,
            held=held,
            cfg=cfg,
            device=args.device,
            with_crops=args.crops,
            held_out=name,
            config=asdict(cfg),
        )
        written = {} if args.nets_only else {path: rows_of(net) for path, net in outputs.items()}
        if args.view_statistics_out is not None:  # each view's vote from its own statistics' network
            by_view = {view: rows_of(net) for view, net in nets["views"].items()}
            written[args.view_statistics_out] = merge_view_rows(by_view)
        for path, rows in written.items():
            with path.open("a") as fh:
                fh.write("".join(json.dumps(r) + "\n" for r in rows))
        if args.save_nets:
            info = {"held_out": name, "sources": list(sources), "config": asdict(cfg), "data_hash": data_hash}
            saved = save_checkpoint(nets["final"], f"{args.save_nets}.{name}.pt", info, nets.get("views"))
            print(f"[loso] {name}: network written to {saved}", flush=True)
        done = "trained" if args.nets_only else f"{len(held)} rows scored"
        print(f"[loso] {name}: {done}, {time.time() - t0:.0f} s", flush=True)


PASTE_ERASE_VIEWS = (("l0_paste_erase", "224"), ("l0_paste_erase_detail", "448"), ("l0_paste_erase_tiles", "tiles"))
"""The paste-and-erase network's voters and the view each answers from."""
VOTES = {  # voter: (its recipe's LOSO votes, its in-fold OOF votes, view)
    "l0_head": ("benchmarks/results/loso_votes_l0_backbone.jsonl", "models/l0_backbone.oof.jsonl", "224"),
    "l0_detail": ("benchmarks/results/loso_votes_l0_backbone.jsonl", "models/l0_backbone.oof.jsonl", "448"),
    # the shipped paste-and-erase recipe (weights averaged from epoch 8): its first LOSO draw, seed 4
    # (seeds 6 and 7: loso_votes_l0_backbone_paste_erase_average_seed{6,7}.jsonl.gz)
    **{
        voter: (
            "benchmarks/results/loso_votes_l0_backbone_paste_erase_average_seed4.jsonl.gz",
            "models/l0_backbone_paste_erase.oof.jsonl",
            view,
        )
        for voter, view in PASTE_ERASE_VIEWS
    },
    # the paste-and-erase network before --average-from (its last step's weights; LOSO seed 0)
    **{
        f"{voter}_v2": (
            "benchmarks/results/loso_votes_l0_backbone_paste_erase.jsonl",
            "benchmarks/results/oof_votes_l0_backbone_paste_erase_v2.jsonl.gz",
            view,
        )
        for voter, view in PASTE_ERASE_VIEWS
    },
    "l0_tiles": ("benchmarks/results/loso_votes_l0_backbone.jsonl", "models/l0_backbone.oof.jsonl", "tiles"),
    # the plain recipe also trained through the tile voter (--tiles-batch 8, 3 folds, tiles OOF
    # rescored at full size; benchmarks/results/train_*tiles_mil_h200.log); not shipped
    # the paste-and-erase recipe at paste/erase 0.5 (was 0.3), with --tiles-batch 8 (3 folds, tiles
    # OOF rescored at full size; benchmarks/results/train_*pe50_h200.log)
    **{
        f"l0_pe50{suffix}": (
            "benchmarks/results/loso_votes_l0_backbone_pe50.jsonl",
            "benchmarks/results/oof_votes_l0_backbone_pe50.jsonl",
            view,
        )
        for suffix, view in (("", "224"), ("_detail", "448"), ("_tiles", "tiles"))
    },
    # the shipped paste-and-erase recipe again with --seed 1 (3 folds; tiles OOF on the 544-px copy
    # as seed 0's; benchmarks/results/train_backbone_paste_erase_seed1_h200.log)
    **{
        f"l0_paste_erase_seed1{suffix}": (
            "benchmarks/results/loso_votes_l0_backbone_paste_erase_seed1.jsonl.gz",
            "benchmarks/results/oof_votes_l0_backbone_paste_erase_seed1.jsonl",
            view,
        )
        for suffix, view in (("", "224"), ("_detail", "448"), ("_tiles", "tiles"))
    },
    "l0_head_mil": (
        "benchmarks/results/loso_votes_l0_backbone_tiles_mil.jsonl",
        "benchmarks/results/oof_votes_l0_backbone_tiles_mil.jsonl",
        "224",
    ),
    "l0_tiles_mil": (
        "benchmarks/results/loso_votes_l0_backbone_tiles_mil.jsonl",
        "benchmarks/results/oof_votes_l0_backbone_tiles_mil.jsonl",
        "tiles",
    ),
    # the paste-and-erase network before it was also trained through the tile voter (--tiles-batch)
    **{
        f"{voter}_v1": (
            "benchmarks/results/loso_votes_l0_backbone_paste_erase_v1.jsonl",
            "benchmarks/results/oof_votes_l0_backbone_paste_erase_v1.jsonl",
            view,
        )
        for voter, view in PASTE_ERASE_VIEWS
    },
    # the detector's votes all come from a detector trained without the row's source (two source
    # halves, training/finetune_detector.py): they serve as its LOSO and its OOF votes alike
    "l1_rcnn": (
        "benchmarks/results/heldout_votes_l1_rcnn.jsonl",
        "benchmarks/results/heldout_votes_l1_rcnn.jsonl",
        "det",
    ),
}


def read_votes(path: str | Path) -> dict[str, dict]:
    """A votes file (.jsonl, or .jsonl.gz) by image key."""
    from training.finetune import votes_text

    return {r["key"]: r for r in (json.loads(x) for x in votes_text(path).splitlines() if x.strip())}


def loso_overrides(items: list[str], known: Collection[str]) -> dict[str, str]:
    """`--loso-votes VOTER=PATH` items as {voter: path}; a voter outside `known` is refused."""
    out = {}
    for item in items:
        voter, _, path = item.partition("=")
        if voter not in known or not path:
            raise ValueError(f"--loso-votes {item!r}: write VOTER=PATH for one of {sorted(known)}")
        out[voter] = path
    return out


def photo_signal_args(doc: str | None) -> argparse.Namespace:
    """The command line of a signal measured on the train photos without training (`--data`, `--out`,
    `--workers`), its help the script's docstring."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the labelled photos (../shared/data)")
    ap.add_argument("--out", type=Path, required=True, help="the result JSON")
    ap.add_argument("--workers", type=int, default=2, help="processes (and torch threads) to use")
    return ap.parse_args()


def map_train_photos(data: Path, fn: Any, workers: int) -> list:
    """`fn((path, key, label, source))` for every photo of the train split, in `workers` processes,
    in order, with a progress line every 200 photos (for a signal measured without training)."""
    from multiprocessing import Pool

    from training.datasets import load_folder

    samples = load_folder(data).select(split="train").samples
    items = [(str(s.path), s.key, s.label, s.source) for s in samples]
    t0, out = time.time(), []
    with Pool(workers) as pool:
        for i, row in enumerate(pool.imap(fn, items, chunksize=8)):
            out.append(row)
            if i % 200 == 0:
                print(f"{i}/{len(items)} after {time.time() - t0:.0f} s", flush=True)
    return out


def held_out_scores(y: np.ndarray, prob: np.ndarray, src: np.ndarray) -> dict:
    """AUROC and MCC at 0.5 of `prob` over every HELD_OUT source's rows together, then per held-out
    name that has rows: AUROC where it has both labels, accuracy at 0.5 where it has one (rows outside
    HELD_OUT are not read)."""
    from sklearn.metrics import matthews_corrcoef, roc_auc_score

    held = np.isin(src, HELD_OUT_SOURCES)
    p, yy = prob[held], y[held]
    out: dict = {
        "auroc": round(float(roc_auc_score(yy, p)), 3),
        "mcc_at_0.5": round(float(matthews_corrcoef(yy, p > 0.5)), 3),
    }
    for name, sources in HELD_OUT.items():
        sel = np.isin(src, sources)
        if not sel.any():
            continue
        ys, ps = y[sel], prob[sel]
        out[name] = (
            {"n": int(sel.sum()), "auroc": round(float(roc_auc_score(ys, ps)), 3)}
            if 0 < ys.sum() < len(ys)
            else {"n": int(sel.sum()), "accuracy": round(float(np.mean((ps > 0.5) == ys)), 3)}
        )
    return out


def score(args: argparse.Namespace) -> None:
    from consensus.artefact import ConsensusArtefact
    from consensus.fitting import LabelledVotes, artefact_probs
    from training.metrics import summarise

    artefact = ConsensusArtefact.load(args.consensus)
    voters = sorted(artefact.voters)
    missing = [v for v in voters if v not in VOTES]
    if missing:
        raise SystemExit(f"no LOSO votes for voters {missing}: train their recipe with `train` and add them to VOTES")
    try:
        loso_paths = {v: VOTES[v][0] for v in voters} | loso_overrides(args.loso_votes, voters)
    except ValueError as exc:
        raise SystemExit(f"{exc} (the pool's voters)") from None
    loso = {v: read_votes(path) for v, path in loso_paths.items()}
    oof = {v: read_votes(VOTES[v][1]) for v in voters}
    keys = sorted(set.intersection(*(set(d) for d in loso.values())))
    first = loso[next(iter(loso))]
    scored = args.held_out.split(",") if args.held_out else []
    if scored:
        if unknown := sorted(set(scored) - set(HELD_OUT)):
            raise SystemExit(f"--held-out {args.held_out!r}: {unknown} are not among {', '.join(HELD_OUT)}")
        keys = [k for k in keys if first[k]["held_out"] in scored]

    def prob(votes: dict[str, dict], key: str, regime: str, view: str) -> float | None:
        """A voter's vote, or None where it abstained (a tile voter on a frame under 448 px)."""
        return votes[key]["probs"].get(regime, {}).get(view)

    out: dict[str, Any] = {
        "consensus": str(args.consensus),
        "votes": {v: (loso_paths[v], *VOTES[v][1:]) for v in voters},
        "note": __doc__.split("\n\n")[1].replace("\n", " "),
        "held_out": {},
        "all_held_out": {},
    }
    if scored:
        out["scored_held_out"] = scored

    def summary(y: list[int], p: np.ndarray) -> dict[str, Any]:
        return {k: v for k, v in summarise(np.array(y), np.asarray(p)).items() if k != "confusion"}

    for regime in ("v0.2", "letterbox", "full"):
        y = [first[k]["label"] for k in keys]
        # each frame is pooled by the artefact's pool for its size, over that pool's voters
        rows = {
            side: [
                LabelledVotes(
                    first[k]["label"],
                    {v: ("L0", prob(votes[v], k, regime, VOTES[v][2])) for v in voters},
                    first[k]["long_side"][regime],
                )
                for k in keys
            ]
            for side, votes in (("loso", loso), ("in_fold_oof", oof))
        }
        probs = {side: artefact_probs(artefact, r) for side, r in rows.items()}
        for name in HELD_OUT:
            idx = [i for i, k in enumerate(keys) if first[k]["held_out"] == name]
            if not idx:  # a source this run did not score (`--held-out`, or a run cut short)
                continue
            entry = out["held_out"].setdefault(name, {"n": len(idx), "positives": int(sum(y[i] for i in idx))})
            entry[regime] = {side: summary([y[i] for i in idx], p[idx]) for side, p in probs.items()}
        out["all_held_out"][regime] = {side: summary(y, p) for side, p in probs.items()}
        both = out["all_held_out"][regime]
        print(
            f"{regime:10s} all held-out rows: MCC LOSO {both['loso']['mcc']:.3f} vs in-fold "
            f"{both['in_fold_oof']['mcc']:.3f} (AUROC {both['loso']['auroc']:.3f} vs {both['in_fold_oof']['auroc']:.3f})"
        )
        for name in out["held_out"]:
            e = out["held_out"][name][regime]
            print(
                f"  {name:14s} accuracy LOSO {e['loso']['accuracy']:.3f} vs in-fold {e['in_fold_oof']['accuracy']:.3f}"
            )
    args.out.write_text(json.dumps(out, indent=2) + "\n")


def main() -> None:
    from training.finetune import add_recipe_options

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train one network per held-out source and score its rows (GPU)")
    t.add_argument("--data", required=True)
    t.add_argument("--out", type=Path, default=None, help="the held-out rows' votes (JSON lines, appended)")
    t.add_argument("--device", default="cuda")
    t.add_argument("--held-out", default=",".join(HELD_OUT), help=f"comma list of {', '.join(HELD_OUT)}")
    add_recipe_options(t)
    t.add_argument(
        "--crops", action="store_true", help="also write each tile crop's probability (row key `crops`, by regime)"
    )
    t.add_argument(
        "--crop-grids",
        default="",
        metavar="RxC,...",
        help="with --crops, also the crops of these grids (e.g. 4x6), after the tile voter's own; the votes stay its own",
    )
    t.add_argument(
        "--save-nets",
        default="",
        metavar="PREFIX",
        help="also write each held-out source's network to PREFIX.<held-out>.pt (fp16, 4.6 MB), with each "
        "training view's batch-norm statistics (`view_statistics`): `python -m training.oof_rescore --nets PREFIX` "
        "scores its rows again on the CPU, at full size",
    )
    t.add_argument(
        "--nets-only",
        action="store_true",
        help="with --save-nets, train and keep the networks without scoring any row (no --out): the scoring "
        "passes cost the GPU call as much as the training, and oof_rescore makes them at full size",
    )
    t.add_argument("--snapshot-epoch", type=int, default=None, help="also score the network after this epoch ...")
    t.add_argument("--snapshot-out", type=Path, default=None, help="... and write its votes here (same run)")
    t.add_argument(
        "--last-step-out",
        type=Path,
        default=None,
        help="with --average-from, also write the votes of the same run's last-step weights here (the recipe "
        "without the average, paired with it on one trajectory)",
    )
    t.add_argument(
        "--view-statistics-out",
        type=Path,
        default=None,
        help="also write the votes of the same network with each view's batch-norm statistics computed on that "
        "training view alone (finetune.per_view_statistics): 224-px votes from the 224-px statistics, and so on",
    )
    s = sub.add_parser("score", help="pool with a fitted consensus and compare with the in-fold OOF votes (CPU)")
    s.add_argument("--consensus", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument(
        "--loso-votes",
        action="append",
        default=[],
        metavar="VOTER=PATH",
        help="score this voter's LOSO votes from PATH instead of its recipe's file (another seed, say); repeatable",
    )
    s.add_argument(
        "--held-out",
        default="",
        metavar="NAME,...",
        help=f"score only the rows of these held-out sources (of {', '.join(HELD_OUT)}), to compare draws on the "
        "sources a shorter run scored (default: every row all the votes have)",
    )
    args = ap.parse_args()
    train(args) if args.cmd == "train" else score(args)


if __name__ == "__main__":
    main()
