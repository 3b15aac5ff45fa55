"""Would the served networks answer better as the mean of each view and its mirror image?

    PYTHONPATH=.:benchmarks python benchmarks/flip_tta.py --data ../shared/data \\
        --out benchmarks/results/flip_tta_dev_cpu.json

Both networks trained on views mirrored at random (`training.finetune.train_view`), so a frame and
its mirror are equally familiar to them, and the mean of the two votes (test-time augmentation,
TTA) averages out part of what one draw of the network gets wrong. It costs a second pass of every
view, twice the voters' CPU time; on 1920x1080 frames two passes of 36 crops do not fit the 1-s
goal (726 ms p95 for one, 2 cores), so there only the gain is worth knowing.

This scores the served networks (models/l0_backbone.pt, models/l0_backbone_paste_erase.pt) on the
dev split, which they never trained on, in each regime's held-back view
(`training.finetune.held_out_transform`, seed 0), every voter's view as served (224, 448, tiles),
each as sent and mirrored. Reported per voter and regime: AUROC over dev and within each source
with both labels, as sent against the mean with the mirror (a paired comparison: the same network
and frames, so no seed spread); then the shipped pool (models/consensus-cpu.json) over each, MCC
and AUROC, also per source. Dev is measured here, never tuned on: no threshold or weight is fitted.
About 21 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

NETWORKS = {"plain": "models/l0_backbone.pt", "paste_erase": "models/l0_backbone_paste_erase.pt"}
VOTERS = {  # the shipped profile's voters: (network, view)
    "l0_head": ("plain", "224"),
    "l0_tiles": ("plain", "tiles"),
    "l0_paste_erase": ("paste_erase", "224"),
    "l0_paste_erase_detail": ("paste_erase", "448"),
    "l0_paste_erase_tiles": ("paste_erase", "tiles"),
}
WAYS = ("as_sent", "with_mirror")


def view_probs(net, views: list[np.ndarray]) -> dict[str, list[float | None]]:
    """{view: each frame's probability}: 224 and 448 px whole, tiles the max over the voter's crops
    (None where a frame is under the tile voter's long side)."""
    from detectors.mobilenet import TILE_GRIDS
    from training.oof_rescore import view_votes

    return {view: view_votes(net, views, view, "cpu", 64, TILE_GRIDS)[0] for view in ("224", "448", "tiles")}


def both_ways(net, views: list[np.ndarray]) -> dict[str, dict[str, list[float | None]]]:
    """`view_probs` of the frames as sent, and the mean of those with the mirrored frames' ones."""
    sent = view_probs(net, views)
    mirror = view_probs(net, [np.ascontiguousarray(v[:, ::-1]) for v in views])
    return {
        "as_sent": sent,
        "with_mirror": {
            k: [None if a is None else (a + b) / 2 for a, b in zip(sent[k], mirror[k], strict=True)] for k in sent
        },
    }


def auroc_by_source(y: np.ndarray, p: np.ndarray, src: np.ndarray) -> dict:
    """AUROC over the rows, then within each source that has both labels."""
    from sklearn.metrics import roc_auc_score

    out = {"all": round(float(roc_auc_score(y, p)), 3)}
    for s in sorted(set(src)):
        sel = src == s
        if 0 < y[sel].sum() < sel.sum():
            out[s] = round(float(roc_auc_score(y[sel], p[sel])), 3)
    return out


def pooled(artefact, votes: dict[str, list], y: np.ndarray, src: np.ndarray, sides: list[int]) -> dict:
    """The shipped pool over these votes: MCC, accuracy, AUROC over the rows and per source."""
    from consensus.fitting import LabelledVotes, artefact_probs
    from training.metrics import summarise

    rows = [
        LabelledVotes(int(y[i]), {v: ("L0", votes[v][i]) for v in VOTERS}, sides[i], str(src[i])) for i in range(len(y))
    ]
    p = artefact_probs(artefact, rows)

    def summary(sel: np.ndarray) -> dict:
        return {k: v for k, v in summarise(y[sel], p[sel]).items() if k != "confusion"}

    return {"all": summary(np.ones(len(y), bool)), **{s: summary(src == s) for s in sorted(set(src))}}


def main() -> None:
    import torch

    from consensus.artefact import ConsensusArtefact
    from training.datasets import load_folder
    from training.finetune import load_network, regime_views
    from training.images import open_image
    from training.transforms import REGIMES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the labelled photos (../shared/data)")
    ap.add_argument("--out", type=Path, required=True, help="the result JSON")
    ap.add_argument("--consensus", type=Path, default=Path("models/consensus-cpu.json"), help="the pool to score")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--limit", type=int, default=0, help="score only the first N dev rows (0: all), for a quick look")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()

    samples = load_folder(args.data).select(split="dev").samples
    samples = samples[: args.limit] if args.limit else samples
    y = np.array([s.label for s in samples])
    src = np.array([s.source for s in samples])
    views = {r: [] for r in REGIMES}
    for s in samples:
        with open_image(s.path) as im:
            for r, v in regime_views(np.asarray(im.convert("RGB")), s.key, 0).items():
                views[r].append(v)
    print(f"{len(samples)} dev rows read in {time.time() - t0:.0f} s", flush=True)

    nets = {name: load_network(path) for name, path in NETWORKS.items()}
    artefact = ConsensusArtefact.load(args.consensus)
    out: dict = {
        "note": __doc__.split("\n\n")[2].replace("\n", " "),
        "networks": NETWORKS,
        "consensus": str(args.consensus),
        "rows": len(samples),
        "voters": {},
        "pooled": {},
    }
    for r in REGIMES:
        probs = {}
        for name, net in nets.items():
            probs[name] = both_ways(net, views[r])
            print(f"{r}: {name} scored after {time.time() - t0:.0f} s", flush=True)
        sides = [int(max(v.shape[:2])) for v in views[r]]
        votes = {way: {v: probs[net][way][view] for v, (net, view) in VOTERS.items()} for way in WAYS}
        for voter in VOTERS:
            have = np.array([p is not None for p in votes["as_sent"][voter]])
            if not have.any() or len(set(y[have])) < 2:
                continue
            out["voters"].setdefault(voter, {})[r] = {
                way: auroc_by_source(y[have], np.array([p for p in votes[way][voter] if p is not None]), src[have])
                for way in WAYS
            }
        out["pooled"][r] = {way: pooled(artefact, votes[way], y, src, sides) for way in WAYS}
        for way in WAYS:
            a = out["pooled"][r][way]["all"]
            mcc, auroc = (None if a[k] is None else round(a[k], 3) for k in ("mcc", "auroc"))  # None: one label
            print(f"{r:10s} pooled {way:12s} MCC {mcc} AUROC {auroc}", flush=True)
    out["seconds"] = round(time.time() - t0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out} after {out['seconds']} s")


if __name__ == "__main__":
    main()
