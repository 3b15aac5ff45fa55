from collections import Counter

import numpy as np
import pytest

from training.transforms import ValidatorTransform, make_transform


@pytest.fixture
def photo():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    img[200:280, 300:340] = (255, 120, 0)  # an orange block, like a cone
    return img


def test_output_is_224_rgb_and_reproducible(photo):
    tf = ValidatorTransform(seed=3)
    a, b = tf(photo, "images/x.jpg"), tf(photo, "images/x.jpg")
    assert a.shape == (224, 224, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, tf(photo, "images/y.jpg"))
    assert not np.array_equal(a, ValidatorTransform(seed=4)(photo, "images/x.jpg"))


def test_levels_are_chosen_evenly():
    tf = ValidatorTransform(seed=0)
    counts = Counter(tf.level_for(f"k{i}") for i in range(4000))
    assert set(counts) == {0, 1, 2, 3}
    assert all(850 < c < 1150 for c in counts.values())


def test_level_zero_is_a_centre_crop(photo):
    out = ValidatorTransform(seed=0)(photo, "k", level=0)
    # the centre 480x480 square keeps the orange block near the middle
    centre = out[90:130, 100:130].reshape(-1, 3).mean(axis=0)
    assert centre[0] > 180 and centre[2] < 100


@pytest.mark.parametrize("level", [1, 2, 3])
def test_higher_levels_distort_more_than_level_zero(photo, level):
    tf = ValidatorTransform(seed=0)
    base = tf(photo, "k", level=0).astype(float)
    out = tf(photo, "k", level=level).astype(float)
    assert out.shape == (224, 224, 3) and np.abs(out - base).mean() > 5


def test_none_passes_full_resolution_through(photo):
    assert make_transform("none")(photo, "k") is photo
    with pytest.raises(ValueError, match="unknown regime 'blur'"):
        make_transform("blur")


def test_letterbox_keeps_the_whole_frame_on_black_bars(photo):
    from training.transforms import canonical

    tf = make_transform("letterbox", 0)
    out = tf(photo, "k", level=0)
    assert out.shape == (224, 224, 3) and canonical("letterbox") == "letterbox"
    # a 640x480 frame fills the width and leaves black bars of 28 px above and below
    assert out[:20].mean() < 10 and out[-20:].mean() < 10 and out[60:160].mean() > 40
    # the orange block (centre of the frame) is still there, not cropped away
    centre = out[100:125, 100:125].reshape(-1, 3).mean(axis=0)
    assert centre[0] > 150 and centre[2] < 100


def test_regimes_by_name_with_the_older_aliases(photo):
    from training.transforms import parse_regimes

    assert parse_regimes("validator,letterbox,none,full") == ["v0.2", "letterbox", "full"]
    assert make_transform("full")(photo, "k") is photo
    a, b = make_transform("v0.2", 1)(photo, "k"), make_transform("validator", 1)(photo, "k")
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="v0.2, letterbox, full"):
        parse_regimes("v0.3")
