"""What the probes share: score a folder of altered frames with the shipped cascade at full size and
say, per camera and version, how often each voter called it roadwork.

A probe (paste_probe.py, square_probe.py) writes a labelled folder whose `source` column is
"CAMERA:VERSION" (one frame in several versions, e.g. as it is and with objects pasted in); `run`
scores it with `roadwork eval --regime full`, reads the predictions back and writes the result
JSON. `summary` is the per-camera reading every probe reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from roadwork.bench.utilisation import machine


def run(
    script: str,
    doc: str,
    argv: list[str] | None,
    out: Path,
    config: str,
    build: Callable[[Path], int],
    read: Callable[[Path], dict],
    **fields: Any,
) -> dict:
    """`build(folder)` writes the probe's labelled folder and returns its row count; every row is
    scored by `roadwork eval --regime full` with the `config` profile and `read(predictions.jsonl)`
    is the result. Writes `out`: the probe's note (its docstring's second paragraph), the command,
    the machine, `fields`, the seconds taken and the result; returns the result."""
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        folder, run_dir = Path(tmp) / "probe", Path(tmp) / "eval"
        n = build(folder)
        cmd = [sys.executable, "-m", "roadwork.cli", "eval", "--data", str(folder), "--split", "all"]
        cmd += ["--regime", "full", "--config", config, "--out", str(run_dir)]
        print(f"[{Path(script).stem}] scoring {n} frames: {' '.join(cmd[1:])}", flush=True)
        subprocess.run(cmd, check=True)
        result = read(run_dir / "predictions.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    command = f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])
    doc_note = doc.split("\n\n")[1].replace("\n", " ").strip()
    meta = {"note": doc_note, "command": command, "machine": machine(), "config": config, **fields}
    out.write_text(json.dumps(meta | {"seconds": round(time.time() - started, 1)} | result, indent=2) + "\n")
    return result


def answers(predictions: Path) -> Iterator[tuple[str, str, int, str, float]]:
    """(camera, version, label, "pooled" or the voter, probability) for every answer in a probe's
    predictions.jsonl; a voter that abstained on a frame gives none."""
    for line in predictions.read_text().splitlines():
        if not line:
            continue
        row = json.loads(line)
        camera, version = row["source"].split(":")
        yield camera, version, row["label"], "pooled", row["prob"]
        for vote in row["votes"]:
            if vote["prob"] is not None:
                yield camera, version, row["label"], vote["voter"], vote["prob"]


def summary(predictions: Path) -> dict:
    """{camera: {version: {voter or "pooled": {"n", "called_roadwork", "mean_prob"}}}}."""
    out: dict = {}
    for camera, version, _, voter, prob in answers(predictions):
        out.setdefault(camera, {}).setdefault(version, {}).setdefault(voter, []).append(prob)
    return {
        camera: {
            version: {
                voter: {"n": len(p), "called_roadwork": round(float(np.mean(np.array(p) > 0.5)), 3),
                        "mean_prob": round(float(np.mean(p)), 3)}
                for voter, p in voters.items()
            }
            for version, voters in versions.items()
        }
        for camera, versions in out.items()
    }  # fmt: skip
