"""SAM ViT-B's image encoder with transformers' attention against the folded relative-position form.

    python benchmarks/sam_attention_bench.py --out benchmarks/results/sam_attention_<gpu>.json

Builds `facebook/sam-vit-base`'s architecture (transformers' default SamConfig: ViT-B at 1024 px)
with random weights in float16, drawn at std 0.02: transformers initialises SAM's encoder at 1e-10
and its relative-position tables at zero, which would hide any error in the fold. For each batch
size it times `get_image_embeddings` (CUDA events, median of `--reps` after a warm-up) three ways:
transformers' SDPA with the bias as a mask, folded with the value as it is, folded with the value
padded to the folded head dim. Each folded form's largest difference from transformers' output is
written beside its time, with the machine. On the CPU it runs too (slowly; batch 1 only is sensible).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from roadwork.env import configure_process

configure_process()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,2,4,8", help="comma-separated batch sizes")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--device", default="cuda:0" if _cuda() else "cpu")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()

    import torch
    from transformers import SamConfig, SamModel
    from transformers.models.sam.modeling_sam import SamVisionSdpaAttention

    from detectors.sam_attention import FoldedRelPosAttention
    from roadwork.bench.utilisation import machine

    dtype = torch.float16 if a.device.startswith("cuda") else torch.float32
    torch.manual_seed(0)
    with torch.device(a.device):
        model = SamModel(SamConfig()).to(dtype).eval()
        for p in model.vision_encoder.parameters():
            if p.dim() > 1:
                torch.nn.init.normal_(p, std=0.02)
    attention = [m for m in model.vision_encoder.modules() if isinstance(m, SamVisionSdpaAttention)]

    def set_form(form: str) -> None:
        for m in attention:
            m.__class__ = SamVisionSdpaAttention if form == "transformers" else FoldedRelPosAttention
            m.pad_value = form == "folded, value padded"

    def timed(x: torch.Tensor) -> tuple[float, torch.Tensor]:
        with torch.inference_mode():
            out = model.get_image_embeddings(x)  # warm-up: kernels chosen, caches filled
            times = []
            for _ in range(a.reps):
                if x.is_cuda:
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    out = model.get_image_embeddings(x)
                    end.record()
                    torch.cuda.synchronize()
                    times.append(start.elapsed_time(end))
                else:
                    t0 = time.perf_counter()
                    out = model.get_image_embeddings(x)
                    times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times), out.float()

    rows = []
    for batch in (int(b) for b in a.batches.split(",")):
        x = torch.randn(batch, 3, 1024, 1024, device=a.device, dtype=dtype)
        base = None
        for form in ("transformers", "folded", "folded, value padded"):
            set_form(form)
            ms, out = timed(x)
            base = out if base is None else base
            row = {
                "batch": batch,
                "form": form,
                "ms_per_batch": round(ms, 2),
                "ms_per_image": round(ms / batch, 2),
                "max_abs_diff": round(float((out - base).abs().max()), 5),
                "output_max_abs": round(float(base.abs().max()), 3),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine(), "device": a.device, "dtype": str(dtype), "reps": a.reps, "rows": rows}
    a.out.write_text(json.dumps(result, indent=1) + "\n")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
