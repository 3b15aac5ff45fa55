"""A miner and a validator in one process, with no chain: what `simulate` and the benchmarks drive.

    LocalRig(cascade, miner_config)
      miner:     no-password wallet, MinerService, real bittensor Axon on 127.0.0.1:<free port>,
                 side port (/healthz, /readyz, /metrics) on 127.0.0.1:<free port>
      validator: no-password wallet registered (with permit and stake) in a static metagraph,
                 real bittensor Dendrite that never looks up the external IP

`await rig.query(payload)` sends one `ImageSynapse` the way a validator does (timeout 9 s) and
returns a `QueryResult`.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cascade.pipeline import Cascade
from miner.config import MinerConfig
from monitoring.health import HealthServer, HealthState
from monitoring.metrics import MinerMetrics

VALIDATOR_TIMEOUT_S = 9.0


@dataclass(frozen=True)
class QueryResult:
    prediction: float
    status_code: int
    status_message: str
    latency_s: float
    """Seen by the validator: send to response."""
    process_s: float | None
    """Reported by the axon: its own time on the request."""

    @property
    def answered(self) -> bool:
        return self.status_code == 200 and 0.0 <= self.prediction <= 1.0

    @property
    def timed_out(self) -> bool:
        return self.status_code == 408 or self.latency_s >= VALIDATOR_TIMEOUT_S


class LocalRig:
    def __init__(
        self, cascade: Cascade, config: MinerConfig, metrics: MinerMetrics | None = None, tracer: object | None = None
    ) -> None:
        self.cascade, self.config, self.tracer = cascade, config, tracer
        self.metrics = metrics or MinerMetrics()
        self.health_state = HealthState(self.metrics)
        self._tmp = tempfile.TemporaryDirectory(prefix="roadwork-wallets-")
        self.axon = self.dendrite = self.service = self.health = None

    def __enter__(self) -> LocalRig:
        from miner.axon import build_axon, free_port, start_axon
        from miner.local import LOOPBACK, local_dendrite, local_wallet
        from miner.policy import CallerPolicy, MetagraphSnapshot
        from miner.service import MinerService, cascade_observers

        self.health = HealthServer(self.health_state, self.metrics, LOOPBACK, 0).start()
        root = Path(self._tmp.name)
        miner_w, validator_w = local_wallet(root, "miner"), local_wallet(root, "validator")
        snapshot = MetagraphSnapshot.build(
            [validator_w.hotkey.ss58_address, miner_w.hotkey.ss58_address], stake=[10_000.0, 0.0], permit=[True, False]
        )
        self.metrics.metagraph_synced.set(time.time())
        self.policy = CallerPolicy(self.config.policy, snapshot)
        self.service = MinerService(
            self.cascade,
            self.config,
            self.metrics,
            observer_factory=cascade_observers(self.metrics, self.tracer, self.cascade),
        )
        self.axon = build_axon(
            miner_w, self.service, self.policy, self.metrics, ip=LOOPBACK, port=free_port(), external_ip=LOOPBACK
        )
        start_axon(self.axon)
        self.dendrite = local_dendrite(validator_w)
        self.health_state.set_ready(True, f"serving on {LOOPBACK}:{self.axon.port} (local mode)")
        return self

    async def query(self, payload: str, timeout: float = VALIDATOR_TIMEOUT_S, label: int = -1) -> QueryResult:
        """One validator-style request; `label` goes out as `testnet_label`, as testnet validators send it."""
        from miner.protocol import ImageSynapse

        t0 = time.monotonic()
        (resp,) = await self.dendrite(
            axons=[self.axon.info()],
            synapse=ImageSynapse(image=payload, testnet_label=label),
            deserialize=False,
            timeout=timeout,
        )
        latency = time.monotonic() - t0
        d = resp.dendrite
        process = resp.axon.process_time if resp.axon is not None else None
        return QueryResult(
            float(resp.prediction),
            int(d.status_code or 0),
            str(d.status_message or ""),
            latency,
            None if process is None else float(process),
        )

    async def aclose(self) -> None:
        if self.dendrite is not None:
            await self.dendrite.aclose_session()

    def __exit__(self, *exc: object) -> None:
        self.health_state.set_ready(False, "stopped")
        if self.axon is not None:
            self.axon.stop()
        if self.service is not None:
            self.service.close()
        if self.health is not None:
            self.health.stop()
        self._tmp.cleanup()
