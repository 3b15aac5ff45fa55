"""What the probes share: score a folder of altered frames with the shipped cascade at full size and
say, per camera and version, how often each voter called it roadwork.

A probe (paste_probe.py, square_probe.py) writes a labelled folder whose `source` column is
"CAMERA:VERSION" (one frame in several versions, e.g. as it is and with objects pasted in), then
`score` runs `roadwork eval --regime full` on it and `summary` reads the predictions back.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def score(folder: Path, run: Path, config: str, tag: str) -> Path:
    """`roadwork eval --regime full` of every row of `folder` with the `config` profile, into `run`;
    returns its predictions.jsonl."""
    cmd = [sys.executable, "-m", "roadwork.cli", "eval", "--data", str(folder), "--split", "all"]
    cmd += ["--regime", "full", "--config", config, "--out", str(run)]
    print(f"[{tag}] scoring: {' '.join(cmd[1:])}", flush=True)
    subprocess.run(cmd, check=True)
    return run / "predictions.jsonl"


def summary(predictions: Path) -> dict:
    """{camera: {version: {voter or "pooled": {"n", "called_roadwork", "mean_prob"}}}}."""
    rows = [json.loads(x) for x in predictions.read_text().splitlines() if x]
    out: dict = {}
    for row in rows:
        camera, version = row["source"].split(":")
        cell = out.setdefault(camera, {}).setdefault(version, {})
        cell.setdefault("pooled", []).append(row["prob"])
        for vote in row["votes"]:
            if vote["prob"] is not None:
                cell.setdefault(vote["voter"], []).append(vote["prob"])
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
