"""Grounding DINO's boxes are named on the device, for the whole batch: which prompt each box is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch

from cascade.config import VoterConfig
from cascade.types import Frame
from detectors import registry
from detectors.hf_common import tiny_tokenizer
from detectors.hf_detr import grounded_labels, prompt_of_token
from detectors.model_specs import tiny_voters

REPO = Path(__file__).resolve().parents[2]
PROMPTS = ["traffic cone", "road barrier", "worker in safety vest"]


def test_each_token_belongs_to_its_prompt_and_dots_to_none() -> None:
    tok = tiny_tokenizer([". ".join(PROMPTS) + "."])
    text, owner = prompt_of_token(tok, PROMPTS)
    assert text == "traffic cone. road barrier. worker in safety vest."
    words = tok.convert_ids_to_tokens(tok(text)["input_ids"])
    named = {w: int(o) for w, o in zip(words, owner.tolist(), strict=True)}
    assert named["cone"] == 0 and named["barrier"] == 1 and named["vest"] == 2
    assert named["."] == -1
    assert sorted(set(owner.tolist())) == [-1, 0, 1, 2]


def test_a_box_takes_the_prompt_with_the_strongest_token_over_the_threshold() -> None:
    # tokens: [CLS] traffic cone . road barrier . [SEP]  ->  owners -1 0 0 -1 1 1 -1 -1
    owner = torch.tensor([-1, 0, 0, -1, 1, 1, -1, -1])
    probs = torch.zeros(1, 4, 10)  # the model scores more positions than the text has
    probs[0, 0, [1, 2]] = torch.tensor([0.3, 0.6])  # cone
    probs[0, 1, [2, 5]] = torch.tensor([0.4, 0.7])  # both named, barrier stronger
    probs[0, 2, [3, 6]] = 0.9  # only the dot and [SEP]: no prompt
    probs[0, 3, [1, 4]] = 0.1  # under the text threshold
    labels = grounded_labels(probs, owner, n_prompts=2, text_threshold=0.2)
    assert labels.tolist() == [[0, 1, -1, -1]]


def test_tiny_model_keeps_the_boxes_transformers_keeps_and_names_them_from_the_prompts() -> None:
    # given the tiny random Grounding DINO with a threshold that some queries pass
    spec = next(v for v in tiny_voters() if v["name"] == "gdino")
    params = {**spec["params"], "threshold": 0.0, "text_threshold": 0.0}
    det = registry.build(VoterConfig.model_validate({**spec, "params": params}), REPO / "configs").unwrap()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(2)]
    # when it votes on two frames
    votes = det.predict([Frame(im, source=f"f{i}") for i, im in enumerate(images)])
    # then the boxes and scores are those of transformers' own post-processing, in [0, 1]
    inputs = det.processor(images=images, text=[det.gdino_text] * 2, return_tensors="pt", padding=True)
    with torch.inference_mode():
        from detectors.hf_detr import keep_top_queries

        out = keep_top_queries(det.model(**inputs), det.params.max_det)
    ref = det.processor.post_process_grounded_object_detection(
        out, inputs["input_ids"], threshold=0.0, text_threshold=0.0, target_sizes=[(48, 64)] * 2
    )
    for vote, r in zip(votes, ref, strict=True):
        got = vote.evidence["boxes"]
        assert len(got) == len(r["scores"]) > 0
        np.testing.assert_allclose([b["score"] for b in got], r["scores"].numpy(), atol=1e-4)
        pixels = np.array([b["xyxy"] for b in got]) * [64, 48, 64, 48]
        np.testing.assert_allclose(pixels, r["boxes"].clamp(min=0).numpy().clip(max=[64, 48, 64, 48]), atol=1e-2)
        assert {b["label"] for b in got} <= {*det.params.prompts, "unknown"}
