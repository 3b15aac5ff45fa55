"""One contract over every registered adapter, each built from a tiny random-weight config.

No downloads: ultralytics builds from model yamls, transformers from configs (with an in-memory
tokenizer), RF-DETR from its variant with `pretrain_weights=None`, rapidocr from the models in its
wheel. Every adapter must give one vote per frame, in order, named and levelled from its config,
with a probability in [0, 1] or an abstention with a reason, and JSON-ready evidence; a 1x1 frame
must not take the batch down.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cascade.config import VoterConfig
from cascade.types import Frame, Vote
from detectors import registry
from detectors.evidence import Boxes
from detectors.model_specs import tiny_voters

REPO = Path(__file__).resolve().parents[2]
TINY = {v["name"]: v for v in tiny_voters()}
NEEDS = {
    "ultralytics": "ultralytics",
    "rfdetr": "rfdetr",
    "ocr-signs": "rapidocr_onnxruntime",
    "wbf-ensemble": "ultralytics",
}
# detector kinds covered elsewhere with real weights (tests/detectors/test_backbone_head.py) or a
# checkpoint the test writes first (tests/detectors/test_rcnn_detector.py)
COVERED_ELSEWHERE = {"backbone-head", "rcnn-mobilenet"}


def test_every_registered_kind_has_a_tiny_config() -> None:
    # a new adapter must come with a tiny config here, or the contract does not see it
    missing = set(registry.KINDS) - {v["kind"] for v in TINY.values()} - COVERED_ELSEWHERE
    missing = {k for k in missing if registry.KINDS[k].adapter.startswith("detectors.")}  # VLM tiers test their own
    assert not missing, f"add tiny configs to detectors/model_specs.py for: {sorted(missing)}"


def test_every_in_process_kind_says_how_to_build_it_with_random_weights() -> None:
    # `bench --gpu --random-weights` builds a profile from these forms; a kind without one is refused there
    for kind, entry in registry.KINDS.items():
        form = registry.random_form(kind)
        if entry.adapter.startswith("vlm_tiers."):
            assert form is None, kind  # served by vLLM, measured by its own bench
        else:
            assert callable(form), f"{kind}: add `random=` to its registry entry"


def frames() -> list[Frame]:
    rng = np.random.default_rng(0)
    prior = Vote(
        "l1",
        "L1",
        0.6,
        evidence={
            "boxes": Boxes(
                np.array([[0.1, 0.4, 0.25, 0.8], [0.5, 0.2, 0.9, 0.6]]),
                np.array([0.9, 0.6]),
                ("traffic cone", "barrier"),
            ).to_evidence()
        },
    )
    return [
        Frame(
            rng.integers(0, 255, (96, 128, 3), dtype=np.uint8), source="t", frame_id="a", meta={"prior_votes": (prior,)}
        ),
        Frame(np.zeros((1, 1, 3), np.uint8), source="t", frame_id="tiny", meta={"prior_votes": (prior,)}),
        Frame(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8), source="t", frame_id="b"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_adapter_contract(name: str) -> None:
    spec = TINY[name]
    if spec["kind"] in NEEDS:
        pytest.importorskip(NEEDS[spec["kind"]])
    cfg = VoterConfig.model_validate(spec)
    # given a voter built by name from its config
    det = registry.build(cfg, REPO / "configs")
    assert det.name == name and det.level == cfg.level
    # when it votes on a batch with a normal, a 1x1 and a small frame
    fs = frames()
    votes = det.predict(fs)
    # then one vote per frame, in order, each valid and serialisable
    assert len(votes) == len(fs)
    for v in votes:
        assert v.voter == name and v.level == cfg.level
        assert (v.prob is None and v.reason) or 0.0 <= v.prob <= 1.0
        json.dumps(v.to_dict())
    assert not votes[0].abstained or "no text" in votes[0].reason  # a normal frame gets an answer
    # and single-frame calls agree with the batch (no cross-talk between frames)
    single = det.predict([fs[0]])[0]
    if single.prob is not None and votes[0].prob is not None:
        assert single.prob == pytest.approx(votes[0].prob, abs=2e-3)


def test_box_voters_put_normalised_boxes_in_evidence() -> None:
    pytest.importorskip("ultralytics")
    det = registry.build(
        VoterConfig.model_validate({**TINY["yolo11n"], "params": {**TINY["yolo11n"]["params"], "conf": 0.0}}),
        REPO / "configs",
    )
    (vote,) = det.predict([frames()[0]])
    for b in vote.evidence["boxes"]:
        x1, y1, x2, y2 = b["xyxy"]
        assert 0 <= x1 <= x2 <= 1 and 0 <= y1 <= y2 <= 1 and isinstance(b["label"], str)


def test_unknown_kind_lists_known_ones() -> None:
    with pytest.raises(KeyError, match="ultralytics"):
        registry.resolve("yolo-nonexistent")


@pytest.mark.parametrize(
    "params, error",
    [
        ({}, "exactly one of params.model"),
        ({"random_init": {"hidden_size": 8}}, "model_type"),
        ({"model": "some-org/model"}, "downloads are off"),
    ],
)
def test_hf_sources_are_checked(params: dict, error: str, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    cfg = VoterConfig(name="x", kind="hf-detector", level="L1", params=params)
    with pytest.raises((ValueError, FileNotFoundError), match=error):
        registry.build(cfg, tmp_path)


@pytest.mark.parametrize("name", ["owlv2", "gdino", "dfine"])
def test_transformers_detectors_keep_at_most_max_det_boxes(name: str) -> None:
    # given a transformers detector whose threshold lets every query through
    params = {**TINY[name]["params"], "threshold": 0.0, "text_threshold": 0.0, "max_det": 3}
    det = registry.build(VoterConfig.model_validate({**TINY[name], "params": params}), REPO / "configs")
    # when it sees two frames
    votes = det.predict(frames()[:2])
    # then each vote carries at most max_det boxes, named and normalised
    for vote in votes:
        assert not vote.abstained, vote.reason
        assert 0 < len(vote.evidence["boxes"]) <= 3
        assert all(isinstance(b["label"], str) and 0 <= b["xyxy"][0] <= 1 for b in vote.evidence["boxes"])


def test_grounding_dino_with_no_box_left_answers_instead_of_failing_the_batch() -> None:
    # given Grounding DINO where no query passes the threshold (on the lent H200 an older
    # post-processing decoded that to one empty label and failed the batch)
    params = {**TINY["gdino"]["params"], "threshold": 1.0}
    det = registry.build(VoterConfig.model_validate({**TINY["gdino"], "params": params}), REPO / "configs")
    # when it sees a batch, then every frame gets a vote with no boxes, not a failed batch
    votes = det.predict(frames()[:2])
    assert len(votes) == 2
    assert all(not v.abstained and v.evidence["boxes"] == [] for v in votes), [v.reason for v in votes]
