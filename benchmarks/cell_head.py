"""Experiment: a per-cell head on the frozen ImageNet MobileNetV2's feature map of a full-size frame.

Issue 13 asks for "a voter that sees small, distant objects in full-resolution frames: e.g. the
backbone's feature map at a larger input with a per-cell head trained by multiple-instance
learning (max over cells)". The backbone here is frozen and never saw our data, so every vote this
script writes is truly out of fold, for a group fold and for a source left out, and it runs on 2 CPU
cores (no lent GPU this session).

    python benchmarks/cell_head.py features --data ../shared/data   # cache the maps (minutes)
    python benchmarks/cell_head.py votes                             # group folds + LOSO -> JSON

Each frame of 448 px or more (the frames the tile voters score) is resized to long side
`--long-side` (sides rounded to 32), and the map (1280 x h x w, stride 32) cached. A cell's logit is
a linear function of its standardised features; a frame's logit is the max over its cells
(multiple-instance learning). Where a positive has roadwork boxes (the sources' classes mapped to
the schema), the cells its boxes cover are positives too, and every cell of a negative is negative.
Trained with torch (Adam, L2) on the cached maps, weighted by class and (source, label) cell.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from loso_networks import HELD_OUT  # benchmarks/, beside this script: the same left-out sources

from training.balance import sample_weights
from training.copy_paste import schema_boxes
from training.datasets import load_folder
from training.finetune import group_folds
from training.metrics import summarise

MIN_LONG_SIDE = 448


def frame_tensor(image: np.ndarray, long_side: int) -> np.ndarray:
    from PIL import Image

    from detectors.mobilenet import IMAGENET_MEAN, IMAGENET_STD

    h, w = image.shape[:2]
    scale = long_side / max(h, w)
    nh, nw = max(32, round(h * scale / 32) * 32), max(32, round(w * scale / 32) * 32)
    x = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR), np.float32) / 255.0
    return ((x - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


def box_cells(boxes: list, gh: int, gw: int) -> np.ndarray:
    """(gh, gw) bool: cells that a box covers (its centre cell, and any cell it overlaps by half)."""
    mask = np.zeros((gh, gw), bool)
    for _kind, cx, cy, bw, bh in boxes:
        mask[min(gh - 1, int(cy * gh)), min(gw - 1, int(cx * gw))] = True
        x0, x1, y0, y1 = (cx - bw / 2) * gw, (cx + bw / 2) * gw, (cy - bh / 2) * gh, (cy + bh / 2) * gh
        for r in range(max(0, int(y0)), min(gh, int(np.ceil(y1)))):
            for c in range(max(0, int(x0)), min(gw, int(np.ceil(x1)))):
                overlap = (min(c + 1, x1) - max(c, x0)) * (min(r + 1, y1) - max(r, y0))
                if overlap >= 0.5 * min(1.0, (x1 - x0) * (y1 - y0)):
                    mask[r, c] = True
    return mask


def cmd_features(args: argparse.Namespace) -> None:
    import torch

    from detectors.mobilenet import for_inference, mobilenetv2_features

    torch.set_num_threads(args.threads)
    data = load_folder(args.data).select(split="train")
    boxed = {s.key: b for s, b in schema_boxes(data.root, data.samples)}
    net = for_inference(mobilenetv2_features(None))
    out = Path(args.cache) / f"ls{args.long_side}"
    out.mkdir(parents=True, exist_ok=True)
    t0, done = time.monotonic(), 0
    meta = []
    for s in data.samples:
        image = s.load()
        if max(image.shape[:2]) < MIN_LONG_SIDE:
            continue
        x = torch.from_numpy(frame_tensor(image, args.long_side))[None].contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            fmap = net.features(x)[0].float().numpy().astype(np.float16)
        name = s.key.replace("/", "__") + ".npy"
        np.save(out / name, fmap)
        gh, gw = fmap.shape[1:]
        cells = box_cells(boxed[s.key], gh, gw) if s.key in boxed else None
        meta.append(
            {
                "key": s.key,
                "label": s.label,
                "source": s.source,
                "group": s.group,
                "file": name,
                "long_side": int(max(image.shape[:2])),
                "box_cells": None if cells is None else cells.astype(int).tolist(),
            }
        )
        done += 1
        if done % 100 == 0:
            print(f"features: {done} frames, {time.monotonic() - t0:.0f} s", flush=True)
    (out / "meta.json").write_text(json.dumps(meta))
    print(f"features: {done} frames in {time.monotonic() - t0:.0f} s -> {out}", flush=True)


def load_cache(cache: Path) -> tuple[list[dict], list[np.ndarray]]:
    meta = json.loads((cache / "meta.json").read_text())
    return meta, [np.load(cache / m["file"]) for m in meta]


def fit_cells(maps: list[np.ndarray], meta: list[dict], idx: list[int], args: argparse.Namespace):
    """Train the per-cell head on rows `idx`; returns a function scoring any rows' frame probability."""
    import torch

    torch.manual_seed(0)
    cells = np.concatenate([maps[i].reshape(maps[i].shape[0], -1).T for i in idx]).astype(np.float32)
    mu, sd = cells.mean(0), cells.std(0) + 1e-3
    cells -= mu
    cells /= sd
    labels = np.array([meta[i]["label"] for i in idx])
    w = sample_weights(labels, [meta[i]["source"] for i in idx], source_balance=True)
    sizes = [maps[i].shape[1] * maps[i].shape[2] for i in idx]
    x = torch.from_numpy(cells)
    owner = torch.repeat_interleave(torch.arange(len(idx)), torch.tensor(sizes))
    # cell targets: every cell of a negative is 0, the boxed cells of a boxed positive are 1
    target, known = [], []
    for i, n in zip(idx, sizes, strict=True):
        m = meta[i]
        if m["label"] == 0:
            target.append(np.zeros(n)), known.append(np.ones(n))
        elif m["box_cells"] is not None:
            bc = np.array(m["box_cells"]).reshape(-1)
            target.append(bc.astype(float)), known.append(bc.astype(float))  # positive cells only
        else:
            target.append(np.zeros(n)), known.append(np.zeros(n))
    cell_y = torch.from_numpy(np.concatenate(target)).float()
    cell_w = torch.from_numpy(np.concatenate(known) * np.repeat(w, sizes)).float()
    cell_w = cell_w / cell_w.sum().clamp(min=1e-9) * len(idx)
    y = torch.from_numpy(labels).float()
    fw = torch.from_numpy(w).float()
    lin = torch.nn.Linear(x.shape[1], 1)
    opt = torch.optim.Adam(lin.parameters(), lr=args.lr, weight_decay=0.0)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    for _ in range(args.steps):
        opt.zero_grad()
        logit = lin(x)[:, 0]
        frame = torch.full((len(idx),), -1e9).scatter_reduce(0, owner, logit, reduce="amax")
        loss = bce(frame, y, weight=fw) + args.cell_weight * (
            bce(logit, cell_y, reduction="none") * cell_w
        ).sum() / len(idx)
        loss = loss + args.l2 * (lin.weight**2).sum()
        loss.backward()
        opt.step()
    wv, b = (
        lin.weight.detach().numpy()[0] / sd,
        float(lin.bias.detach()) - float((lin.weight.detach().numpy()[0] * mu / sd).sum()),
    )

    def score(rows: list[int]) -> list[float]:
        out = []
        for i in rows:
            logits = maps[i].reshape(maps[i].shape[0], -1).T.astype(np.float32) @ wv + b
            out.append(float(1 / (1 + np.exp(-logits.max()))))
        return out

    return score


