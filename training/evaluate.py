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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cascade.observer import CascadeObserver
from cascade.pipeline import Cascade
from cascade.types import Frame, Verdict, subnet_answer
from training.datasets import Dataset, Sample
from training.images import ImageLoadError
from training.metrics import BinaryMetrics, summarise
from training.plots import write_plots


class LineProgress(Progress):
    """A rich progress bar in a terminal; elsewhere (pm2, a file, CI) a plain line per task every
    `every_s` seconds and at the end, so long work is never silent."""

    def __init__(self, *columns: Any, every_s: float = 30.0, **kwargs: Any) -> None:
        super().__init__(*columns, **kwargs)
        self.every_s = every_s
        self._said: dict[Any, float] = {}

    def advance(self, task_id: Any, advance: float = 1) -> None:
        super().advance(task_id, advance)
        if self.console.is_terminal:
            return
        task = next(t for t in self.tasks if t.id == task_id)
        now = time.monotonic()
        first = self._said.setdefault(task_id, now - self.every_s if self.every_s <= 0 else now)
        if now - first < self.every_s and not task.finished:
            return
        self._said[task_id] = now
        left = task.time_remaining
        total = int(task.total) if task.total is not None else "?"
        self.console.print(
            f"{task.description}: {int(task.completed)}/{total} after {task.elapsed or 0:.0f} s"
            + (f", about {left:.0f} s left" if left is not None and not task.finished else ""),
            highlight=False,
            soft_wrap=True,
        )


def progress_bar(transient: bool = False, every_s: float = 30.0) -> Progress:
    return LineProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=transient,
        every_s=every_s,
    )


class WorstMistakes:
    """The `keep` most confident wrong answers, with a thumbnail of what the cascade saw."""

    def __init__(self, keep: int = 8, side: int = 160) -> None:
        self.keep, self.side = keep, side
        self.items: list[tuple[float, str, int, float, str, np.ndarray]] = []

    def offer(self, sample: Sample, prob: float, image: np.ndarray) -> None:
        error = abs(sample.label - prob)
        if round(prob) == sample.label or (len(self.items) >= self.keep and error <= self.items[-1][0]):
            return
        from PIL import Image

        thumb = Image.fromarray(image)
        thumb.thumbnail((self.side, self.side))
        self.items.append((error, sample.key, sample.label, prob, sample.source, np.asarray(thumb)))
        self.items.sort(key=lambda t: -t[0])
        del self.items[self.keep :]

    def write(self, folder: Path) -> list[dict[str, Any]]:
        from PIL import Image

        rows = []
        if self.items:
            folder.mkdir(parents=True, exist_ok=True)
        for i, (_, key, label, prob, source, thumb) in enumerate(self.items):
            name = f"{i:02d}.jpg"
            Image.fromarray(thumb).save(folder / name, quality=85)
            rows.append(
                {
                    "key": key,
                    "label": label,
                    "prob": round(prob, 4),
                    "source": source,
                    "thumbnail": f"{folder.name}/{name}",
                }
            )
        return rows


@dataclass
class EvalResult:
    out_dir: Path
    metrics: dict[str, Any]
    problems: list[str]


def prediction_row(
    sample: Sample, verdict: Verdict, latency_ms: float, transform: str, long_side: int
) -> dict[str, Any]:
    """One predictions.jsonl row; `long_side` is the scored frame's (after the transform), which
    `roadwork fit --profile` needs where voters score only some frame sizes."""
    return {
        "key": sample.key,
        "label": sample.label,
        "source": sample.source,
        "group": sample.group,
        "long_side": long_side,
        "prob": verdict.prob,
        "answered": verdict.answered,
        "exit_level": verdict.exit_level.name if verdict.exit_level is not None else None,
        "latency_ms": round(latency_ms, 3),
        "transform": transform,
        "votes": [v.to_dict() for v in verdict.votes],
        "skipped": list(verdict.skipped),
    }


@dataclass(frozen=True)
class Scored:
    """One sample through the cascade: its predictions.jsonl row and what the cascade saw (or a
    thumbnail of it), or why it could not be scored."""

    sample: Sample
    row: dict[str, Any] | None
    image: np.ndarray | None = None
    problem: str = ""


