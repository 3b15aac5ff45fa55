"""Train the L0 head: backbone embeddings of augmented views -> logistic regression.

Each training image gives `views` validator-transformed views (plus one full-image view, half of
them mirrored), so the head learns the crops, rotations and distortions it will be asked about.
C is chosen by group cross-validation on the training split only (groups keep frames of one
video together); the out-of-fold probabilities, each on a held-back validator view, are written
as a labelled run that `roadwork fit` can learn consensus weights and thresholds from.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import matthews_corrcoef, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from detectors.backbones import Backbone
from detectors.heads import LinearHead, sha256_file, write_manifest
from training.balance import sample_weights
from training.datasets import Dataset
from training.evaluate import progress_bar
from training.images import ImageLoadError
from training.transforms import ValidatorTransform


@dataclass(frozen=True)
class HeadTrainConfig:
    views: int = 4
    """Validator-transformed views per training image."""
    full_view: bool = True
    """Also train on the whole image resized (full-resolution validators)."""
    folds: int = 5
    Cs: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3)
    source_balance: bool = True
    """Weight (source, label) cells by 1/sqrt(size) so big one-label sources do not dominate."""
    seed: int = 0
    batch: int = 32


@dataclass
class Embedded:
    feats: np.ndarray  # (n_views, d)
    image_index: np.ndarray  # (n_views,) index into kept samples
    eval_feats: np.ndarray  # (n_images, d) one held-back validator view per image
    labels: np.ndarray  # (n_images,)
    sources: list[str]
    groups: list[str]
    keys: list[str]
    problems: list[str] = field(default_factory=list)


def make_views(image: np.ndarray, key: str, cfg: HeadTrainConfig) -> tuple[list[np.ndarray], np.ndarray]:
    train_tf = ValidatorTransform(seed=cfg.seed)
    eval_tf = ValidatorTransform(seed=cfg.seed + 1_000_003)
    views = [train_tf(image, f"{key}#view{i}") for i in range(cfg.views)]
    if cfg.full_view:
        views.append(np.asarray(Image.fromarray(image).resize((224, 224), Image.BILINEAR)))
    rng = np.random.default_rng([cfg.seed, len(key)])
    views = [v[:, ::-1].copy() if rng.random() < 0.5 else v for v in views]
    return views, eval_tf(image, key)


def embed_dataset(dataset: Dataset, backbone: Backbone, cfg: HeadTrainConfig, show_progress: bool = True) -> Embedded:
    feats, index, eval_feats = [], [], []
    labels, sources, groups, keys, problems = [], [], [], [], list(dataset.problems)
    pending: list[np.ndarray] = []
    pending_idx: list[int] = []

    def flush() -> None:
        if pending:
            feats.append(backbone.embed(pending))
            index.extend(pending_idx)
            pending.clear()
            pending_idx.clear()

    with progress_bar() as bar:
        task = bar.add_task("embed", total=len(dataset)) if show_progress else None
        for sample in dataset:
            try:
                image = sample.load()
            except ImageLoadError as exc:
                problems.append(str(exc))
                continue
            views, eval_view = make_views(image, sample.key, cfg)
            i = len(labels)
            labels.append(sample.label)
            sources.append(sample.source)
            groups.append(sample.group)
            keys.append(sample.key)
            eval_feats.append(backbone.embed([eval_view])[0])
            pending.extend(views)
            pending_idx.extend([i] * len(views))
            if len(pending) >= cfg.batch:
                flush()
            if task is not None:
                bar.advance(task)
        flush()
    if not labels:
        raise ValueError("no training image could be loaded")
    return Embedded(
        np.concatenate(feats),
        np.asarray(index),
        np.stack(eval_feats),
        np.asarray(labels),
        sources,
        groups,
        keys,
        problems,
    )


def fit_logistic(feats: np.ndarray, y: np.ndarray, w: np.ndarray, C: float):
    """The head's fit: standardised features, a logistic regression with per-row weights."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    model.fit(feats, y, logisticregression__sample_weight=w)
    return model


class HeadTrainError(ValueError):
    """The training rows cannot train a head (said to the user, not a traceback)."""


def fold_count(emb: Embedded, cfg: HeadTrainConfig) -> int:
    """`cfg.folds`, or as many as there are groups when there are fewer; refused below two groups or
    with one label (no held-out probability, no logistic fit)."""
    groups = len(set(emb.groups))
    labels = sorted({int(v) for v in emb.labels})
    if groups < 2 or labels != [0, 1]:
        raise HeadTrainError(
            f"{len(emb.labels)} usable image(s) in {groups} group(s), labels {labels}: a head needs both labels "
            "and at least two groups (its out-of-fold run holds each group out)"
        )
    return min(cfg.folds, groups)


def cross_validate(emb: Embedded, cfg: HeadTrainConfig, n_folds: int) -> tuple[float, dict[float, np.ndarray]]:
    y = emb.labels
    img_w = sample_weights(y, emb.sources, cfg.source_balance)
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=cfg.seed)
    oof: dict[float, np.ndarray] = {C: np.zeros(len(y)) for C in cfg.Cs}
    for train_idx, val_idx in folds.split(np.zeros(len(y)), y, emb.groups):
        in_train = np.isin(emb.image_index, train_idx)
        view_img = emb.image_index[in_train]
        for C in cfg.Cs:
            model = fit_logistic(emb.feats[in_train], y[view_img], img_w[view_img], C)
            oof[C][val_idx] = model.predict_proba(emb.eval_feats[val_idx])[:, 1]
    scores = {C: roc_auc_score(y, oof[C]) for C in cfg.Cs}
    best = max(cfg.Cs, key=lambda C: (round(scores[C], 3), -C))
    return best, oof


