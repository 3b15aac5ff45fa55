"""The parts of a `roadwork bench --gpu` result JSON that other commands read, as a small schema.

`roadwork plan --costs` and the expected-cost report need each model's time per image; they read
it through this schema instead of importing the benchmark harness. Keys they do not use are
ignored, so older and newer result files load alike; a file without the keys they need is refused
with the key named.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cascade.config import error_lines


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class NativeCost(_Lenient):
    ms_per_image: float = Field(ge=0)
    """Median time per image of the model's own batched call, outside the cascade."""


class VoterResult(_Lenient):
    level: str | None = None
    native: NativeCost | None = None


class ConcurrencyRun(_Lenient):
    frames: int = Field(ge=1)
    worker_ms_per_image: dict[str, float] | None = None
    """Each model's time in its device worker per image, at the batch sizes the cascade made."""


class GpuBenchResult(_Lenient):
    voters: dict[str, VoterResult] = Field(default_factory=dict)
    concurrency: dict[str, ConcurrencyRun] = Field(default_factory=dict)

    def model_costs(self) -> dict[str, float]:
        """ms per image of each in-process model: its time in its device worker during the largest
        cascade run (real batch sizes) where the bench had workers, else its native batched cost."""
        native = {n: v.native.ms_per_image for n, v in self.voters.items() if v.native is not None}
        runs = [r for r in self.concurrency.values() if r.worker_ms_per_image]
        if not runs:
            return native
        return {**native, **max(runs, key=lambda r: r.frames).worker_ms_per_image}

    def level_costs(self) -> dict[str, float]:
        """ms per image of each in-process level: the sum of its models' native cost."""
        out: dict[str, float] = {}
        for v in self.voters.values():
            if v.native is not None and v.level is not None:
                out[v.level] = out.get(v.level, 0.0) + v.native.ms_per_image
        return out


def parse_gpu_bench(data: dict[str, Any], where: str = "bench JSON") -> GpuBenchResult:
    try:
        return GpuBenchResult.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{where}: {'; '.join(error_lines(exc))}") from exc


def read_gpu_bench(path: str | Path) -> GpuBenchResult:
    """A `roadwork bench --gpu` result file; ValueError naming the file (and key) if it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a bench result is a JSON object, got {type(data).__name__}")
    return parse_gpu_bench(data, str(path))
