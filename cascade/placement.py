"""Placement plan: what each GPU must hold, checked before anything loads.

Per GPU: every in-process voter placed on it (weights = params x dtype bytes, plus an activation
budget, or a measured figure) plus each vLLM server's memory fraction (vLLM's
`gpu_memory_utilization` is a per-instance share of the card) plus a fixed reserve for CUDA
contexts. `roadwork plan PROFILE` prints the table and refuses an over-committed plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

GIB = 1024**3
DTYPE_BYTES = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}


class MemorySpec(BaseModel):
    """How much accelerator memory one in-process model needs."""

    model_config = ConfigDict(extra="forbid")

    params_m: float | None = Field(default=None, gt=0)
    """Parameters in millions (from the model card or `sum(p.numel())`)."""
    dtype: Literal["fp32", "fp16", "bf16", "fp8", "int8", "int4"] | None = None
    """Bytes per stored weight. Unset: the voter's own `dtype` (a profile states the precision once);
    set it only for weights stored quantized (fp8, int8, int4). Standalone, unset counts as fp16."""
    activation_gib: float = Field(default=0.5, ge=0)
    """Peak activations at the configured batch size."""
    measured_gib: float | None = Field(default=None, gt=0)
    """A measured peak (torch.cuda.max_memory_allocated) that overrides the estimate."""

    @model_validator(mode="after")
    def _some_figure(self) -> MemorySpec:
        if self.params_m is None and self.measured_gib is None:
            raise ValueError("memory needs params_m (millions of parameters) or measured_gib")
        return self

    def weights_gib(self) -> float:
        return 0.0 if self.params_m is None else self.params_m * 1e6 * DTYPE_BYTES[self.dtype or "fp16"] / GIB

    def total_gib(self) -> float:
        if self.measured_gib is not None:
            return self.measured_gib
        return self.weights_gib() + self.activation_gib

    def resident_gib(self) -> float:
        """What stays allocated between batches: the weights (a measured peak counts whole)."""
        return self.measured_gib if self.measured_gib is not None else self.weights_gib()

    def batch_gib(self) -> float:
        """What one batch adds while it runs (nothing extra when a measured peak is given)."""
        return 0.0 if self.measured_gib is not None else self.activation_gib


class GpuSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^cuda:\d+$")
    memory_gib: float = Field(gt=0)
    """Usable card memory as the driver reports it (an H100 80GB shows about 79.1 GiB)."""
    reserve_gib: float = Field(default=1.5, ge=0)
    """Kept free for CUDA contexts of every process on the card and allocator slack."""


class VllmServerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    launch: str | None = None
    """The launch spec (configs/vllm/*.yaml) it is started with. With it, leave out `gpus` and
    `memory_fraction`: the deployment profile's loader takes them from there
    (`vlm_tiers.launch.apply_launch_specs`), so the two cannot disagree."""
    gpus: list[str] = Field(default_factory=list)
    """Cards the server spans (tensor parallel = len(gpus)); only for a server without `launch`."""
    memory_fraction: float | None = Field(default=None, gt=0, le=1)
    """vLLM's --gpu-memory-utilization: this server's share of each card it spans; only for a
    server without `launch`."""

    @model_validator(mode="before")
    @classmethod
    def _old_key(cls, data: object) -> object:
        if isinstance(data, dict) and "profile" in data:
            raise ValueError("`profile` is now `launch` (the vLLM launch spec, configs/vllm/*.yaml); rename the key")
        return data

    @model_validator(mode="after")
    def _said_once(self) -> VllmServerSpec:
        if self.launch is None and (not self.gpus or self.memory_fraction is None):
            raise ValueError(
                f"vllm server {self.name!r} needs `launch:` (its launch spec) or both `gpus` and `memory_fraction`"
            )
        return self


class PlacementConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gpus: list[GpuSpec] = Field(default_factory=list)
    vllm_servers: list[VllmServerSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_gpus(self) -> PlacementConfig:
        ids = [g.id for g in self.gpus]
        if len(set(ids)) != len(ids):
            raise ValueError(f"placement.gpus repeats an id: {ids}")
        for s in self.vllm_servers:
            unknown = [g for g in s.gpus if g not in ids]
            if unknown:
                raise ValueError(f"vllm server {s.name!r} uses {unknown}, not under placement.gpus ({ids})")
        return self


def card(device: str) -> str:
    """The device as placement names it: a bare "cuda" is torch's default card, cuda:0."""
    return "cuda:0" if device == "cuda" else device


@dataclass(frozen=True)
class PlanItem:
    name: str
    kind: str
    gib: float


@dataclass
class GpuPlan:
    gpu: GpuSpec
    items: list[PlanItem] = field(default_factory=list)

    @property
    def planned_gib(self) -> float:
        return sum(i.gib for i in self.items)

    @property
    def usable_gib(self) -> float:
        return self.gpu.memory_gib - self.gpu.reserve_gib

    @property
    def fits(self) -> bool:
        return self.planned_gib <= self.usable_gib


class PlanError(ValueError):
    """An over-committed or inconsistent plan; the message names the GPU and its largest items."""


@dataclass
class Plan:
    gpus: list[GpuPlan]
    cpu_items: list[PlanItem]

    def problems(self) -> list[str]:
        out = []
        for g in self.gpus:
            if not g.fits:
                top = sorted(g.items, key=lambda i: -i.gib)[:3]
                largest = ", ".join(f"{i.name} ({i.kind}, {i.gib:.1f} GiB)" for i in top)
                out.append(
                    f"{g.gpu.id} is over-committed: {g.planned_gib:.1f} GiB planned > "
                    f"{g.usable_gib:.1f} GiB usable ({g.gpu.memory_gib:.1f} - {g.gpu.reserve_gib:.1f} "
                    f"reserve). Largest: {largest}. Move a model to another device or lower a "
                    "vLLM memory_fraction."
                )
        return out

    def check(self) -> Plan:
        problems = self.problems()
        if problems:
            raise PlanError("\n".join(problems))
        return self


def build_plan(
    voters: list,
    placement: PlacementConfig,
    one_batch_at_a_time: bool = False,
    replicas: int = 1,
    workers_per_device: int = 1,
    lanes: Mapping[str, int] | None = None,
    workers: Mapping[str, int] | None = None,
) -> Plan:
    """`voters` are VoterConfig-like objects with name, kind, device, enabled and memory.

    `replicas`: cascades of the profile sharing these cards (`roadwork cascade-service --replicas`):
    each holds its own copy of every in-process model and, in worker processes, its own batch
    budget; the vLLM servers are counted once (the replicas share them).
    `workers_per_device` (runtime.workers_per_device): worker processes per GPU in each cascade,
    each with its own copy of that GPU's models and its own batch budget; CPU voters are not copied.

    Each voter counts its weights plus its activation budget, as if every model on a card could run
    a batch at the same moment (threads in one process can). With `one_batch_at_a_time` (a device
    worker process, runtime.process_per_device, runs one batch at a time) a card holds every
    model's weights but only the largest activation budget among them. Measured on 2x H100
    (random weights, 18 models): cuda:0 11.31 GiB peak vs 11.06 planned this way, cuda:1 5.67 vs 5.61.
    With `lanes` (runtime.lanes_per_worker > 1: each voter's lane, as
    `detectors.device_process.planned_lanes` gives them) each lane of a worker runs one batch at a
    time: the largest budget among the voters of each lane is counted once per lane.
    With `workers` (runtime.worker_split: models, `detectors.device_process.planned_workers`) each
    GPU voter is held by one of its device's workers: its weights count once, its activations in
    that worker's budget.
    """
    if replicas < 1 or workers_per_device < 1:
        raise PlanError(f"replicas and workers_per_device must be at least 1, got {replicas} and {workers_per_device}")
    lanes = lanes or {}
    by_id = {g.id: GpuPlan(g) for g in placement.gpus}
    largest: dict[tuple[str, int, int], PlanItem] = {}
    cpu: list[PlanItem] = []
    copies = [(r, w) for r in range(replicas) for w in range(workers_per_device)]
    for (r, w), v in ((c, v) for c in copies for v in voters):
        name = v.name  # before a copy's suffix: the key of `lanes`
        if not v.enabled:
            continue
        device = card(v.device)
        if not device.startswith("cuda") and w > 0:
            continue  # a CPU voter stays in the cascade's own process: once per replica
        if workers is not None and device.startswith("cuda") and workers.get(name, 0) != w:
            continue  # the device's models are split: this one lives in another worker
        copy = ([f"replica {r + 1}"] if replicas > 1 else []) + (
            [f"worker {w + 1}"] if workers_per_device > 1 and device.startswith("cuda") else []
        )
        if copy:
            v = v.model_copy(update={"name": f"{v.name} ({', '.join(copy)})"})
        worker = r * workers_per_device + w  # one batch budget per worker process
        if not device.startswith("cuda"):
            cpu.append(PlanItem(v.name, v.kind, v.memory.total_gib() if v.memory else 0.0))
            continue
        if device not in by_id:
            raise PlanError(
                f"voter {v.name!r} is placed on {device!r}, which is not under placement.gpus "
                f"({sorted(by_id) or 'none declared'}); add it or change voters[].device"
            )
        if v.memory is None:
            raise PlanError(
                f"voter {v.name!r} on {device} has no `memory:` (params_m and dtype, or "
                "measured_gib); the plan cannot check it"
            )
        if not one_batch_at_a_time:
            by_id[device].items.append(PlanItem(v.name, v.kind, v.memory.total_gib()))
            continue
        by_id[device].items.append(PlanItem(v.name, v.kind, v.memory.resident_gib()))
        lane = lanes.get(name, 0)
        key = (device, worker, lane)
        if v.memory.batch_gib() > (largest[key].gib if key in largest else 0.0):
            where = f"lane {lane + 1}, " if len(set(lanes.values())) > 1 else ""
            largest[key] = PlanItem(
                f"one batch at a time ({where}largest: {v.name})", "activations", v.memory.batch_gib()
            )
    for (device, _, _), item in largest.items():
        by_id[device].items.append(item)
    for s in placement.vllm_servers:
        if s.memory_fraction is None or not s.gpus:
            raise PlanError(
                f"vllm server {s.name!r}: its launch spec {s.launch!r} was not read "
                "(load the profile with miner.profile.load_profile)"
            )
        for gid in s.gpus:
            g = by_id[gid]
            g.items.append(PlanItem(s.name, f"vllm tp{len(s.gpus)}", s.memory_fraction * g.gpu.memory_gib))
    return Plan(list(by_id.values()), cpu)


@dataclass
class Balance:
    """In-process model time per image on each GPU (from measured per-model costs).

    With a worker process per GPU (runtime.process_per_device) each worker runs its calls one at a
    time, so the card whose models take longest per image sets the throughput of the whole cascade.
    Measured on 2x H100: 86 vs 53 ms per image left the busier worker 95 % busy and the other 60 %
    (1.48-1.67x over one GPU); moving RT-DETRv2 and OWLv2 (17 ms) across gave 1.88-2.02x.
    """

    by_device: dict[str, list[tuple[str, float]]]
    """(voter, ms per image) on each card."""
    unmeasured: list[str]

    @property
    def ms_per_image(self) -> dict[str, float]:
        return {d: sum(ms for _, ms in items) for d, items in self.by_device.items()}

    def warning(self, tolerance: float = 0.2) -> str | None:
        """A hint naming the model to move when the busiest card exceeds the least busy by `tolerance`."""
        per = self.ms_per_image
        if len(per) < 2:
            return None
        hi, lo = max(per, key=per.get), min(per, key=per.get)
        if per[hi] <= (1 + tolerance) * per[lo]:
            return None
        gap = per[hi] - per[lo]
        name, ms = min(self.by_device[hi], key=lambda item: abs(item[1] - gap / 2))
        return (
            f"{hi} has {per[hi]:.0f} ms of model time per image and {lo} "
            f"{per[lo]:.0f}: with a worker per GPU the busier card sets the throughput. "
            f"Moving {name} ({ms:.0f} ms) to {lo} would give {per[hi] - ms:.0f} vs "
            f"{per[lo] + ms:.0f} ms (mind the memory plan)."
        )


def gpu_balance(voters: list, costs: dict[str, float]) -> Balance:
    """Sum each GPU's in-process voters' measured ms per image (`costs`, by voter name; e.g. the
    `voters.<name>.native.ms_per_image` of a `roadwork bench --gpu` JSON, from any placement)."""
    per: dict[str, list[tuple[str, float]]] = {}
    unmeasured = []
    for v in voters:
        device = card(v.device)
        if not v.enabled or not device.startswith("cuda"):
            continue
        if v.name not in costs:
            unmeasured.append(v.name)
            continue
        per.setdefault(device, []).append((v.name, float(costs[v.name])))
    return Balance(per, unmeasured)
