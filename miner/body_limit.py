"""Refuse an oversized request body before the axon reads it (pure ASGI middleware).

bittensor's axon middleware parses the whole body into a synapse before any handler of ours runs,
so a 40 MB payload was read, hashed, validated and (refused by our decoder) echoed back in full:
nine such callers made a legitimate query wait 8 s. This sits outside the axon's middleware and
answers 413 from the Content-Length header alone, or, for a body without one, as soon as the
bytes received pass the limit. Nothing of the body is echoed.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: HTTP requests whose body exceeds `max_bytes` get a small 413."""

    def __init__(
        self, app: Callable[..., Awaitable[None]], max_bytes: int, on_refused: Callable[[int], None] | None = None
    ) -> None:
        self.app, self.max_bytes, self.on_refused = app, max_bytes, on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, declared)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, seen)

    async def _refuse(self, send: Send, size: int) -> None:
        if self.on_refused is not None:
            self.on_refused(size)
        body = json.dumps(
            {
                "message": f"request body of {size} bytes is over the miner's limit of "
                f"{self.max_bytes} bytes (miner.decode.max_bytes)"
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
