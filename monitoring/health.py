"""The side port: `/healthz` (alive), `/readyz` (models loaded and warmed up, axon serving), `/metrics`.

A small threaded HTTP server from the standard library, on its own port so that load balancers
and Prometheus never touch the axon. Readiness is a flag that the entrypoint flips: on at the end
of start-up, off again as soon as a SIGTERM arrives (so traffic drains before the exit).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from monitoring.metrics import MinerMetrics

log = logging.getLogger(__name__)


class HealthState:
    """Thread-safe liveness/readiness flags plus a short reason for humans."""

    def __init__(self, metrics: MinerMetrics | None = None) -> None:
        self._lock = threading.Lock()
        self._ready = False
        self._reason = "starting: loading models"
        self.started = time.time()
        self.metrics = metrics

    def set_ready(self, ready: bool, reason: str) -> None:
        with self._lock:
            self._ready, self._reason = ready, reason
        if self.metrics is not None:
            self.metrics.ready.set(1 if ready else 0)

    def snapshot(self) -> dict:
        with self._lock:
            return {"ready": self._ready, "reason": self._reason, "uptime_s": round(time.time() - self.started, 1)}


def _handler(state: HealthState, metrics: MinerMetrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._send(200, json.dumps({"alive": True, **state.snapshot()}).encode(), "application/json")
            elif path == "/readyz":
                snap = state.snapshot()
                self._send(200 if snap["ready"] else 503, json.dumps(snap).encode(), "application/json")
            elif path == "/metrics":
                body, ctype = metrics.exposition()
                self._send(200, body, ctype)
            else:
                self._send(404, b'{"error": "unknown path; try /healthz, /readyz or /metrics"}', "application/json")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("health %s", format % args)

    return Handler


class HealthServer:
    """`with HealthServer(state, metrics, host, port) as hs:` serves until the block ends."""

    def __init__(self, state: HealthState, metrics: MinerMetrics, host: str = "127.0.0.1", port: int = 18091) -> None:
        self.state, self.metrics = state, metrics
        self._server = ThreadingHTTPServer((host, port), _handler(state, metrics))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        return f"http://{host}:{self.port}"

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
