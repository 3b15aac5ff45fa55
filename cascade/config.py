"""The cascade profile (configs/*.yaml), checked at load with pydantic.

Paths inside a profile are relative to the profile file's folder. A bad profile fails at start
with a message that names the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cascade.placement import MemorySpec, PlacementConfig
from cascade.types import EVERY_SIZE, Level, LongSides, covers

FrameTransport = Literal["pipe", "shared-memory"]
"""How frames reach a device worker process (runtime.frame_transport; detectors/frame_transport.py)."""
WorkerSplit = Literal["copies", "models"]
"""What each of a GPU's worker processes holds (runtime.worker_split; detectors.device_process.split_workers)."""

MEMORY_DTYPE = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
"""A voter's `dtype` as the memory plan spells bytes per weight."""


class VoterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    """Unique voter name; it keys fitted weights and appears in every Vote."""
    kind: str = Field(min_length=1)
    """Registry key of the adapter, e.g. `backbone-head` (see detectors/registry.py)."""
    level: Level
    weight: float = Field(default=1.0, ge=0)
    """Prior weight in pooling, used until `roadwork fit` has learnt one."""
    device: str = "cpu"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    """The precision the model runs in: the one place a profile says it (adapters read it; the
    memory plan counts it unless `memory.dtype` names a quantized storage)."""
    batch: int = Field(default=16, ge=1)
    batch_wait_ms: float = Field(default=0, ge=0)
    """Micro-batching: > 0 gathers concurrent frames for this model for up to this long (or until
    `batch` frames) into one call (detectors/batching.py). 0 runs each call as it comes."""
    batch_pad: bool = True
    """Micro-batching: pad each batch to the next power of two (<= batch) so the model sees few
    shapes, all warmed up at start (a new shape cost ~1 s on an H100)."""
    warmup_frames: list[tuple[int, int]] = Field(default_factory=lambda: [(224, 224)], min_length=1)
    """Micro-batching: (width, height) of the blank frames every padded batch size is warmed at
    before the miner serves, those this voter scores (`long_side`). List what validators send:
    224x224 (v0.2, letterbox) and, since May 2026, camera frames at full resolution (1920x1080).
    A model that letterboxes keeps the frame's aspect ratio, so a size not warmed meets its first
    batch shape on a live request."""
    input_long_side: int | None = Field(default=None, ge=16)
    """Frames with a longer side are scaled down (by area, aspect kept) to this before the model
    sees them, once per size and frame, in the serving process (detectors/input_scale.py). Set it
    to what the model's own processor resizes to: a full-resolution frame then costs the model
    about what a small one does. None: frames reach it as they came."""
    enabled: bool = True
    params: dict[str, Any] = Field(default_factory=dict)
    """Adapter-specific settings; each adapter checks its own."""
    memory: MemorySpec | None = None
    """Accelerator memory this voter needs; `roadwork plan` adds it up per GPU."""
    cost_prior_ms: float | None = Field(default=None, gt=0)
    """Assumed cost before this voter has run (default `runtime.cost_prior_ms`). Set it to the
    measured cost of a slow voter (a VLM tier) so it is not scheduled optimistically."""
    worker: int | None = Field(default=None, ge=0)
    """With runtime.worker_split: models, which of its device's worker processes (0 up to
    runtime.workers_per_device - 1) holds this voter. None: the voters without one are dealt over
    the workers in turn, in profile order."""
    long_side: LongSides = EVERY_SIZE
    """The frames this voter scores: long side in pixels >= the first and < the second (null: no
    limit). The cascade skips it on other frames (it costs nothing there), and `roadwork fit
    --profile` fits one pool per frame size that the profile's ranges split (e.g. 224-px validator
    images scored whole, full-resolution frames scored by tiles)."""

    @model_validator(mode="after")
    def _memory_dtype(self) -> VoterConfig:
        mine = MEMORY_DTYPE[self.dtype]
        if self.memory is not None and self.memory.dtype is None:
            self.memory = self.memory.model_copy(update={"dtype": mine})
        elif self.memory is not None and self.memory.dtype in MEMORY_DTYPE.values() and self.memory.dtype != mine:
            raise ValueError(
                f"voter {self.name!r}: memory.dtype {self.memory.dtype} disagrees with dtype {self.dtype}; "
                "drop memory.dtype (it follows dtype) or name a quantized storage (fp8, int8, int4)"
            )
        return self

    @field_validator("warmup_frames")
    @classmethod
    def _warmup_frames(cls, v: list[tuple[int, int]]) -> list[tuple[int, int]]:
        if small := [list(s) for s in v if min(s) < 16]:
            raise ValueError(f"warmup_frames are [width, height] of 16 px or more, got {small}")
        return v

    def warm_sizes(self) -> list[tuple[int, int]]:
        """The warm-up frame sizes this voter scores; none: the first (its lazy init still runs)."""
        return [s for s in self.warmup_frames if covers(self.long_side, max(s))] or self.warmup_frames[:1]

    @field_validator("long_side")
    @classmethod
    def _long_side(cls, v: LongSides) -> LongSides:
        lo, hi = v
        if lo < 0 or (hi is not None and hi <= lo):
            raise ValueError(f"long_side must be [min, max) with 0 <= min < max (max null: no limit), got {list(v)}")
        return v

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, v: Any) -> Level:
        lv = Level.parse(v)
        if lv == Level.L6:
            raise ValueError("L6 is the consensus itself; voters live in L0..L5")
        return lv


class LevelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: Level
    band: tuple[float, float] = (0.0, 1.0)
    """Exit after this level when the pooled probability is < lo or > hi. [0, 1] never exits."""
    run_when: tuple[float, float] | None = None
    """Entry band: run this level only when the pooled probability so far is within [lo, hi]
    (a level with nothing pooled before it always runs); otherwise skip it and go on. None: always."""

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, v: Any) -> Level:
        return Level.parse(v)

    @field_validator("band", "run_when")
    @classmethod
    def _band(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is None:
            return v
        lo, hi = v
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"band must satisfy 0 <= lo <= hi <= 1, got [{lo}, {hi}]")
        return v


class ConsensusConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weights: Path | None = None
    """Fitted artefact from `roadwork fit`; without it the voters' prior weights are used."""
    clip: float = Field(default=1e-4, gt=0, lt=0.5)
    use_fitted_bands: bool = True
    """Take routing bands from the artefact (where it has one for a level) over `levels[].band`."""


class RuntimeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deadline_ms: float = Field(default=8000, gt=0)
    """Time the cascade may spend on one frame (the validator waits 9 s)."""
    margin_ms: float = Field(default=300, ge=0)
    """Kept free before the deadline for pooling and the answer's way back."""
    cost_prior_ms: float = Field(default=200, gt=0)
    """Assumed cost of a voter that has not run yet."""
    cost_ema_alpha: float = Field(default=0.2, gt=0, le=1)
    worker_hang_s: float = Field(default=60, gt=0)
    """A device worker process that has finished no call for this long while calls wait on it is
    taken as hung: it is killed and rebuilt (its voters abstain meanwhile)."""
    cost_recovery_s: float = Field(default=30, gt=0)
    """Half-life of the part of a voter's cost estimate above its prior, counted from its last run:
    a voter skipped after one slow call is probed again instead of staying off for good."""
    workers: int = Field(default=2, ge=1)
    """Threads that run model work off the event loop."""
    torch_threads: int = Field(default=0, ge=0)
    """torch intra-op threads set by the entrypoint (0 = torch's default)."""
    process_per_device: bool = False
    """Run each GPU's voters in a worker process of its own (detectors/device_process.py): the
    in-process levels stop sharing one GIL, which is what lets a second GPU add throughput."""
    workers_per_device: int = Field(default=1, ge=1)
    """With process_per_device: this many worker processes per GPU, each holding its own copy of
    that GPU's voters; a call goes to the one with the fewest calls waiting. One worker runs one
    batch at a time, so its CPU work (pre- and post-processing) leaves the GPU idle meanwhile; a
    second lets the card run one voter's batch while the other worker prepares another voter's (a
    micro-batched voter still runs one batch at a time). Costs the weights and the largest
    activation budget once more per worker (`roadwork plan` counts them)."""
    lanes_per_worker: int = Field(default=1, ge=1, le=8)
    """With process_per_device: calls each worker process runs at once (detectors/worker_lanes.py).
    Each lane is a thread of the worker with a CUDA stream of its own, and each voter always runs on
    the same lane (`detectors.worker_lanes.lane_of`), so one voter's batch can run on the GPU while
    another's pre- and post-processing runs on the CPU. Costs no more weights, but the voters of
    different lanes hold their activations at the same time: `roadwork plan` counts the largest
    activation budget of each lane's voters."""
    worker_split: WorkerSplit = "copies"
    """With process_per_device and workers_per_device > 1: what each of a GPU's workers holds.
    `copies`: every voter of the GPU, and each call goes to the least busy worker (a micro-batch at
    10 concurrent frames then splits into two batches of half the size). `models`: the GPU's voters
    are divided between its workers (voters[].worker, or dealt in turn), each held once: a voter's
    batches stay whole, each worker's CPU work covers half the models, and the weights are counted
    once (the production profile's two-GPU split, on one GPU)."""
    frame_transport: FrameTransport = "pipe"
    """With process_per_device: how frames reach the workers. `pipe` pickles each micro-batch's
    frames through the worker's pipe, once per voter; `shared-memory` copies the pixels once into a
    shared-memory block and sends only their shapes (detectors/frame_transport.py). A 1920x1080
    frame is 6.2 MB: `benchmarks/ipc_frames.py` measures both. Needs room in /dev/shm for a batch
    (a container's default is 64 MB: docker --shm-size)."""

    start_early: list[Level] = Field(default_factory=list)
    """Levels whose voters that read no earlier votes (the registry's `reads_prior_votes`: at L2 the
    scene zero-shot and OCR voters; SAM and depth read L1's boxes and wait) start together with the
    frame's first level instead of after the levels before theirs, so their GPU work fills the time
    the earlier levels leave idle. Their votes join the pool at their own level: the bands, exits and
    answers are those of the same votes in order. The cost: on a frame that exits before their
    level, or whose level's `run_when` skips it, their work was done for nothing (its votes are
    dropped). [] (default): every level starts after the one before. Measured on one H200 with the
    production profile's 18 models, `[L2]` was slower (x0.95 img/s at 10 frames, x0.84 at 64): the
    scene models competed with L1's detectors for the card rather than filling idle time."""

    @field_validator("start_early", mode="before")
    @classmethod
    def _levels(cls, v: Any) -> list[Level]:
        levels = [Level.parse(x) for x in v or []]
        if Level.L0 in levels or Level.L6 in levels:
            raise ValueError(f"runtime.start_early lists levels L1..L5 (L0 starts first anyway, L6 pools), got {v!r}")
        return levels

    @model_validator(mode="after")
    def _margin(self) -> RuntimeConfig:
        if self.margin_ms >= self.deadline_ms:
            raise ValueError(
                f"runtime.margin_ms ({self.margin_ms}) must be smaller than runtime.deadline_ms ({self.deadline_ms})"
            )
        for key in ("workers_per_device", "lanes_per_worker"):
            if getattr(self, key) > 1 and not self.process_per_device:
                raise ValueError(
                    f"runtime.{key} ({getattr(self, key)}) needs runtime.process_per_device: "
                    "true (without worker processes every voter runs in the miner's own process)"
                )
        if self.worker_split == "models" and not self.process_per_device:
            raise ValueError("runtime.worker_split: models needs runtime.process_per_device: true")
        return self


