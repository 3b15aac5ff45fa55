"""`--levers`: each model's native batched cost in fp16 vs bf16, with channels_last, and the first
L0 backbone under torch.compile."""

from __future__ import annotations

import time
from typing import Any

from cascade.config import CascadeConfig
from cascade.types import Frame
from roadwork.bench.build import inner
from roadwork.bench.options import GpuBenchOptions
from roadwork.bench.timing import time_native

COMPILE_MODES = ("default", "reduce-overhead")


"""torch.compile modes tried on the first L0 backbone: inductor fusion, and the same with CUDA graphs."""


def compiled_native(det: Any, frames: list[Frame], device: str, mode: str) -> dict[str, Any]:
    """ms/image of an L0 backbone under torch.compile (static shapes: the input size is fixed),
    with the seconds the compilation took; or why it failed."""
    import torch

    bb = det.unwrap().backbone
    eager = bb.model
    try:
        bb.forward = torch.compile(eager, mode=mode, dynamic=False)
        t0 = time.perf_counter()
        inner(det).predict(frames)  # compile for this batch size
        compile_s = time.perf_counter() - t0
        return {
            "ms_per_image": round(time_native(det, frames, device)["ms_per_image"], 3),
            "compile_s": round(compile_s, 1),
        }
    except Exception as exc:
        return {"failed": f"{type(exc).__name__}: {str(exc)[:200]}"}
    finally:
        bb.forward = eager
        torch._dynamo.reset()


def try_levers(
    cfg: CascadeConfig,
    voters: list,
    dets: list,
    frames: list[Frame],
    opts: GpuBenchOptions,
    out: dict[str, Any] | None = None,
    on_model: Any = None,
) -> dict:
    """Native batched cost per model in fp16 vs bf16 (rebuilt), with channels_last, and (the first
    L0 backbone) compiled; fills `out` model by model and calls `on_model()` after each."""
    import torch

    from detectors.random_weights import HF_KINDS, build_random

    out = {} if out is None else out
    by_name = {v.name: v for v in voters}
    compiled = False
    for det in dets:
        v = by_name[det.name]
        if v.kind not in (*HF_KINDS, "backbone-head") or not (v.device.startswith("cuda") or opts.tiny):
            continue
        res = {}
        for dt in ("float16", "bfloat16"):
            try:
                other = build_random(v, cfg.base_dir, tiny=opts.tiny, dtype=dt)
                if v.kind == "backbone-head":  # levers start from eager, whatever the profile compiles
                    other.unwrap().backbone.forward = other.unwrap().backbone.model
                res[dt] = round(time_native(other, frames, v.device)["ms_per_image"], 3)
                model = getattr(other.unwrap(), "model", None)
                if dt == "float16" and isinstance(model, torch.nn.Module):
                    model.to(memory_format=torch.channels_last)
                    res["float16+channels_last"] = round(time_native(other, frames, v.device)["ms_per_image"], 3)
                if dt == "float16" and v.kind == "backbone-head" and not opts.tiny and not compiled:
                    compiled = True  # L0 runs on every query; one backbone shows what compiling buys
                    for mode in COMPILE_MODES:
                        got = compiled_native(other, frames, v.device, mode)
                        res[f"float16+compile:{mode}"] = got.get("ms_per_image", got.get("failed"))
                        res[f"float16+compile:{mode}:compile_s"] = got.get("compile_s")
                del other
            except (RuntimeError, ValueError, TypeError) as exc:
                res[dt] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        timed = {k: x for k, x in res.items() if isinstance(x, float) and not k.endswith("compile_s")}
        res["best"] = min(timed, key=timed.get) if timed else None  # failures are strings
        out[det.name] = res
        if on_model is not None:
            on_model()
    return out
