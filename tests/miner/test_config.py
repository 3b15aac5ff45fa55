import pytest
import yaml

from cascade.config import ConfigError
from miner.config import MinerConfig
from miner.profile import load_profile
from tests.conftest import REPO


def profile(tmp_path, miner: dict) -> str:
    data = yaml.safe_load((REPO / "configs" / "cpu.yaml").read_text())
    data["miner"] = miner
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_embedded_default_serves_with_defaults():
    cfg = load_profile(REPO / "configs" / "cpu.yaml")
    assert cfg.runtime.deadline_ms == 8000 and cfg.miner.budget_s(cfg.runtime.deadline_ms, 9.0) == pytest.approx(8.0)


@pytest.mark.parametrize(
    "miner, key",
    [
        ({"deadlin_ms": 8000}, "miner.deadlin_ms"),  # typo: unknown keys are refused
        ({"decode": {"max_pixels": 500_000_000}}, "miner.decode.max_pixels"),  # above Pillow's own bomb limit
        ({"decode": {"formats": ["JPEG", "HEIC"]}}, "miner.decode.formats"),
        ({"bad_input_prediction": 2.0}, "miner.bad_input_prediction"),
        ({"min_run_ms": 9000}, "runtime.deadline_ms"),  # min_run_ms must be < the deadline
        ({"deadline_ms": 8000}, "runtime.deadline_ms"),  # one deadline: the old key says where it went
        ({"policy": {"min_stake": -1}}, "miner.policy.min_stake"),
    ],
)
def test_bad_miner_sections_fail_at_load_naming_the_key(tmp_path, miner, key):
    with pytest.raises(ConfigError) as err:
        load_profile(profile(tmp_path, miner))
    assert key in str(err.value)


@pytest.mark.parametrize(
    "ours, theirs, budget", [(8000, 9.0, 8.0), (8000, 5.0, 4.2), (8000, None, 8.0), (3000, 12.0, 3.0), (8000, 0.5, 0.0)]
)
def test_budget_is_capped_by_the_validator_timeout(ours, theirs, budget):
    assert MinerConfig().budget_s(ours, theirs) == pytest.approx(budget)


def test_max_concurrent_from_the_plan_is_the_largest_planned_gpu_batch(tmp_path) -> None:
    data = yaml.safe_load((REPO / "configs" / "h100x2.yaml").read_text())
    assert data["miner"]["max_concurrent"] == "from-plan"
    data["voters"][0]["batch"] = 48  # a bigger planned batch for one GPU voter
    path = REPO / "configs" / "test_from_plan.yaml"  # beside the original: its relative paths resolve
    try:
        path.write_text(yaml.safe_dump(data))
        assert load_profile(path).miner.max_concurrent == 48
    finally:
        path.unlink()
    # a CPU profile keeps its number; a number below 1 is refused with the key named
    assert load_profile(REPO / "configs" / "cpu.yaml").miner.max_concurrent == 4
    with pytest.raises(ConfigError, match="miner.max_concurrent"):
        load_profile(profile(tmp_path, {"max_concurrent": 0}))
