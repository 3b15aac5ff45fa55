"""What a GPU bench run builds and where: its options, the profile's voters placed and split into
those built here and those excluded (VLM tiers, disabled, not in --only), and the profile the
cascade runs them under."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

from cascade.config import CascadeConfig, ConsensusConfig, LevelConfig
from cascade.placement import card

PACKAGES = {
    "ultralytics": "ultralytics",
    "rfdetr": "rfdetr",
    "ocr-signs": "rapidocr_onnxruntime",
    "hf-detector": "transformers",
    "depth-size": "transformers",
    "sam-mask": "transformers",
    "scene-zero-shot": "transformers",
    "backbone-head": "transformers",
    "wbf-ensemble": "ensemble_boxes",
}


GIB = 1024**3


@dataclass
class GpuBenchOptions:
    concurrency: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    device: str | None = None
    """Put every in-process voter on this device (default: the profile's devices)."""
    single_gpu: bool = False
    """Remap every cuda:N to cuda:0 (the 1-GPU side of a 2-GPU vs 1-GPU comparison)."""
    tiny: bool = False
    no_early_exit: bool = False
    dtype: str | None = None
    """Override the profile's dtype: float16, bfloat16 or float32."""
    levers: bool = False
    """Also time each model's native batch in the other half dtype and with channels_last."""
    size: int | tuple[int, int] = 224
    """Frame side (square), or (width, height) from `--frame` (full-resolution validators)."""
    native_batch: int = 32
    loop_frames: int = 8
    only: list[str] | None = None
    process_per_device: bool | None = None
    """Each GPU's voters in a worker process of their own; None: as the profile's runtime says."""
    workers_per_device: int | None = None
    """Worker processes per device (with process_per_device); None: as the profile's runtime says."""
    lanes_per_worker: int | None = None
    """Calls each worker process runs at once (with process_per_device); None: as the profile's runtime says."""
    frame_transport: str | None = None
    """How frames reach the worker processes (pipe, shared-memory); None: as the profile's runtime says."""
    input_scale: bool = True
    """False: drop every voter's `input_long_side`, so frames reach the models as they came (the
    other side of a comparison)."""
    bursts: int = 1
    """Bursts of `concurrency` new frames at each concurrency. With more than one, the first (the
    first load after warm-up) is reported on its own and the run's figures are the later ones'."""
    native: bool = True
    """False: skip each model's own batched cost and the sequential loop (about 50 s a run on an
    H200), so two settings fit in one device call; the run then has no overhead or speed-up."""


def package_missing(kind: str) -> str | None:
    pkg = PACKAGES.get(kind)
    if pkg and importlib.util.find_spec(pkg) is None:
        return f"package {pkg!r} is not installed (voter kind {kind!r})"
    return None


def place(cfg: CascadeConfig, opts: GpuBenchOptions) -> CascadeConfig:
    """The profile with devices remapped for this run (CPU for --tiny without --device), and
    without input scaling for `input_scale=False`. With --single-gpu and runtime.worker_split:
    models, a voter without `worker` goes to the worker of its profile GPU's number (modulo the
    workers): one card's workers split the models as the profile splits them between its cards."""
    workers = opts.workers_per_device or cfg.runtime.workers_per_device

    def dev(d: str) -> str:
        if opts.device is not None:
            return d if d == "cpu" else opts.device
        if opts.tiny:
            return "cpu"
        if opts.single_gpu and d.startswith("cuda"):
            return "cuda:0"
        return card(d)

    def worker(v: Any) -> dict[str, int]:
        gpu = card(v.device)
        if not (opts.single_gpu and cfg.runtime.worker_split == "models" and v.worker is None):
            return {}
        return {"worker": int(gpu.split(":")[1]) % workers} if gpu.startswith("cuda:") else {}

    scale = {} if opts.input_scale else {"input_long_side": None}
    voters = [v.model_copy(update={"device": dev(v.device), **scale, **worker(v)}) for v in cfg.voters]
    return cfg.model_copy(update={"voters": voters})


def split_voters(cfg: CascadeConfig, opts: GpuBenchOptions) -> tuple[list, dict[str, str]]:
    from detectors.random_weights import IN_PROCESS_EXCLUDED

    run, excluded = [], {}
    for v in cfg.voters:
        if not v.enabled:
            excluded[v.name] = "disabled in the profile"
        elif v.kind in IN_PROCESS_EXCLUDED:
            excluded[v.name] = (
                f"{v.kind} ({v.level.name}) runs on a vLLM server, not in-process; its cost "
                "comes from benchmarks/vlm_prefill_bench.py"
            )
        elif opts.only is not None and v.name not in opts.only:
            excluded[v.name] = "not in --only"
        else:
            run.append(v)
    return run, excluded


def bench_config(cfg: CascadeConfig, voters: list, opts: GpuBenchOptions, workers: int) -> CascadeConfig:
    """The profile limited to the built voters; all bands open with --no-early-exit; no deadline cut."""
    levels = cfg.levels
    if opts.no_early_exit:
        levels = [LevelConfig(level=lv) for lv in sorted({v.level for v in voters})]
    runtime = cfg.runtime.model_copy(update={"deadline_ms": 600_000.0, "margin_ms": 0.0, "workers": workers})
    return cfg.model_copy(
        update={"voters": voters, "levels": levels, "runtime": runtime, "consensus": ConsensusConfig()}
    )


def compile_for_one_process(voters: list) -> tuple[list, dict[str, str]]:
    """The voters with CUDA-graph compilation (`compile: reduce-overhead`) turned to `default`,
    which runs from many threads, for a one-process run; and a note for each one changed."""
    from detectors.backbone_head import cuda_graph_voters

    changed = {voters[i].name for i in cuda_graph_voters(voters)}
    out, notes = [], {}
    for v in voters:
        if v.name in changed:
            params = {**v.params, "backbone": {**v.params["backbone"], "compile": "default"}}
            v = v.model_copy(update={"params": params})
            notes[v.name] = "compile: reduce-overhead -> default (CUDA graphs need a worker per device)"
        out.append(v)
    return out, notes
