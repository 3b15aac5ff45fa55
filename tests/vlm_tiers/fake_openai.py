"""A hand-written stand-in for an OpenAI-compatible VLM server: wire format only.

It speaks POST /v1/chat/completions (with `logprobs`/`top_logprobs` in vLLM's shape) and
GET /health on 127.0.0.1, in a thread; it does not run a model. `mode` picks its behaviour:
"ok" (answers with P(yes) = `p_yes`), "error500", "slow" (sleeps `delay` s), "garbage" (200, not
JSON). Every request is recorded (path, headers, JSON body) for the test to inspect.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def completion(model: str, p_yes: float, content: str | None = None, logprobs: bool = True) -> dict[str, Any]:
    yes, no = math.log(max(p_yes, 1e-9)), math.log(max(1 - p_yes, 1e-9))
    top = sorted([("yes", yes), ("no", no), ("Yes", yes - 3), ("No", no - 3)], key=lambda t: -t[1])
    word = content if content is not None else top[0][0]
    lp = {
        "content": [
            {
                "token": top[0][0],
                "logprob": top[0][1],
                "bytes": None,
                "top_logprobs": [{"token": t, "logprob": v, "bytes": None} for t, v in top],
            }
        ]
    }
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": word},
                "logprobs": lp if logprobs else None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 300, "completion_tokens": 1, "total_tokens": 301},
    }


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout test) leaves a broken pipe: expected, not news."""


class FakeServer:
    def __init__(self, mode: str = "ok", p_yes: float = 0.8, delay: float = 0.0, reply: dict | None = None) -> None:
        self.mode, self.p_yes, self.delay, self.reply = mode, p_yes, delay, reply
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                server.requests.append({"path": self.path, "headers": dict(self.headers), "body": None})
                self._send(500 if server.mode == "error500" else 200, b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"null")
                server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if server.mode == "slow":
                    time.sleep(server.delay)
                if server.mode == "error500":
                    return self._send(500, b'{"object":"error","message":"engine dead"}')
                if server.mode == "garbage":
                    return self._send(200, b"<html>proxy error</html>", "text/html")
                if self.path != "/v1/chat/completions":
                    return self._send(404, b'{"object":"error","message":"not found"}')
                if body.get("model") != "fast":
                    return self._send(
                        404,
                        json.dumps(
                            {"object": "error", "code": 404, "message": f"model {body.get('model')} not found"}
                        ).encode(),
                    )
                out = server.reply or completion(body["model"], server.p_yes, logprobs=bool(body.get("logprobs")))
                self._send(200, json.dumps(out).encode())

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        # a short poll: shutdown() waits up to one poll interval (0.5 s by default, on every test)
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def chats(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == "/v1/chat/completions"]


def dead_url() -> str:
    """A local URL where nothing listens (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
