"""Batch-norm statistics per view: does each voter gain from the statistics of the view it answers from?

Training runs the network on three kinds of batch each step (224-px views, 448-px views and the
tile voter's crops), and in train mode each batch norm normalises a batch by that batch's own
statistics. The running statistics kept for inference are one mixture of the three. At inference
each voter sees one kind only (`l0_paste_erase` 224-px views, `_detail` 448-px views, `_tiles`
crops), normalised by the mixture: a train-test difference of the kind FixRes (Touvron et al.
2019, "Fixing the train-test resolution discrepancy") mends by fitting the statistics at the test
view.

`calibrate`: for each saved leave-one-source-out network (PREFIX.<held-out>.pt, `loso_networks.py
train --save-nets`), compute the statistics afresh on the training rows it was trained on (every
other source, the recipe's draws, paste and erase), once per view (`training.finetune.recalibrate_bn`
on that view's loader alone), and write
- OUT/v224.<held-out>.pt, OUT/v448.<held-out>.pt, OUT/vtiles.<held-out>.pt: one view's statistics;
- OUT/mixed.<held-out>.pt: their mean, which is what `recalibrate_bn` computes over the three
  loaders zipped (a cumulative mean over equally many batches of each view): the paired control.

Then score the held-out rows with each (`python -m training.oof_rescore --nets OUT/mixed ...`,
`--nets OUT/v224 --views 224`, ...) and compare through `loso_variants.py` and `loso_networks.py
score`.

    PYTHONPATH=. python benchmarks/view_bn.py calibrate --data ../shared/data --nets runs/ship_s0/loso --out runs/view_bn
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path


def calibrate(args: argparse.Namespace) -> None:
    import torch

    from benchmarks.loso_networks import HELD_OUT
    from detectors.mobilenet import NORM_STATISTICS, read_checkpoint
    from training.datasets import load_folder
    from training.finetune import save_checkpoint
    from training.view_statistics import view_networks

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    ds = load_folder(args.data).select(split="train")
    samples = list(ds.samples)
    images = [s.load() for s in samples]  # decoded once for every network
    for name in args.held_out.split(","):
        t0 = time.time()
        path = Path(f"{args.nets}.{name}.pt")
        state = read_checkpoint(path)
        info = json.loads(state["info"])
        keep = [i for i, s in enumerate(samples) if s.source not in HELD_OUT[name]]
        per_view, batches = view_networks(
            path,
            state,
            [samples[i] for i in keep],
            [images[i] for i in keep],
            ds.root,
            args.batches,
            args.device,
            args.workers,
            args.seed,
        )
        for view, net in per_view.items():
            save_checkpoint(net, args.out / f"v{view}.{name}.pt", {**info, "bn_view": view, "bn_batches": batches})
        mixed = copy.deepcopy(per_view["224"]).cpu()
        buffers = [dict(n.named_buffers()) for n in per_view.values()]
        with torch.no_grad():
            for key, buf in mixed.named_buffers():
                if key.endswith(NORM_STATISTICS):
                    buf.copy_(torch.stack([b[key] for b in buffers]).mean(0))
        save_checkpoint(mixed, args.out / f"mixed.{name}.pt", {**info, "bn_view": "mixed", "bn_batches": batches})
        print(f"[view_bn] {name}: {batches} batches of each view, {time.time() - t0:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("calibrate", help="per-view batch-norm statistics for each saved LOSO network")
    c.add_argument("--data", type=Path, required=True, help="Folder with labels.csv (the photos trained on).")
    c.add_argument("--nets", required=True, help="Prefix of the saved LOSO networks: PREFIX.<held-out>.pt.")
    c.add_argument("--held-out", default="vtti,camvid,gtsdb,idd_lite,dawn_fog,pp_nightwork")
    c.add_argument("--out", type=Path, required=True, help="Folder for the networks with new statistics.")
    c.add_argument("--batches", type=int, default=0, help="Batches of each view (0: BN_BATCHES, as training).")
    c.add_argument("--device", default="cpu")
    c.add_argument("--workers", type=int, default=2)
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--seed", type=int, default=0, help="The draws' seed.")
    args = ap.parse_args(argv)
    calibrate(args)


if __name__ == "__main__":
    main()
