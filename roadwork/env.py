"""Process set-up done once by the entrypoint: offline defaults, logging, torch threads, a Ray cluster."""

from __future__ import annotations

import logging
import os
from pathlib import Path

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "false",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "FIFTYONE_DO_NOT_TRACK": "true",
    "NO_ALBUMENTATIONS_UPDATE": "1",
}


def configure_process(
    cache_dir: Path | None = None, verbose: bool = False, log_level: str | None = None, log_json: bool = False
) -> None:
    """Offline by default: a variable the user already set is kept (that is how to go online)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    cache = cache_dir or Path.cwd() / ".cache"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(cache / "ultralytics"))
    # compiled kernels (backbone `compile:`) kept with the project, so a restart reuses them; device
    # workers inherit it (on 2x H100 the first query of a fresh machine took 58.6 s with L0 compiled,
    # benchmarks/results/gpu_bench_2gpu_compiled_h100_run11_partial.json)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache / "torchinductor"))
    from monitoring.logs import configure_logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure_logging(
        "DEBUG" if verbose else (log_level or "WARNING"), log_json, explicit=verbose or log_level is not None
    )


def set_torch_threads(n: int) -> None:
    if n > 0:
        import torch

        torch.set_num_threads(n)


def join_ray(address: str) -> None:
    """Join the Ray cluster at `address` (`auto`, `ray://HOST:10001`; `local` starts a one-machine
    cluster here), once per process: `eval --ray`, `serve --shared-cascade` and `cascade-service`."""
    import ray

    if ray.is_initialized():
        return
    where = {} if address == "local" else {"address": address}
    ray.init(include_dashboard=False, log_to_driver=False, **where)