def cmd_votes(args: argparse.Namespace) -> None:
    from training.datasets import Sample

    meta, maps = load_cache(Path(args.cache) / f"ls{args.long_side}")
    samples = [Sample(key=m["key"], label=m["label"], source=m["source"], group=m["group"]) for m in meta]
    folds = group_folds(samples, args.folds, 0)
    t0 = time.monotonic()
    oof = [None] * len(meta)
    for k in range(args.folds):
        train = [i for i, f in enumerate(folds) if f != k]
        test = [i for i, f in enumerate(folds) if f == k]
        score = fit_cells(maps, meta, train, args)
        for i, p in zip(test, score(test), strict=True):
            oof[i] = p
        print(f"fold {k}: {time.monotonic() - t0:.0f} s", flush=True)
    loso: dict[int, float] = {}
    held_out: dict[int, str] = {}
    for name, sources in HELD_OUT.items():
        test = [i for i, m in enumerate(meta) if m["source"] in sources]
        if not test:
            continue
        train = [i for i, m in enumerate(meta) if m["source"] not in sources]
        score = fit_cells(maps, meta, train, args)
        for i, p in zip(test, score(test), strict=True):
            loso[i], held_out[i] = p, name
        print(f"loso {name}: {time.monotonic() - t0:.0f} s", flush=True)

    def row(i: int, p: float, **extra) -> dict:
        m = meta[i]
        return {
            "probs": {"full": {"cells": p}},
            "long_side": {"full": m["long_side"]},
            "key": m["key"],
            "label": m["label"],
            "source": m["source"],
            "group": m["group"],
            **extra,
        }

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    votes = Path(args.cache) / "votes"
    votes.mkdir(parents=True, exist_ok=True)
    tag = f"cells_ls{args.long_side}"
    oof_file = votes / f"oof_votes_{tag}.jsonl"
    loso_file = votes / f"loso_votes_{tag}.jsonl"
    oof_file.write_text("".join(json.dumps(row(i, p, fold=folds[i])) + "\n" for i, p in enumerate(oof)))
    loso_file.write_text("".join(json.dumps(row(i, p, held_out=held_out[i])) + "\n" for i, p in loso.items()))

    def metrics(probs: dict[int, float]) -> dict:
        """The project's summary (MCC and accuracy at the subnet's rounding, AUROC) of these rows."""
        return summarise(np.array([meta[i]["label"] for i in probs]), np.array(list(probs.values())))

    in_fold = dict(enumerate(oof))
    report = {
        "what": "per-cell head on the frozen ImageNet MobileNetV2 map, max over cells; train split only",
        "config": {k: v for k, v in vars(args).items() if k not in {"func"}},
        "in_fold": metrics(in_fold),
        "in_fold_vehicle": metrics({i: p for i, p in in_fold.items() if i in held_out}),
        "loso": metrics(loso),
        "loso_per_held_out": {
            name: metrics({i: p for i, p in loso.items() if held_out[i] == name})
            for name in sorted(set(held_out.values()))
        },
        "seconds": round(time.monotonic() - t0, 1),
        "votes": "not kept: rerun the command (they are written under --cache)",
    }
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: report[k] for k in ("in_fold", "in_fold_vehicle", "loso", "loso_per_held_out")}, indent=1))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(required=True)
    f = sub.add_parser("features", help="cache the frozen feature maps of the train split's full-size frames")
    f.add_argument("--data", default="../shared/data")
    f.add_argument("--cache", default=".cache/cell_maps")
    f.add_argument("--long-side", type=int, default=640)
    f.add_argument("--threads", type=int, default=2)
    f.set_defaults(func=cmd_features)
    v = sub.add_parser("votes", help="group-fold and leave-one-source-out votes of the per-cell head")
    v.add_argument("--cache", default=".cache/cell_maps")
    v.add_argument("--long-side", type=int, default=640)
    v.add_argument("--folds", type=int, default=5)
    v.add_argument("--steps", type=int, default=150)
    v.add_argument("--lr", type=float, default=0.01)
    v.add_argument("--l2", type=float, default=1e-3)
    v.add_argument("--cell-weight", type=float, default=1.0)
    v.add_argument("--out", default="benchmarks/results/cell_head_cpu.json")
    v.set_defaults(func=cmd_votes)
    args = ap.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
