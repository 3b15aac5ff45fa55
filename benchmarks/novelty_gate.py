"""Would a camera-novelty gate help? The shipped pool on frames of a known camera, the
paste-and-erase network alone on frames of a camera it does not recognise.

On networks trained without the scored source (leave-one-source-out, `loso_networks.py`), the
paste-and-erase network's own vote (448 px for frames under 448 px, its tiles above) beats the
shipped pool, while in fold the pool is far ahead: the plain network's voters (`l0_head`,
`l0_tiles`) know the training cameras and fail on new ones. This measures, with no training, a
gate between the two answers:

- familiarity of a frame, from the frozen ImageNet MobileNetV2's mean+max pooled features of the
  view (a network that never saw our data), fitted on all three regimes' views of other rows: in
  fold the other group folds, for a LOSO row every source but the held-out ones. Two scores: the
  largest class probability of a source classifier (logistic regression), and the similarity to
  the nearest training views. `separation_auroc` says how well each tells the vehicle sources'
  frames as a new camera (LOSO) from the same frames as a known one (in fold);
- the gate: frames under a familiarity cut take the network's own vote, the rest the shipped pool's;
  the cut is a quantile of the in-fold familiarity (chosen from known cameras only: the share of
  known-camera frames it is allowed to send to the network), never from the LOSO rows;
- scored in fold (the train rows, as the sealed holdout's known sources) and on LOSO rows with
  both seeds' paste-and-erase networks.

    python benchmarks/novelty_gate.py --data ../shared/data --out benchmarks/results/novelty_gate_cpu.json

About 3 minutes on 2 CPU cores, most of it decoding the photos (features cached in --work).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from loso_networks import HELD_OUT, HELD_OUT_SOURCES, VOTES, read_votes  # benchmarks/, beside this script
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import matthews_corrcoef, roc_auc_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from detectors.mobilenet import TILE_MIN_LONG_SIDE
from training.transforms import REGIMES

SEED1 = "benchmarks/results/loso_votes_l0_backbone_paste_erase_seed1.jsonl.gz"
"""The shipped recipe's LOSO networks trained with --seed 1 (every paste-and-erase voter)."""
PE_VOTERS = ("l0_paste_erase", "l0_paste_erase_detail", "l0_paste_erase_tiles")
QUANTILES = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3)


def features(data: str, work: Path) -> tuple[list, np.ndarray]:
    """(train samples, (rows, regimes, 2560) frozen ImageNet features of each regime's held-back view)."""
    import torch

    from detectors.mobilenet import for_inference, mobilenetv2_features, pool_map, to_tensor_batch
    from training.datasets import load_folder
    from training.finetune import held_out_transform

    samples = list(load_folder(data).select(split="train").samples)
    cache = work / "features.npz"
    keys = [s.key for s in samples]
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        if list(z["keys"]) == keys:
            return samples, z["feats"]
    net = for_inference(mobilenetv2_features())
    transforms = {r: held_out_transform(r, 0) for r in REGIMES}
    feats = np.zeros((len(samples), len(REGIMES), 2560), np.float32)
    t0 = time.time()
    for start in range(0, len(samples), 32):
        chunk = samples[start : start + 32]
        images = [s.load() for s in chunk]
        for j, regime in enumerate(REGIMES):
            views = [transforms[regime](im, s.key) for im, s in zip(images, chunk, strict=True)]
            x = torch.from_numpy(to_tensor_batch(views, 224)).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                feats[start : start + len(chunk), j] = pool_map(net.features(x), "meanmax").numpy()
        print(f"[novelty] features {start + len(chunk)}/{len(samples)}, {time.time() - t0:.0f} s", flush=True)
    work.mkdir(parents=True, exist_ok=True)
    np.savez(cache, keys=np.array(keys), feats=feats)
    return samples, feats


class SourceClassifier:
    """Familiarity = the largest class probability of a source classifier."""

    def __init__(self, x: np.ndarray, sources: np.ndarray) -> None:
        pipeline = make_pipeline(StandardScaler(), PCA(128, random_state=0), LogisticRegression(C=0.1, max_iter=2000))
        self.clf = pipeline.fit(x, sources)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.clf.predict_proba(x).max(axis=1)


class NearestViews:
    """Familiarity = mean cosine similarity to the 5 nearest training views (in PCA 64, not whitened:
    whitening would give each minor direction, mostly noise, the weight of the main ones)."""

    def __init__(self, x: np.ndarray, sources: np.ndarray) -> None:
        self.pca = PCA(64, random_state=0).fit(x)
        self.bank = self._unit(self.pca.transform(x))

    @staticmethod
    def _unit(a: np.ndarray) -> np.ndarray:
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        sims = self._unit(self.pca.transform(x)) @ self.bank.T
        return np.sort(sims, axis=1)[:, -5:].mean(axis=1)


SCORES = {"source classifier": SourceClassifier, "nearest views": NearestViews}


def fit_rows(score, feats: np.ndarray, sources: np.ndarray, idx: np.ndarray):
    """A familiarity score fitted on these rows' views of every regime."""
    return score(feats[idx].reshape(-1, feats.shape[-1]), np.repeat(sources[idx], len(REGIMES)))


def in_fold_familiarity(score, feats: np.ndarray, sources: np.ndarray, groups: np.ndarray) -> np.ndarray:
    out = np.zeros(feats.shape[:2])
    for train, test in GroupKFold(5).split(feats, sources, groups):
        fam = fit_rows(score, feats, sources, train)
        for j in range(len(REGIMES)):
            out[test, j] = fam(feats[test, j])
    return out


