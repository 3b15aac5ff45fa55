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
