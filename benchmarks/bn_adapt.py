"""Would batch-norm statistics taken from the frames a miner is sent carry to a new camera?

    PYTHONPATH=. python benchmarks/bn_adapt.py --data ../shared/data \\
        --out benchmarks/results/bn_adapt_cpu.json

A network's batch norms hold the mean and variance of each channel over the frames it trained on.
A camera it never saw shifts those (colour, light, sharpness, JPEG), and every layer after a
shifted one reads its input off scale. Re-estimating the statistics on unlabelled frames of the
new domain (AdaBN, Li et al. 2016) is the cheapest known fix: a miner sees a stream of validator
frames and could keep them, with no labels and no training.

This measures it with the frozen ImageNet MobileNetV2 (the only network here that never saw any
of our sources, so no training is needed for a leave-one-source-out test) and a linear head
(scikit-learn, standardised mean+max features, classes and sources balanced as `train head`
weighs them), left out by source as `loso_networks.py` leaves them out, for each validator regime
(the held-back views of the OOF votes, `training.finetune.held_out_transform`, resized whole to 224
px). Statistics are taken per regime (a validator sends one regime at a time). Variants:
- `imagenet`: the network's own statistics everywhere (the baseline);
- `target`: the head is trained as for `imagenet`; the held-out source's frames are scored with
  statistics taken on the held-out source's own frames (test-time only, one camera: what a miner
  could do without retraining if a stream came from one camera);
- `stream`: as `target`, but the statistics come from the frames of all six vehicle sources
  together (a validator stream mixes cameras; these include sources the head trained on);
- `per_source`: every source, trained on or held out, normalised by its own statistics (AdaBN
  proper: the head never sees a camera's offset).
Then AUROC and MCC at 0.5 over the held-out sources' rows together and AUROC within each held-out
source that has both labels. About 10 minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # loso_networks, beside this script

SIZE = 224
BATCH = 64
CS = (0.01, 0.1)
VARIANTS = {  # name: (the statistics the head is trained with, those the held-out rows are scored with)
    "imagenet": ("imagenet", "imagenet"),
    "target": ("imagenet", "per_source"),
    "stream": ("imagenet", "stream"),
    "per_source": ("per_source", "per_source"),
}


def row_views(item: tuple[str, str, int, str]) -> tuple[np.ndarray, int, str]:
    """The (3, SIZE, SIZE, 3) uint8 held-back views of one photo, one per regime; its label, source."""
    from detectors.mobilenet import resize_square
    from training.finetune import held_out_transform
    from training.images import open_image
    from training.transforms import REGIMES

    path, key, label, source = item
    with open_image(path) as im:
        img = np.asarray(im.convert("RGB"))
    return np.stack([resize_square(held_out_transform(r, 0)(img, key), SIZE) for r in REGIMES]), label, source


def batches(views: np.ndarray):
    """ImageNet-normalised channels-first float tensors of BATCH views at a time."""
    import torch

    from detectors.mobilenet import IMAGENET_MEAN, IMAGENET_STD

    for i in range(0, len(views), BATCH):
        x = (views[i : i + BATCH].astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        yield torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


def norms(model):
    import torch

    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


@contextmanager
def statistics(model, stats: list[tuple] | None):
    """Inside the block the batch norms hold `stats` (their own if None); their own are back after."""
    saved = [(m.running_mean.clone(), m.running_var.clone()) for m in norms(model)]
    for m, (mean, var) in zip(norms(model), stats or saved, strict=True):
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
    try:
        yield
    finally:
        for m, (mean, var) in zip(norms(model), saved, strict=True):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)


def bn_stats(model, views: np.ndarray) -> list[tuple]:
    """Each batch norm's (mean, var) over `views`: the cumulative average over batches of BATCH."""
    import torch

    momenta = [m.momentum for m in norms(model)]
    with statistics(model, None):
        for m in norms(model):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average, not a moving one
            m.train()
        try:
            with torch.no_grad():
                for x in batches(views):
                    model.features(x)
            return [(m.running_mean.clone(), m.running_var.clone()) for m in norms(model)]
        finally:
            for m, momentum in zip(norms(model), momenta, strict=True):
                m.momentum = momentum
                m.eval()


