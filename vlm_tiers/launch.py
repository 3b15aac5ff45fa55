"""vLLM launch specs (configs/vllm/*.yaml): checked settings -> a `vllm serve` command line.

A launch spec states the floor a serving engine must give the tiers. Paged KV cache and continuous
batching are how vLLM always works (no flag); the spec switches on prefix caching (the
question and system prompt are shared by every request), chunked prefill, an FP8 KV cache where
the model allows it, one image per prompt, the vision encoder data-parallel under tensor
parallelism, and speculative decoding where a draft helps (only for long answers: a yes/no tier
decodes one token, so there is nothing to speculate).

`gpu_memory_utilization` is vLLM's per-instance share of each card it uses; `placement_entry`
turns a spec into the `placement.vllm_servers` entry that `roadwork plan` adds up per GPU.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cascade.config import error_lines

LAUNCH_DIR = Path(__file__).resolve().parents[1] / "configs" / "vllm"


class LaunchSpecError(ValueError):
    """A launch spec that cannot be used; the message names the file and the key."""


class LaunchSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    tier: Literal["fast", "power", "precision"]
    level: Literal["L3", "L4", "L5"]
    model: str = Field(min_length=1)
    """Hub id or local folder of the served model."""
    served_model_name: str = Field(min_length=1)
    """The name clients send as `model` (the tier voter's `params.model`)."""
    host: str = "127.0.0.1"
    port: int = Field(ge=1024, le=65535)
    gpus: list[int] = Field(min_length=1)
    """Physical card indices (CUDA_VISIBLE_DEVICES) on each node; tensor x pipeline parallel cards in all."""
    tensor_parallel_size: int = Field(default=1, ge=1)
    pipeline_parallel_size: int = Field(default=1, ge=1)
    nodes: int = Field(default=1, ge=1)
    """Machines the server spans. More than one runs on vLLM's Ray executor: `ray start --head` on
    this node, `ray start --address HEAD:6379` on the others, then `vllm serve` here."""
    distributed_executor_backend: Literal["mp", "ray"] | None = None
    """vLLM's --distributed-executor-backend; `ray` is required across nodes."""
    gpu_memory_utilization: float = Field(gt=0.05, le=0.95)
    dtype: Literal["auto", "bfloat16", "float16"] = "auto"
    quantization: Literal["awq", "awq_marlin", "gptq", "fp8", "compressed-tensors"] | None = None
    max_model_len: int = Field(ge=512)
    max_num_seqs: int = Field(default=32, ge=1)
    max_num_batched_tokens: int = Field(default=8192, ge=512)
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3"] = "fp8"
    enable_prefix_caching: bool = True
    enable_chunked_prefill: bool = True
    limit_mm_per_prompt: dict[str, int] = Field(default_factory=lambda: {"image": 1, "video": 0})
    mm_processor_kwargs: dict[str, Any] = Field(default_factory=dict)
    """E.g. {max_pixels: 200704}: the server-side cap that matches the client's image.max_pixels."""
    mm_encoder_tp_mode: Literal["weights", "data"] | None = None
    speculative_config: dict[str, Any] | None = None
    reasoning_parser: str | None = None
    max_logprobs: int = Field(default=20, ge=1)
    extra_args: list[str] = Field(default_factory=list)
    """Further `vllm serve` flags, passed through as written."""

    @model_validator(mode="after")
    def _floor(self) -> LaunchSpec:
        parallel = self.tensor_parallel_size * self.pipeline_parallel_size
        if len(self.gpus) * self.nodes != parallel:
            raise ValueError(
                f"gpus {self.gpus} on {self.nodes} node(s) are {len(self.gpus) * self.nodes} cards, but "
                f"tensor_parallel_size x pipeline_parallel_size is {parallel}"
            )
        if self.nodes > 1 and self.distributed_executor_backend != "ray":
            raise ValueError(
                f"nodes {self.nodes} needs distributed_executor_backend: ray (vLLM spans machines through a Ray cluster)"
            )
        if len(set(self.gpus)) != len(self.gpus):
            raise ValueError(f"gpus repeats a card: {self.gpus}")
        if self.tensor_parallel_size > 1 and self.mm_encoder_tp_mode != "data":
            raise ValueError(
                f"tensor_parallel_size {self.tensor_parallel_size} needs "
                f"mm_encoder_tp_mode: data (got {self.mm_encoder_tp_mode!r}): the small "
                "vision encoder runs data-parallel instead of being split across cards"
            )
        if self.limit_mm_per_prompt.get("image", 0) < 1:
            raise ValueError(f"limit_mm_per_prompt {self.limit_mm_per_prompt} must allow 1 image")
        if self.max_num_batched_tokens < self.max_model_len and not self.enable_chunked_prefill:
            raise ValueError(
                f"max_num_batched_tokens ({self.max_num_batched_tokens}) is smaller than "
                f"max_model_len ({self.max_model_len}); enable_chunked_prefill or raise it"
            )
        return self

    def serve_args(self) -> list[str]:
        """`vllm serve MODEL ...` as an argv list (the model first, then flags)."""
        a = [
            "vllm",
            "serve",
            self.model,
            "--served-model-name",
            self.served_model_name,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--tensor-parallel-size",
            str(self.tensor_parallel_size),
            "--gpu-memory-utilization",
            str(self.gpu_memory_utilization),
            "--dtype",
            self.dtype,
            "--max-model-len",
            str(self.max_model_len),
            "--max-num-seqs",
            str(self.max_num_seqs),
            "--max-num-batched-tokens",
            str(self.max_num_batched_tokens),
            "--kv-cache-dtype",
            self.kv_cache_dtype,
            "--enable-prefix-caching" if self.enable_prefix_caching else "--no-enable-prefix-caching",
            "--enable-chunked-prefill" if self.enable_chunked_prefill else "--no-enable-chunked-prefill",
            "--limit-mm-per-prompt",
            json.dumps(self.limit_mm_per_prompt, separators=(",", ":")),
            "--max-logprobs",
            str(self.max_logprobs),
        ]
        if self.pipeline_parallel_size > 1:
            a += ["--pipeline-parallel-size", str(self.pipeline_parallel_size)]
        if self.distributed_executor_backend:
            a += ["--distributed-executor-backend", self.distributed_executor_backend]
        if self.quantization:
            a += ["--quantization", self.quantization]
        if self.mm_processor_kwargs:
            a += ["--mm-processor-kwargs", json.dumps(self.mm_processor_kwargs, separators=(",", ":"))]
        if self.mm_encoder_tp_mode:
            a += ["--mm-encoder-tp-mode", self.mm_encoder_tp_mode]
        if self.speculative_config:
            a += ["--speculative-config", json.dumps(self.speculative_config, separators=(",", ":"))]
        if self.reasoning_parser:
            a += ["--reasoning-parser", self.reasoning_parser]
        return a + list(self.extra_args)

    def env(self) -> dict[str, str]:
        return {"CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in self.gpus)}

    def command_line(self) -> str:
        """The shell line, environment included, as `roadwork vllm print` shows it; across nodes,
        preceded by the Ray cluster it runs on (as comments, one step per line)."""
        envs = " ".join(f"{k}={v}" for k, v in self.env().items())
        line = f"{envs} {shlex.join(self.serve_args())}"
        if self.nodes == 1:
            return line
        return (
            f"# 1. on this (head) node: {envs} ray start --head --port 6379\n"
            f"# 2. on each of the other {self.nodes - 1} node(s), the same cards free: "
            f"{envs} ray start --address HEAD_IP:6379\n"
            f"# 3. `ray status` shows {self.nodes} nodes; then, on the head node:\n{line}"
        )

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


VLLM_IMAGE = "vllm/vllm-openai:v0.11.0"
"""The vLLM server image of the generated compose services (pin it; `latest` moves under you)."""


def compose_service(spec: LaunchSpec) -> dict[str, Any]:
    """A docker compose service that runs this spec's `vllm serve`.

    The container is given exactly the spec's cards (`device_ids`); inside it they are numbered
    from 0, so no CUDA_VISIBLE_DEVICES is set (`CUDA_VISIBLE_DEVICES=1` in a container that was
    given card 1 alone hides the only GPU it has).
    """
    if spec.nodes > 1:
        raise LaunchSpecError(
            f"{spec.tier} spans {spec.nodes} nodes: compose starts one host's containers; start it "
            "with the steps `roadwork vllm print` gives (a Ray cluster, then vllm serve on its head)"
        )
    return {
        "profiles": ["vllm"],
        "image": VLLM_IMAGE,
        "network_mode": "host",
        "ipc": "host",
        "restart": "unless-stopped",
        "environment": {"HF_TOKEN": "${HF_TOKEN:-}"},
        "volumes": ["hf-cache:/root/.cache/huggingface"],
        "entrypoint": ["vllm", "serve"],
        "command": spec.serve_args()[2:],
        "deploy": {
            "resources": {
                "reservations": {
                    "devices": [
                        {"driver": "nvidia", "device_ids": [str(g) for g in spec.gpus], "capabilities": ["gpu"]}
                    ]
                }
            }
        },
    }


def compose_file(specs: dict[str, LaunchSpec]) -> str:
    """deploy/compose.vllm.yaml: one service per launch spec (name -> spec), generated."""
    services = {f"vllm-{name}": compose_service(p) for name, p in sorted(specs.items())}
    header = (
        "# Generated by `roadwork vllm compose --out deploy/compose.vllm.yaml` from configs/vllm/;\n"
        "# do not edit: change the launch specs and generate again (a test compares them).\n"
        "# docker compose -f deploy/compose.yaml -f deploy/compose.vllm.yaml --profile vllm up -d\n"
    )
    return header + yaml.safe_dump({"services": services, "volumes": {"hf-cache": None}}, sort_keys=False, width=120)


def placement_entry(spec: LaunchSpec, path: Path | None = None) -> dict[str, Any]:
    """The `placement.vllm_servers` item for this spec (cascade/placement.py's VllmServerSpec)."""
    return {
        "name": spec.tier,
        "gpus": [f"cuda:{g}" for g in spec.gpus],
        "memory_fraction": spec.gpu_memory_utilization,
        **({"launch": str(path)} if path is not None else {}),
    }


@dataclass
class LaunchProblems:
    """What `apply_launch_specs` found: one line per key, and the voters whose launch spec could not
    be read (their `model` and `endpoints` stay unfilled: saying so again is noise)."""

    lines: list[str] = field(default_factory=list)
    unread_voters: set[int] = field(default_factory=set)


def apply_launch_specs(cfg: Any) -> LaunchProblems:
    """Fill a deployment profile from the vLLM launch specs it names, in place, and list what
    disagrees (one line per key, as the profile spells it):
    - `placement.vllm_servers[].launch` gives that server's cards and memory share;
    - a `vlm-http` voter's `params.launch` gives its `model` (the served name) and, unless it says
      otherwise (a container network name), its `endpoints`."""
    found = LaunchProblems()
    problems = found.lines
    known = [g.id for g in cfg.placement.gpus]
    for i, server in enumerate(cfg.placement.vllm_servers):
        if server.launch is None:
            continue
        key = f"placement.vllm_servers.{i}"
        try:
            lp = load_launch_spec(str(cfg.resolve(server.launch)))
        except LaunchSpecError as exc:
            problems.append(f"{key}.launch: {exc}")
            continue
        gpus = [f"cuda:{g}" for g in lp.gpus]
        for name, mine, theirs in (
            ("gpus", server.gpus or None, gpus),
            ("memory_fraction", server.memory_fraction, lp.gpu_memory_utilization),
        ):
            if mine is not None and mine != theirs:
                problems.append(
                    f"{key}.{name}: {mine} disagrees with {server.launch} ({theirs}); leave it out, "
                    "the launch spec says it"
                )
        unknown = [g for g in gpus if g not in known]
        if unknown:
            problems.append(f"{key}: {server.launch} runs on {unknown}, not under placement.gpus ({known})")
        server.gpus, server.memory_fraction = gpus, lp.gpu_memory_utilization
    for i, voter in enumerate(cfg.voters):
        launch = voter.params.get("launch") if voter.kind == "vlm-http" else None
        if not launch:
            continue
        key = f"voters.{i}.params"
        try:
            lp = load_launch_spec(str(cfg.resolve(launch)))
        except LaunchSpecError as exc:
            problems.append(f"{key}.launch: {exc}")
            found.unread_voters.add(i)
            continue
        model = voter.params.get("model")
        if model is not None and model != lp.served_model_name:
            problems.append(
                f"{key}.model: {model!r} is not what {launch} serves ({lp.served_model_name!r}); "
                "leave it out, the launch spec says it"
            )
        if lp.level != voter.level.name:
            problems.append(f"voters.{i}.level: {voter.level.name}, but {launch} is the {lp.level} tier")
        voter.params = {
            **voter.params,
            "model": lp.served_model_name,
            "endpoints": voter.params.get("endpoints") or [lp.base_url],
        }
    return found


def gpu_shares(specs: list[LaunchSpec]) -> dict[int, float]:
    """Sum of the vLLM memory fractions on each card."""
    shares: dict[int, float] = {}
    for p in specs:
        for g in p.gpus:
            shares[g] = round(shares.get(g, 0.0) + p.gpu_memory_utilization, 6)
    return shares


def launch_spec_path(tier_or_path: str, specs_dir: Path = LAUNCH_DIR) -> Path:
    candidate = Path(tier_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        return candidate
    path = specs_dir / f"{tier_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in specs_dir.glob("*.yaml"))
        raise LaunchSpecError(
            f"no launch spec for tier {tier_or_path!r} in {specs_dir}; "
            f"known: {', '.join(known) or 'none'} (or pass a .yaml path)"
        )
    return path


def load_launch_spec(tier_or_path: str, specs_dir: Path = LAUNCH_DIR) -> LaunchSpec:
    path = launch_spec_path(tier_or_path, specs_dir)
    if not path.is_file():
        raise LaunchSpecError(f"launch spec {str(path)!r} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
        return LaunchSpec.model_validate(data)
    except yaml.YAMLError as exc:
        raise LaunchSpecError(f"launch spec {str(path)!r} is not valid YAML: {exc}") from exc
    except ValidationError as exc:
        lines = [f"launch spec {str(path)!r} is invalid:", *(f"  {line}" for line in error_lines(exc))]
        raise LaunchSpecError("\n".join(lines)) from exc
