"""The profile's `miner:` section: concurrency, caller policy, decode limits, side port.

The deadline is the profile's one `runtime.deadline_ms` (the cascade's); the miner caps it by the
validator's own timeout less `reserve_ms`.

Every field has a default that works for `configs/cpu.yaml`, so a profile without a `miner:`
section serves as is. Pure pydantic: importing this module imports no bittensor.

```yaml
miner:
  max_concurrent: 4            # frames in the cascade at once (or from-plan); the rest wait in a queue
  max_queue: 64                # waiting requests beyond this are answered -1 at once
  policy: {require_validator_permit: true, min_stake: 0, sync_interval_s: 600}
  decode: {max_bytes: 20000000, max_pixels: 16777216, formats: [JPEG, PNG, WEBP, BMP]}
  health: {port: 18091}        # /healthz, /readyz, /metrics; 0 turns the side port off
```
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Pillow warns above 89.5 M pixels and refuses above twice that; our own limit stays below both,
# so Pillow's process-global warning filter never has to be touched.
PILLOW_WARN_PIXELS = 89_478_485
KNOWN_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")


class DecodeConfig(BaseModel):
    """Limits on what a validator may send us; anything outside them is refused before decoding."""

    model_config = ConfigDict(extra="forbid")

    max_bytes: int = Field(default=20_000_000, ge=1024)
    """Largest decoded payload (bytes of the image file). Base64 text may be 4/3 of this."""
    max_pixels: int = Field(default=16_777_216, ge=1, le=PILLOW_WARN_PIXELS)
    """Largest width*height read from the header; checked before any pixel is decoded. Validators
    send 224x224 or camera frames (4K is 8.3 M pixels, a 12 MP phone 12.2 M); a 40 M-pixel PNG of
    one colour took 1-7 s to decode."""
    max_side: int = Field(default=8192, ge=16)
    """Largest width or height, read from the header."""
    min_bytes_per_pixel: float = Field(default=0.002, ge=0)
    """Above 1 M pixels, a file smaller than this many bytes per claimed pixel is refused as a bomb
    (a header that lies about its size makes the decoder fill millions of pixels from a few bytes).
    Real photographs carry 0.05-0.5 bytes per pixel; 0 turns the check off."""
    min_side: int = Field(default=8, ge=1)
    """Smallest width or height; smaller images are refused as not a photograph."""
    formats: list[Literal["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"]] = Field(
        default_factory=lambda: ["JPEG", "PNG", "WEBP", "BMP"]
    )
    """Pillow decoders that may run. Validators send JPEG; the rest are tolerated."""
    output_max_side: int | None = Field(default=2048, ge=64)
    """Decoded frames larger than this are scaled down (JPEG via DCT scaling, cheap); None keeps full size."""

    @field_validator("formats")
    @classmethod
    def _formats(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError(f"miner.decode.formats needs at least one of {list(KNOWN_FORMATS)}")
        return v

    @property
    def max_b64_chars(self) -> int:
        """Longest base64 text accepted: 4/3 of max_bytes, plus room for line breaks and a data-URI prefix."""
        return (self.max_bytes * 4) // 3 + 4 + self.max_bytes // 38 + 256


class PolicyConfig(BaseModel):
    """Who may query us (blacklist) and who goes first (priority = caller's stake)."""

    model_config = ConfigDict(extra="forbid")

    require_validator_permit: bool = True
    """Refuse registered hotkeys that hold no validator permit."""
    min_stake: float = Field(default=0.0, ge=0)
    """Refuse callers whose stake (alpha, as the metagraph reports S) is below this."""
    allow_unregistered: bool = False
    """Serve hotkeys that are not in the metagraph (only for private test networks)."""
    sync_interval_s: float = Field(default=600.0, gt=0)
    """How often the metagraph is re-synced in the background."""


class HealthConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    """Interface of the side port. Keep it private; expose through your own reverse proxy if needed."""
    port: int = Field(default=18091, ge=0, le=65535)
    """/healthz, /readyz and /metrics (Prometheus). 0 turns the side port off. The default stays out
    of Prometheus' exporter range 9100-9999 (node_exporter owns 9100, and runs on most GPU hosts)."""


class MinerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reserve_ms: float = Field(default=800, ge=0)
    """Kept free of the validator's own timeout (synapse.timeout) for the answer's way back."""
    min_run_ms: float = Field(default=150, ge=0)
    """A queued request with less budget than this left is answered -1 without running."""
    max_concurrent: int | Literal["from-plan"] = Field(default=4)
    """Frames inside the cascade at once. The cascade's own thread pool does the model work.
    `from-plan`: the largest batch the memory plan budgets a GPU voter for (`voters[].batch`), so
    its micro-batches can fill what was planned; the profile loader resolves it to that number."""
    max_queue: int = Field(default=64, ge=0)
    """Requests waiting for a slot, served by priority (stake); beyond this the answer is -1 at once."""
    decode_workers: int = Field(default=2, ge=1)
    """Threads that decode images off the event loop."""
    bad_input_prediction: float = Field(default=-1.0)
    """Answer to an image we refuse to decode: -1 (the protocol's 'no answer') or a probability."""
    drain_s: float = Field(default=10.0, ge=0)
    """On SIGTERM: how long requests already inside may take to finish before the process exits."""
    model_url: str = ""
    """Sent back in ExtendedImageSynapse.model_url (older validators' variant; the official validator
    sends plain ImageSynapse, which has no such field)."""
    explanation: Literal["votes", "none"] = "votes"
    """ExtendedImageSynapse.explanation: a short list of the voters that decided, or empty."""
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)

    @field_validator("max_concurrent")
    @classmethod
    def _at_least_one(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError(f"miner.max_concurrent must be at least 1 or 'from-plan', got {v}")
        return v

    @field_validator("bad_input_prediction")
    @classmethod
    def _bad_input(cls, v: float) -> float:
        if v != -1.0 and not 0.0 <= v <= 1.0:
            raise ValueError(f"miner.bad_input_prediction must be -1 or a probability in [0, 1], got {v!r}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _one_deadline(cls, data: object) -> object:
        if isinstance(data, dict) and "deadline_ms" in data:
            raise ValueError(
                "miner.deadline_ms is gone: the profile has one deadline, runtime.deadline_ms "
                "(the cascade's and the miner's); move the value there"
            )
        return data

    def budget_s(self, deadline_ms: float, validator_timeout_s: float | None) -> float:
        """Seconds we may spend on one request: our deadline (`runtime.deadline_ms`), capped by the
        validator's timeout less `reserve_ms`."""
        budget = deadline_ms / 1000
        if validator_timeout_s is not None and validator_timeout_s > 0:
            budget = min(budget, validator_timeout_s - self.reserve_ms / 1000)
        return max(budget, 0.0)
