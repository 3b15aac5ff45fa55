"""Tier entry bands (`levels[].run_when`) and per-voter cost priors (`voters[].cost_prior_ms`)."""

import pytest
from pydantic import ValidationError

from cascade.budget import CostTracker
from cascade.config import CascadeConfig
from cascade.pipeline import Cascade
from cascade.types import Level
from tests.conftest import FakeVoter

# the seeds' routing: sure after L0 -> skip the VLMs; fast, power, precision as confidence falls
TIER_BANDS = {"L3": (0.05, 0.95), "L4": (0.15, 0.85), "L5": (0.30, 0.70)}


def tier_cascade(l0_prob, priors=None, deadline_ms=2000):
    voters = [
        FakeVoter("l0", "L0", l0_prob),
        FakeVoter("fast", "L3", l0_prob),
        FakeVoter("power", "L4", l0_prob),
        FakeVoter("precision", "L5", l0_prob),
    ]
    priors = priors or {}
    cfg = CascadeConfig.model_validate(
        {
            "runtime": {"deadline_ms": deadline_ms, "margin_ms": 50, "cost_prior_ms": 10, "workers": 4},
            "levels": [{"level": lv, "run_when": b} for lv, b in TIER_BANDS.items()],
            "voters": [
                {
                    "name": v.name,
                    "kind": "fake",
                    "level": v.level.name,
                    **({"cost_prior_ms": priors[v.name]} if v.name in priors else {}),
                }
                for v in voters
            ],
        }
    )
    return Cascade(voters, cfg), {v.name: v for v in voters}


@pytest.mark.parametrize(
    "l0_prob, expected_ran",
    [
        (0.97, []),  # sure: no VLM tier runs
        (0.03, []),  # sure the other way
        (0.90, ["fast"]),  # fairly sure: only the fast tier
        (0.80, ["fast", "power"]),  # less sure: fast and power
        (0.50, ["fast", "power", "precision"]),  # coin flip: every tier
    ],
)
def test_tier_runs_only_inside_its_entry_band(frame, l0_prob, expected_ran):
    cascade, voters = tier_cascade(l0_prob)
    with cascade:
        verdict = cascade.run_sync(frame)
    ran = [n for n in ("fast", "power", "precision") if voters[n].calls]
    assert ran == expected_ran
    for name in {"fast", "power", "precision"} - set(expected_ran):
        assert any(s.startswith(f"{name}: pooled") and "run_when" in s for s in verdict.skipped)


def test_level_with_nothing_pooled_before_it_runs(frame):
    # given L0 abstains (raises), so nothing is pooled before the narrowest tier
    l0 = FakeVoter("l0", "L0", error=RuntimeError("down"))
    precise = FakeVoter("precision", "L5", 0.8)
    cfg = CascadeConfig.model_validate(
        {
            "runtime": {"cost_prior_ms": 10},
            "levels": [{"level": "L5", "run_when": (0.3, 0.7)}],
            "voters": [
                {"name": "l0", "kind": "fake", "level": "L0"},
                {"name": "precision", "kind": "fake", "level": "L5"},
            ],
        }
    )
    with Cascade([l0, precise], cfg) as cascade:
        verdict = cascade.run_sync(frame)
    assert precise.calls == 1 and verdict.exit_level is Level.L5


def test_unmeasured_tier_with_a_high_cost_prior_is_not_scheduled(frame):
    # given the precision tier is known to cost ~5 s and only 2 s are left
    cascade, voters = tier_cascade(0.5, priors={"precision": 5000}, deadline_ms=8000)
    with cascade:
        verdict = cascade.run_sync(frame, timeout_s=2.0)
    assert voters["power"].calls == 1 and voters["precision"].calls == 0
    assert any(s.startswith("precision: est 5000 ms") for s in verdict.skipped)


def test_cost_prior_applies_until_the_first_measurement():
    costs = CostTracker(prior_s=0.2, alpha=0.5, priors={"vlm": 3.0})
    assert costs.estimate("vlm") == 3.0 and costs.estimate("other") == 0.2
    costs.observe("vlm", 1.0)
    assert costs.estimate("vlm") == 1.0


@pytest.mark.parametrize(
    "level",
    [
        {"level": "L3", "run_when": (0.9, 0.1)},
        {"level": "L3", "run_when": (-0.1, 0.5)},
    ],
)
def test_bad_entry_band_is_refused(level):
    with pytest.raises(ValidationError, match="band must satisfy"):
        CascadeConfig.model_validate({"levels": [level], "voters": [{"name": "a", "kind": "fake", "level": "L0"}]})


def test_bad_cost_prior_is_refused():
    with pytest.raises(ValidationError, match="cost_prior_ms"):
        CascadeConfig.model_validate({"voters": [{"name": "a", "kind": "fake", "level": "L3", "cost_prior_ms": 0}]})


def test_cost_prior_beyond_the_deadline_is_refused_with_the_voter_named():
    with pytest.raises(ValidationError, match=r"precision \(9000 ms\) exceeds runtime.deadline_ms"):
        CascadeConfig.model_validate(
            {
                "runtime": {"deadline_ms": 8000, "margin_ms": 300},
                "voters": [
                    {"name": "l0", "kind": "fake", "level": "L0"},
                    {"name": "precision", "kind": "vlm-http", "level": "L5", "cost_prior_ms": 9000},
                ],
            }
        )
