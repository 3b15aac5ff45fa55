"""Weather augmentation: each effect changes a frame as named, reproducibly from the caller's seed,
and reaches training frames of both labels at the configured share."""

import numpy as np
import pytest

from training.datasets import Sample
from training.finetune import Banks, FinetuneConfig, _Views
from training.weather import EFFECTS, Weather


def _street(h: int = 180, w: int = 320) -> np.ndarray:
    """A bright sky over a grey road with a textured verge: enough structure for every effect."""
    rng = np.random.default_rng(0)
    frame = np.empty((h, w, 3), np.uint8)
    frame[: h // 2] = (150, 190, 235)
    frame[h // 2 :] = (110, 110, 110)
    frame[h // 2 :, : w // 4] = rng.integers(40, 120, size=(h - h // 2, w // 4, 3))
    return frame


@pytest.mark.parametrize("effect", EFFECTS)
def test_each_effect_changes_the_frame_and_keeps_its_size(effect):
    frame = _street()
    out = Weather()(frame, np.random.default_rng(1), effect=effect)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - frame.astype(int)).mean() > 1.0


def test_dusk_darkens_and_fog_brightens_the_road():
    frame, weather = _street(), Weather()
    road = np.s_[100:, 100:]
    dusk = weather(frame, np.random.default_rng(2), effect="dusk")
    fog = weather(frame, np.random.default_rng(2), effect="fog")
    assert dusk[road].mean() < frame[road].mean() - 10
    assert fog[road].mean() > frame[road].mean()


def test_the_same_seed_draws_the_same_weather():
    frame, weather = _street(), Weather()
    a = weather(frame, np.random.default_rng(7))
    b = weather(frame, np.random.default_rng(7))
    c = Weather()(frame, np.random.default_rng(8))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_bad_frames_and_effects_are_refused_by_name():
    weather = Weather()
    with pytest.raises(ValueError, match="float32"):
        weather(np.zeros((8, 8, 3), np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="hail"):
        weather(_street(), np.random.default_rng(0), effect="hail")
    with pytest.raises(ValueError, match="weather is a probability"):
        FinetuneConfig(weather=1.5)


def test_training_frames_of_both_labels_get_weather_at_the_configured_share(monkeypatch):
    drawn: list[int] = []

    def spy(self, frame, rng, effect=None):
        drawn.append(int(frame[0, 0, 0]))  # which row's frame: its first pixel is its label
        return frame

    monkeypatch.setattr(Weather, "__call__", spy)
    images = [np.full((64, 96, 3), label, np.uint8) for label in (0, 1)]
    samples = [Sample(f"{i}.jpg", label, "camvid", "train", f"g{i}") for i, label in enumerate((0, 1))]

    def draws(share: float, passes: int) -> list[int]:
        drawn.clear()
        ds = _Views(samples, images, FinetuneConfig(weather=share, seed=3), 224, Banks())
        for _ in range(passes):
            assert ds[0][0].shape == ds[1][0].shape == (3, 224, 224)
        return list(drawn)

    assert draws(0.0, 20) == []
    assert sorted(set(draws(1.0, 20))) == [0, 1] and len(drawn) == 40
    assert 10 < len(draws(0.5, 50)) < 90
