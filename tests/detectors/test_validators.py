"""L2 validators: size-check maths, mask colour/fill checks, OCR phrase matching, real PP-OCR."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cascade.types import AbstainCause, Frame, Level, Vote
from detectors.depth_size import DepthSizeParams, physical_height, plausibility
from detectors.evidence import Boxes, merged_prior_boxes
from detectors.ocr_signs import OcrParams, OcrSignVoter, fold, match_phrases
from detectors.sam_mask import SamParams, mask_checks, warm_colour_share


def test_pinhole_height() -> None:
    # a box 100 px tall in a 1000x1000 image at 10 m with f = 0.8 * 1000 px is 1.25 m tall
    depth = np.full((1000, 1000), 10.0)
    box = np.array([0.4, 0.5, 0.45, 0.6])
    assert physical_height(box, depth, focal_frac=0.8) == pytest.approx(1.25)


@pytest.mark.parametrize(
    "height, expected",
    [
        (0.7, 1.0),  # a normal cone
        (0.05, math.exp(-math.log(0.25 / 0.05) / 0.5)),  # a 5 cm "cone": strongly down-weighted
        (20.0, math.exp(-math.log(20 / 1.3) / 0.5)),  # a 20 m "cone"
        (-1.0, 0.0),
    ],
)
def test_plausibility_cone(height: float, expected: float) -> None:
    assert plausibility(height, (0.25, 1.3), tolerance=0.5) == pytest.approx(expected)
    assert plausibility(height, None, 0.5) == 1.0 or height <= 0  # unknown class: not judged


def test_impossible_boxes_lower_the_vote() -> None:
    params = DepthSizeParams(random_init={"model_type": "depth_anything"})
    boxes = Boxes(np.array([[0.1, 0.5, 0.2, 0.7]]), np.array([0.9]), ("cone",))
    real = params.evidence.image_probability(boxes, extra_weights=np.array([1.0]))
    fake = params.evidence.image_probability(boxes, extra_weights=np.array([plausibility(20.0, (0.25, 1.3), 0.5)]))
    assert fake < 0.1 < 0.5 < real


def test_size_ranges_checked() -> None:
    with pytest.raises(ValueError, match="params.sizes"):
        DepthSizeParams(random_init={"model_type": "depth_anything"}, sizes={"cone": (2.0, 1.0)})


def test_prior_boxes_merge_and_skip_abstentions() -> None:
    b = Boxes(np.array([[0, 0, 0.5, 0.5]]), np.array([0.7]), ("cone",)).to_evidence()
    votes = (
        Vote("a", Level.L1, 0.6, evidence={"boxes": b}),
        Vote("b", Level.L1, 0.6, evidence={"boxes": b}),
        Vote.abstain("c", Level.L1, "timeout", cause=AbstainCause.DEADLINE),
        Vote("l0", Level.L0, 0.9),
    )
    merged = merged_prior_boxes({"prior_votes": votes})
    assert merged is not None and len(merged) == 2
    assert merged_prior_boxes({}) is None


def test_warm_colour_share() -> None:
    orange = np.tile([[255, 120, 0]], (10, 1))
    grey = np.tile([[120, 120, 120]], (10, 1))
    blue = np.tile([[0, 60, 220]], (10, 1))
    assert warm_colour_share(orange) == 1.0
    assert warm_colour_share(grey) == 0.0 and warm_colour_share(blue) == 0.0
    assert warm_colour_share(np.concatenate([orange, grey])) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "fill_rows, colour, expected",
    [
        (10, (255, 120, 0), 1.0),  # orange cone filling half its box
        (10, (120, 120, 120), 0.2),  # grey: fails the colour check
        (0, (255, 120, 0), 0.2),  # empty mask: nothing there
    ],
)
def test_mask_checks(fill_rows: int, colour: tuple[int, int, int], expected: float) -> None:
    image = np.zeros((20, 20, 3), np.uint8)
    image[:] = colour
    mask = np.zeros((20, 20), bool)
    mask[:fill_rows, :] = True
    params = SamParams(random_init={"model_type": "sam"})
    factor, info = mask_checks(mask, np.array([0, 0, 1, 1]), image, colour=True, p=params)
    assert factor == expected and 0 <= info["fill"] <= 1


@pytest.mark.parametrize(
    "lines, expected",
    [
        ([("ROAD", 0.99), ("WORK", 0.98), ("AHEAD", 0.97)], {"ROAD WORK"}),
        ([("Baustelle", 0.9)], {"BAUSTELLE"}),
        ([("Déviation", 0.9)], {"DEVIATION"}),
        ([("OBRAS EN LA VIA", 0.8)], {"OBRAS"}),
        ([("SPEED LIMIT 50", 0.9)], set()),
    ],
)
def test_match_phrases(lines: list[tuple[str, float]], expected: set[str]) -> None:
    hits = {h["phrase"] for h in match_phrases(lines, OcrParams().phrases)}
    assert expected <= hits and (expected or not hits)


def test_fold() -> None:
    assert fold("Travaux  — déviation!") == "TRAVAUXDEVIATION"


class FakeOcr:
    def __init__(self, result: list) -> None:
        self.result = result

    def __call__(self, img: np.ndarray) -> tuple[list, list]:
        return self.result, [0.0]


@pytest.mark.parametrize(
    "result, prob, abstained",
    [
        ([[None, "ROAD WORK AHEAD", 0.95]], 1 - (1 - 0.95 * 0.95), False),
        ([[None, "PIZZA", 0.95]], 0.15, False),
        ([], None, True),
        ([[None, "ROAD WORK", 0.2]], None, True),  # below min_text_score: no text
    ],
)
def test_ocr_voter(frame: Frame, result: list, prob: float | None, abstained: bool) -> None:
    voter = OcrSignVoter("ocr", Level.L2, FakeOcr(result), OcrParams(phrases={"ROAD WORK": 0.95}))
    (v,) = voter.predict([frame])
    assert v.abstained == abstained
    if prob is not None:
        assert v.prob == pytest.approx(prob)


@pytest.mark.slow
def test_real_ppocr_reads_a_roadwork_sign() -> None:
    pytest.importorskip("rapidocr_onnxruntime")
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont
    from rapidocr_onnxruntime import RapidOCR

    img = Image.new("RGB", (420, 170), (255, 140, 0))
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(matplotlib.get_data_path() + "/fonts/ttf/DejaVuSans-Bold.ttf", 40)
    draw.text((20, 20), "ROAD WORK", fill=(0, 0, 0), font=font)
    draw.text((20, 95), "AHEAD", fill=(0, 0, 0), font=font)
    voter = OcrSignVoter("ocr", Level.L2, RapidOCR(), OcrParams())
    (v,) = voter.predict([Frame(np.asarray(img), source="sign")])
    assert v.prob > 0.8 and any(m["phrase"] == "ROAD WORK" for m in v.evidence["matches"])


def test_cascade_hands_l1_boxes_to_l2_validators(frame: Frame) -> None:
    # given an L1 voter that reports a box and an L2 validator that reads earlier votes
    from cascade.config import CascadeConfig
    from cascade.pipeline import Cascade
    from tests.conftest import FakeVoter

    box = Boxes(np.array([[0.1, 0.1, 0.3, 0.5]]), np.array([0.9]), ("cone",)).to_evidence()

    class BoxVoter(FakeVoter):
        def predict(self, frames):
            return [Vote(self.name, self.level, 0.8, evidence={"boxes": box}) for _ in frames]

    class Probe(FakeVoter):
        seen: list = []

        def predict(self, frames):
            Probe.seen.append(merged_prior_boxes(frames[0].meta))
            return super().predict(frames)

    voters = [BoxVoter("l1", "L1"), Probe("l2", "L2", 0.5)]
    cfg = CascadeConfig.model_validate(
        {"voters": [{"name": v.name, "kind": "fake", "level": v.level.name} for v in voters]}
    )
    # when the cascade runs both levels
    with Cascade(voters, cfg) as cascade:
        cascade.run_sync(frame)
    # then the L2 validator saw the L1 box, and the caller's frame was not changed
    assert Probe.seen[0] is not None and Probe.seen[0].labels == ("cone",)
    assert "prior_votes" not in frame.meta


def test_validators_check_only_the_strongest_boxes() -> None:
    # given an L1 vote with 500 weak "person" boxes, a weak cone below min_score and two strong roadwork boxes
    from detectors.evidence import ClassMap, split_by_prior_boxes

    n = 500
    xyxy = np.tile([0.1, 0.1, 0.2, 0.3], (n + 3, 1))
    scores = np.r_[np.full(n, 0.3), 0.1, 0.9, 0.6]
    labels = ("person",) * n + ("cone", "traffic cone", "road barrier")
    prior = Vote("yolo", "L1", 0.7, evidence={"boxes": Boxes(xyxy, scores, labels).to_evidence()})
    frames = [Frame(np.zeros((8, 8, 3), np.uint8), meta={"prior_votes": (prior,)})]
    # when a validator takes its work with a cap of 4
    votes, todo = split_by_prior_boxes(frames, [1], lambda why: why, ClassMap(), max_boxes=4)
    # then it checks 4 boxes, the roadwork ones first, none under min_score, and the noisy-OR is unchanged
    ((i, boxes),) = todo
    assert votes == [None] and len(boxes) == 4
    assert boxes.labels[:2] == ("traffic cone", "road barrier") and 0.1 not in boxes.scores
    cm = ClassMap()
    full = cm.image_probability(Boxes(xyxy, scores, labels))
    assert cm.image_probability(boxes) == pytest.approx(full, abs=0.02)


@pytest.mark.parametrize(
    ("kind", "params_cls", "tiny", "size", "compiled"),
    [
        ("sam-mask", SamParams, "TINY_SAM", 64, lambda v: v.model.vision_encoder),
        ("depth-size", DepthSizeParams, "TINY_DEPTH", 56, lambda v: v.model),
    ],
)
def test_compile_refuses_cuda_graphs_and_leaves_a_cpu_model_eager(
    tmp_path, caplog, kind, params_cls, tiny, size, compiled
) -> None:
    from pydantic import ValidationError

    from cascade.config import VoterConfig
    from detectors import model_specs
    from detectors.registry import resolve

    # CUDA graphs are kept per thread by torch, and voters run on lane threads: refused by name
    with pytest.raises(ValidationError, match="compile"):
        params_cls(random_init={"model_type": "sam"}, compile="reduce-overhead")
    params = {"random_init": getattr(model_specs, tiny), "image_size": size, "compile": "default"}
    cfg = VoterConfig(name="v", kind=kind, level="L2", device="cpu", params=params)
    with caplog.at_level("INFO", logger="detectors.hf_common"):
        voter = resolve(kind).from_config(cfg, tmp_path)
    # on the CPU the option is not applied, and the log says so: the model runs eager
    assert "v: params.compile=default not applied on cpu" in caplog.text
    assert getattr(compiled(voter), "_compiled_call_impl", None) is None
