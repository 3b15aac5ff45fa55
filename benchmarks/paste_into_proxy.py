"""A CPU proxy of the IDD-lite test: does pasting into IDD-lite's negatives hold its ranking down?

The shipped paste-and-erase recipe ranks IDD-lite's frames at or below chance in fold
(`oof_views_by_source_cpu.json`), and 38 % of what it sees as "IDD-lite look, roadwork" are pasted
frames. The real test trains the recipe with `--paste-into` leaving IDD-lite out (the lent GPU).
Without one, this continues each kept fold network of the recipe's second draw
(`runs/nets/folds/net.fold{0,1,2}.pt`, `train_backbone_parallel.sh folds ... --save-folds`) for
STEPS steps of 32 whole frames at 224 px, with the recipe's counterfactuals (paste and erase 0.3),
its views, balance and label smoothing, AdamW at a quarter of the recipe's peak rate (constant). Two arms, the
same draws otherwise:
- `control`: pasting into every vehicle camera's negatives, as shipped;
- `no_idd_lite`: pasting into all of them but IDD-lite's (`--paste-into`).
Then each fold's held-out rows are scored at 224 px in each regime (the held-back views the fold
run drew) and ranked: AUROC over all rows and within IDD-lite and GTSDB. `start` is the networks
as kept (no step).

    python benchmarks/paste_into_proxy.py --data COPY --out benchmarks/results/paste_into_proxy_cpu.json

COPY is the 544-px copy the networks were trained on (`python -m training.downscale_copy --split
train --long-side 544 --quality 76`). About 25 minutes on 2 CPU cores with the default 100 steps.

With `--loso VOTES_DIR` the same continued training (pasting as shipped) is tried on networks that
never saw the source: each kept seed-0 leave-one-source-out network (`runs/nets/loso/loso.<held
out>.pt`, `train_backbone_parallel.sh loso ... --save-nets`) trains on every other source and
votes on its held-out rows as `loso_networks.py train` does (224 px, 448 px, tiles on the copy).
VOTES_DIR gets `start.jsonl.gz` (as kept) and `continued.jsonl.gz`, to pool with `loso_networks.py
score --loso-votes l0_paste_erase=...`, `_detail` and `_tiles` the same); the JSON gets AUROC within
each held-out source. About 36 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score
from tile_contrast import auroc_by_source  # benchmarks/, beside this script

from training.finetune import FinetuneConfig
from training.transforms import REGIMES

OOF = "benchmarks/results/oof_votes_l0_backbone_paste_erase_r2_fullres.jsonl.gz"
"""The second draw's OOF votes: which fold held out each row."""
NETS = "runs/nets/folds/net"
LOSO_NETS = "runs/nets/loso/loso"


def continue_training(net, train: list, images: dict, paste_into: tuple[str, ...], steps: int, root: str) -> None:
    import torch
    from torch.utils.data import DataLoader, WeightedRandomSampler

    from training.finetune import Banks, _Views, draw_weights

    cfg = FinetuneConfig(paste_prob=0.3, erase_prob=0.3, paste_into=paste_into, seed=0)
    torch.manual_seed(0)
    banks = Banks.build(root, train, cfg)
    weights = torch.as_tensor(draw_weights(train, cfg))
    sampler = WeightedRandomSampler(weights, steps * 32, replacement=True, generator=torch.Generator().manual_seed(0))
    views = _Views(train, [images[s.key] for s in train], cfg, 224, banks)
    opt = torch.optim.AdamW(
        [
            {"params": net.backbone.parameters(), "lr": cfg.lr / 4},
            {"params": net.head.parameters(), "lr": cfg.lr * 5 / 4},
        ],
        weight_decay=cfg.weight_decay,
    )
    net.train()
    for x, y in DataLoader(views, batch_size=32, sampler=sampler, num_workers=0):
        y = y.float() * (1 - cfg.label_smoothing) + 0.5 * cfg.label_smoothing
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()


def aurocs(scored: list[tuple[float, int, str]]) -> dict[str, float]:
    p, y, src = (np.array(x) for x in zip(*scored, strict=True))
    by_source = auroc_by_source(y, p, src)
    return {"all": round(float(roc_auc_score(y, p)), 4), "idd_lite": by_source["idd_lite"], "gtsdb": by_source["gtsdb"]}


