"""The in-process transformers tier on tiny random Qwen2.5-VL / Qwen2-VL models built from configs."""

import numpy as np
import pytest

from cascade.config import VoterConfig
from cascade.types import Frame, Level
from detectors.registry import build

pytestmark = pytest.mark.slow  # imports transformers and builds two models (~20 s on 2 cores)


@pytest.fixture(scope="module", params=["qwen2_5_vl", "qwen2_vl"])
def tiny_dir(request, tmp_path_factory):
    from vlm_tiers.tiny import build_tiny_vlm

    return build_tiny_vlm(tmp_path_factory.mktemp(request.param), request.param)


def frames():
    rng = np.random.default_rng(0)
    return [
        Frame(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), source="t")
        for h, w in [(224, 224), (300, 500), (90, 60)]
    ]


def make(tiny_dir, **params):
    cfg = VoterConfig(
        name="fast_local",
        kind="vlm-transformers",
        level="L3",
        batch=4,
        params={"model": str(tiny_dir), "image": {"max_pixels": 224 * 224}, **params},
    )
    return build(cfg, base_dir=tiny_dir)


def test_votes_are_probabilities_and_batching_does_not_change_them(tiny_dir):
    tier = make(tiny_dir)
    batch = tier.predict(frames())
    alone = [tier.predict([f])[0] for f in frames()]
    assert [v.level for v in batch] == [Level.L3] * 3 and all(0 <= v.prob <= 1 for v in batch)
    assert [v.prob for v in batch] == pytest.approx([v.prob for v in alone], abs=1e-4)


@pytest.mark.parametrize("boost, expected", [("yes", 1.0), ("no", 0.0)])
def test_probability_follows_the_yes_and_no_logits(tiny_dir, boost, expected):
    # given an output layer that only favours the 'yes' (or 'no') tokens
    import torch

    tier = make(tiny_dir)
    lm = tier.model.lm_head
    head = torch.nn.Linear(lm.in_features, lm.out_features, bias=True)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    with torch.no_grad():
        head.bias[tier.yes_ids if boost == "yes" else tier.no_ids] = 12.0
    tier.model.lm_head = head
    # then the tier's probability goes to that side
    assert [v.prob for v in tier.predict(frames()[:2])] == pytest.approx([expected] * 2, abs=1e-3)


def test_missing_model_folder_names_the_key(tmp_path):
    cfg = VoterConfig(name="x", kind="vlm-transformers", level="L3", params={"model": "Qwen/Qwen2.5-VL-3B-Instruct"})
    with pytest.raises(FileNotFoundError, match="allow_download"):
        build(cfg, base_dir=tmp_path)


def test_unknown_yes_spellings_are_refused(tiny_dir):
    with pytest.raises(ValueError, match="yes_tokens"):
        make(tiny_dir, yes_tokens=["oui"])