SHAREABLE = (
    "device",
    "dtype",
    "batch",
    "batch_wait_ms",
    "batch_pad",
    "warmup_frames",
    "input_long_side",
    "weight",
    "cost_prior_ms",
    "enabled",
)
"""Voter keys a profile's `voter_defaults` may set for all its voters."""


class CascadeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    name: str = "unnamed"
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    levels: list[LevelConfig] = Field(default_factory=list)
    voter_defaults: dict[str, Any] = Field(default_factory=dict)
    """What every voter shares unless its own entry says otherwise (e.g. `{dtype: float16}` on a
    GPU profile): one of `SHAREABLE`, applied when the profile loads."""
    voters: list[VoterConfig]
    consensus: ConsensusConfig = Field(default_factory=ConsensusConfig)
    placement: PlacementConfig = Field(default_factory=PlacementConfig)
    """GPUs and vLLM servers, checked by `roadwork plan` (empty on CPU profiles)."""
    base_dir: Path = Path(".")
    """Folder that relative paths are resolved against (set by `load_config`)."""

    @model_validator(mode="before")
    @classmethod
    def _apply_voter_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("voter_defaults"):
            return data
        defaults = data["voter_defaults"]
        if not isinstance(defaults, dict):
            raise ValueError(f"voter_defaults must be a mapping of voter keys, got {defaults!r}")
        wrong = sorted(set(defaults) - set(SHAREABLE))
        if wrong:
            raise ValueError(f"voter_defaults.{wrong[0]}: not a key voters share; allowed: {', '.join(SHAREABLE)}")
        voters = [{**defaults, **v} if isinstance(v, dict) else v for v in data.get("voters") or []]
        return {**data, "voters": voters}

    @model_validator(mode="after")
    def _check(self) -> CascadeConfig:
        names = [v.name for v in self.voters]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"voter names must be unique; repeated: {dupes}")
        if not any(v.enabled for v in self.voters):
            raise ValueError("profile has no enabled voter under `voters`")
        workers = self.runtime.workers_per_device
        beyond = [f"{v.name} ({v.worker})" for v in self.voters if v.worker is not None and v.worker >= workers]
        if beyond:
            raise ValueError(
                f"voters[].worker of {', '.join(beyond)} is not one of the device's workers "
                f"0..{workers - 1} (runtime.workers_per_device: {workers})"
            )
        levels = [lc.level for lc in self.levels]
        if len(set(levels)) != len(levels):
            raise ValueError(f"each level may appear once under `levels`, got {[lv.name for lv in levels]}")
        return self

    @model_validator(mode="after")
    def _cost_priors_fit(self) -> CascadeConfig:
        budget = self.runtime.deadline_ms - self.runtime.margin_ms
        never = [
            f"{v.name} ({v.cost_prior_ms:g} ms)"
            for v in self.voters
            if v.enabled and v.cost_prior_ms is not None and v.cost_prior_ms > budget
        ]
        if never:
            raise ValueError(
                f"voters[].cost_prior_ms of {', '.join(never)} exceeds runtime.deadline_ms - "
                f"runtime.margin_ms ({budget:g} ms): such a voter would never be scheduled; "
                "lower cost_prior_ms (or disable the voter)"
            )
        return self

    def voter_sides(self) -> dict[str, LongSides]:
        """Each enabled voter's `long_side`: the frame sizes it scores."""
        return {v.name: v.long_side for v in self.voters if v.enabled}

    def resolve(self, path: str | Path) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def band(self, level: Level) -> tuple[float, float]:
        for lc in self.levels:
            if lc.level == level:
                return lc.band
        return (0.0, 1.0)

    def run_when(self, level: Level) -> tuple[float, float] | None:
        for lc in self.levels:
            if lc.level == level:
                return lc.run_when
        return None