def per_source_mcc(y: np.ndarray, p: np.ndarray, sources: list[str]) -> dict[str, dict[str, float]]:
    out = {}
    src = np.asarray(sources)
    for s in sorted(set(sources)):
        sel = src == s
        pred = np.round(p[sel])
        out[s] = {
            "n": int(sel.sum()),
            "accuracy": float((pred == y[sel]).mean()),
            "mcc": float(matthews_corrcoef(y[sel], pred)) if len(set(y[sel])) > 1 else float("nan"),
        }
    return out


def write_oof_run(out_dir: Path, emb: Embedded, probs: np.ndarray, voter: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "predictions.jsonl", "w") as f:
        for i, key in enumerate(emb.keys):
            vote = {
                "voter": voter,
                "level": "L0",
                "prob": float(probs[i]),
                "weight": 1.0,
                "latency_ms": 0.0,
                "reason": "",
                "evidence": {},
            }
            f.write(
                json.dumps(
                    {
                        "key": key,
                        "label": int(emb.labels[i]),
                        "source": emb.sources[i],
                        "group": emb.groups[i],
                        "prob": float(probs[i]),
                        "answered": True,
                        "exit_level": "L0",
                        "latency_ms": 0.0,
                        "transform": "validator(oof)",
                        "votes": [vote],
                        "skipped": [],
                    }
                )
                + "\n"
            )
    return out_dir


def features_key(dataset: Dataset, backbone: Backbone, cfg: HeadTrainConfig) -> str:
    """What the embedded views depend on: the data, the backbone (its checkpoint's bytes too) and
    the views drawn; not the head's own settings (folds, C grid, balance)."""
    spec = getattr(backbone, "spec", None)
    what: dict[str, Any] = {
        "backbone": backbone.name,
        "dim": backbone.dim,
        "spec": spec.model_dump(mode="json", exclude={"device", "compile", "allow_download"}) if spec else None,
        "weights": sha256_file(spec.weights) if spec is not None and getattr(spec, "weights", None) else None,
        "data": dataset.fingerprint(),
        "views": cfg.views,
        "full_view": cfg.full_view,
        "seed": cfg.seed,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:20]


def cached_embedding(
    dataset: Dataset, backbone: Backbone, cfg: HeadTrainConfig, cache: Path | None, show_progress: bool = True
) -> tuple[Embedded, str]:
    """`embed_dataset`, read from `cache/<key>.npz` when an earlier run embedded the same views with
    the same backbone (a second head, a rerun), else embedded and written there; says which."""
    if cache is None:
        return embed_dataset(dataset, backbone, cfg, show_progress), "features embedded (no cache)"
    path = Path(cache) / f"{features_key(dataset, backbone, cfg)}.npz"
    if path.is_file():
        with np.load(path) as z:
            emb = Embedded(
                z["feats"],
                z["image_index"],
                z["eval_feats"],
                z["labels"],
                *([str(x) for x in z[k]] for k in ("sources", "groups", "keys", "problems")),
            )
        return emb, f"features read from {path} (delete it to embed again)"
    emb = embed_dataset(dataset, backbone, cfg, show_progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npz")
    np.savez(
        partial,
        **{k: getattr(emb, k) for k in ("feats", "image_index", "eval_feats", "labels")},
        **{k: np.asarray(getattr(emb, k), dtype=str) for k in ("sources", "groups", "keys", "problems")},
    )
    partial.replace(path)  # a run cut off mid-write leaves no half file under the real name
    return emb, f"features embedded and written to {path}"


def train_head(
    dataset: Dataset,
    backbone: Backbone,
    out_path: str | Path,
    cfg: HeadTrainConfig,
    voter: str = "l0_head",
    show_progress: bool = True,
    features_cache: Path | None = None,
) -> dict[str, Any]:
    t0 = time.time()
    emb, features = cached_embedding(dataset, backbone, cfg, features_cache, show_progress)
    n_folds = fold_count(emb, cfg)
    best_C, oof = cross_validate(emb, cfg, n_folds)
    y = emb.labels
    view_y = y[emb.image_index]
    w = sample_weights(y, emb.sources, cfg.source_balance)[emb.image_index]
    head = LinearHead.from_sklearn(fit_logistic(emb.feats, view_y, w, best_C), backbone=backbone.name)
    out_path = Path(out_path)
    head.save(out_path)
    p = oof[best_C]
    cv = {
        "folds": n_folds,
        "C": best_C,
        "auroc": float(roc_auc_score(y, p)),
        "mcc_at_0.5": float(matthews_corrcoef(y, np.round(p))),
        "auroc_by_C": {str(C): float(roc_auc_score(y, oof[C])) for C in cfg.Cs},
        "per_source": per_source_mcc(y, p, emb.sources),
    }
    info = {
        "backbone": backbone.name,
        "dim": backbone.dim,
        "data_hash": dataset.fingerprint(),
        "data_root": str(dataset.root),
        "n_images": int(len(y)),
        "n_views": int(len(emb.feats)),
        "positives": int(y.sum()),
        "train_config": asdict(cfg),
        "cv": cv,
        "skipped_inputs": emb.problems,
        "features": features,
        "seconds": round(time.time() - t0, 1),
    }
    manifest = write_manifest(out_path, info)
    oof_dir = write_oof_run(out_path.parent / f"{out_path.stem}.oof", emb, p, voter)
    return {"head": str(out_path), "manifest": str(manifest), "oof_run": str(oof_dir), **info}