def loso_familiarity(score, feats: np.ndarray, sources: np.ndarray) -> np.ndarray:
    out = np.full(feats.shape[:2], np.nan)
    for held in HELD_OUT.values():
        test = np.isin(sources, held)
        fam = fit_rows(score, feats, sources, np.nonzero(~test)[0])
        for j in range(len(REGIMES)):
            out[test, j] = fam(feats[test, j])
    return out


def answers(artefact, votes: dict[str, dict[str, dict]], keys: list[str], regime: str) -> dict[str, np.ndarray]:
    """For these rows and regime: the shipped pool's probability and the paste-and-erase network's
    own (448 px under 448, tiles from 448 up: the pool's two parts), and the labels."""
    from cascade.types import Level
    from consensus.fitting import LabelledVotes, artefact_probs

    first = votes[next(iter(votes))]
    rows = [
        LabelledVotes(
            first[k]["label"],
            {v: (Level.L0, votes[v][k]["probs"][regime].get(VOTES[v][2])) for v in artefact.voters},
            first[k]["long_side"][regime],
        )
        for k in keys
    ]
    large = np.array([r.long_side >= TILE_MIN_LONG_SIDE for r in rows])
    pe = votes["l0_paste_erase_detail"]
    tiles = votes["l0_paste_erase_tiles"]
    own = np.array(
        [
            tiles[k]["probs"][regime].get("tiles", np.nan) if big else pe[k]["probs"][regime]["448"]
            for k, big in zip(keys, large, strict=True)
        ]
    )
    return {"pool": artefact_probs(artefact, rows), "own": own, "y": np.array([r.label for r in rows])}


def separation(fam_in: np.ndarray, fam_loso: np.ndarray, rows: np.ndarray) -> dict[str, float]:
    """Per regime, AUROC of telling these rows as a new camera (their LOSO familiarity) from the
    same rows as a known one (in fold): 0.5 is a score that cannot tell."""
    n = int(rows.sum())
    new = np.r_[np.zeros(n), np.ones(n)]
    return {
        regime: round(float(roc_auc_score(new, -np.r_[fam_in[rows, j], fam_loso[rows, j]])), 4)
        for j, regime in enumerate(REGIMES)
    }


def mcc(y: np.ndarray, p: np.ndarray) -> float:
    """At 0.5, where exactly 0.5 (and a missing vote, NaN) is "no roadwork"."""
    return round(float(matthews_corrcoef(y, np.nan_to_num(p) > 0.5)), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="Folder with labels.csv (train split only).")
    ap.add_argument("--consensus", default="models/consensus-cpu.json")
    ap.add_argument("--work", type=Path, default=Path("runs/novelty_gate"))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    samples, feats = features(args.data, args.work)
    keys = [s.key for s in samples]
    sources = np.array([s.source for s in samples])
    groups = np.array([s.group for s in samples])
    vehicle = np.isin(sources, HELD_OUT_SOURCES)

    from consensus.artefact import ConsensusArtefact

    artefact = ConsensusArtefact.load(args.consensus)
    voters = sorted(artefact.voters)
    oof = {v: read_votes(VOTES[v][1]) for v in voters}
    loso = {
        "seed 0": {v: read_votes(VOTES[v][0]) for v in voters},
        "seed 1": {v: read_votes(SEED1 if v in PE_VOTERS else VOTES[v][0]) for v in voters},
    }
    index = {k: i for i, k in enumerate(keys)}
    loso_keys = sorted(set.intersection(*(set(d) for d in loso["seed 0"].values())))
    out: dict = {"note": __doc__.split("\n\n")[1].replace("\n", " "), "consensus": args.consensus, "scores": {}}
    for name, score in SCORES.items():
        fam_in = in_fold_familiarity(score, feats, sources, groups)
        fam_loso = loso_familiarity(score, feats, sources)
        cuts = {q: float(np.quantile(fam_in, q)) for q in QUANTILES}
        entry_score = out["scores"][name] = {
            "separation_auroc": separation(fam_in, fam_loso, vehicle),
            "cut_by_in_fold_quantile": {str(q): round(c, 4) for q, c in cuts.items()},
            "mcc": {},
        }
        print(f"[novelty] {name}: separation AUROC {entry_score['separation_auroc']}", flush=True)
        sides = {"in fold": (oof, keys, fam_in)} | {f"LOSO {s}": (v, loso_keys, fam_loso) for s, v in loso.items()}
        for side, (votes, rows, fam) in sides.items():
            idx = np.array([index[k] for k in rows])
            table = entry_score["mcc"][side] = {}
            for j, regime in enumerate(REGIMES):
                a = answers(artefact, votes, rows, regime)
                f = fam[idx, j]
                entry = table[regime] = {"pool": mcc(a["y"], a["pool"]), "own": mcc(a["y"], a["own"])}
                if side == "in fold":
                    entry["pool, vehicle sources"] = mcc(a["y"][vehicle[idx]], a["pool"][vehicle[idx]])
                for q, cut in cuts.items():
                    gated = np.where(f < cut, a["own"], a["pool"])
                    entry[f"gate q{q}"] = mcc(a["y"], gated)
                    entry[f"gate q{q}, share to own"] = round(float((f < cut).mean()), 4)
                    if side == "in fold":
                        entry[f"gate q{q}, vehicle sources"] = mcc(a["y"][vehicle[idx]], gated[vehicle[idx]])
                print(
                    f"{name:18s} {side:12s} {regime:9s} pool {entry['pool']:.3f} own {entry['own']:.3f} | "
                    + " ".join(f"q{q} {entry[f'gate q{q}']:.3f}" for q in QUANTILES),
                    flush=True,
                )
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
