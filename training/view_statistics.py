"""Each training view's own batch-norm statistics, added to a fine-tuned checkpoint.

Training runs the L0 network on three kinds of batch each step (224-px views, 448-px views and,
with `--tiles-batch`, the tile voter's crops), and in train mode every batch norm normalises a
batch by that batch's own statistics. The running statistics kept for inference are one mixture of
the three, while each voter answers from one view only. This computes, for each view, the
statistics of that view alone on the rows the network was trained on (the recipe's draws, paste
and erase included: `training.finetune.per_view_statistics`) and keeps them in the checkpoint under
`view_statistics`; a voter picks them with `params.backbone.statistics` (FixRes, Touvron et al.
2019: normalise as the test view was normalised in training). The weights stay as they are.
`roadwork train backbone` writes them itself; this adds them to a checkpoint trained before.

    python -m training.view_statistics --data ../shared/data --checkpoint models/l0_backbone_paste_erase.pt

The checkpoint is rewritten in place (or to --out), and its manifest, where it has one, with the
new sha256 and a `view_statistics` entry saying how they were made. 3 minutes (a network without
tile views) to 11 minutes (with them, on 2 busy cores) on the CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def view_networks(
    checkpoint: str | Path,
    state: dict[str, Any],
    samples: list[Any],
    images: list[Any],
    root: str | Path,
    batches: int = 0,
    device: str = "cpu",
    workers: int = 2,
    seed: int = 0,
) -> tuple[dict[str, Any], int]:
    """({view: the checkpoint's network with that view's statistics}, batches of each view used):
    computed on these training rows (decoded `images`; `root` the data folder, for paste and erase),
    drawn as the checkpoint's recipe (its `info`'s config) drew them. `state` is what
    `read_checkpoint(checkpoint)` gave. `batches` 0: `BN_BATCHES`, fewer where a view has fewer."""
    import torch
    from torch.utils.data import WeightedRandomSampler

    from training.finetune import (
        BN_BATCHES,
        Banks,
        FinetuneConfig,
        draw_weights,
        load_network,
        per_view_statistics,
        training_views,
        view_loaders,
    )

    if "info" not in state:
        raise ValueError(f"{checkpoint} holds no training info (key 'info'): it was not written by `finetune`")
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(state["info"])["config"].items()}
    known = set(FinetuneConfig.__dataclass_fields__)
    cfg = FinetuneConfig(**{**{k: v for k, v in config.items() if k in known}, "workers": workers, "seed": seed})
    weights = torch.as_tensor(draw_weights(samples, cfg), dtype=torch.double)
    loaders = view_loaders(
        samples,
        images,
        cfg,
        Banks.build(root, samples, cfg),
        lambda rows: WeightedRandomSampler(weights[rows], num_samples=len(rows), replacement=True),
    )
    batches = min(batches or BN_BATCHES, *(len(loader) for loader in loaders))
    net = load_network(checkpoint, state).to(device)
    views = dict(zip(training_views(cfg), loaders, strict=True))
    return per_view_statistics(net, views, batches, device, tag=Path(checkpoint).stem), batches


def add_view_statistics(
    checkpoint: str | Path, data: str | Path, out: str | Path | None = None, **options: Any
) -> dict[str, Any]:
    """`view_networks`' statistics on every train row of `data`, written into the checkpoint (to
    `out`, by default over it), its manifest rewritten where it has one. Returns what the manifest
    records of them."""
    import torch

    from detectors.heads import write_manifest
    from detectors.mobilenet import read_checkpoint
    from training.datasets import load_folder
    from training.finetune import norm_statistics

    t0 = time.time()
    checkpoint = Path(checkpoint)
    out = Path(out) if out is not None else checkpoint
    state = read_checkpoint(checkpoint)
    ds = load_folder(data).select(split="train")
    samples = list(ds.samples)
    nets, batches = view_networks(checkpoint, state, samples, [s.load() for s in samples], ds.root, **options)
    state["view_statistics"] = {view: norm_statistics(net) for view, net in nets.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    made = {
        "views": sorted(nets),
        "batches": batches,
        "data_hash": ds.fingerprint(),
        "seconds": round(time.time() - t0, 1),
    }
    manifest = checkpoint.with_suffix(".manifest.json")
    if manifest.is_file():
        info = {k: v for k, v in json.loads(manifest.read_text()).items() if k not in ("file", "sha256")}
        write_manifest(out, {**info, "view_statistics": made})
    return made


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m training.view_statistics",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--data", required=True, help="Folder with labels.csv: the photos the network was trained on.")
    ap.add_argument("--checkpoint", type=Path, required=True, help="A `roadwork train backbone` checkpoint.")
    ap.add_argument("--out", type=Path, default=None, help="Where to write it (default: over --checkpoint).")
    ap.add_argument("--batches", type=int, default=0, help="Batches of each view (0: as training, 40 or fewer).")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=2, help="Loader processes drawing the views.")
    ap.add_argument("--seed", type=int, default=0, help="Seed of the views drawn.")
    args = ap.parse_args(argv)
    if not args.checkpoint.is_file():
        ap.error(f"--checkpoint {args.checkpoint}: no such file")
    try:
        made = add_view_statistics(
            args.checkpoint,
            args.data,
            args.out,
            batches=args.batches,
            device=args.device,
            workers=args.workers,
            seed=args.seed,
        )
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
    print(
        f"wrote {args.out or args.checkpoint}: statistics of views {made['views']} ({made['batches']} batches "
        f"each, {made['seconds']} s)"
    )


if __name__ == "__main__":
    main()
