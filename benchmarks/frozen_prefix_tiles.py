"""Experiment: can the tile voter's network be trained on 2 CPU cores and still hold up on a camera
it never saw?

Every new-camera gain so far came from training (counterfactual frames, training through the tile
voter's max over crops), and that training needs the lent GPU: end to end, one network takes about
1.8 h on 2 cores (`benchmarks/results/finetune_cpu_epoch_time.json`), the six leave-one-source-out
(LOSO) networks of one comparison about 11 h. Here the ImageNet MobileNetV2's first 17 blocks stay
frozen and their output for each crop is computed once; only the last two (blocks 17-18, about a
tenth of the multiply-adds) and the linear layer are trained, which takes minutes a network.

    PYTHONPATH=. python benchmarks/frozen_prefix_tiles.py features --data ../shared/data   # ~15 min
    PYTHONPATH=. python benchmarks/frozen_prefix_tiles.py votes --out benchmarks/results/frozen_prefix_tiles_cpu.json

`features`: every train-split frame of 448 px or more (the frames the tile voter scores) is cut
into the tile voter's 3x4 grid of crops at 224 px (`detectors.mobilenet.tile_crops`), in `--draws`
versions: draw 0 is the frame as validators send it (scored, and trained on); each further draw is,
by chance, a counterfactual of the frame (objects pasted into a dashcam negative, label 1, or a
boxed positive's objects erased, label 0: `training.finetune.counterfactual`), colour/JPEG
distorted and mirrored, as `roadwork train backbone` draws its views. The paste bank holds only the
objects of sources that no LOSO network holds out, so no pasted object comes from a held-out camera.

`votes`: for each LOSO held-out source (`loso_networks.HELD_OUT`) and each `--seeds`, a network is
trained on the other sources' draws, through the max over a frame's crops (multiple-instance
learning, as `--tiles-batch`), and scores the held-out frames (draw 0). Two modes:
`head` (blocks 17-18 frozen too: a linear layer on frozen ImageNet features) and `tail` (blocks
17-18 trained). Reported as `tile_contrast.py` reports the shipped tiles' LOSO crops: AUROC, per
source, and a logistic fit on the other held-out sources scored on each (MCC, accuracy).
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np
from loso_networks import HELD_OUT, HELD_OUT_SOURCES  # benchmarks/, beside this script: the same left-out sources

from detectors.mobilenet import crop_count

GRID = ((3, 4),)
CROPS = crop_count(GRID)
SPLIT_BLOCK = 17
"""features[:17] frozen and cached; features[17:] (the last inverted residual, 160 -> 320, and the
1x1 convolution to 1280) trained in `tail` mode."""
MAP_SHAPE = (160, 7, 7)


def _log(msg: str) -> None:
    print(f"[frozen-prefix {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cmd_features(args: argparse.Namespace) -> None:
    import torch
    from torch.fx.experimental.optimization import fuse

    from detectors.mobilenet import (
        TILE_MIN_LONG_SIDE,
        mobilenetv2_features,
        tile_crops,
        to_tensor_batch,
    )
    from training.copy_paste import EraseBank, PasteBank
    from training.datasets import load_folder
    from training.finetune import Banks, FinetuneConfig, counterfactual, maybe_distort

    torch.set_num_threads(args.threads)
    data = load_folder(args.data).select(split="train")
    held = set(HELD_OUT_SOURCES)
    cfg = FinetuneConfig(paste_prob=args.counterfactual_prob, erase_prob=args.counterfactual_prob)
    banks = Banks(
        paste=PasteBank.from_samples(data.root, [s for s in data.samples if s.source not in held]),
        erase=EraseBank.from_samples(data.root, list(data.samples)),
    )
    _log(
        f"{len(banks.paste.cutouts)} objects to paste (from sources no LOSO network holds out), "
        f"{len(banks.erase.boxes)} frames to erase from"
    )
    # batch norm folded into the convolutions, channels-last (as `for_inference` does): ~2x faster
    prefix = fuse(mobilenetv2_features(None).features[:SPLIT_BLOCK].eval()).to(memory_format=torch.channels_last)
    out = Path(args.cache)
    out.mkdir(parents=True, exist_ok=True)
    rows = [s for s in data.samples if long_side(s) >= TILE_MIN_LONG_SIDE][: args.limit or None]
    n = len(rows) * args.draws
    maps = np.lib.format.open_memmap(out / "maps.npy", mode="w+", dtype=np.float16, shape=(n, CROPS, *MAP_SHAPE))
    meta, t0 = [], time.monotonic()
    for r, s in enumerate(rows):
        image = s.load()
        for d in range(args.draws):
            rng = np.random.default_rng([args.seed, r, d])
            kind, label = "as sent", float(s.label)
            view = image
            if d > 0:
                view, label = counterfactual(s, image, banks, cfg, rng)
                kind = "augmented" if label == s.label else "pasted" if label == 1 else "erased"
                view = maybe_distort(view, rng)
                if rng.random() < 0.5:
                    view = np.ascontiguousarray(view[:, ::-1])
            x = torch.from_numpy(to_tensor_batch(tile_crops(view, GRID), 224)).contiguous(
                memory_format=torch.channels_last
            )
            with torch.inference_mode():
                maps[r * args.draws + d] = prefix(x).float().contiguous().numpy().astype(np.float16)
            meta.append(
                {"key": s.key, "source": s.source, "group": s.group, "label": int(label), "draw": d, "kind": kind}
            )
        if (r + 1) % 50 == 0 or r + 1 == len(rows):
            el = time.monotonic() - t0
            _log(
                f"features: {r + 1}/{len(rows)} frames, {el:.0f} s (about {el / (r + 1) * (len(rows) - r - 1):.0f} s left)"
            )
    maps.flush()
    (out / "meta.json").write_text(json.dumps({"draws": args.draws, "seed": args.seed, "rows": meta}))
    kinds = {k: sum(m["kind"] == k for m in meta) for k in ("as sent", "augmented", "pasted", "erased")}
    _log(f"{n} draws of {len(rows)} frames -> {out} ({kinds})")


def long_side(s) -> int:
    """A row's longer side in pixels, from the file's header (the same after any EXIF rotation)."""
    from PIL import Image

    if s.path is None:
        return max(s.load().shape[:2])
    with Image.open(s.path) as img:
        return max(img.size)


def load_cache(cache: Path) -> tuple[np.ndarray, list[dict], int]:
    """The cached maps (memory-mapped, (draws of every frame, 12, 160, 7, 7)), their rows, draws a frame."""
    meta = json.loads((cache / "meta.json").read_text())
    maps = np.load(cache / "maps.npy", mmap_mode="r")
    if len(maps) != len(meta["rows"]):
        raise SystemExit(
            f"{cache}: maps.npy has {len(maps)} draws, meta.json {len(meta['rows'])}: run `features` again"
        )
    return maps, meta["rows"], int(meta["draws"])


def build_tail(mode: str):
    """The ImageNet network's blocks 17-18, mean/max pooling and a linear layer (as
    `training.finetune.build_network` ends); in `head` mode blocks 17-18 stay frozen."""
    import torch
    from torch import nn

    from detectors.mobilenet import mobilenetv2_features, pool_map

    class Tail(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = mobilenetv2_features(None).features[SPLIT_BLOCK:]
            self.drop = nn.Dropout(0.2)
            self.head = nn.Linear(2560, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.drop(pool_map(self.blocks(x), "meanmax")))[:, 0]

    net = Tail()
    if mode == "head":
        net.blocks.requires_grad_(False)
    return net


def train_tail(maps: np.ndarray, rows: list[dict], draw_idx: list[int], mode: str, seed: int, args: argparse.Namespace):
    """Train on these draws through the max over each draw's crops; returns the network (eval mode)."""
    import torch

    from training.balance import sample_weights

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = build_tail(mode)
    labels = np.array([rows[i]["label"] for i in draw_idx])
    w = sample_weights(labels, [rows[i]["source"] for i in draw_idx], True)
    w = w / w.sum()
    frames = len({rows[i]["key"] for i in draw_idx})
    steps = max(1, args.epochs * frames // args.batch)
    groups = [{"params": net.head.parameters(), "lr": args.lr * 5}]
    if mode == "tail":
        groups.append({"params": net.blocks.parameters(), "lr": args.lr})
    opt = torch.optim.AdamW(groups, weight_decay=0.02)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[g["lr"] for g in groups], total_steps=steps, pct_start=0.15
    )
    draw_idx = np.asarray(draw_idx)
    net.train()
    if mode == "head":
        net.blocks.eval()  # frozen: its batch norm keeps ImageNet's statistics
    for _ in range(steps):
        pick = np.sort(rng.choice(draw_idx, size=args.batch, p=w))
        x = torch.from_numpy(np.asarray(maps[pick], np.float32)).flatten(0, 1)
        y = torch.tensor([rows[i]["label"] for i in pick], dtype=torch.float32) * 0.95 + 0.025
        z = net(x).view(args.batch, CROPS).amax(dim=1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


def crop_probs(net, maps: np.ndarray, idx: list[int]) -> np.ndarray:
    """(len(idx), 12) crop probabilities of these draws."""
    import torch

    out = []
    with torch.inference_mode():
        for k in range(0, len(idx), 16):
            x = torch.from_numpy(np.asarray(maps[idx[k : k + 16]], np.float32)).flatten(0, 1)
            out.append(torch.sigmoid(net(x)).view(-1, CROPS).numpy())
    return np.concatenate(out)


def shipped_3x4(path: str, keys: set[str]) -> dict[str, float]:
    """key -> the committed LOSO network's max over its 3x4-grid crops (the shipped recipe; made on
    the lent GPU's 544-px copy of the photos), for comparison on the same frames."""
    from detectors.mobilenet import grid_slices
    from training.finetune import votes_crop_grids, votes_text

    rows = [json.loads(line) for line in votes_text(path).splitlines() if line.strip()]
    rows = [r for r in rows if r["key"] in keys and "full" in r.get("crops", {})]
    sl = grid_slices(votes_crop_grids(rows))[GRID[0]]
    return {r["key"]: float(max(r["crops"]["full"][sl])) for r in rows}


def report(y: np.ndarray, prob: np.ndarray, src: np.ndarray) -> dict:
    from tile_contrast import CLIP, auroc_by_source, leave_source_out

    from consensus.pooling import logit
    from training.metrics import summarise

    z = logit(prob, clip=CLIP)
    at_half = summarise(y, prob)
    return {
        "auroc": round(float(at_half["auroc"]), 4),
        "mcc_at_0.5": round(float(at_half["mcc"]), 4),
        "accuracy_by_source_at_0.5": {
            n: round(float(((prob > 0.5) == y)[src == n].mean()), 4) for n in sorted(set(src))
        },
        "auroc_by_source": auroc_by_source(y, z, src),
        "fitted_without_the_source": leave_source_out(y, z, src),
    }


SHIPPED = {
    "shipped recipe seed 0, 3x4 grid (GPU, 544-px copy)": "benchmarks/results/loso_votes_l0_backbone_paste_erase_crops.jsonl.gz",
    "shipped recipe seed 1, 3x4 grid (GPU, 544-px copy)": "benchmarks/results/loso_votes_l0_backbone_paste_erase_crops_seed1.jsonl.gz",
}


def cmd_votes(args: argparse.Namespace) -> None:
    import torch

    from training.metrics import summarise

    torch.set_num_threads(args.threads)
    maps, rows, draws = load_cache(Path(args.cache))
    t0 = time.monotonic()
    result: dict = {
        "what": __doc__.splitlines()[0],
        "cache": {"draws": draws, "frames": len(rows) // draws},
        "config": {k: v for k, v in vars(args).items() if k != "func"},
    }
    votes: dict[str, dict[str, float]] = {}  # run -> key -> its max crop probability
    truth = {r["key"]: r["label"] for r in rows if r["draw"] == 0}
    held_of: dict[str, str] = {}
    lines: list[str] = []  # each held-out frame's crop probabilities, by run
    for mode in args.modes.split(","):
        for seed in args.seeds:
            name = f"{mode}, seed {seed}"
            votes[name] = {}
            for held, sources in HELD_OUT.items():
                test = [i for i, r in enumerate(rows) if r["source"] in sources and r["draw"] == 0]
                if not test:
                    continue
                train = [i for i, r in enumerate(rows) if r["source"] not in sources]
                net = train_tail(maps, rows, train, mode, seed, args)
                for i, c in zip(test, crop_probs(net, maps, test), strict=True):
                    key = rows[i]["key"]
                    votes[name][key], held_of[key] = float(c.max()), held
                    row = {"run": name, "key": key, "label": truth[key], "source": rows[i]["source"], "held_out": held}
                    lines.append(json.dumps(row | {"crops": [round(float(v), 5) for v in c]}))
                _log(f"{name}: without {held}, {len(test)} frames scored ({time.monotonic() - t0:.0f} s)")
            quick = summarise(np.array([truth[k] for k in votes[name]]), np.array(list(votes[name].values())))
            _log(f"{name}: AUROC {quick['auroc']:.3f}, MCC at 0.5 {quick['mcc']:.3f}")
    keys = sorted(set.intersection(*(set(v) for v in votes.values())))
    for label, path in ({} if args.no_compare else SHIPPED).items():
        shipped = shipped_3x4(path, set(keys))
        keys = [k for k in keys if k in shipped]
        votes[label] = shipped
    y = np.array([truth[k] for k in keys])
    src = np.array([held_of[k] for k in keys])
    result["rows"] = len(keys)
    result["rows_by_source"] = {n: [int((src == n).sum()), int(y[src == n].sum())] for n in sorted(set(src))}
    result["scores"] = {}
    for name, v in votes.items():
        result["scores"][name] = report(y, np.array([v[k] for k in keys]), src)
        r = result["scores"][name]
        print(
            f"{name:52s} AUROC {r['auroc']:.3f}  MCC@0.5 {r['mcc_at_0.5']:.3f}  fitted elsewhere MCC "
            f"{r['fitted_without_the_source']['mcc']:.3f}  by source {r['auroc_by_source']}"
        )
    result["seconds"] = round(time.monotonic() - t0, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    crops_out = crops_file(out)
    result["crops"] = crops_out.name
    out.write_text(json.dumps(result, indent=1) + "\n")
    crops_out.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))
    _log(f"wrote {out} and each held-out frame's crops, {crops_out}")


def crops_file(out: Path) -> Path:
    """Where `votes` writes the crop probabilities beside its report: OUT.json -> OUT.crops.jsonl.gz."""
    return out.with_name(out.stem + ".crops.jsonl.gz")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(required=True)
    f = sub.add_parser("features", help="cache the frozen blocks' output for each crop of each draw")
    f.add_argument("--data", default="../shared/data")
    f.add_argument("--cache", default=".cache/frozen_prefix")
    f.add_argument("--draws", type=int, default=3, help="versions of each frame; draw 0 is the frame as sent")
    f.add_argument("--counterfactual-prob", type=float, default=0.5, help="chance a further draw is pasted / erased")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--limit", type=int, default=0, help="first N large frames only (0: all)")
    f.add_argument("--threads", type=int, default=2)
    f.set_defaults(func=cmd_features)
    v = sub.add_parser("votes", help="train a LOSO network per held-out source on the cache; score and compare")
    v.add_argument("--cache", default=".cache/frozen_prefix")
    v.add_argument(
        "--modes", default="head,tail", help="comma-separated: head (linear layer only), tail (blocks 17-18 too)"
    )
    v.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    v.add_argument("--epochs", type=int, default=6, help="passes over the training frames (one draw a pick)")
    v.add_argument("--batch", type=int, default=8, help="frames a step (12 crops each)")
    v.add_argument("--lr", type=float, default=1e-3, help="blocks 17-18; the linear layer gets 5x")
    v.add_argument("--threads", type=int, default=2)
    v.add_argument("--no-compare", action="store_true", help="do not score the shipped recipe's committed LOSO crops")
    v.add_argument("--out", default="benchmarks/results/frozen_prefix_tiles_cpu.json")
    v.set_defaults(func=cmd_votes)
    args = ap.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