def score_sample(
    cascade: Cascade,
    sample: Sample,
    transform: Callable[[np.ndarray, str], np.ndarray],
    transform_name: str,
    observer: CascadeObserver | None = None,
) -> Scored:
    """The one place a labelled sample is scored: in this process, and in each Ray replica."""
    try:
        image = transform(sample.load(), sample.key)
    except ImageLoadError as exc:
        return Scored(sample, None, problem=str(exc))
    frame = Frame(image, source=sample.source, frame_id=sample.key)
    t0 = time.monotonic()
    verdict = cascade.run_sync(frame, observer=observer)
    latency_ms = (time.monotonic() - t0) * 1000
    return Scored(sample, prediction_row(sample, verdict, latency_ms, transform_name, frame.long_side), image)


def evaluate(
    cascade: Cascade | None,
    dataset: Dataset,
    transform: Callable[[np.ndarray, str], np.ndarray],
    transform_name: str,
    out_dir: str | Path,
    show_progress: bool = True,
    observer_for: Callable[[Sample], CascadeObserver] | None = None,
    run_info: dict[str, Any] | None = None,
    scored: Iterable[Scored] | None = None,
    profile_name: str | None = None,
) -> EvalResult:
    """`observer_for(sample)` gives each query its own observer (tracing); `run_info` goes into
    RUN/run.json beside the data root and transform, which `roadwork review` reads. `scored`
    replaces this process's loop with results scored elsewhere (training/ray_eval.py), in the
    dataset's order; the metrics and files are then the same code's."""
    if scored is None:
        if cascade is None:
            raise ValueError("evaluate needs a cascade, or rows scored elsewhere")
        scored = (
            score_sample(cascade, s, transform, transform_name, observer_for(s) if observer_for else None)
            for s in dataset
        )
    profile = cascade.config.name if cascade is not None else profile_name or "unnamed"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(
        json.dumps(
            {
                "data_root": str(Path(dataset.root).resolve()),
                "transform": transform_name,
                "profile": profile,
                **(run_info or {}),
            },
            indent=2,
        )
        + "\n"
    )
    problems = list(dataset.problems)
    metrics = BinaryMetrics()
    per_voter: dict[str, tuple[list[int], list[float]]] = {}
    worst = WorstMistakes()
    with open(out / "predictions.jsonl", "w") as preds, progress_bar() as bar:
        task = bar.add_task("eval", total=len(dataset)) if show_progress else None
        for item in scored:
            if task is not None:
                bar.advance(task)
            row, sample = item.row, item.sample
            if row is None:
                problems.append(item.problem)
                continue
            preds.write(json.dumps(row) + "\n")
            metrics.update(
                sample.label,
                row["prob"],
                sample.source,
                row["latency_ms"],
                row["exit_level"] or "none",
                row["answered"],
            )
            if item.image is not None:
                worst.offer(sample, row["prob"], item.image)
            for vote in row["votes"]:
                if vote["prob"] is not None:
                    labels, probs = per_voter.setdefault(vote["voter"], ([], []))
                    labels.append(sample.label)
                    probs.append(vote["prob"])
    (out / "problems.txt").write_text("".join(p + "\n" for p in problems))
    if not metrics.labels:
        raise ValueError(f"no image could be evaluated; see {out / 'problems.txt'}")
    result = metrics.compute()
    result["transform"] = transform_name
    result["profile"] = profile
    result["skipped_inputs"] = len(problems)
    result["data"] = {
        "root": str(Path(dataset.root).resolve()),
        **{k: (run_info or {}).get(k) for k in ("split", "seed")},
    }
    if (run_info or {}).get("traces"):
        result["traces"] = run_info["traces"]
    result["worst_mistakes"] = worst.write(out / "mistakes")
    # each voter alone, its raw probability rounded at 0.5 (what it would score as the only voter)
    result["per_voter"] = {
        name: summarise(np.asarray(ys), np.asarray(ps)) for name, (ys, ps) in sorted(per_voter.items())
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    write_plots(np.asarray(metrics.labels), np.asarray(metrics.probs), np.asarray(metrics.latencies_ms), out)
    write_report(result, out)
    return EvalResult(out, result, problems)


def fmt_metric(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def write_report(m: dict[str, Any], out: Path) -> Path:
    data = m.get("data", {})
    c = m["confusion"]
    lines = [
        f"# Evaluation: profile `{m['profile']}`, regime `{m['transform']}`",
        "",
        f"- data: `{data.get('root', '?')}`, split `{data.get('split') or 'all rows'}`, seed {data.get('seed', 0)}",
        f"- images: {m['n']} ({m['positives']} roadwork), skipped inputs: {m['skipped_inputs']}, "
        f"unanswered (scored wrong, as the miner's -1 earns nothing): {m.get('unanswered', 0)}"
        + (
            " · **synthetic sample** (`roadwork make-sample`): these figures say nothing about real frames"
            if set(m["per_source"]) == {"synthetic"}
            else ""
        ),
        f"- MCC {fmt_metric(m['mcc'])} · accuracy {m['accuracy']:.3f} · AUROC "
        f"{m['auroc'] if m['auroc'] is None else round(m['auroc'], 3)} · ECE {m['ece']:.3f}",
        f"- latency p50 {m['latency_ms']['p50']:.1f} ms · p95 {m['latency_ms']['p95']:.1f} ms",
        f"- simulated subnet reward: mean {m['subnet_reward']['mean']:.3f}",
        f"- exit levels: {m['exit_levels']}",
        "",
        "| truth \\ answer | no roadwork | roadwork |",
        "| --- | --- | --- |",
        f"| no roadwork | {c['tn']} | {c['fp']} |",
        f"| roadwork | {c['fn']} | {c['tp']} |",
        "",
        "| source | n | + | MCC | accuracy |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s, r in m["per_source"].items():
        lines.append(f"| {s} | {r['n']} | {r['positives']} | {fmt_metric(r['mcc'])} | {r['accuracy']:.3f} |")
    if m.get("per_voter"):
        lines += ["", "| voter alone | n | MCC | accuracy | AUROC |", "| --- | --- | --- | --- | --- |"]
        for name, r in m["per_voter"].items():
            lines.append(
                f"| {name} | {r['n']} | {fmt_metric(r['mcc'])} | {r['accuracy']:.3f} | {fmt_metric(r['auroc'])} |"
            )
    if m.get("worst_mistakes"):
        lines += [
            "",
            "## Most confident mistakes (what the cascade saw)",
            "",
            "| | image | truth | answer | source |",
            "| --- | --- | --- | --- | --- |",
        ]
        for w in m["worst_mistakes"]:
            lines.append(f"| ![]({w['thumbnail']}) | `{w['key']}` | {w['label']} | {w['prob']:.3f} | {w['source']} |")
        lines += ["", f"Look at every mistake with its votes and boxes: `roadwork review {out}`."]
    if m.get("traces"):
        t = m["traces"]
        lines += [
            "",
            f"Traces: {t['endpoint']} (Phoenix), project `{t['project']}`; a wrong answer's trace is "
            "tagged `mistake` and has `roadwork.correct = false`, so filter on "
            "`attributes['roadwork.correct'] == False` to see only the mistakes.",
        ]
    lines += ["", "![ROC](roc.png) ![reliability](reliability.png) ![latency](latency.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def write_regime_table(
    metrics: dict[str, dict[str, Any]],
    out: Path,
    title: str = "Regimes side by side",
    stem: str = "regimes",
    extra: list[str] | None = None,
) -> Path:
    """OUT/regimes.md and OUT/regimes.json (or OUT/<stem>.*): one column per regime (or run), overall
    and per source, then the `extra` lines."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(metrics, indent=2) + "\n")
    names = list(metrics)
    head = "| | " + " | ".join(names) + " |"
    rule = "| --- |" + " --- |" * len(names)
    lines = [f"# {title} (MCC / accuracy)", "", head, rule]
    for label, key in (("MCC", "mcc"), ("accuracy", "accuracy"), ("AUROC", "auroc")):
        lines.append(f"| {label} | " + " | ".join(fmt_metric(metrics[n][key]) for n in names) + " |")
    lines.append("| latency p95 ms | " + " | ".join(f"{metrics[n]['latency_ms']['p95']:.0f}" for n in names) + " |")
    voters = sorted({v for m in metrics.values() for v in m.get("per_voter", {})})
    for v in voters:
        cells = [metrics[n].get("per_voter", {}).get(v) for n in names]
        lines.append(f"| {v} alone | " + " | ".join("-" if c is None else fmt_metric(c["mcc"]) for c in cells) + " |")
    sources = sorted({s for m in metrics.values() for s in m["per_source"]})
    lines += ["", head.replace("| |", "| source |"), rule]
    for src in sources:
        cells = []
        for n in names:
            r = metrics[n]["per_source"].get(src)
            cells.append("-" if r is None else f"{fmt_metric(r['mcc'])} / {r['accuracy']:.3f}")
        lines.append(f"| {src} | " + " | ".join(cells) + " |")
    path = out / f"{stem}.md"
    path.write_text("\n".join(lines + (extra or [])) + "\n")
    return path


def answer(prob: float | None) -> int | None:
    """What the subnet scores (None for no answer)."""
    return None if prob is None else subnet_answer(prob)


def compare_runs(runs: dict[str, Path], out: Path) -> Path:
    """OUT/compare.md (and .json): labelled eval runs of the same rows side by side (e.g. a model
    before and after its labels were corrected), then each later run's answers that differ from the
    first's: fixed (now right), broken (now wrong). Runs must score the same images."""
    metrics, preds = {}, {}
    for name, run in runs.items():
        m = Path(run) / "metrics.json"
        if not m.is_file():
            raise FileNotFoundError(
                f"{run}: no metrics.json; make the run with `roadwork eval --out {run}` "
                f"(with several regimes, name one regime's sub-folder)"
            )
        metrics[name] = json.loads(m.read_text())
        preds[name] = {r["key"]: r for r in read_predictions(run)}
    names = list(runs)
    base = names[0]
    for name in names[1:]:
        if set(preds[name]) != set(preds[base]):
            raise ValueError(
                f"runs {base!r} and {name!r} score different images "
                f"({len(preds[base])} vs {len(preds[name])}); evaluate both on the same --data/--split"
            )
    extra = []
    for name in names[1:]:
        fixed, broken = [], []
        for key, row in preds[base].items():
            before, after = answer(row.get("prob")), answer(preds[name][key].get("prob"))
            if before == after:
                continue
            truth = int(row["label"])
            (fixed if after == truth else broken).append((key, truth, row.get("prob"), preds[name][key].get("prob")))
        extra += ["", f"## `{name}` against `{base}`: {len(fixed)} answer(s) fixed, {len(broken)} broken", ""]
        if fixed or broken:
            extra += [f"| image | truth | {base} | {name} | |", "| --- | --- | --- | --- | --- |"]
            for key, truth, p0, p1 in fixed + broken:
                extra.append(
                    f"| `{key}` | {truth} | {fmt_metric(p0)} | {fmt_metric(p1)} | "
                    f"{'fixed' if answer(p1) == truth else 'broken'} |"
                )
    sources = ", ".join(
        f"`{name}`: {metrics[name].get('data', {}).get('root', '?')} split "
        f"{metrics[name].get('data', {}).get('split') or 'all'}, profile `{metrics[name]['profile']}`"
        for name in names
    )
    return write_regime_table(
        metrics, out, title="Runs side by side", stem="compare", extra=["", f"Runs: {sources}."] + extra
    )


def merge_runs(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Rows of several labelled runs over the same images joined by key: every run's votes on one
    row (e.g. each voter's out-of-fold run, for `roadwork fit`). Keys missing from a run keep the
    votes they have; a key whose label differs between runs is refused."""
    merged: dict[str, dict[str, Any]] = {}
    for rows in runs:
        for r in rows:
            have = merged.get(r["key"])
            if have is None:
                merged[r["key"]] = {**r, "votes": list(r.get("votes", []))}
                continue
            if int(have["label"]) != int(r["label"]):
                raise ValueError(f"runs disagree on the label of {r['key']!r}: {have['label']} vs {r['label']}")
            names = {v["voter"] for v in have["votes"]}
            have["votes"] += [v for v in r.get("votes", []) if v["voter"] not in names]
    return list(merged.values())


def read_predictions(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "predictions.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no predictions.jsonl; make one with `roadwork eval --out {run_dir}`")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
