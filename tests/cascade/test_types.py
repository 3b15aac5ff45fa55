from contextlib import nullcontext as does_not_raise

import numpy as np
import pytest

from cascade.types import AbstainCause, Frame, Level, Verdict, Vote


@pytest.mark.parametrize(
    ("image", "expectation"),
    [
        (np.zeros((4, 5, 3), np.uint8), does_not_raise()),  # smallest sensible frame
        (np.zeros((4, 5), np.uint8), pytest.raises(ValueError, match="shape")),  # grey, no channels
        (np.zeros((4, 5, 4), np.uint8), pytest.raises(ValueError, match="shape")),  # alpha left in
        (np.zeros((4, 5, 3), np.float32), pytest.raises(ValueError, match="uint8")),  # wrong dtype
        (np.zeros((0, 5, 3), np.uint8), pytest.raises(ValueError, match="empty")),  # zero height
        ([[0, 0, 0]], pytest.raises(TypeError, match="numpy")),  # not an array
    ],
)
def test_frame_checks_itself(image, expectation):
    with expectation:
        Frame(image, source="t")


@pytest.mark.parametrize(
    ("prob", "expectation"),
    [
        (0.0, does_not_raise()),
        (1.0, does_not_raise()),
        (1.5, pytest.raises(ValueError, match="probability")),
        (-0.1, pytest.raises(ValueError, match="probability")),
        (float("nan"), pytest.raises(ValueError, match="probability")),
        (None, pytest.raises(ValueError, match="reason")),  # None only through Vote.abstain
    ],
)
def test_vote_probability_is_checked(prob, expectation):
    with expectation:
        Vote("v", Level.L0, prob)


def test_abstain_has_no_weight_and_keeps_reason_and_cause():
    v = Vote.abstain("vlm_fast", "L3", reason="breaker open", cause=AbstainCause.BREAKER)
    assert v.abstained and v.weight == 0.0 and v.reason == "breaker open" and v.level is Level.L3
    assert v.cause is AbstainCause.BREAKER and v.to_dict()["cause"] == "breaker"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"prob": None, "reason": "timeout"}, "without a reason and cause"),
        ({"prob": 0.4, "cause": AbstainCause.ERROR}, "has a probability and an abstain cause"),
    ],
)
def test_cause_goes_with_abstaining_votes_only(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Vote("v", Level.L1, **kwargs)


def test_votes_are_frozen():
    v = Vote("v", Level.L1, 0.3)
    with pytest.raises(AttributeError):
        v.prob = 0.9  # type: ignore[misc]


def test_level_parse_names_valid_levels():
    assert Level.parse("l2") is Level.L2
    with pytest.raises(ValueError, match="L0, L1"):
        Level.parse("L9")


def test_verdict_label_uses_numpy_round():
    assert Verdict(0.5, (), None).label == 0  # np.round(0.5) == 0, as the validator reads it
    assert Verdict(0.51, (), Level.L0).label == 1
    assert not Verdict(0.5, (), None).answered
