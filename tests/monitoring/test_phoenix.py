"""Real Arize Phoenix server (its own venv, .venv-phoenix) receives the cascade's traces."""

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import httpx
import pytest

pytest.importorskip("phoenix.otel", reason="needs the `trace` extra (arize-phoenix-otel)")
pytest.importorskip("phoenix.client", reason="needs the `trace` extra (arize-phoenix-client)")

from monitoring.tracing import CascadeTracer
from tests.monitoring.helpers import make_cascade, standard_voters

REPO = Path(__file__).resolve().parents[2]
PHOENIX = Path(os.environ.get("ROADWORK_PHOENIX_BIN", REPO / ".venv-phoenix" / "bin" / "phoenix"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"phoenix exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"phoenix did not answer {url} within {seconds} s")


@pytest.fixture
def phoenix_url(tmp_path):
    if not PHOENIX.is_file():
        pytest.skip(f"no Phoenix server at {PHOENIX}: run `make phoenix-venv`")
    port = free_port()
    env = {
        **os.environ,
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(free_port()),
        "PHOENIX_WORKING_DIR": str(tmp_path / "phoenix"),
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
    }
    log = tmp_path / "phoenix.log"  # a file, not a pipe: the server logs a lot and would block on a full pipe
    proc = subprocess.Popen([str(PHOENIX), "serve"], env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", proc, log, seconds=180)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def read_spans(url: str, project: str, want: int, seconds: float = 30) -> list[dict]:
    from phoenix.client import Client

    client = Client(base_url=url)
    deadline, spans = time.monotonic() + seconds, []
    while time.monotonic() < deadline:
        try:
            spans = client.spans.get_spans(project_identifier=project, limit=1000)
        except httpx.HTTPStatusError as exc:  # 404 until the first span has created the project
            if exc.response.status_code != 404:
                raise
        if len(spans) >= want:
            return spans
        time.sleep(0.5)
    return spans


@pytest.mark.slow
def test_phoenix_receives_one_trace_per_query(phoenix_url, frame):
    # given a tracer that sends to the server, and a cascade with a detector, a failing voter and a VLM
    tracer = CascadeTracer.to_phoenix(phoenix_url, project="roadwork-test", batch=False)
    with make_cascade(standard_voters()) as cascade:
        for i in range(3):
            cascade.run_sync(frame, observer=tracer.observer(query_id=f"q{i}"))
    tracer.close()
    # when the spans are read back with the Phoenix client
    per_trace = 8  # cascade, 3 levels, 4 voters
    spans = read_spans(phoenix_url, "roadwork-test", want=3 * per_trace)
    # then there are three traces, each rooted in a CHAIN span with the verdict
    assert len(spans) == 3 * per_trace
    roots = [s for s in spans if s["name"] == "cascade"]
    assert len(roots) == 3 and len({s["context"]["trace_id"] for s in roots}) == 3
    assert all(not s.get("parent_id") for s in roots)
    assert {s["span_kind"] for s in roots} == {"CHAIN"}
    assert all(
        0 <= s["attributes"]["roadwork.prob"] <= 1 and s["attributes"]["roadwork.exit_level"] == "L3" for s in roots
    )
    by_name = {s["name"]: s for s in spans}
    vlm, yolo, broken = by_name["vlm_fast"], by_name["yolo"], by_name["broken"]
    assert vlm["span_kind"] == "LLM"
    assert vlm["attributes"]["llm.output_messages.0.message.content"] == "yes"
    assert yolo["span_kind"] == "TOOL" and yolo["attributes"]["roadwork.boxes"] == 2
    assert broken["status_code"] == "ERROR"
