"""Shared set-up of the miner benchmarks: challenge payloads and the embedded cascade."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def quiet() -> None:
    from PIL import Image

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\..*")


def load_profile(path: Path):
    """Process set-up as the CLI does it (offline env, torch threads), then the checked profile."""
    from miner.profile import load_profile
    from roadwork.env import configure_process, set_torch_threads

    configure_process()
    cfg = load_profile(path)
    set_torch_threads(cfg.runtime.torch_threads)
    return cfg


def payloads(data: Path | None, split: str | None, n: int, seed: int = 0) -> list[tuple[int, str]]:
    """(label, base64 JPEG) challenges after the validator transform, from DIR or a synthetic sample."""
    from miner.simulate import make_challenges, pick_samples
    from training.datasets import load_dataset
    from training.transforms import make_transform

    if data is None:
        shared = REPO.parent / "shared" / "data"
        if (shared / "labels.csv").is_file():
            data, split = shared, split or "dev"
        else:
            from training.sample import make_sample

            data = make_sample(REPO / "runs" / "sample", 40, 0)
    ds = load_dataset(data).select(split=split)
    challenges, _ = make_challenges(pick_samples(ds, n, seed), make_transform("validator", seed))
    return [(c.label, c.payload) for c in challenges]


def percentiles(xs: list[float]) -> dict[str, float | None]:
    import numpy as np

    if not xs:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    a = np.asarray(xs)
    return {
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
    }
