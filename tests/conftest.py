"""Shared fixtures: offline environment, fake voters, real data where ../shared has it."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from cascade.types import Frame, Level, Vote
from detectors.base import Detector

REPO = Path(__file__).resolve().parents[1]


def benchmark_script(name: str):
    """benchmarks/<name>.py loaded as a module (benchmarks/ is a folder of scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_training_rows(seed: int, n: int = 8) -> tuple[list, list[np.ndarray]]:
    """`n` small synthetic scenes (96x64), roadwork and street by turns, each its own group: rows
    for `training.finetune.train_networks` in tests. Returns (samples, images)."""
    from training.datasets import Sample
    from training.sample import draw_scene

    rng = np.random.default_rng(seed)
    images = [np.asarray(draw_scene(rng, bool(i % 2), w=96, h=64)) for i in range(n)]
    samples = [Sample(key=f"{i}.jpg", label=i % 2, source="synthetic", group=f"g{i}") for i in range(n)]
    return samples, images


SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")  # ultralytics must never pip-install at run time
os.environ.setdefault("YOLO_CONFIG_DIR", str(REPO / ".cache" / "ultralytics"))


class FakeVoter(Detector):
    """Answers a fixed probability after `delay` seconds, or raises `error`."""

    def __init__(
        self,
        name: str,
        level: Level | str,
        prob: float = 0.5,
        delay: float = 0.0,
        error: Exception | None = None,
        weight: float = 1.0,
    ) -> None:
        super().__init__(name, Level.parse(level), weight)
        self.prob, self.delay, self.error = prob, delay, error
        self.calls = 0

    @classmethod
    def from_config(cls, cfg, base_dir):
        return cls(cfg.name, cfg.level, **cfg.params)

    def predict(self, frames: Sequence[Frame]) -> list[Vote]:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return [Vote(self.name, self.level, self.prob, self.weight) for _ in frames]


@pytest.fixture
def frame() -> Frame:
    rng = np.random.default_rng(0)
    return Frame(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8), source="test", frame_id="f0")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "labels.csv").is_file():
        pytest.skip("../shared/data is not present on this machine")
    return SHARED_DATA
