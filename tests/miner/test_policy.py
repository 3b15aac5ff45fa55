import numpy as np
import pytest

from miner.config import PolicyConfig
from miner.policy import CallerPolicy, MetagraphSnapshot

# uid 0: validator with permit and stake; uid 1: a miner (no permit); uid 2: validator with little stake
SNAP = MetagraphSnapshot.build(["5Val", "5Miner", "5Small"], stake=[5000.0, 10.0, 3.0], permit=[True, False, True])


@pytest.mark.parametrize(
    "config, hotkey, refused, reason",
    [
        ({}, None, True, "no_hotkey"),  # no dendrite hotkey at all
        ({}, "", True, "no_hotkey"),
        ({}, 12345, True, "no_hotkey"),  # garbage type, still no exception
        ({}, "5Stranger", True, "unregistered"),
        ({"allow_unregistered": True}, "5Stranger", False, "ok"),
        ({}, "5Miner", True, "no_validator_permit"),
        ({"require_validator_permit": False}, "5Miner", False, "ok"),
        ({}, "5Val", False, "ok"),
        ({"min_stake": 100}, "5Small", True, "low_stake"),
        ({"min_stake": 100}, "5Val", False, "ok"),
        ({"min_stake": 100, "require_validator_permit": False}, "5Miner", True, "low_stake"),
    ],
)
def test_blacklist_decisions(config, hotkey, refused, reason):
    decision = CallerPolicy(PolicyConfig(**config), SNAP).check(hotkey)
    assert (decision.refused, decision.reason) == (refused, reason)
    assert decision.detail


@pytest.mark.parametrize(
    "hotkey, priority", [("5Val", 5000.0), ("5Small", 3.0), ("5Miner", 10.0), ("5Stranger", 0.0), (None, 0.0)]
)
def test_priority_is_the_callers_stake(hotkey, priority):
    assert CallerPolicy(PolicyConfig(), SNAP).priority(hotkey) == priority


def test_an_empty_metagraph_refuses_everyone_cleanly():
    assert CallerPolicy(PolicyConfig()).check("5Val").reason == "unregistered"


def test_a_resync_changes_decisions():
    policy = CallerPolicy(PolicyConfig(), SNAP)
    assert policy.check("5New").refused
    policy.update(MetagraphSnapshot.build(["5New"], [1.0], [True]))
    assert not policy.check("5New").refused and policy.check("5Val").refused


class StubMetagraph:
    """What a bittensor Metagraph exposes to the policy: hotkeys, S (numpy), validator_permit, block."""

    hotkeys = ["5A", "5B"]
    S = np.array([1.5, 2.5], dtype=np.float32)
    validator_permit = np.array([True, False])
    block = np.int64(123)


def test_snapshot_from_a_metagraph():
    snap = MetagraphSnapshot.from_metagraph(StubMetagraph())
    assert snap.uids == {"5A": 0, "5B": 1} and snap.stake == (1.5, 2.5) and snap.block == 123
    assert CallerPolicy(PolicyConfig(), snap).check("5B").reason == "no_validator_permit"


def test_snapshot_refuses_arrays_of_different_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        MetagraphSnapshot.build(["5A"], [1.0, 2.0], [True])


def test_nan_stake_counts_as_zero():
    policy = CallerPolicy(PolicyConfig(min_stake=1), MetagraphSnapshot.build(["5A"], [float("nan")], [True]))
    assert policy.check("5A").reason == "low_stake"
