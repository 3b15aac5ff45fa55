"""Offline evaluation: run the cascade over a labelled dataset and write a run folder.

RUN/predictions.jsonl  one row per image: key, label, source, prob, exit level, latency, every vote
RUN/metrics.json       MCC, accuracy, AUROC, ECE, confusion, per-source, latency, exit levels, reward
RUN/run.json           data root, transform, profile (what `roadwork review` needs to find the images)
RUN/problems.txt       inputs that were skipped, with the file name and why
RUN/*.png, report.md   ROC, reliability diagram, latency histogram and a short summary
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cascade.observer import CascadeObserver
from cascade.pipeline import Cascade
from cascade.types import Frame, Verdict
from training.datasets import Dataset, Sample
from training.images import ImageLoadError
from training.metrics import BinaryMetrics
from training.plots import write_plots


def progress_bar(transient: bool = False) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), transient=transient)


@dataclass
class EvalResult:
    out_dir: Path
    metrics: dict[str, Any]
    problems: list[str]


def prediction_row(sample: Sample, verdict: Verdict, latency_ms: float, transform: str) -> dict[str, Any]:
    return {"key": sample.key, "label": sample.label, "source": sample.source, "group": sample.group,
            "prob": verdict.prob, "answered": verdict.answered,
            "exit_level": verdict.exit_level.name if verdict.exit_level is not None else None,
            "latency_ms": round(latency_ms, 3), "transform": transform,
            "votes": [v.to_dict() for v in verdict.votes], "skipped": list(verdict.skipped)}


def evaluate(cascade: Cascade, dataset: Dataset, transform: Callable[[np.ndarray, str], np.ndarray],
             transform_name: str, out_dir: str | Path, show_progress: bool = True,
             observer_for: Callable[[Sample], CascadeObserver] | None = None,
             run_info: dict[str, Any] | None = None) -> EvalResult:
    """`observer_for(sample)` gives each query its own observer (tracing); `run_info` goes into
    RUN/run.json beside the data root and transform, which `roadwork review` reads."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps({
        "data_root": str(Path(dataset.root).resolve()), "transform": transform_name,
        "profile": cascade.config.name, **(run_info or {})}, indent=2) + "\n")
    problems = list(dataset.problems)
    metrics = BinaryMetrics()
    with open(out / "predictions.jsonl", "w") as preds, progress_bar() as bar:
        task = bar.add_task("eval", total=len(dataset)) if show_progress else None
        for sample in dataset:
            try:
                image = transform(sample.load(), sample.key)
            except ImageLoadError as exc:
                problems.append(str(exc))
                continue
            frame = Frame(image, source=sample.source, frame_id=sample.key)
            t0 = time.monotonic()
            verdict = cascade.run_sync(frame, observer=observer_for(sample) if observer_for else None)
            latency_ms = (time.monotonic() - t0) * 1000
            preds.write(json.dumps(prediction_row(sample, verdict, latency_ms, transform_name)) + "\n")
            metrics.update(sample.label, verdict.prob, sample.source, latency_ms,
                           verdict.exit_level.name if verdict.exit_level is not None else "none")
            if task is not None:
                bar.advance(task)
    (out / "problems.txt").write_text("".join(p + "\n" for p in problems))
    if not metrics.labels:
        raise ValueError(f"no image could be evaluated; see {out / 'problems.txt'}")
    result = metrics.compute()
    result["transform"] = transform_name
    result["profile"] = cascade.config.name
    result["skipped_inputs"] = len(problems)
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    write_plots(np.asarray(metrics.labels), np.asarray(metrics.probs), np.asarray(metrics.latencies_ms), out)
    write_report(result, out)
    return EvalResult(out, result, problems)


def fmt_metric(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def write_report(m: dict[str, Any], out: Path) -> Path:
    lines = [f"# Evaluation: profile `{m['profile']}`, transform `{m['transform']}`", "",
             f"- images: {m['n']} ({m['positives']} roadwork), skipped inputs: {m['skipped_inputs']}",
             f"- MCC {fmt_metric(m['mcc'])} · accuracy {m['accuracy']:.3f} · AUROC "
             f"{m['auroc'] if m['auroc'] is None else round(m['auroc'], 3)} · ECE {m['ece']:.3f}",
             f"- latency p50 {m['latency_ms']['p50']:.1f} ms · p95 {m['latency_ms']['p95']:.1f} ms",
             f"- simulated subnet reward: mean {m['subnet_reward']['mean']:.3f}",
             f"- exit levels: {m['exit_levels']}", "", "| source | n | + | MCC | accuracy |",
             "| --- | --- | --- | --- | --- |"]
    for s, r in m["per_source"].items():
        lines.append(f"| {s} | {r['n']} | {r['positives']} | {fmt_metric(r['mcc'])} | {r['accuracy']:.3f} |")
    lines += ["", "![ROC](roc.png) ![reliability](reliability.png) ![latency](latency.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def read_predictions(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "predictions.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no predictions.jsonl; make one with `roadwork eval --out {run_dir}`")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