def loso(args: argparse.Namespace, samples: list, images: dict, out: dict) -> None:
    """The continued training on the kept LOSO networks (module docstring); fills `out`."""
    from loso_networks import HELD_OUT  # benchmarks/, beside this script

    from training.finetune import held_out_rows, load_network, write_votes

    cfg = FinetuneConfig(paste_prob=0.3, erase_prob=0.3)  # the recipe's held-back views (448 px, view seed 0)
    ordered = [images[s.key] for s in samples]
    rows: dict[str, list] = {"start": [], "continued": []}
    t0 = time.time()
    for name, sources in HELD_OUT.items():
        held = [i for i, s in enumerate(samples) if s.source in sources]
        train = [s for s in samples if s.source not in sources]
        net = load_network(f"{LOSO_NETS}.{name}.pt")
        for arm in rows:
            if arm == "continued":
                continue_training(net, train, images, FinetuneConfig.paste_into, args.steps, args.data)
            rows[arm] += held_out_rows(net, samples, ordered, held, cfg, "cpu", held_out=name)
            print(f"[proxy] {name} {arm}: {time.time() - t0:.0f} s", flush=True)
    args.loso.mkdir(parents=True, exist_ok=True)
    for arm, arm_rows in rows.items():
        write_votes(args.loso / f"{arm}.jsonl.gz", arm_rows)
        out["aurocs"][arm] = {regime: {} for regime in REGIMES}
        for regime in REGIMES:
            for view in ("224", "448", "tiles"):
                voted = [r for r in arm_rows if view in r["probs"][regime]]
                if voted:
                    y, p, held_out = (
                        np.array(x)
                        for x in zip(
                            *((r["label"], r["probs"][regime][view], r["held_out"]) for r in voted), strict=True
                        )
                    )
                    out["aurocs"][arm][regime][view] = auroc_by_source(y, p, held_out)
    out["seconds"]["both arms"] = round(time.time() - t0)  # the arms take turns within each source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="The 544-px copy of the train split the fold networks saw.")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--loso", type=Path, metavar="VOTES_DIR", help="the kept LOSO networks instead of the fold networks (above)"
    )
    args = ap.parse_args()
    import torch

    from training.datasets import load_folder
    from training.finetune import held_out_transform, load_network, predict_views, votes_text

    torch.set_num_threads(2)
    fold_of = {r["key"]: r["fold"] for r in map(json.loads, votes_text(OOF).splitlines())}
    samples = list(load_folder(args.data).select(split="train").samples)
    if missing := [s.key for s in samples if s.key not in fold_of]:
        raise SystemExit(f"{len(missing)} rows of {args.data} are not in {OOF} (first {missing[0]!r})")
    images = {s.key: s.load() for s in samples}
    out = {
        "note": __doc__.split("\n\n")[4 if args.loso else 1].replace("\n", " "),
        "steps": args.steps,
        "machine": f"{platform.node()}, {os.cpu_count()} CPU cores",
        "aurocs": {},
        "seconds": {},
    }
    if args.loso:
        loso(args, samples, images, out)
        args.out.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.out} and the votes under {args.loso}")
        return
    every = FinetuneConfig.paste_into  # every vehicle camera, as shipped
    arms = {"start": None, "control": every, "no_idd_lite": tuple(s for s in every if s != "idd_lite")}
    t0 = time.time()
    for arm, paste_into in arms.items():
        scored: dict[str, list] = {r: [] for r in REGIMES}
        for k in range(3):
            train = [s for s in samples if fold_of[s.key] != k]
            held = [s for s in samples if fold_of[s.key] == k]
            net = load_network(f"{NETS}.fold{k}.pt")
            if paste_into is not None:
                continue_training(net, train, images, paste_into, args.steps, args.data)
            for regime in REGIMES:
                transform = held_out_transform(regime, 0)
                probs = predict_views(net, [transform(images[s.key], s.key) for s in held], 224, "cpu", 16)
                scored[regime] += [(float(p), s.label, s.source) for p, s in zip(probs, held, strict=True)]
            print(f"[proxy] {arm} fold {k}: {time.time() - t0:.0f} s", flush=True)
        out["aurocs"][arm] = {r: aurocs(v) for r, v in scored.items()}
        out["seconds"][arm] = round(time.time() - t0)
        print(f"[proxy] {arm}: {out['aurocs'][arm]}", flush=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
