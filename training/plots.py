"""PNG plots for an evaluation run (matplotlib, headless)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_plots(y: np.ndarray, p: np.ndarray, latency_ms: np.ndarray, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    paths = []
    fig, ax = plt.subplots(figsize=(4, 4))
    if len(np.unique(y)) == 2:
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label="cascade")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    paths.append(_save(fig, out / "roc.png"))

    fig, ax = plt.subplots(figsize=(4, 4))
    edges = np.linspace(0, 1, 11)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, 9)
    centres, freq = [], []
    for b in range(10):
        if (idx == b).any():
            centres.append(p[idx == b].mean())
            freq.append(y[idx == b].mean())
    ax.plot(centres, freq, "o-", label="cascade")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="predicted probability", ylabel="fraction roadwork", title="Reliability")
    paths.append(_save(fig, out / "reliability.png"))

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(latency_ms, bins=30)
    ax.set(xlabel="latency per image (ms)", ylabel="images", title="Latency")
    paths.append(_save(fig, out / "latency.png"))
    return paths


def _save(fig, path: Path) -> Path:  # noqa: ANN001
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
