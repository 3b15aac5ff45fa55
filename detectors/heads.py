"""Small trained heads on backbone embeddings, stored as plain arrays (.npz) plus a manifest.

No pickles: a head file is data (standardiser + logistic weights), so loading it cannot run code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HEAD_FORMAT = "roadwork-linear-head/1"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class LinearHead:
    """p = sigmoid(((x - mean) / scale) . coef + intercept)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    backbone: str

    def __post_init__(self) -> None:
        d = self.coef.shape
        if self.mean.shape != d or self.scale.shape != d or len(d) != 1:
            raise ValueError(f"head arrays disagree: mean {self.mean.shape}, scale {self.scale.shape}, coef {d}")
        if np.any(self.scale <= 0):
            raise ValueError("head scale must be > 0 everywhere")

    @property
    def dim(self) -> int:
        return int(self.coef.shape[0])

    def decision(self, feats: np.ndarray) -> np.ndarray:
        if feats.ndim != 2 or feats.shape[1] != self.dim:
            raise ValueError(f"head expects features (n, {self.dim}), got {feats.shape}")
        return ((feats - self.mean) / self.scale) @ self.coef + self.intercept

    def predict_proba(self, feats: np.ndarray) -> np.ndarray:
        z = np.clip(self.decision(feats), -50, 50)
        return 1.0 / (1.0 + np.exp(-z))

    @classmethod
    def random(cls, dim: int, backbone: str, seed: int = 0) -> LinearHead:
        """A head of random weights for a random backbone (speed runs: its answers mean nothing)."""
        coef = np.random.default_rng(seed).normal(0, 0.01, dim)
        return cls(mean=np.zeros(dim), scale=np.ones(dim), coef=coef, intercept=0.0, backbone=backbone)

    @classmethod
    def from_sklearn(cls, pipeline: Any, backbone: str) -> LinearHead:
        """From a fitted Pipeline(StandardScaler, LogisticRegression)."""
        scaler, lr = pipeline[0], pipeline[-1]
        return cls(
            mean=scaler.mean_.astype(np.float64),
            scale=scaler.scale_.astype(np.float64),
            coef=lr.coef_[0].astype(np.float64),
            intercept=float(lr.intercept_[0]),
            backbone=backbone,
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            np.savez(
                f,
                mean=self.mean,
                scale=self.scale,
                coef=self.coef,
                intercept=np.array([self.intercept]),
                backbone=np.array(self.backbone),
                format=np.array(HEAD_FORMAT),
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> LinearHead:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"head file {str(path)!r} not found; train one with `roadwork train head --data DIR`"
            )
        with np.load(path, allow_pickle=False) as z:
            fmt = str(z["format"]) if "format" in z else "?"
            if fmt != HEAD_FORMAT:
                raise ValueError(f"head file {str(path)!r} has format {fmt!r}, expected {HEAD_FORMAT!r}")
            return cls(
                mean=z["mean"],
                scale=z["scale"],
                coef=z["coef"],
                intercept=float(z["intercept"][0]),
                backbone=str(z["backbone"]),
            )


def write_manifest(head_path: Path, info: dict[str, Any]) -> Path:
    manifest = {"file": head_path.name, "sha256": sha256_file(head_path), **info}
    out = head_path.with_suffix(".manifest.json")
    out.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return out


def verified_artefact(path: Path, base_dir: Path) -> Path:
    """A trained artefact named in a profile: resolved against the profile's folder (unless
    absolute) and checked against its manifest, where it has one."""
    resolved = path if path.is_absolute() else (base_dir / path).resolve()
    verify_manifest(resolved)
    return resolved


def verify_manifest(head_path: Path) -> dict[str, Any] | None:
    """Check the head against its manifest's sha256 when a manifest exists."""
    mpath = head_path.with_suffix(".manifest.json")
    if not mpath.is_file():
        return None
    manifest = json.loads(mpath.read_text())
    actual = sha256_file(head_path)
    if manifest.get("sha256") != actual:
        raise ValueError(
            f"{str(head_path)!r} does not match its manifest (sha256 {actual[:12]}… vs "
            f"{str(manifest.get('sha256'))[:12]}…); retrain or restore the file"
        )
    return manifest
