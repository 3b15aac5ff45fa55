"""Which worker of a device holds each voter (runtime.worker_split) and which of its lanes it runs
on (runtime.lanes_per_worker)."""

from __future__ import annotations

import pytest

from cascade.config import VoterConfig
from detectors.device_process import planned_lanes
from detectors.worker_lanes import lane_of


def voter(name: str, device: str = "cuda:0", compile: str | None = None) -> VoterConfig:
    params = {"backbone": {"compile": compile}} if compile else {}
    kind = "backbone-head" if compile else "ultralytics"
    return VoterConfig.model_validate({"name": name, "kind": kind, "level": "L1", "device": device, "params": params})


def test_voters_that_replay_cuda_graphs_share_the_first_lane_and_the_rest_take_turns() -> None:
    # given two L0 backbones compiled with CUDA graphs and four other voters, over three lanes
    voters = [
        voter("l0_a", compile="reduce-overhead"),
        voter("l0_b", compile="reduce-overhead"),
        voter("l0_c", compile="default"),
        voter("yolo"),
        voter("dino"),
        voter("sam"),
    ]
    lanes = lane_of(voters, 3)
    # then both CUDA-graph voters are on lane 0 (torch serves their graphs to one thread), and the
    # others start on the next lane and go round
    assert lanes == {"l0_a": 0, "l0_b": 0, "l0_c": 1, "yolo": 2, "dino": 0, "sam": 1}
    # and with one lane everything is on it
    assert set(lane_of(voters, 1).values()) == {0}
    with pytest.raises(ValueError, match="lanes must be at least 1"):
        lane_of(voters, 0)


def test_the_plan_gets_each_device_workers_lanes_and_no_cpu_voter() -> None:
    voters = [voter("a", "cuda:0"), voter("b", "cuda:1"), voter("c", "cuda:0"), voter("ocr", "cpu")]
    assert planned_lanes(voters, 2) == {"a": 0, "c": 1, "b": 0}


def test_split_workers_deals_the_models_or_copies_them() -> None:
    from detectors.device_process import planned_workers, split_workers

    voters = [voter(n) for n in "abcd"]
    pinned = [voters[0].model_copy(update={"worker": 1}), *voters[1:]]
    names = lambda parts: [[v.name for v in p] for p in parts]  # noqa: E731
    # copies: every worker holds every voter; models: dealt in turn, or where `worker` puts them
    assert names(split_workers(voters, 2)) == [list("abcd"), list("abcd")]
    assert names(split_workers(voters, 2, "models")) == [["a", "c"], ["b", "d"]]
    assert names(split_workers(pinned, 2, "models")) == [["b", "d"], ["a", "c"]]
    assert names(split_workers(voters[:1], 2, "models")) == [["a"]]  # an empty worker is not started
    assert planned_workers(pinned, 2, "models") == {"a": 1, "b": 0, "c": 1, "d": 0}
    assert planned_workers(voters, 2, "copies") is None
    with pytest.raises(ValueError, match="'a': worker 1 is not one of the device's 1 workers"):
        split_workers(pinned, 1, "models")


def test_a_worker_beyond_the_profile_workers_is_refused_at_load() -> None:
    from cascade.config import CascadeConfig, RuntimeConfig

    runtime = {"process_per_device": True, "workers_per_device": 2, "worker_split": "models"}
    voters = [{"name": "a", "kind": "x", "level": "L1", "device": "cuda:0", "worker": 2}]
    with pytest.raises(ValueError, match=r"voters\[\]\.worker of a \(2\) is not one of the device's workers 0..1"):
        CascadeConfig.model_validate({"voters": voters, "runtime": runtime})
    with pytest.raises(ValueError, match="worker_split: models needs runtime.process_per_device"):
        RuntimeConfig.model_validate({"worker_split": "models"})
