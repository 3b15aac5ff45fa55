"""Prefill + one decode step of a Qwen2.5-VL-7B-sized model, per image size and batch size.

The model is transformers' Qwen2_5_VLForConditionalGeneration built from the public
Qwen/Qwen2.5-VL-7B-Instruct config.json values (below) with RANDOM bf16 weights: the speed is
the real architecture's, the answers are noise. No download. The times feed the tiers' cost
priors (`voters[].cost_prior_ms`) so the router does not schedule a tier it cannot afford.

    # one H100 (under ~3 minutes; writes $OUT/vlm_prefill_bench.json)
    python benchmarks/vlm_prefill_bench.py
    # CPU smoke run with a tiny model (seconds)
    python benchmarks/vlm_prefill_bench.py --tiny

`prefill_ms` is one forward pass over the prompt with its image (vision encoder + prefill, logits
of the last position only, as a server computes them); `decode_ms` is the next forward pass of
one new token against the KV cache. `prefill_plus_decode_ms` is their sum per repeat.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Qwen/Qwen2.5-VL-7B-Instruct config.json (public model card), text + vision parts.
QWEN25_VL_7B_TEXT = dict(
    vocab_size=152064,
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    hidden_act="silu",
    max_position_embeddings=128000,
    rms_norm_eps=1e-6,
    rope_theta=1000000.0,
    tie_word_embeddings=False,
    use_sliding_window=False,
    sliding_window=32768,
    max_window_layers=28,
    attention_dropout=0.0,
    rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]},
    bos_token_id=151643,
    eos_token_id=151645,
)
QWEN25_VL_7B_VISION = dict(
    depth=32,
    hidden_act="silu",
    hidden_size=1280,
    intermediate_size=3420,
    num_heads=16,
    in_chans=3,
    out_hidden_size=3584,
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
    window_size=112,
    fullatt_block_indexes=[7, 15, 23, 31],
    tokens_per_second=2,
)
QWEN_IDS = dict(image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653)
IM_START, IM_END, NEWLINE = 151644, 151645, 198
QUESTION_TOKENS = 48  # the roadwork question + chat template text, about this many tokens


def build_model(tiny: bool, device: str, dtype_name: str, attn: str):
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    if tiny:
        from vlm_tiers.tiny import SPECIAL, tiny_config, tiny_tokenizer

        vocab = tiny_tokenizer().get_vocab()
        config = tiny_config("qwen2_5_vl", vocab)
        ids = dict(
            image=vocab["<|image_pad|>"],
            vs=vocab["<|vision_start|>"],
            ve=vocab["<|vision_end|>"],
            im_start=vocab["<|im_start|>"],
            im_end=vocab["<|im_end|>"],
            nl=vocab["Ċ"],
            text_lo=len(SPECIAL),
            text_hi=len(vocab) - 1,
        )  # words only, no special ids
    else:
        config = Qwen2_5_VLConfig(text_config=QWEN25_VL_7B_TEXT, vision_config=QWEN25_VL_7B_VISION, **QWEN_IDS)
        ids = dict(
            image=QWEN_IDS["image_token_id"],
            vs=QWEN_IDS["vision_start_token_id"],
            ve=QWEN_IDS["vision_end_token_id"],
            im_start=IM_START,
            im_end=IM_END,
            nl=NEWLINE,
            text_lo=0,
            text_hi=150000,
        )  # ordinary text ids (specials start at 151643)
    dtype = getattr(torch, dtype_name)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen2_5_VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(attn)
    return model.eval(), ids


def make_inputs(model, ids: dict, size: int, batch: int):
    """A size x size image per row as the Qwen2.5-VL processor would hand it to the model:
    flattened 14-px patches (temporal pair, 3 x 2 x 14 x 14 = 1176 values each) with its
    (t, h, w) grid. The pixel values are random, as the weights are: the compute is the same, and
    no image processor (or torchvision) is needed on the GPU machine."""
    import torch

    side = max(28, (size // 28) * 28)  # Qwen's resize of a square image to whole 28-px tokens
    grid_h = grid_w = side // 14
    grid = torch.tensor([[1, grid_h, grid_w]] * batch)
    g = torch.Generator().manual_seed(size)
    pixel_values = torch.randn(batch * grid_h * grid_w, 3 * 2 * 14 * 14, generator=g)
    n_visual = grid_h * grid_w // 4  # 2 x 2 patch merge
    question = torch.randint(ids["text_lo"], ids["text_hi"], (QUESTION_TOKENS,), generator=g).tolist()
    row = (
        [ids["im_start"], ids["nl"], ids["vs"]]
        + [ids["image"]] * n_visual
        + [ids["ve"]]
        + question
        + [ids["im_end"], ids["nl"], ids["im_start"], ids["nl"]]
    )
    input_ids = torch.tensor([row] * batch)
    inputs = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "mm_token_type_ids": (input_ids == ids["image"]).int(),  # image positions, for M-RoPE
        "pixel_values": pixel_values.to(model.dtype),
        "image_grid_thw": grid,
    }
    return {k: v.to(model.device) for k, v in inputs.items()}, n_visual, len(row)


def _step_kwargs(model) -> tuple[str, bool]:
    """transformers renamed `past_key_values` to `cache` (5.x); older releases lack logits_to_keep."""
    params = inspect.signature(model.forward).parameters
    return ("cache" if "cache" in params else "past_key_values"), "logits_to_keep" in params


def prefill_and_decode(model, inputs: dict, sync) -> tuple[float, float]:
    """(prefill ms, one decode step ms): the whole prompt with the image, then one new token."""
    import torch

    cache_kw, keep = _step_kwargs(model)
    extra = {"logits_to_keep": 1} if keep else {}
    if hasattr(model, "model") and hasattr(model.model, "rope_deltas"):
        model.model.rope_deltas = None
    with torch.inference_mode():
        sync()
        t0 = time.perf_counter()
        out = model(**inputs, use_cache=True, **extra)
        next_ids = out.logits[:, -1:].argmax(-1)
        sync()
        t1 = time.perf_counter()
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        model(input_ids=next_ids, use_cache=True, **{cache_kw: cache}, **extra)
        sync()
        t2 = time.perf_counter()
    return (t1 - t0) * 1000, (t2 - t1) * 1000


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {
        "median": round(statistics.median(values), 3),
        "p90": round(p90, 3),
        "min": round(ordered[0], 3),
        "all": [round(v, 3) for v in values],
    }


def measure(model, ids: dict, size: int, batch: int, warmup: int, repeats: int, sync) -> dict:
    import torch

    inputs, n_visual, seq_len = make_inputs(model, ids, size, batch)
    if torch.cuda.is_available() and model.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(warmup):
        prefill_and_decode(model, inputs, sync)
    one, decode = [], []
    for _ in range(repeats):
        p, d = prefill_and_decode(model, inputs, sync)
        one.append(p)
        decode.append(d)
    two = [p + d for p, d in zip(one, decode, strict=True)]
    row = {
        "size_px": size,
        "batch": batch,
        "visual_tokens_per_image": n_visual,
        "seq_len": seq_len,
        "prefill_ms": summary(one),
        "decode_ms": summary(decode),
        "prefill_plus_decode_ms": summary(two),
        "prefill_per_image_ms": round(statistics.median(one) / batch, 3),
    }
    if model.device.type == "cuda":
        row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 1024**3, 3)
    return row


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny random model on CPU (smoke test)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 448, 896])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa")
    ap.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default=None)
    ap.add_argument("--out", type=Path, default=None, help="JSON file (default $OUT or runs/)")
    args = ap.parse_args(argv)

    import torch
    import transformers

    cuda = torch.cuda.is_available() and not args.tiny
    device = "cuda" if cuda else "cpu"
    dtype = args.dtype or ("bfloat16" if cuda else "float32")
    if not cuda and not args.tiny:
        ap.error("no CUDA device: the 7B model needs one (use --tiny for a CPU smoke run)")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    t0 = time.perf_counter()
    model, ids = build_model(args.tiny, device, dtype, args.attn)
    build_s = time.perf_counter() - t0
    rows = []
    for size in args.sizes:
        for batch in args.batches:
            rows.append(measure(model, ids, size, batch, args.warmup, args.repeats, sync))
            r = rows[-1]
            print(
                f"{size:4d} px  batch {batch:2d}: prefill {r['prefill_ms']['median']:8.1f} ms, "
                f"+1 decode {r['decode_ms']['median']:7.1f} ms, {r['visual_tokens_per_image']} visual tokens",
                flush=True,
            )
    result = {
        "benchmark": "vlm_prefill_bench",
        "model": "tiny-qwen2.5-vl (random)" if args.tiny else "Qwen2.5-VL-7B-Instruct architecture, random weights",
        "params_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 4),
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "dtype": dtype,
        "attn": args.attn,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "build_s": round(build_s, 2),
        "warmup": args.warmup,
        "repeats": args.repeats,
        "results": rows,
        "cost_prior_ms_hint": {
            str(r["size_px"]): round(r["prefill_plus_decode_ms"]["p90"], 1) for r in rows if r["batch"] == 1
        },
    }
    out = args.out or Path(os.environ.get("OUT", "runs")) / "vlm_prefill_bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