def features(model, views: np.ndarray, stats: list[tuple] | None) -> np.ndarray:
    """Mean+max pooled features of `views` (n, 2560), with `stats` in the batch norms if given."""
    import torch

    from detectors.mobilenet import pool_map

    with statistics(model, stats), torch.no_grad():
        return np.concatenate([pool_map(model.features(x), "meanmax").numpy() for x in batches(views)])


def variant_features(model, views: np.ndarray, src: np.ndarray, vehicle: np.ndarray) -> dict[str, list]:
    """{variant: [features of regime r for every row]} for the three statistics sets:
    imagenet (none), per-source and the vehicle-source stream (rows outside the stream: NaN)."""
    n_regimes = views.shape[1]
    feats: dict[str, list] = {"imagenet": [], "per_source": [], "stream": []}
    for r in range(n_regimes):
        v = views[:, r]
        feats["imagenet"].append(features(model, v, None))
        own = np.zeros_like(feats["imagenet"][-1])
        for s in np.unique(src):
            sel = src == s
            own[sel] = features(model, v[sel], bn_stats(model, v[sel]))
        feats["per_source"].append(own)
        stream = np.full_like(own, np.nan)
        stream[vehicle] = features(model, v[vehicle], bn_stats(model, v[vehicle]))
        feats["stream"].append(stream)
        print(f"regime {r + 1}/{n_regimes}: features done", flush=True)
    return feats


def fit_head(x: np.ndarray, y: np.ndarray, w: np.ndarray, C: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000))
    model.fit(x, y, logisticregression__sample_weight=w)
    return model


def loso_probs(feats: dict[str, list], y: np.ndarray, src: np.ndarray, C: float) -> dict[str, np.ndarray]:
    """{variant: (n_regimes, n) probabilities}, each held-out source's rows scored by a head fitted
    on every regime's rows of the other sources (NaN outside the held-out sources)."""
    from loso_networks import HELD_OUT

    from training.balance import sample_weights

    n_regimes, n = len(feats["imagenet"]), len(y)
    out = {v: np.full((n_regimes, n), np.nan) for v in VARIANTS}
    for sources in HELD_OUT.values():
        test = np.isin(src, sources)
        train = ~test
        w = np.tile(sample_weights(y[train], list(src[train]), True), n_regimes)
        yy = np.tile(y[train], n_regimes)
        heads = {
            trained_on: fit_head(np.vstack([f[train] for f in feats[trained_on]]), yy, w, C)
            for trained_on in {trained_on for trained_on, _ in VARIANTS.values()}
        }
        for variant, (trained_on, scored_on) in VARIANTS.items():
            for r in range(n_regimes):
                out[variant][r, test] = heads[trained_on].predict_proba(feats[scored_on][r][test])[:, 1]
    return out


def scores(prob: np.ndarray, y: np.ndarray, src: np.ndarray) -> dict:
    from loso_networks import held_out_scores

    from training.transforms import REGIMES

    return {regime: held_out_scores(y, prob[r], src) for r, regime in enumerate(REGIMES)}


def main() -> None:
    import torch
    from loso_networks import HELD_OUT_SOURCES, map_train_photos, photo_signal_args

    from detectors.mobilenet import mobilenetv2_features

    args = photo_signal_args(__doc__)
    torch.set_num_threads(args.workers)
    t0 = time.time()
    rows = map_train_photos(args.data, row_views, args.workers)
    views = np.stack([v for v, _, _ in rows])
    y = np.array([label for _, label, _ in rows])
    src = np.array([source for _, _, source in rows])
    del rows
    vehicle = np.isin(src, HELD_OUT_SOURCES)
    model = mobilenetv2_features(None)
    feats = variant_features(model, views, src, vehicle)
    print(f"features after {time.time() - t0:.0f} s", flush=True)
    result: dict = {"n": len(y), "held_out_rows": int(vehicle.sum()), "by_C": {}}
    for C in CS:
        probs = loso_probs(feats, y, src, C)
        result["by_C"][str(C)] = {v: scores(probs[v], y, src) for v in VARIANTS}
    result["seconds"] = round(time.time() - t0, 1)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for C, by_variant in result["by_C"].items():
        for v, regimes in by_variant.items():
            print(C, v, {r: (e["auroc"], e["mcc_at_0.5"]) for r, e in regimes.items()})


if __name__ == "__main__":
    main()
