"""The deployment profile: the cascade's sections plus the miner's and tracing's, in one YAML file.

`cascade/` knows only its own sections (`cascade.config.CascadeConfig`); the commands that serve,
simulate or evaluate read the whole profile through `load_profile`, so one file configures them all
and every command honours the same `tracing` section.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from cascade.config import CascadeConfig, ConfigError, load_config
from miner.config import MinerConfig  # pure pydantic, no bittensor
from monitoring.tracing import TracingConfig  # pure pydantic; OpenTelemetry loads only when tracing is on


class Profile(CascadeConfig):
    miner: MinerConfig = Field(default_factory=MinerConfig)
    """The `roadwork serve` / `simulate` settings (miner/config.py); defaults suit configs/cpu.yaml."""
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    """OpenTelemetry traces to a Phoenix server (monitoring/tracing.py); off unless `endpoint` is set."""

    @model_validator(mode="after")
    def _concurrency_from_plan(self) -> Profile:
        if self.miner.max_concurrent == "from-plan":
            self.miner.max_concurrent = planned_concurrency(self)
        return self

    @model_validator(mode="after")
    def _room_to_run(self) -> Profile:
        if self.miner.min_run_ms >= self.runtime.deadline_ms:
            raise ValueError(
                f"miner.min_run_ms ({self.miner.min_run_ms:g}) must be smaller than "
                f"runtime.deadline_ms ({self.runtime.deadline_ms:g})"
            )
        return self


def planned_concurrency(cfg: CascadeConfig, default: int = 4) -> int:
    """The largest batch a GPU voter's memory is planned for (`voters[].batch`): with fewer frames
    in the cascade at once its micro-batches never fill. `default` for a profile with no GPU voter."""
    batches = [v.batch for v in cfg.voters if v.enabled and v.device.startswith("cuda")]
    return max(batches, default=default)


def load_profile(path: str | Path) -> Profile:
    """A profile file, checked at load with the key named on error (`cascade.config.ConfigError`):
    its sections, what it takes from the vLLM launch specs it names, then each voter's kind and
    params against the kind's registry entry."""
    from detectors.backbone_head import layout_problems  # light: pydantic, no torch
    from detectors.registry import check_profile_voters  # light: pydantic params models, no torch
    from vlm_tiers.launch import apply_launch_specs  # light: yaml + pydantic

    profile = load_config(path, Profile)
    launch = apply_launch_specs(profile)  # vLLM servers and tier voters, from their launch specs
    problems = launch.lines + check_profile_voters(profile.voters, skip=launch.unread_voters)
    problems += layout_problems(profile.voters, profile.runtime.process_per_device)
    if problems:
        raise ConfigError.listing(path, problems)
    return profile


def worker_cascade(path: str | Path):
    """The profile's cascade built in a worker process of its own (a Ray replica of `eval --ray` or
    of `cascade-service`): offline defaults and the profile's torch threads set first."""
    from cascade.pipeline import Cascade
    from roadwork.env import configure_process, set_torch_threads

    configure_process()
    profile = load_profile(path)
    set_torch_threads(profile.runtime.torch_threads)
    return Cascade.from_config(profile)
