"""Builders shared by the miner tests: fake cascades, encoded images, a local axon + dendrite."""

from __future__ import annotations

import base64
import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from cascade.config import CascadeConfig
from cascade.pipeline import Cascade
from miner.config import MinerConfig
from tests.conftest import FakeVoter


def cascade_config(
    voters: list[FakeVoter], deadline_ms: float = 2000, margin_ms: float = 50, bands: dict | None = None
) -> CascadeConfig:
    return CascadeConfig.model_validate(
        {
            "runtime": {"deadline_ms": deadline_ms, "margin_ms": margin_ms, "cost_prior_ms": 10, "workers": 4},
            "levels": [{"level": lv, "band": b} for lv, b in (bands or {}).items()],
            "voters": [{"name": v.name, "kind": "fake", "level": v.level.name} for v in voters],
        }
    )


def fake_cascade(
    voters: list[FakeVoter], deadline_ms: float = 2000, margin_ms: float = 50, bands: dict | None = None
) -> Cascade:
    """A real Cascade over fake voters; its `runtime.deadline_ms` is the miner's deadline too."""
    return Cascade(voters, cascade_config(voters, deadline_ms, margin_ms, bands))


def encode(img: Image.Image | None = None, fmt: str = "JPEG", size: tuple[int, int] = (224, 224), **save) -> str:
    if img is None:
        rng = np.random.default_rng(0)
        img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return base64.b64encode(buf.getvalue()).decode()


def miner_config(**over) -> MinerConfig:
    base = {"reserve_ms": 200, "min_run_ms": 50, "health": {"port": 0}}
    base.update(over)
    return MinerConfig.model_validate(base)


@dataclass
class LocalMiner:
    axon: object
    dendrite: object
    stranger: object
    service: object
    policy: object
    metrics: object


@contextlib.contextmanager
def local_miner(cascade: Cascade, config: MinerConfig, tmp_path) -> Iterator[LocalMiner]:
    """A real axon on 127.0.0.1 with a registered validator dendrite and an unregistered one."""
    from miner.axon import build_axon, free_port, start_axon
    from miner.local import LOOPBACK, local_dendrite, local_wallet
    from miner.policy import CallerPolicy, MetagraphSnapshot
    from miner.service import MinerService
    from monitoring.metrics import MinerMetrics

    miner_w, val_w, stranger_w = (local_wallet(tmp_path, n) for n in ("miner", "validator", "stranger"))
    snapshot = MetagraphSnapshot.build(
        [val_w.hotkey.ss58_address, miner_w.hotkey.ss58_address], stake=[1000.0, 0.0], permit=[True, False]
    )
    metrics = MinerMetrics()
    policy = CallerPolicy(config.policy, snapshot)
    service = MinerService(cascade, config, metrics)
    axon = build_axon(miner_w, service, policy, metrics, ip=LOOPBACK, port=free_port(), external_ip=LOOPBACK)
    start_axon(axon)
    try:
        yield LocalMiner(axon, local_dendrite(val_w), local_dendrite(stranger_w), service, policy, metrics)
    finally:
        axon.stop()
        service.close()


def http_status(url: str) -> int | None:
    """GET url's status; None when nothing answers."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


@dataclass
class ServedMiner:
    """`roadwork serve --no-chain` in a subprocess, ready; `ask()` sends one ImageSynapse through a
    real bittensor dendrite signed by a second local wallet."""

    proc: object
    axon_port: int
    health: str
    wallets: object
    hotkey: str

    def ask(self, image: str, timeout: float = 9.0):
        import asyncio

        import bittensor as bt

        from miner.local import local_dendrite, local_wallet
        from miner.protocol import ImageSynapse

        target = bt.AxonInfo(version=0, ip="127.0.0.1", port=self.axon_port, ip_type=4, hotkey=self.hotkey, coldkey="")

        async def go():
            d = local_dendrite(local_wallet(self.wallets, "validator"))
            try:
                return (await d(axons=[target], synapse=ImageSynapse(image=image), deserialize=False, timeout=timeout))[
                    0
                ]
            finally:
                await d.aclose_session()

        return asyncio.run(go())


@contextlib.contextmanager
def served_miner(tmp_path, config, ready_s: float = 120.0, extra_env: dict | None = None) -> Iterator[ServedMiner]:
    """Start `roadwork serve --no-chain --config CONFIG` from tmp_path and wait for /readyz; kills it
    on the way out if the test has not stopped it."""
    import os
    import subprocess
    import sys
    import time

    from miner.axon import free_port
    from miner.local import local_wallet
    from tests.conftest import REPO

    axon_port, health_port = free_port(), free_port()
    wallets = tmp_path / "w"
    miner = local_wallet(wallets, "miner")
    proc = subprocess.Popen(
        [sys.executable, "-m", "roadwork.cli", "serve", "--no-chain", "--config", str(config)]
        + ["--axon.port", str(axon_port), "--health-port", str(health_port)]
        + ["--wallet.path", str(wallets), "--wallet.name", "miner", "--ready-file", str(tmp_path / "ready.json")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), **(extra_env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        health = f"http://127.0.0.1:{health_port}"
        end = time.monotonic() + ready_s
        while http_status(health + "/readyz") != 200:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < end, f"not ready within {ready_s:.0f} s"
            time.sleep(0.5)
        yield ServedMiner(proc, axon_port, health, wallets, miner.hotkey.ss58_address)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
