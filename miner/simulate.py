"""`roadwork simulate`: the miner's main job end to end, with a local validator and no chain.

1. Challenges are drawn like a validator draws them: a label 0/1 at 50 % each, then a random
   image of that label; the image goes through the validator transform and is sent as a
   base64 JPEG (quality 75) in an `ImageSynapse` with timeout 9 s.
2. Our axon answers on 127.0.0.1 through the real bittensor stack (signatures, blacklist,
   priority, forward), and the dendrite records what a validator would see.
3. The run folder gets `queries.jsonl` (one line per query), `summary.json`, `summary.md`,
   `simulation.png` (latency, running MCC / accuracy, subnet reward over time) and
   `metrics.prom` (the side port's /metrics at the end).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from miner.rig import VALIDATOR_TIMEOUT_S, LocalRig, QueryResult
from miner.sim_report import summarise_run, write_plot, write_summary_md
from training.datasets import Dataset, Sample


@dataclass(frozen=True)
class Challenge:
    index: int
    key: str
    label: int
    source: str
    payload: str


def pick_samples(ds: Dataset, n: int, seed: int) -> list[Sample]:
    """n samples, each label chosen 50/50 (as validators do) when both labels exist."""
    rng = np.random.default_rng(seed)
    by_label = {lab: [s for s in ds.samples if s.label == lab] for lab in (0, 1)}
    labels = [lab for lab, rows in by_label.items() if rows]
    picked = []
    for _ in range(n):
        rows = by_label[int(rng.choice(labels))]
        picked.append(rows[int(rng.integers(len(rows)))])
    return picked


def encode_jpeg_b64(image: np.ndarray, quality: int = 75) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return base64.b64encode(buf.getvalue()).decode()


def make_challenges(
    samples: list[Sample],
    transform: Callable[[np.ndarray, str], np.ndarray],
    progress: Callable[[], None] | None = None,
) -> tuple[list[Challenge], list[str]]:
    """Transform and encode each sample; unreadable ones are reported and skipped."""
    challenges, problems = [], []
    for i, s in enumerate(samples):
        try:
            image = s.load()
        except (OSError, ValueError) as exc:
            problems.append(f"{s.key}: {exc}")
            continue
        challenges.append(Challenge(i, s.key, s.label, s.source, encode_jpeg_b64(transform(image, f"{s.key}#{i}"))))
        if progress:
            progress()
    return challenges, problems


async def run_queries(
    rig: LocalRig,
    challenges: list[Challenge],
    concurrency: int,
    on_done: Callable[[], None] | None = None,
    timeout: float = VALIDATOR_TIMEOUT_S,
    done: list[tuple[Challenge, QueryResult, float]] | None = None,
) -> list[tuple[Challenge, QueryResult, float]]:
    """Send every challenge, at most `concurrency` in flight; (challenge, result, send time) in order.

    Each answered query is also appended to `done` as it comes back, so that a caller interrupted
    by Ctrl-C still has every answer so far."""
    sem = asyncio.Semaphore(concurrency)
    t_start = time.monotonic()
    done = [] if done is None else done

    async def one(ch: Challenge) -> tuple[Challenge, QueryResult, float]:
        async with sem:
            sent = time.monotonic() - t_start
            res = await rig.query(ch.payload, timeout, ch.label)  # testnet_label, as testnet validators send
            done.append((ch, res, sent))
            if on_done:
                on_done()
            return ch, res, sent

    try:
        return list(await asyncio.gather(*(one(c) for c in challenges)))
    finally:
        await rig.aclose()


def query_row(ch: Challenge, res: QueryResult, sent_s: float) -> dict[str, Any]:
    return {
        "index": ch.index,
        "key": ch.key,
        "source": ch.source,
        "label": ch.label,
        "prediction": res.prediction,
        "answered": res.answered,
        "timed_out": res.timed_out,
        "status_code": res.status_code,
        "status_message": res.status_message[:200],
        "sent_s": round(sent_s, 4),
        "latency_ms": round(res.latency_s * 1000, 2),
        "miner_process_ms": None if res.process_s is None else round(res.process_s * 1000, 2),
        "payload_chars": len(ch.payload),
    }


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def write_run(out: Path, rows: list[dict[str, Any]], rig: LocalRig, settings: dict[str, Any]) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "queries.jsonl").open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    summary = summarise_run(rows)
    summary["settings"] = settings
    summary["exit_levels"] = {
        s.labels["exit_level"]: int(s.value)
        for m in rig.metrics.answers.collect()
        for s in m.samples
        if s.name.endswith("_total")
    }
    summary["errors"] = {
        s.labels["kind"]: int(s.value)
        for m in rig.metrics.errors.collect()
        for s in m.samples
        if s.name.endswith("_total")
    }
    (out / "metrics.prom").write_text(scrape(rig.health.url + "/metrics"))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_plot(rows, summary, out / "simulation.png")
    write_summary_md(summary, out / "summary.md")
    return summary


def settings_dict(**kw: Any) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in kw.items()}
