import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from roadwork.cli import app
from tests.conftest import REPO
from tests.miner.helpers import http_status

runner = CliRunner()
pytestmark = [
    pytest.mark.filterwarnings("ignore:Accessing the 'model_fields' attribute:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:You are calling this from an already-running event loop"),
]


@pytest.mark.parametrize(
    "command, words",
    [
        ("serve", ["--wallet.name", "--wallet.hotkey", "--netuid", "--subtensor.network", "--axon.port", "--no-chain"]),
        ("simulate", ["--data", "--queries", "--concurrency", "--split", "--out"]),
    ],
)
def test_help_lists_the_flags(command, words):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for w in words:
        assert w in result.output


def test_serve_without_a_hotkey_fails_with_the_fix(tmp_path):
    result = runner.invoke(
        app,
        ["serve", "--wallet.path", str(tmp_path), "--wallet.name", "nobody", "--health-port", "0"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 2
    assert "no hotkey file" in result.output and "btcli wallet new_hotkey" in result.output


@pytest.mark.slow
def test_simulate_writes_a_run_folder(tmp_path):
    pytest.importorskip("bittensor")
    from training.sample import make_sample

    data = make_sample(tmp_path / "sample", 8, 0)
    out = tmp_path / "sim"
    result = runner.invoke(
        app,
        [
            "simulate",
            "--data",
            str(data),
            "--queries",
            "6",
            "--concurrency",
            "2",
            "--out",
            str(out),
            "--config",
            str(REPO / "configs" / "cpu.yaml"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["queries"] == 6 and summary["answered"] == 6 and summary["timeouts"] == 0
    assert summary["latency_ms"]["p95"] < 9000
    for name in ("simulation.png", "summary.md", "queries.jsonl", "metrics.prom"):
        assert (out / name).stat().st_size > 0
    prom = (out / "metrics.prom").read_text()
    assert "roadwork_request_latency_seconds_count" in prom and "roadwork_cascade_queries_total" in prom


@pytest.mark.slow
def test_serve_becomes_ready_answers_and_drains_on_sigterm(tmp_path):
    pytest.importorskip("bittensor")
    from tests.miner.helpers import encode, served_miner

    with served_miner(tmp_path, REPO / "configs" / "cpu.yaml") as miner:
        assert http_status(miner.health + "/healthz") == 200
        # an outside client learns where and whom to ask from the ready file
        ready = json.loads((tmp_path / "ready.json").read_text())
        assert ready["axon_ip"] == "127.0.0.1" and ready["axon_port"] == miner.axon_port and ready["no_chain"] is True
        assert ready["hotkey"] == miner.hotkey and ready["side_port_url"] == miner.health
        resp = miner.ask(encode(size=(224, 224)))
        assert resp.dendrite.status_code == 200 and 0.0 <= resp.prediction <= 1.0
        miner.proc.send_signal(signal.SIGTERM)
        assert miner.proc.wait(timeout=30) == 0


def test_simulate_falls_back_to_a_synthetic_sample(tmp_path, monkeypatch):
    import miner.cli as mcli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(mcli, "REPO", tmp_path / "repo")
    data, split = mcli._default_data(tmp_path / "out")
    assert split is None and (data / "labels.csv").is_file()


def test_local_wallets_print_no_mnemonic(tmp_path, capfd):
    pytest.importorskip("bittensor_wallet")
    from miner.local import local_wallet

    wallet = local_wallet(tmp_path, "w")
    out = capfd.readouterr()
    assert wallet.hotkey.ss58_address.startswith("5")
    assert "mnemonic" not in (out.out + out.err).lower()


def test_serve_logs_ready_and_a_refused_image_after_bittensor_is_imported(tmp_path):
    """bittensor 10.5 sets every existing logger to CRITICAL at import: our lines must still appear."""
    pytest.importorskip("bittensor")
    import asyncio
    import json as jsonlib

    from miner.axon import free_port
    from miner.local import local_dendrite, local_wallet
    from miner.protocol import ImageSynapse

    axon_port, health_port = free_port(), free_port()
    miner = local_wallet(tmp_path / "w", "miner")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "roadwork.cli",
            "--log-json",
            "serve",
            "--no-chain",
            "--config",
            str(REPO / "configs" / "cpu.yaml"),
            "--axon.port",
            str(axon_port),
            "--health-port",
            str(health_port),
            "--wallet.path",
            str(tmp_path / "w"),
            "--wallet.name",
            "miner",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        end = time.monotonic() + 120
        while http_status(f"http://127.0.0.1:{health_port}/readyz") != 200:
            assert proc.poll() is None and time.monotonic() < end, "not ready within 120 s"
            time.sleep(0.5)

        async def ask():
            import bittensor as bt

            target = bt.AxonInfo(
                version=0, ip="127.0.0.1", port=axon_port, ip_type=4, hotkey=miner.hotkey.ss58_address, coldkey=""
            )
            d = local_dendrite(local_wallet(tmp_path / "w", "validator"))
            try:  # not an image at all
                return (
                    await d(
                        axons=[target], synapse=ImageSynapse(image="bm90IGFuIGltYWdl"), deserialize=False, timeout=9
                    )
                )[0]
            finally:
                await d.aclose_session()

        resp = asyncio.run(ask())
        assert resp.prediction == -1.0
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    records = [jsonlib.loads(line) for line in out.splitlines() if line.startswith("{")]
    messages = [(r["logger"], r["message"]) for r in records]
    assert any(name == "miner.serve" and "miner ready" in msg for name, msg in messages), out[-2000:]
    assert any(name == "miner.service" and msg.startswith("refused input") for name, msg in messages), out[-2000:]
    assert any("miner stopped" in msg for _, msg in messages), out[-2000:]


@pytest.mark.slow
def test_ctrl_c_during_simulate_keeps_the_answered_queries(tmp_path, monkeypatch):
    pytest.importorskip("bittensor")
    from miner.rig import LocalRig
    from training.sample import make_sample

    real_query, calls = LocalRig.query, []

    async def query_then_ctrl_c(self, payload, timeout, label=-1):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return await real_query(self, payload, timeout, label)

    monkeypatch.setattr(LocalRig, "query", query_then_ctrl_c)
    data, out = make_sample(tmp_path / "sample", 8, 0), tmp_path / "sim"
    result = runner.invoke(
        app,
        [
            "simulate",
            "--data",
            str(data),
            "--queries",
            "8",
            "--concurrency",
            "1",
            "--out",
            str(out),
            "--config",
            str(REPO / "configs" / "cpu.yaml"),
        ],
    )
    assert result.exit_code == 130, result.output
    assert "interrupted after 3 of 8 queries" in result.output
    assert len((out / "queries.jsonl").read_text().splitlines()) == 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["queries"] == 3 and summary["settings"]["interrupted"] is True


@pytest.mark.parametrize("which", ["axon", "side"])
def test_a_taken_port_is_named_before_the_models_load(tmp_path, which):
    pytest.importorskip("bittensor")
    import socket

    from miner.axon import free_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        axon_port, health_port = (port, free_port()) if which == "axon" else (free_port(), port)
        t0 = time.monotonic()
        result = runner.invoke(
            app,
            [
                "serve",
                "--no-chain",
                "--config",
                str(REPO / "configs" / "cpu.yaml"),
                "--axon.port",
                str(axon_port),
                "--health-port",
                str(health_port),
                "--wallet.path",
                str(tmp_path / "w"),
            ],
            env={"COLUMNS": "300"},
        )
    assert result.exit_code == 2, result.output
    what = "axon port" if which == "axon" else "side port"
    assert f"{what}" in result.output and f"127.0.0.1:{port} is already in use" in result.output
    assert ("--axon.port" if which == "axon" else "--health-port") in result.output
    assert time.monotonic() - t0 < 20  # refused at once, not after loading the cascade


def test_the_side_port_default_stays_clear_of_node_exporter():
    from miner.config import HealthConfig

    assert not 9100 <= HealthConfig().port <= 9999  # Prometheus' exporter range; node_exporter owns 9100
