"""Is a new camera's weak answer in the pool, or in the networks? Six levers that need no
training, each scored on the LOSO votes of two seeds (the sixth: all four) of the paste-and-erase
recipe (a camera the networks never saw) and on the in-fold OOF votes (train split only; dev is
never read):

    PYTHONPATH=. python benchmarks/pool_levers.py --out benchmarks/results/pool_levers_cpu.json

1. the threshold: the shipped set's pools (fitted as `roadwork fit --profile` fits them, on the
   OOF votes) scored at other cut-offs than 0.5, per regime;
2. one pool per 224-px regime: a letterbox frame is easy to tell from a cropped one (its black
   bars), so the miner could pick a pool fitted on that regime's rows alone;
3. cutting the letterbox bars off before the networks: the `letterbox` regime's level-0 views are
   the whole frame on black bars, and a frame with its bars cut off and squashed to a square is
   what the networks' `full` views at 224 and 448 px are (the frame squashed to a square, without
   the 224-px JPEG), so on those rows `full` against `letterbox` at the same size tells what the
   cut would give.
4. fitting the pool on new-camera votes too: the shipped set's pools fitted on the OOF rows and
   the LOSO rows of every held-out source but one (one seed's networks), then scored on that
   source's LOSO rows, each source in turn, so that no row is scored by a pool fitted on it; and
   the same fit scored on the other seed's LOSO rows of that source (other networks), and on the
   in-fold rows (fitted on the OOF rows and every LOSO row of the seed). "new-camera rows only"
   fits on the LOSO rows alone, the same way.
5. a cut-off that follows the stream: validators draw label 1 half the time, so a miner could
   answer "roadwork" when a frame's pooled vote is above the median of its last 100, which says
   yes about half the time whatever a new camera does to the votes. Scored on streams drawn from
   the rows as validators draw them (half positives, with replacement; and a third positives, for
   when that belief is wrong), MCC of the fixed 0.5 cut-off against the stream's median.
6. the voters' weights: the plain network's 224-px voter (strong in fold, weak on a new camera)
   weighs most in the fitted pool; each pool's weights moved halfway to equal, or made equal, its
   calibration and threshold fitted again on the OOF rows (`consensus.fitting.calibrated_pool`),
   scored on the LOSO rows of all four shipped seeds.

About 1 minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # oof_pooling, loso_networks

SEED1 = "benchmarks/results/loso_votes_l0_backbone_paste_erase_seed1.jsonl.gz"
SEED_FILES = {"seed0": None, "seed1": SEED1} | {
    f"seed{s}": f"benchmarks/results/loso_votes_l0_backbone_paste_erase_seed{s}.jsonl.gz" for s in (2, 3)
}
"""The paste-and-erase networks' LOSO votes of each shipped seed (None: the file `oof_pooling.LOSO` names)."""
WEIGHT_MOVES = (0.5, 1.0)  # lever 6: how far each pool's weights move towards equal
SHIPPED = ["l0_head", "l0_paste_erase", "l0_paste_erase_detail", "l0_tiles", "l0_paste_erase_tiles"]
SMALL_REGIMES = ("v0.2", "letterbox")
THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
STREAM_WINDOW = 100  # the answers the subnet's MCC is taken over
STREAM_LENGTH = 3000
STREAM_DRAWS = 3


def of_regime(preds: list[dict], regime: str) -> list[dict]:
    return [r for r in preds if r["key"].endswith(f"#{regime}")]


