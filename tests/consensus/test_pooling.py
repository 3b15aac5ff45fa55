import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascade.types import AbstainCause, Level, Vote
from consensus.pooling import pool, pool_votes

probs = st.floats(min_value=0.001, max_value=0.999, allow_nan=False)
weights = st.floats(min_value=0.01, max_value=10.0, allow_nan=False)
votes = st.lists(st.tuples(probs, weights), min_size=1, max_size=8)


@settings(max_examples=200)
@given(votes)
def test_symmetry_flipping_every_vote_flips_the_answer(vs):
    p, w = zip(*vs, strict=True)
    assert pool([1 - x for x in p], w) == pytest.approx(1 - pool(p, w), abs=1e-9)


@settings(max_examples=200)
@given(votes, probs)
def test_weight_zero_is_the_same_as_absent(vs, extra):
    p, w = zip(*vs, strict=True)
    assert pool([*p, extra], [*w, 0.0]) == pytest.approx(pool(p, w), abs=1e-12)


@settings(max_examples=200)
@given(probs, st.lists(weights, min_size=1, max_size=8))
def test_unanimous_votes_keep_their_value(p, w):
    assert pool([p] * len(w), w) == pytest.approx(p, abs=1e-9)


@settings(max_examples=200)
@given(votes, st.integers(min_value=0, max_value=7), st.floats(min_value=0.0, max_value=0.5))
def test_monotone_in_each_vote(vs, i, delta):
    p, w = map(list, zip(*vs, strict=True))
    i %= len(p)
    before = pool(p, w)
    p[i] = min(p[i] + delta, 0.999)
    assert pool(p, w) >= before - 1e-12


def test_geometric_mean_of_odds_known_value():
    # odds 9 and 1/9 with equal weights -> odds 1
    assert pool([0.9, 0.1], [1, 1]) == pytest.approx(0.5)
    # weights 3:1 -> odds 9^(3/4) * (1/9)^(1/4) = 9^0.5 = 3 -> p = 0.75
    assert pool([0.9, 0.1], [3, 1]) == pytest.approx(0.75)


def test_clipping_keeps_certain_votes_finite():
    assert 0.0 < pool([0.0, 1.0, 1.0], [1, 1, 1]) < 1.0


def test_abstaining_votes_carry_no_weight():
    vs = [Vote("a", Level.L0, 0.8), Vote.abstain("b", Level.L1, "timeout", cause=AbstainCause.DEADLINE)]
    assert pool_votes(vs) == pytest.approx(0.8)
    assert pool_votes([Vote.abstain("b", Level.L1, "timeout", cause=AbstainCause.DEADLINE)]) is None


def test_bad_weights_are_refused():
    with pytest.raises(ValueError, match=">= 0"):
        pool([0.5], [-1.0])
    with pytest.raises(ValueError, match="differ"):
        pool([0.5, 0.2], [1.0])
    assert pool([0.5], [0.0]) is None
    assert np.isfinite(pool([0.3], [1e-9]))
