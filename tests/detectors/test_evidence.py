"""Class mapping, noisy-OR image probability, calibration and WBF fusion maths."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors.evidence import Boxes, ClassMap, FusionConfig, calibrate, fuse_boxes, noisy_or, norm_name


def boxes(*rows: tuple[str, float]) -> Boxes:
    n = len(rows)
    xyxy = np.array([[0.1 * i, 0.1, 0.1 * i + 0.05, 0.3] for i in range(n)]) if n else np.zeros((0, 4))
    return Boxes(xyxy, np.array([s for _, s in rows]), tuple(lbl for lbl, _ in rows))


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Traffic_Cone", "traffic cone"),
        ("traffic-cone", "traffic cone"),
        ("  stop   sign ", "stop sign"),
    ],
)
def test_norm_name(raw: str, expected: str) -> None:
    assert norm_name(raw) == expected


@pytest.mark.parametrize(
    "rows, expected",
    [
        ([], 0.0),  # nothing seen: only the leak (0 here)
        ([("cone", 0.8)], 0.8 * 0.9),  # one cone, weight 0.9
        ([("cone", 0.8), ("truck", 0.5)], 1 - (1 - 0.72) * (1 - 0.05)),  # cone + weak truck
        ([("cat", 0.99)], 0.0),  # unmapped class: no evidence
        ([("cone", 0.1)], 0.0),  # below min_score
    ],
)
def test_image_probability_noisy_or(rows: list[tuple[str, float]], expected: float) -> None:
    cmap = ClassMap(classes={"cone": 0.9, "truck": 0.1}, leak=0.0, min_score=0.25)
    assert cmap.image_probability(boxes(*rows)) == pytest.approx(expected)


def test_per_class_top_limits_crowds() -> None:
    # ten persons are not ten independent pieces of roadwork evidence
    crowd = boxes(*[("person", 0.9)] * 10)
    cmap = ClassMap(classes={"person": 0.1}, leak=0.0, per_class_top=2)
    assert cmap.image_probability(crowd) == pytest.approx(1 - (1 - 0.09) ** 2)


def test_leak_and_calibration() -> None:
    cmap = ClassMap(leak=0.05, scale=2.0, bias=-1.0)
    p = cmap.image_probability(Boxes.empty())
    assert p == pytest.approx(1 / (1 + math.exp(-(2 * math.log(0.05 / 0.95) - 1))))
    assert calibrate(0.3) == 0.3


def test_class_weights_out_of_range_name_the_key() -> None:
    with pytest.raises(ValueError, match="params.evidence.classes"):
        ClassMap(classes={"cone": 1.5})


def test_noisy_or_monotone_in_scores() -> None:
    w = np.array([0.9, 0.9])
    assert noisy_or(np.array([0.5, 0.5]), w, ["a", "b"]) < noisy_or(np.array([0.6, 0.5]), w, ["a", "b"])


@pytest.mark.parametrize(
    "xyxy, scores, labels, error",
    [
        (np.zeros((2, 3)), [0.1, 0.2], ("a", "b"), "shape"),
        (np.zeros((2, 4)), [0.1], ("a", "b"), "disagree"),
        (np.full((1, 4), np.nan), [0.1], ("a",), "finite"),
    ],
)
def test_bad_boxes_rejected(xyxy, scores, labels, error) -> None:
    with pytest.raises(ValueError, match=error):
        Boxes(xyxy, np.asarray(scores), labels)


def test_evidence_round_trip_and_pixels() -> None:
    b = Boxes.from_pixels([[10, 20, 110, 220]], [0.7], ["cone"], width=200, height=400)
    assert b.xyxy[0].tolist() == pytest.approx([0.05, 0.05, 0.55, 0.55])
    back = Boxes.from_evidence(b.to_evidence())
    assert back.labels == ("cone",) and back.scores[0] == pytest.approx(0.7)


def test_wbf_fuses_overlapping_boxes_of_same_class() -> None:
    a = Boxes(np.array([[0.10, 0.10, 0.30, 0.50]]), np.array([0.9]), ("traffic_cone",))
    b = Boxes(
        np.array([[0.12, 0.10, 0.32, 0.52], [0.7, 0.7, 0.9, 0.9]]), np.array([0.7, 0.6]), ("traffic cone", "truck")
    )
    fused = fuse_boxes([a, b], weights=[1, 1], cfg=FusionConfig(iou_thr=0.5, skip_box_thr=0.0))
    assert sorted(fused.labels) == ["traffic cone", "truck"]
    cone = fused.labels.index("traffic cone")
    assert fused.scores[cone] == pytest.approx(0.8)  # avg of 0.9 and 0.7
    assert fused.xyxy[cone][0] == pytest.approx((0.10 * 0.9 + 0.12 * 0.7) / 1.6)  # score-weighted
    assert len(fuse_boxes([Boxes.empty(), Boxes.empty()])) == 0


def test_wbf_weights_must_match() -> None:
    with pytest.raises(ValueError, match="weights"):
        fuse_boxes([Boxes.empty()], weights=[1, 2])


def test_wbf_ensemble_voter_fuses_members(frame) -> None:
    from cascade.types import Level
    from detectors.box_detector import BoxDetector
    from detectors.ensemble import EnsembleParams, WBFEnsemble

    class Fixed(BoxDetector):
        def __init__(self, name: str, boxes: Boxes) -> None:
            super().__init__(name, Level.L1, ClassMap())
            self.boxes = boxes

        @classmethod
        def from_config(cls, cfg, base_dir):
            raise NotImplementedError

        def detect(self, images):
            return [self.boxes for _ in images]

    a = Fixed("a", Boxes(np.array([[0.1, 0.1, 0.3, 0.5]]), np.array([0.9]), ("traffic cone",)))
    b = Fixed("b", Boxes(np.array([[0.11, 0.1, 0.31, 0.5]]), np.array([0.7]), ("traffic_cone",)))
    params = EnsembleParams(members=[{}, {}], evidence=ClassMap(classes={"traffic cone": 1.0}, leak=0.0))
    ens = WBFEnsemble("ens", Level.L1, [a, b], [1.0, 1.0], params)
    (vote,) = ens.predict([frame])
    assert len(vote.evidence["boxes"]) == 1  # one cone, not two
    assert vote.prob == pytest.approx(0.8)  # fused score (0.9 + 0.7) / 2
    # each member's own vote uses its own default class map (cone 0.9, leak 0.02)
    assert vote.evidence["members"] == {
        "a": pytest.approx(1 - 0.98 * (1 - 0.81)),
        "b": pytest.approx(1 - 0.98 * (1 - 0.63)),
    }


def test_fit_calibration_recovers_platt_parameters() -> None:
    from detectors.evidence import fit_calibration

    rng = np.random.default_rng(0)
    raw = rng.uniform(0.01, 0.99, 4000)
    true = 1 / (1 + np.exp(-(2.0 * np.log(raw / (1 - raw)) - 1.0)))
    labels = (rng.uniform(size=raw.size) < true).astype(int)
    scale, bias = fit_calibration(raw, labels)
    assert scale == pytest.approx(2.0, abs=0.25) and bias == pytest.approx(-1.0, abs=0.25)
    with pytest.raises(ValueError, match="both classes"):
        fit_calibration([0.2, 0.3], [1, 1])
