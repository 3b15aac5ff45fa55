"""Loading transformers models for the L1/L2 adapters: a hub id, a local folder, or random weights.

`HFSource` is the part of every transformers adapter's params that says where the model comes
from. `model` is a local folder (relative to the profile) or a hub id (downloads only with
`allow_download: true`); `random_init` instead builds the architecture from its config with
random weights (`{model_type: owlv2, ...overrides}`), which is how tests (tiny sizes) and the GPU
speed benchmark (production sizes) run without downloads. A random text model gets a small
word-level tokenizer built in memory from the prompts, so nothing is fetched.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

log = logging.getLogger(__name__)

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


class HFSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    """Local folder or hub id (hub ids need allow_download: true)."""
    random_init: dict[str, Any] | None = None
    """Build from a config with random weights: {model_type: ..., **config overrides}."""
    allow_download: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> HFSource:
        if (self.model is None) == (self.random_init is None):
            raise ValueError(
                "give exactly one of params.model (folder or hub id) or params.random_init "
                f"(config dict); got model={self.model!r}, random_init={self.random_init!r}"
            )
        if self.random_init is not None and "model_type" not in self.random_init:
            raise ValueError(f"params.random_init needs a model_type (e.g. owlv2), got {self.random_init!r}")
        return self


class CompileOption(BaseModel):
    """The `compile` param of an L2 validator whose transformers model runs on the GPU."""

    compile: Literal["none", "default", "max-autotune-no-cudagraphs"] = "none"
    """On CUDA: `torch.compile` the model's heavy part in this mode; each batch size compiles at
    warm-up (into the kept inductor cache, so a restart reuses it). Modes with CUDA graphs are
    refused: torch keeps that state per thread, and voters run on lane threads. Not applied on the
    CPU (logged). SAM alone added about 80 s to a cold start on an H200 (README, "SAM's image
    encoder compiled")."""


def compile_on_cuda(module: Any, mode: str, device: str, name: str) -> None:
    """`module.compile(mode=...)` in place on CUDA; on another device only a log line says it was not."""
    if mode == "none":
        return
    if device.startswith("cuda"):
        module.compile(mode=mode)
        log.info("%s: %s compiled (mode %s) on %s", name, type(module).__name__, mode, device)
    else:
        log.info("%s: params.compile=%s not applied on %s (CUDA only)", name, mode, device)


def resolve_model(src: HFSource, base_dir: Path, key: str) -> str:
    if src.model is None:
        raise ValueError(f"{key} is not set (the source is random_init)")
    p = Path(src.model).expanduser()
    local = p if p.is_absolute() else base_dir / p
    if local.is_dir():
        return str(local.resolve())
    if src.allow_download:
        return src.model
    raise FileNotFoundError(
        f"{key}={src.model!r} is not a folder under {str(base_dir)!r} and downloads are "
        "off; give a local folder, set `allow_download: true` for a hub id, or use "
        "`random_init` for random weights"
    )


def random_config(spec: dict[str, Any]) -> Any:
    from transformers import AutoConfig

    spec = dict(spec)
    return AutoConfig.for_model(spec.pop("model_type"), **spec)


def torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def load_model(src: HFSource, auto_cls: Any, base_dir: Path, key: str, device: str, dtype_name: str) -> Any:
    """Pretrained (folder / hub) or random-init model on `device`, in eval mode, in the voter's `dtype`."""
    dtype = torch_dtype(dtype_name)
    if src.random_init is not None:
        return random_model(auto_cls, random_config(src.random_init), device, dtype)
    model = auto_cls.from_pretrained(resolve_model(src, base_dir, key), local_files_only=not src.allow_download)
    return model.to(device=device, dtype=dtype).eval()


def random_model(auto_cls: Any, config: Any, device: str, dtype: Any) -> Any:
    """The architecture of `config` with random weights, created directly on `device`.

    Building under `torch.device(device)` runs the weight initialisation on that device: a
    300M-parameter ViT-L takes ~7 s to initialise on two CPU cores, a fraction of a second on a GPU,
    and a full production profile is ~3.5B parameters.
    """
    import torch

    with torch.device(device):
        # Auto* classes build from a config with from_config, concrete model classes with __init__
        model = auto_cls.from_config(config) if hasattr(auto_cls, "from_config") else auto_cls(config)
    # .to(device) too: a few models make tensors on the CPU explicitly while building
    return model.to(device=device, dtype=dtype).eval()


def load_processor(src: HFSource, base_dir: Path, key: str, build_random: Any) -> Any:
    """AutoProcessor for a pretrained model; `build_random()` for a random-init one."""
    if src.random_init is not None:
        return build_random()
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(resolve_model(src, base_dir, key), local_files_only=not src.allow_download)


def tiny_tokenizer(texts: list[str], max_length: int = 16, extra: list[str] | None = None) -> Any:
    """A word-level fast tokenizer whose vocabulary is the words of `texts` (random models only)."""
    import re

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())} | {"."})
    vocab = {w: i for i, w in enumerate(SPECIAL + (extra or []) + [w for w in words if w not in SPECIAL])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
    )


def model_device(model: Any) -> Any:
    return next(model.parameters()).device


def to_device(batch: Any, model: Any) -> Any:
    """Move a processor's BatchFeature to the model's device; floats also to its dtype."""
    import torch

    p = next(model.parameters())
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(p.device, dtype=p.dtype) if v.is_floating_point() else v.to(p.device)
        out[k] = v
    return out


def image_kwargs(model: Any) -> dict[str, Any]:
    """Processor kwargs for RGB HWC uint8 frames; on CUDA, resize/normalise on the GPU as well."""
    kw: dict[str, Any] = {"input_data_format": "channels_last"}
    dev = model_device(model)
    if dev.type == "cuda":
        kw["device"] = str(dev)
    return kw
