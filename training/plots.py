"""PNG plots for an evaluation run (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_plots(y: np.ndarray, p: np.ndarray, latency_ms: np.ndarray, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    from training.metrics import expected_calibration_error

    paths = []
    fig, ax = plt.subplots(figsize=(4, 4))
    title = "ROC"
    if len(np.unique(y)) == 2:
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label="cascade")
        title = f"ROC (AUROC {roc_auc_score(y, p):.3f})"
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    paths.append(_save(fig, out / "roc.png"))

    fig, ax = plt.subplots(figsize=(4, 4))
    edges = np.linspace(0, 1, 11)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, 9)
    centres, freq, counts = [], [], []
    for b in range(10):
        if (idx == b).any():
            centres.append(p[idx == b].mean())
            freq.append(y[idx == b].mean())
            counts.append(int((idx == b).sum()))
    ax.plot(centres, freq, "o-", label="cascade")
    for c, f, n in zip(centres, freq, counts, strict=True):
        ax.annotate(str(n), (c, f), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(
        xlabel="predicted probability",
        ylabel="fraction roadwork",
        title=f"Reliability (ECE {expected_calibration_error(y, p):.3f}; images per bin)",
    )
    paths.append(_save(fig, out / "reliability.png"))

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(latency_ms, bins=30)
    p50, p95 = np.percentile(latency_ms, [50, 95])
    ax.axvline(p50, color="k", lw=1, ls="--", label=f"p50 {p50:.0f} ms")
    ax.axvline(p95, color="r", lw=1, ls="--", label=f"p95 {p95:.0f} ms")
    ax.legend(fontsize=7)
    ax.set(xlabel="latency per image (ms)", ylabel="images", title="Latency")
    paths.append(_save(fig, out / "latency.png"))
    return paths


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
