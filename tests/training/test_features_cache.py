"""`roadwork train head` embeds each (data, backbone, views) once: a second head or a rerun reads the
features from the cache, and anything that changes them embeds again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.datasets import load_folder
from training.sample import make_sample
from training.train_head import HeadTrainConfig, train_head


class CountingBackbone:
    """Mean colour per channel, repeated: cheap features that still tell the sample's scenes apart."""

    def __init__(self, name: str = "counting") -> None:
        self.name, self.dim, self.calls = name, 6, 0

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        self.calls += 1
        means = np.stack([img.reshape(-1, 3).mean(0) / 255 for img in images])
        return np.hstack([means, means**2])


@pytest.fixture
def dataset(tmp_path: Path):
    return load_folder(make_sample(tmp_path / "data", 24, seed=1))


def test_a_second_head_on_the_same_features_reads_them_from_the_cache(dataset, tmp_path: Path) -> None:
    cache, cfg = tmp_path / "cache", HeadTrainConfig(views=1, folds=3)
    first = CountingBackbone()
    info = train_head(dataset, first, tmp_path / "a.npz", cfg, show_progress=False, features_cache=cache)
    assert first.calls > 0 and "written to" in info["features"]
    second = CountingBackbone()
    again = train_head(dataset, second, tmp_path / "b.npz", cfg, show_progress=False, features_cache=cache)
    assert second.calls == 0 and "read from" in again["features"]
    # the same features give the same head
    assert np.allclose(np.load(tmp_path / "a.npz")["coef"], np.load(tmp_path / "b.npz")["coef"])


def test_other_views_or_another_backbone_embed_again(dataset, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = CountingBackbone()
    train_head(dataset, first, tmp_path / "a.npz", HeadTrainConfig(views=1, folds=3), features_cache=cache)
    for backbone, cfg in [
        (CountingBackbone(), HeadTrainConfig(views=2, folds=3)),
        (CountingBackbone("another"), HeadTrainConfig(views=1, folds=3)),
    ]:
        train_head(dataset, backbone, tmp_path / "b.npz", cfg, show_progress=False, features_cache=cache)
        assert backbone.calls > 0
    assert len(list(cache.glob("*.npz"))) == 3
