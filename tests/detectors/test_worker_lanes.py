"""Which lane of a device worker each voter runs on (runtime.lanes_per_worker)."""

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
