"""L3-L5 tier voter over an OpenAI-compatible server (kind `vlm-http`).

The cascade awaits `apredict` on its event loop with the remaining deadline; a tier whose
endpoints are all failing abstains at once (circuit open) instead of spending the deadline.
Every vote carries the request id, the endpoint and how the probability was obtained.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from cascade.config import VoterConfig
from cascade.types import Frame, Level, Vote
from detectors.base import Detector, Voter
from vlm_tiers.client import VLMClient, new_request_id
from vlm_tiers.config import HttpTierParams
from vlm_tiers.errors import VLMError, abstain_cause
from vlm_tiers.imaging import to_data_url
from vlm_tiers.parsing import parse_thinking, parse_yesno
from vlm_tiers.prompts import thinking_request, yesno_request

log = logging.getLogger(__name__)


class HttpVLMTier(Detector):
    def __init__(self, name: str, level: Level, params: HttpTierParams, client: VLMClient, weight: float = 1.0) -> None:
        super().__init__(name, level, weight)
        self.params = params
        self.client = client
        self.features = params.resolved_features

    @classmethod
    def from_config(cls, cfg: VoterConfig, base_dir: Path) -> HttpVLMTier:
        if cfg.batch_wait_ms > 0:
            raise ValueError(
                f"voter {cfg.name!r} (vlm-http): batch_wait_ms must be 0, got {cfg.batch_wait_ms}; "
                "the vLLM server batches requests itself (continuous batching)"
            )
        params = HttpTierParams.model_validate(cfg.params)
        return cls(cfg.name, cfg.level, params, VLMClient.from_params(cfg.name, params), cfg.weight)

    def _body(self, frame: Frame) -> dict:
        p = self.params
        url = to_data_url(frame.image, p.image.max_pixels, p.image.min_pixels, p.image.jpeg_quality, p.image.patch)
        build = thinking_request if p.prompt == "thinking" else yesno_request
        return build(p.model, url, p.resolved_question, self.features, p.system, p.resolved_max_tokens)

    async def _one(self, frame: Frame) -> Vote:
        t0 = time.monotonic()
        rid = new_request_id(self.name) + (f"-{frame.frame_id}" if frame.frame_id else "")
        try:
            body = await asyncio.to_thread(self._body, frame)  # resize + JPEG off the event loop
            reply, endpoint = await self.client.chat(body, self.params.timeout_ms / 1000, rid)
            parse = parse_thinking if self.params.prompt == "thinking" else parse_yesno
            scored = parse(reply, self.params.hard_prob)
        except VLMError as exc:
            log.info("tier %s abstains [%s]: %s", self.name, rid, exc)
            return Vote.abstain(
                self.name,
                self.level,
                f"{type(exc).__name__}: {exc}",
                (time.monotonic() - t0) * 1000,
                cause=abstain_cause(exc),
            )
        return Vote(
            self.name,
            self.level,
            scored.prob,
            self.weight,
            (time.monotonic() - t0) * 1000,
            evidence={
                "answer": scored.answer,
                "method": scored.method,
                "request_id": rid,
                "endpoint": endpoint,
                "model": self.params.model,
            },
        )

    async def apredict(self, frames: Sequence[Frame]) -> list[Vote]:
        return list(await asyncio.gather(*(self._one(f) for f in frames)))

    def predict(self, frames: Sequence[Frame]) -> list[Vote]:
        """Blocking form for offline tools; never call it from a running event loop."""
        return asyncio.run(self._predict_and_close(frames))

    async def _predict_and_close(self, frames: Sequence[Frame]) -> list[Vote]:
        try:
            return await self.apredict(frames)
        finally:
            await self.client.aclose()

    def warmup(self) -> None:
        """Probe the endpoints' health (no inference): a dead server opens no deadline-costing call."""

        async def probe() -> dict[str, bool]:
            try:
                return await self.client.probe(timeout_s=min(self.params.timeout_ms / 1000, 2.0))
            finally:
                await self.client.aclose()

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            health = asyncio.run(probe())
            down = [u for u, ok in health.items() if not ok]
            if down:
                log.warning("tier %s: endpoints not healthy at start: %s", self.name, down)
            return
        log.info("tier %s: warmup inside a running event loop; health probe skipped", self.name)

    def breaker_states(self) -> list[dict[str, object]]:
        return self.client.breaker_states()


def breaker_states(voters: Sequence[Voter]) -> list[dict[str, object]]:
    """Every HTTP tier's per-endpoint circuit state (e.g. over `cascade.detectors`), for metrics."""
    tiers = [v.unwrap() for v in voters]  # under a micro-batching wrapper
    return [state for t in tiers if isinstance(t, HttpVLMTier) for state in t.breaker_states()]
