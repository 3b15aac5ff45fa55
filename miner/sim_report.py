"""Numbers and pictures of a simulated run: latency, timeouts, running MCC / accuracy, subnet reward.

The reward follows `training.metrics.subnet_reward_stream` (MCC over the last 100 answers,
accuracy over the last 10, np.round thresholding). A query without an answer (-1, timeout,
refusal) earns 0 that round and counts as a wrong prediction in the windows, as it does for a
validator's tracker.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import matthews_corrcoef

from training.metrics import subnet_reward_stream, summarise


def running(y: np.ndarray, pred: np.ndarray, window: int, fn) -> np.ndarray:
    out = np.zeros(len(y))
    for t in range(len(y)):
        lo = max(0, t + 1 - window)
        out[t] = fn(y[lo : t + 1], pred[lo : t + 1])
    return out


def _mcc(y: np.ndarray, p: np.ndarray) -> float:
    return float(matthews_corrcoef(y, p)) if len(np.unique(y)) == 2 and len(y) > 1 else 0.0


def _pct(x: np.ndarray, q: float) -> float | None:
    return float(np.percentile(x, q)) if len(x) else None


def streams(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    rows = sorted(rows, key=lambda r: r["index"])
    y = np.array([r["label"] for r in rows], dtype=int)
    p = np.array([r["prediction"] for r in rows], dtype=float)
    ok = np.array([r["answered"] for r in rows], dtype=bool)
    filled = np.where(ok, p, 1.0 - y)  # no answer counts as the wrong answer
    pred = np.round(filled).astype(int)
    with warnings.catch_warnings():  # windows with one class: MCC is 0 by convention, no need to warn
        warnings.simplefilter("ignore", UserWarning)
        reward = subnet_reward_stream(y, filled)
    reward[~ok] = 0.0
    return {
        "y": y,
        "p": p,
        "ok": ok,
        "pred": pred,
        "reward": reward,
        "mcc100": running(y, pred, 100, _mcc),
        "acc10": running(y, pred, 10, lambda a, b: float((a == b).mean())),
        "latency_ms": np.array([r["latency_ms"] for r in rows], dtype=float),
    }


def summarise_run(rows: list[dict[str, Any]]) -> dict[str, Any]:
    if not rows:
        raise ValueError("no queries were sent")
    s = streams(rows)
    ok, lat = s["ok"], s["latency_ms"]
    timed_out = sum(bool(r["timed_out"]) for r in rows)
    out: dict[str, Any] = {
        "queries": len(rows),
        "answered": int(ok.sum()),
        "unanswered": int((~ok).sum()),
        "timeouts": timed_out,
        "status_codes": {
            str(c): sum(r["status_code"] == c for r in rows) for c in sorted({r["status_code"] for r in rows})
        },
        "latency_ms": {
            "p50": _pct(lat, 50),
            "p95": _pct(lat, 95),
            "p99": _pct(lat, 99),
            "max": float(lat.max()),
            "mean": float(lat.mean()),
        },
        "reward": {
            "mean": float(s["reward"].mean()),
            "final": float(s["reward"][-1]),
            "note": "training.metrics.subnet_reward_stream over queries in send order; no answer = 0",
        },
        "running_final": {"mcc_100": float(s["mcc100"][-1]), "accuracy_10": float(s["acc10"][-1])},
    }
    if ok.any():
        out["answered_metrics"] = summarise(s["y"][ok], s["p"][ok])
    proc = [r["miner_process_ms"] for r in rows if r.get("miner_process_ms") is not None]
    if proc:
        out["miner_process_ms"] = {"p50": _pct(np.array(proc), 50), "p95": _pct(np.array(proc), 95)}
    return out


def write_plot(rows: list[dict[str, Any]], summary: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = streams(rows)
    x = np.arange(1, len(s["y"]) + 1)
    fig, axes = plt.subplots(3, 1, figsize=(7, 7.5), sharex=True)
    axes[0].scatter(x[s["ok"]], s["latency_ms"][s["ok"]] / 1000, s=10, label="answered")
    if (~s["ok"]).any():
        axes[0].scatter(x[~s["ok"]], s["latency_ms"][~s["ok"]] / 1000, s=14, c="red", marker="x", label="no answer")
    axes[0].axhline(9.0, color="k", ls="--", lw=0.8, label="validator timeout (9 s)")
    # log scale: 0.1-0.3 s answers stay readable with the 9 s timeout still on the panel
    low = float(np.nanmin(s["latency_ms"][s["ok"]])) / 1000 if s["ok"].any() else 0.05
    axes[0].set_yscale("log")
    axes[0].set_ylim(max(min(low * 0.7, 0.05), 1e-3), 12)
    axes[0].set(
        ylabel="latency (s, log)",
        title=f"{summary['queries']} queries · p95 "
        f"{summary['latency_ms']['p95']:.0f} ms · {summary['unanswered']} unanswered",
    )
    axes[0].legend(fontsize=7, loc="upper right")
    axes[1].plot(x, s["mcc100"], label="MCC (last 100)")
    axes[1].plot(x, s["acc10"], label="accuracy (last 10)")
    axes[1].set(ylabel="running score", ylim=(-1.05, 1.05))
    axes[1].legend(fontsize=7, loc="lower right")
    axes[2].plot(x, s["reward"], color="tab:green")
    axes[2].set(
        xlabel="query", ylabel="subnet reward", ylim=(-0.05, 1.05), title=f"mean reward {summary['reward']['mean']:.3f}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def table_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    lat, am = summary["latency_ms"], summary.get("answered_metrics", {})
    mcc = am.get("mcc")
    return [
        ("queries", str(summary["queries"])),
        (
            "answered / unanswered / timeouts",
            f"{summary['answered']} / {summary['unanswered']} / {summary['timeouts']}",
        ),
        ("latency p50 / p95 / max (ms)", f"{lat['p50']:.0f} / {lat['p95']:.0f} / {lat['max']:.0f}"),
        (
            "MCC / accuracy (answered)",
            f"{'n/a' if mcc is None else f'{mcc:.3f}'} / {am.get('accuracy', float('nan')):.3f}",
        ),
        (
            "running MCC(100) / accuracy(10) at end",
            f"{summary['running_final']['mcc_100']:.3f} / {summary['running_final']['accuracy_10']:.3f}",
        ),
        ("subnet reward mean / final", f"{summary['reward']['mean']:.3f} / {summary['reward']['final']:.3f}"),
        ("exit levels", ", ".join(f"{k}: {v}" for k, v in summary.get("exit_levels", {}).items()) or "-"),
        ("errors", ", ".join(f"{k}: {v}" for k, v in summary.get("errors", {}).items()) or "none"),
    ]


def write_summary_md(summary: dict[str, Any], path: Path) -> Path:
    lines = ["# Simulated validator run", "", "| measure | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in table_rows(summary)]
    lines += ["", "![simulation](simulation.png)", ""]
    path.write_text("\n".join(lines))
    return path