C = TypeVar("C", bound=CascadeConfig)


class ConfigError(ValueError):
    """A profile that cannot be used; the message names the file and the key."""

    @classmethod
    def listing(cls, path: str | Path, problems: list[str]) -> ConfigError:
        """`profile 'P' is invalid:` and one indented line per problem."""
        return cls("\n".join([f"profile {str(path)!r} is invalid:", *(f"  {p}" for p in problems)]))


def error_lines(exc: ValidationError, prefix: str = "") -> list[str]:
    """One `key: message (got value)` line per pydantic error, the key spelt as in the file (under
    `prefix`, e.g. `voters.2.params`): how every schema of this project reports a bad file."""
    lines = []
    for err in exc.errors():
        key = ".".join([prefix, *map(str, err["loc"])] if prefix else map(str, err["loc"])) or "(top level)"
        lines.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
    return lines


def load_config(path: str | Path, schema: type[C] = CascadeConfig) -> C:  # type: ignore[assignment]
    """A profile file checked against `schema`: the cascade's own sections (CascadeConfig), or the
    whole deployment profile that also holds the miner's and tracing's (`miner.profile.Profile`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"profile {str(path)!r} not found (try configs/cpu.yaml)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"profile {str(path)!r} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"profile {str(path)!r} must be a mapping at the top level")
    data = dict(data)
    data["base_dir"] = path.resolve().parent
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise ConfigError.listing(path, error_lines(exc)) from exc
