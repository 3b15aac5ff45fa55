"""Image budget: shrink to max_pixels in 28-px (Qwen2.5-VL) or 32-px (Qwen3-VL) steps."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from vlm_tiers.imaging import fit_pixels, to_data_url, visual_tokens


@pytest.mark.parametrize(
    "w, h, max_px, factor, expected",
    [
        (224, 224, 448 * 448, 28, (224, 224)),  # already within budget: kept
        (896, 896, 448 * 448, 28, (448, 448)),  # shrunk to the budget
        (1920, 1080, 448 * 448, 28, (588, 336)),  # aspect kept (16:9), area under budget
        (30, 20, 448 * 448, 28, (84, 56)),  # tiny image grown past min_pixels, aspect kept
        (1000, 1000, 448 * 448, 32, (448, 448)),  # Qwen3-VL steps
    ],
)
def test_fit_pixels(w, h, max_px, factor, expected):
    got = fit_pixels(w, h, max_px, min_pixels=56 * 56, factor=factor)
    assert got == expected
    assert got[0] * got[1] <= max_px and got[0] % factor == 0 and got[1] % factor == 0


@pytest.mark.parametrize("side, tokens", [(224, 64), (448, 256), (896, 1024)])
def test_visual_tokens_per_image(side, tokens):
    assert visual_tokens(side, side, max_pixels=896 * 896) == tokens


def test_data_url_is_a_small_jpeg():
    img = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    url = to_data_url(img, max_pixels=224 * 224, quality=80)
    assert url.startswith("data:image/jpeg;base64,")
    pil = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert pil.size == fit_pixels(1280, 720, 224 * 224)


def test_bad_size_is_refused():
    with pytest.raises(ValueError, match="must be positive"):
        fit_pixels(0, 10, 1000)