def scored(art, preds: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    from consensus.fitting import artefact_probs, rows_from_predictions

    rows = rows_from_predictions(preds)
    return np.array([r.label for r in rows]), artefact_probs(art, rows)


def mcc(y: np.ndarray, p: np.ndarray, cut: float = 0.5) -> float:
    from sklearn.metrics import matthews_corrcoef

    return round(float(matthews_corrcoef(y, p >= cut)), 3)


def pool_levers(work: Path) -> dict:
    from oof_pooling import ABSTAINING, CANDIDATES, loso_rows, sides_by_size, vote_runs

    from consensus.fitting import fit_consensus, rows_from_predictions
    from training.evaluate import merge_runs

    runs = vote_runs(CANDIDATES, work / "oof")
    every_seed = {s: seed_runs(s, work) for s in SEED_FILES}
    seeds = {s: every_seed[s] for s in ("seed0", "seed1")}  # levers 1-5
    preds = merge_runs([runs[v] for v in SHIPPED])
    shipped = fit_consensus(rows_from_predictions(preds), voter_sides=sides_by_size(SHIPPED))
    small = [v for v in SHIPPED if v not in ABSTAINING]
    small_preds = merge_runs([runs[v] for v in small])
    out: dict = {"voters": SHIPPED, "threshold": {}, "pool_per_regime": {}}
    sets = {"in fold": preds} | {f"new camera, {s}": loso_rows(r, SHIPPED) for s, r in seeds.items()}
    for name, rows in sets.items():
        out["threshold"][name] = {}
        for regime in ("v0.2", "letterbox", "full"):
            y, p = scored(shipped, of_regime(rows, regime))
            out["threshold"][name][regime] = {str(t): mcc(y, p, t) for t in THRESHOLDS}
    for regime in SMALL_REGIMES:
        own = fit_consensus(rows_from_predictions(of_regime(small_preds, regime)))
        out["pool_per_regime"][regime] = {
            name: {
                "shipped pool": mcc(*scored(shipped, of_regime(rows, regime))),
                "own pool": mcc(*scored(own, of_regime(rows, regime))),
            }
            for name, rows in sets.items()
        }
    out["stream_cut_off"] = {
        name: {
            regime: stream_cut_off(*scored(shipped, of_regime(rows, regime)))
            for regime in ("v0.2", "letterbox", "full")
        }
        for name, rows in sets.items()
    }
    out["fitted_on_new_cameras"] = fitted_on_new_cameras(preds, {s: loso_rows(r, SHIPPED) for s, r in seeds.items()})
    out["fitted_on_new_cameras"]["shipped pool (OOF rows only)"] = {
        name: regime_mccs(shipped, rows) for name, rows in sets.items()
    }
    out["voter_weights"] = voter_weights(
        shipped, preds, {"in fold": preds} | {f"new camera, {s}": loso_rows(r, SHIPPED) for s, r in every_seed.items()}
    )
    return out


def seed_runs(seed: str, work: Path) -> dict[str, list[dict]]:
    """Every LOSO voter's run, the paste-and-erase ones from that seed's networks."""
    from oof_pooling import LOSO, vote_runs

    path = SEED_FILES[seed]
    mapping = {v: (path if path and "paste_erase" in v else p, view) for v, (p, view) in LOSO.items()}
    return vote_runs(mapping, work / f"loso_{seed}")


def voter_weights(shipped, oof: list[dict], sets: dict[str, list[dict]]) -> dict:
    """Lever 6 (module docstring): the shipped pools reweighed and calibrated again on the OOF rows,
    scored on each of `sets` -> {weights: {"weights": per pool, scored on: {regime: MCC}}}."""
    from oof_pooling import sides_by_size

    from consensus.fitting import calibrated_pool, covers, rows_from_predictions, scored_by_their_voters

    rows = scored_by_their_voters(rows_from_predictions(oof), sides_by_size(SHIPPED))
    out = {}
    for move in (0.0, *WEIGHT_MOVES):
        pools = [
            calibrated_pool(
                [r for r in rows if covers(pool.long_side, int(r.long_side or 0))],
                {v: (1 - move) * w + move for v, w in pool.weights.items()},
                clip=shipped.clip,
                long_side=pool.long_side,
            )
            for pool in shipped.pools
        ]
        art = shipped.model_copy(update={"pools": pools})
        name = "fitted (shipped)" if move == 0 else "equal" if move == 1 else f"moved {move:g} of the way to equal"
        out[name] = {"weights": [{v: round(w, 3) for v, w in p.weights.items()} for p in pools]} | {
            scored_on: regime_mccs(art, r) for scored_on, r in sets.items()
        }
    return out


def stream_cut_off(y: np.ndarray, p: np.ndarray) -> dict[str, dict[str, float]]:
    """Lever 5 (module docstring): {share of positives: {"0.5": MCC, "median of the last 100": MCC}},
    each the mean over STREAM_DRAWS seeded streams."""
    from sklearn.metrics import matthews_corrcoef

    logit = np.log(np.clip(p, 1e-6, 1 - 1e-6) / np.clip(1 - p, 1e-6, 1))
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    out = {}
    for share in (0.5, 1 / 3):
        fixed, follows = [], []
        for draw in range(STREAM_DRAWS):
            rng = np.random.default_rng(draw)
            label = rng.random(STREAM_LENGTH) < share
            idx = np.where(label, rng.choice(pos, STREAM_LENGTH), rng.choice(neg, STREAM_LENGTH))
            z = logit[idx]
            # the median of the votes before this one (0.5 until 20 have come)
            cut = np.array([np.median(z[max(0, i - STREAM_WINDOW) : i]) if i >= 20 else 0.0 for i in range(len(z))])
            fixed.append(matthews_corrcoef(label, z >= 0))
            follows.append(matthews_corrcoef(label, z > cut))
        out[f"{share:.2f} positives"] = {
            "0.5": round(float(np.mean(fixed)), 3),
            f"median of the last {STREAM_WINDOW}": round(float(np.mean(follows)), 3),
        }
    return out


def held_out_of(source: str) -> str:
    from loso_networks import HELD_OUT

    return next(name for name, sources in HELD_OUT.items() if source in sources)


def regime_mccs(art, rows: list[dict]) -> dict[str, float]:
    return {regime: mcc(*scored(art, of_regime(rows, regime))) for regime in ("v0.2", "letterbox", "full")}


def fitted_on_new_cameras(oof: list[dict], seeds: dict[str, list[dict]]) -> dict:
    """Lever 4 (module docstring): {fit: {scored on: {regime: MCC}}}."""
    from loso_networks import HELD_OUT
    from oof_pooling import sides_by_size

    from consensus.fitting import fit_consensus, rows_from_predictions

    def fit(rows: list[dict]):
        return fit_consensus(rows_from_predictions(rows), voter_sides=sides_by_size(SHIPPED))

    out: dict = {}
    for seed, loso in seeds.items():
        other = next(s for s in seeds if s != seed)
        for name, with_oof in (("OOF and new-camera rows", True), ("new-camera rows only", False)):
            scored_rows: dict[str, list[dict]] = {seed: [], other: []}
            probs: dict[str, list[np.ndarray]] = {seed: [], other: []}
            for held_out in HELD_OUT:
                art = fit([*(oof if with_oof else []), *(r for r in loso if held_out_of(r["source"]) != held_out)])
                for s in (seed, other):
                    rows = [r for r in seeds[s] if held_out_of(r["source"]) == held_out]
                    scored_rows[s] += rows
                    probs[s].append(scored(art, rows)[1])
            entry = out.setdefault(f"fitted with {seed}'s LOSO rows, {name}", {})
            for s in (seed, other):
                y = np.array([r["label"] for r in scored_rows[s]])
                p = np.concatenate(probs[s])
                entry[f"new camera, {s}"] = {
                    regime: mcc(y[sel], p[sel])
                    for regime in ("v0.2", "letterbox", "full")
                    if (sel := np.array([r["key"].endswith(f"#{regime}") for r in scored_rows[s]])).any()
                }
            entry["in fold"] = regime_mccs(fit([*(oof if with_oof else []), *loso]), oof)
    return out


def bar_cut(files: dict[str, str]) -> dict:
    """Level-0 letterbox rows: the networks' `letterbox` against their `full` view, same size."""
    from loso_networks import read_votes
    from sklearn.metrics import roc_auc_score

    from training.finetune import EVAL_SEED_OFFSET
    from training.transforms import ValidatorTransform

    level = ValidatorTransform(seed=EVAL_SEED_OFFSET, fit="letterbox").level_for  # the OOF views' seed
    out = {}
    for name, path in files.items():
        rows = [r for r in read_votes(path).values() if level(r["key"]) == 0]
        y = [r["label"] for r in rows]
        out[name] = {"rows": len(rows)} | {
            f"{regime}@{size}": round(float(roc_auc_score(y, [r["probs"][regime][size] for r in rows])), 3)
            for size in ("224", "448")
            for regime in ("letterbox", "full")
        }
    return out


BAR_CUT_FILES = {
    "paste-and-erase, new camera, seed 0": "benchmarks/results/loso_votes_l0_backbone_paste_erase.jsonl",
    "paste-and-erase, new camera, seed 1": SEED1,
    "plain, new camera": "benchmarks/results/loso_votes_l0_backbone.jsonl",
    "paste-and-erase, in fold": "models/l0_backbone_paste_erase.oof.jsonl",
    "plain, in fold": "models/l0_backbone.oof.jsonl",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("runs/pool_levers"))
    args = ap.parse_args()
    result = pool_levers(args.work) | {"bar_cut_auroc_level0": bar_cut(BAR_CUT_FILES)}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
