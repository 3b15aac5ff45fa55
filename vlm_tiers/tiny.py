"""Build a tiny random Qwen2.5-VL / Qwen2-VL (model + processor) in a folder, with no download.

The architecture is the real one (transformers' Qwen2_5_VLForConditionalGeneration), only small;
the tokenizer is a byte-level BPE (like Qwen's) trained here with the `tokenizers` library on a
few lines; it has Qwen's special tokens (<|im_start|>, <|vision_start|>, <|image_pad|>, ...) and
single tokens for 'yes' / 'no'; the processor carries a Qwen-style chat template, so
`transformers serve` can serve the folder. Tests, `benchmarks/vlm_prefill_bench.py --tiny` and the
in-process tier use it; its answers are random.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
CORPUS = [
    "Is there roadwork or a construction zone in this image (traffic cones, barriers, roadwork signs, "
    "construction machinery or road workers)? Answer yes or no.",
    "yes no Yes No yes no yes no Yes No",
    "user\nassistant\nsystem\n",
]
# Qwen2-VL's chat format, reduced to text and one image per message part.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] in ['image', 'image_url'] %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer():
    """A byte-level BPE tokenizer (like Qwen's, only ~400 tokens) trained here on a few lines."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(CORPUS * 50, trainer)
    missing = [w for w in ("yes", "no", "Yes", "No") if len(backend.encode(w).ids) != 1]
    if missing:
        backend.add_tokens(missing)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<|endoftext|>", eos_token="<|im_end|>", additional_special_tokens=SPECIAL
    )


def tiny_config(family: Literal["qwen2_5_vl", "qwen2_vl"], vocab: dict[str, int]):
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig

    text = dict(
        vocab_size=len(vocab),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
        bos_token_id=vocab["<|endoftext|>"],
        eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    ids = dict(
        image_token_id=vocab["<|image_pad|>"],
        video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"],
        vision_end_token_id=vocab["<|vision_end|>"],
    )
    if family == "qwen2_5_vl":
        vision = dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=64,
            fullatt_block_indexes=[1],
            window_size=112,
        )
        return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)
    vision = dict(depth=2, embed_dim=32, mlp_ratio=2, num_heads=2, hidden_size=64)
    return Qwen2VLConfig(text_config=text, vision_config=vision, **ids)


def tiny_processor(family: Literal["qwen2_5_vl", "qwen2_vl"], max_pixels: int = 448 * 448):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    cls = Qwen2_5_VLProcessor if family == "qwen2_5_vl" else Qwen2VLProcessor
    return cls(
        image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=max_pixels),
        tokenizer=tiny_tokenizer(),
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny_vlm(
    out_dir: str | Path, family: Literal["qwen2_5_vl", "qwen2_vl"] = "qwen2_5_vl", seed: int = 0
) -> Path:
    """Write a tiny random model + processor to `out_dir` (loadable with from_pretrained)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    processor = tiny_processor(family)
    config = tiny_config(family, processor.tokenizer.get_vocab())
    torch.manual_seed(seed)
    cls = Qwen2_5_VLForConditionalGeneration if family == "qwen2_5_vl" else Qwen2VLForConditionalGeneration
    model = cls(config).eval()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
