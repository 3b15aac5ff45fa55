"""The only code that talks HTTP to the VLM servers (vLLM's OpenAI-compatible API, or any other).

Every call goes through `_request`: it always has a timeout, always sends an `X-Request-Id`
correlation header (vLLM echoes it and uses it as the request id in its logs), and maps every
transport problem onto the tree in `vlm_tiers/errors.py`. `chat` picks endpoints round robin,
skips those whose circuit breaker is open, and fails over to the next endpoint while the call's
time lasts. Server faults (no answer, timeout, 5xx, 429) count against an endpoint's breaker;
a 4xx is the request's own fault and does not.

httpx is imported here only; an `httpx.AsyncClient` belongs to one event loop, so one is kept per
running loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

import httpx

from vlm_tiers.breaker import Endpoint, EndpointPool
from vlm_tiers.errors import TierUnavailableError, VLMConnectionError, VLMError, VLMHTTPError, VLMTimeoutError

log = logging.getLogger(__name__)
CHAT_PATH = "/v1/chat/completions"


def new_request_id(tier: str) -> str:
    return f"rw-{tier}-{uuid.uuid4().hex[:16]}"


class VLMClient:
    def __init__(
        self,
        tier: str,
        urls: list[str],
        api_key: str | None = None,
        failures: int = 3,
        reset_s: float = 15.0,
        health_path: str = "/health",
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.tier = tier
        self.pool = EndpointPool(tier, urls, failures, reset_s, clock)
        self.health_path = health_path
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._transport = transport
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def from_params(cls, tier: str, params: Any) -> VLMClient:  # params: HttpTierParams
        api_key = None
        if params.api_key_env:
            api_key = os.environ.get(params.api_key_env)
            if not api_key:
                raise ValueError(
                    f"tier {tier!r}: api_key_env {params.api_key_env!r} is not set in "
                    "the environment; export it or remove `api_key_env`"
                )
        return cls(
            tier,
            params.endpoints,
            api_key,
            params.breaker.failures,
            params.breaker.reset_s,
            params.resolved_features.health_path,
        )

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            client = httpx.AsyncClient(
                headers=self._headers,
                transport=self._transport,
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            )
            self._clients[loop] = client
        return client

    async def _request(
        self, method: str, url: str, timeout_s: float, request_id: str, body: dict[str, Any] | None = None
    ) -> Any:
        """One HTTP call with a timeout and a correlation id; every failure becomes a VLMError."""
        try:
            resp = await self._http().request(
                method, url, json=body, timeout=max(timeout_s, 0.001), headers={"X-Request-Id": request_id}
            )
        except httpx.TimeoutException as exc:
            raise VLMTimeoutError(
                f"{method} {url} [{request_id}]: no answer within {timeout_s * 1000:.0f} ms ({type(exc).__name__})"
            ) from exc
        except httpx.HTTPError as exc:
            raise VLMConnectionError(f"{method} {url} [{request_id}]: {type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 400:
            text = resp.text[:500]
            raise VLMHTTPError(
                f"{method} {url} [{request_id}]: HTTP {resp.status_code}: {text}", resp.status_code, text
            )
        try:
            return resp.json()
        except json.JSONDecodeError as exc:
            raise VLMHTTPError(
                f"{method} {url} [{request_id}]: HTTP {resp.status_code} but the body is not JSON: {resp.text[:120]!r}",
                resp.status_code,
                resp.text[:500],
            ) from exc

    async def chat(
        self, body: dict[str, Any], timeout_s: float, request_id: str | None = None
    ) -> tuple[dict[str, Any], str]:
        """POST a chat completion; returns (reply JSON, endpoint URL). Fails over while time lasts."""
        request_id = request_id or new_request_id(self.tier)
        deadline = time.monotonic() + timeout_s
        tried: list[str] = []
        last: VLMError | None = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0.005:
                break
            try:
                ep = self.pool.acquire(exclude=tried)
            except TierUnavailableError:
                if last is None:
                    raise
                break
            tried.append(ep.url)
            try:
                reply = await self._call(ep, body, left, request_id)
            except VLMError as exc:
                last = exc
                if isinstance(exc, VLMHTTPError) and not exc.server_fault:
                    raise  # our request is wrong: another endpoint would say the same
                continue
            return reply, ep.url
        if last is None:
            raise VLMTimeoutError(f"tier {self.tier!r} [{request_id}]: no time left for a call")
        raise last

    async def _call(self, ep: Endpoint, body: dict[str, Any], timeout_s: float, request_id: str) -> dict[str, Any]:
        try:
            reply = await self._request("POST", ep.url + CHAT_PATH, timeout_s, request_id, body)
        except VLMHTTPError as exc:
            if exc.server_fault:
                ep.breaker.record_failure(str(exc))
            else:
                ep.breaker.record_success()  # the server is alive; the request was bad
            raise
        except VLMError as exc:
            ep.breaker.record_failure(str(exc))
            raise
        except BaseException:  # cancelled by the cascade's deadline: neither verdict on the server
            ep.breaker.release()
            raise
        if not isinstance(reply, dict):
            ep.breaker.record_success()
            raise VLMHTTPError(
                f"POST {ep.url}{CHAT_PATH} [{request_id}]: reply is not a JSON object", 200, str(reply)[:500]
            )
        ep.breaker.record_success()
        return reply

    async def probe(self, timeout_s: float = 2.0) -> dict[str, bool]:
        """GET each endpoint's health path; a failing one counts against its breaker."""

        async def one(ep: Endpoint) -> tuple[str, bool]:
            rid = new_request_id(self.tier) + "-health"
            try:
                await self._get_ok(ep.url + self.health_path, timeout_s, rid)
            except VLMError as exc:
                ep.breaker.record_failure(str(exc))
                return ep.url, False
            ep.breaker.record_success()
            return ep.url, True

        return dict(await asyncio.gather(*(one(ep) for ep in self.pool.endpoints)))

    async def _get_ok(self, url: str, timeout_s: float, request_id: str) -> None:
        """Health is the status alone (vLLM's /health answers 200 with an empty body)."""
        try:
            resp = await self._http().get(url, timeout=timeout_s, headers={"X-Request-Id": request_id})
        except httpx.TimeoutException as exc:
            raise VLMTimeoutError(f"GET {url} [{request_id}]: no answer within {timeout_s * 1000:.0f} ms") from exc
        except httpx.HTTPError as exc:
            raise VLMConnectionError(f"GET {url} [{request_id}]: {type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 400:
            raise VLMHTTPError(f"GET {url} [{request_id}]: HTTP {resp.status_code}", resp.status_code, resp.text[:500])

    def breaker_states(self) -> list[dict[str, object]]:
        """Per-endpoint circuit state (closed / open / half_open) with counters, for metrics."""
        return self.pool.states()

    async def aclose(self) -> None:
        for client in list(self._clients.values()):
            await client.aclose()
        self._clients.clear()
