"""Settings of the VLM tier voters (`voters[].params` of kind `vlm-http` / `vlm-transformers`).

Checked at load with pydantic (unknown keys refused). What each OpenAI-compatible server needs:

| server        | yes/no from logprobs | constrained answer                          | health probe |
| ------------- | -------------------- | ------------------------------------------- | ------------ |
| `vllm`        | `logprobs`, `top_logprobs` | `structured_outputs: {choice: [...]}` (vLLM >= 0.12) | `/health` |
| `vllm-legacy` | same                 | `guided_choice: [...]` (vLLM < 0.12)        | `/health`    |
| `sglang`      | same                 | `regex: "(yes|no)"` (extra request field)   | `/health`    |
| `lmdeploy`    | same                 | none used (answers parsed from text/logprobs) | `/v1/models` |
| `transformers`| not supported (`transformers serve` rejects `logprobs`) | none | `/v1/models` |

Without logprobs the probability comes from the answer text (`hard_prob` for "yes",
1 - `hard_prob` for "no"), which is coarser: prefer a server with logprobs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cascade.config import VoterConfig
from detectors.weights import WeightItem, Where

GuidedMode = Literal["structured_outputs", "guided_choice", "regex", "none"]
ServerKind = Literal["vllm", "vllm-legacy", "sglang", "lmdeploy", "transformers"]

DEFAULT_QUESTION = (
    "Is there roadwork or a construction zone in this image (traffic cones, barriers, "
    "roadwork signs, construction machinery or road workers)? Answer yes or no."
)
DEFAULT_THINKING_QUESTION = (
    "Is there roadwork or a construction zone in this image (traffic cones, barriers, roadwork signs, "
    "construction machinery or road workers)? Think step by step about what you see, then end with "
    "one final line exactly 'ANSWER: yes' or 'ANSWER: no'."
)


class ServerFeatures(BaseModel):
    """What the server behind a tier supports; `server:` picks a preset, `features:` overrides it."""

    model_config = ConfigDict(extra="forbid")

    logprobs: bool = True
    """Ask for `logprobs` + `top_logprobs` and score yes/no from them."""
    top_logprobs: int = Field(default=10, ge=1, le=20)
    guided: GuidedMode = "structured_outputs"
    """How to constrain the yes/no answer (see the module docstring)."""
    health_path: str = "/health"


PRESETS: dict[str, ServerFeatures] = {
    "vllm": ServerFeatures(),
    "vllm-legacy": ServerFeatures(guided="guided_choice"),
    "sglang": ServerFeatures(guided="regex"),
    "lmdeploy": ServerFeatures(guided="none", health_path="/v1/models"),
    "transformers": ServerFeatures(logprobs=False, guided="none", health_path="/v1/models"),
}


class BreakerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    failures: int = Field(default=3, ge=1)
    """Consecutive failures that open an endpoint's circuit."""
    reset_s: float = Field(default=15.0, gt=0)
    """Seconds an open circuit waits before letting one probe request through (half-open)."""


class ImageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_pixels: int = Field(default=448 * 448, ge=28 * 28)
    """Images are shrunk (aspect kept) to at most this many pixels: fewer visual tokens, faster."""
    min_pixels: int = Field(default=56 * 56, ge=28 * 28)
    jpeg_quality: int = Field(default=90, ge=30, le=100)
    patch: Literal[28, 32] = 28
    """Pixels per visual token side: 28 for Qwen2-VL / Qwen2.5-VL, 32 for Qwen3-VL."""

    @model_validator(mode="after")
    def _order(self) -> ImageConfig:
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"image.min_pixels ({self.min_pixels}) must be <= image.max_pixels ({self.max_pixels})")
        return self


class HttpTierParams(BaseModel):
    """`params` of a `vlm-http` voter: one tier served by one or more OpenAI-compatible servers."""

    model_config = ConfigDict(extra="forbid")

    launch: str | None = None
    """The vLLM launch spec (configs/vllm/*.yaml) of the server this tier calls: the profile's
    loader takes `model` and `endpoints` from it (`vlm_tiers.launch.apply_launch_specs`)."""
    model: str = Field(min_length=1)
    """Model name the server serves (`--served-model-name` of `vllm serve`); from `launch` if given."""
    endpoints: list[str] = Field(min_length=1)
    """Base URLs, e.g. http://127.0.0.1:8001 (no /v1); called round robin, unhealthy ones skipped.
    From `launch` if left out; give them where the client reaches the server by another address."""
    server: ServerKind = "vllm"
    features: ServerFeatures | None = None
    """Override the `server` preset."""
    prompt: Literal["yesno", "thinking"] = "yesno"
    """`yesno`: one constrained token scored from logprobs. `thinking`: reasoning, then a strict
    final 'ANSWER: yes|no' line (precision tier)."""
    question: str | None = None
    system: str | None = None
    image: ImageConfig = Field(default_factory=ImageConfig)
    timeout_ms: float = Field(default=4000, gt=0)
    """Upper bound of one call; the cascade's remaining deadline cuts it shorter."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Default 1 for `yesno`, 1024 for `thinking`."""
    hard_prob: float = Field(default=0.85, gt=0.5, lt=1.0)
    """Probability given to a bare 'yes' when no logprobs are available (1 - it for 'no')."""
    api_key_env: str | None = None
    """Environment variable holding the bearer token, if the server wants one."""
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)

    @model_validator(mode="after")
    def _urls(self) -> HttpTierParams:
        for url in self.endpoints:
            if not url.startswith(("http://", "https://")) or url.rstrip("/").endswith("/v1"):
                raise ValueError(
                    f"endpoints: {url!r} must be a base URL like http://127.0.0.1:8001 "
                    "(scheme, host, port; without /v1)"
                )
        return self

    @property
    def resolved_features(self) -> ServerFeatures:
        return self.features or PRESETS[self.server]

    @property
    def resolved_question(self) -> str:
        if self.question:
            return self.question
        return DEFAULT_THINKING_QUESTION if self.prompt == "thinking" else DEFAULT_QUESTION

    @property
    def resolved_max_tokens(self) -> int:
        return self.max_tokens or (1024 if self.prompt == "thinking" else 1)


class LocalTierParams(BaseModel):
    """`params` of a `vlm-transformers` voter: a Qwen2-VL / Qwen2.5-VL model run in-process."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    """A local folder (model + processor), or a hub id when `allow_download` is true."""
    allow_download: bool = False
    question: str = DEFAULT_QUESTION
    system: str | None = None
    image: ImageConfig = Field(default_factory=ImageConfig)
    yes_tokens: list[str] = Field(default_factory=lambda: ["yes", "Yes", "YES", " yes", " Yes"])
    no_tokens: list[str] = Field(default_factory=lambda: ["no", "No", "NO", " no", " No"])


def weights(cfg: VoterConfig, where: Where) -> list[WeightItem]:
    """The VLM's hub id: the checkpoint its vLLM launch spec serves under `params.model`, or (the
    in-process backend) `params.model` itself."""
    model = str(cfg.params.get("model"))
    hub = where.served.get(model, model if "/" in model else "")
    if not hub:
        note = "no launch spec under placement.vllm_servers names this model"
        return [WeightItem(cfg.name, cfg.kind, "hf", model, present=None, note=note)]
    note = f"served as {model!r} by vLLM" if cfg.kind == "vlm-http" else ""
    return [WeightItem(cfg.name, cfg.kind, "hf", hub, note=note)]
