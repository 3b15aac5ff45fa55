"""`roadwork serve`: the production miner process.

    side port up (/healthz alive, /readyz 503)
    -> chain: wallet, subtensor, metagraph (our hotkey must be registered)
    -> cascade built and warmed up -> axon announced on chain
    -> axon started, /readyz 200; metagraph re-synced every `miner.policy.sync_interval_s`
    -> SIGTERM / SIGINT: /readyz 503, new requests answered -1, requests inside get up to
       `miner.drain_s`, axon stopped, exit 0

`--no-chain` skips the chain (static empty metagraph, every caller allowed) for a smoke test of
this process on 127.0.0.1; it refuses any other interface. It uses the given wallet when its
hotkey file exists, else a temporary one.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from cascade.config import CascadeConfig
from miner.policy import CallerPolicy, MetagraphSnapshot
from miner.ports import ensure_free
from monitoring.health import HealthServer, HealthState
from monitoring.metrics import MinerMetrics

log = logging.getLogger(__name__)


class ChainError(RuntimeError):
    """The chain side cannot be set up; the message says what to run to fix it."""


@dataclass(frozen=True)
class ServeOptions:
    wallet_name: str
    wallet_hotkey: str
    wallet_path: str | None
    netuid: int
    network: str
    axon_ip: str
    axon_port: int
    external_ip: str | None
    external_port: int | None
    no_chain: bool = False
    ready_file: str | None = None
    """Once ready, write the axon's ip, port and hotkey (and the side port's URL) here as JSON."""


class MetagraphSyncer(threading.Thread):
    """Re-syncs the metagraph every interval and swaps the policy's snapshot; keeps the last good one."""

    def __init__(
        self,
        subtensor: Any,
        metagraph: Any,
        policy: CallerPolicy,
        metrics: MinerMetrics,
        interval_s: float,
        stop: threading.Event,
    ) -> None:
        super().__init__(name="metagraph-sync", daemon=True)
        self.subtensor, self.metagraph, self.policy, self.metrics = subtensor, metagraph, policy, metrics
        self.interval_s, self.stop = interval_s, stop

    def sync_once(self) -> bool:
        try:
            self.metagraph.sync(subtensor=self.subtensor, lite=True)
            snapshot = MetagraphSnapshot.from_metagraph(self.metagraph)
        except Exception as exc:
            log.warning(
                "metagraph sync failed (%s: %s); keeping the snapshot from block %s",
                type(exc).__name__,
                exc,
                self.policy.snapshot.block,
            )
            self.metrics.record_error("metagraph_sync")
            return False
        self.policy.update(snapshot)
        self.metrics.metagraph_synced.set(time.time())
        log.info("metagraph synced at block %s: %d neurons", snapshot.block, len(snapshot))
        return True

    def run(self) -> None:
        while not self.stop.wait(self.interval_s):
            self.sync_once()


def connect_chain(opts: ServeOptions, wallet: Any) -> tuple[Any, Any]:
    """(subtensor, metagraph); refuses a hotkey that is not registered on the subnet."""
    import bittensor as bt

    try:
        subtensor = bt.Subtensor(network=opts.network)
        metagraph = subtensor.metagraph(opts.netuid)
    except Exception as exc:
        raise ChainError(
            f"cannot reach subtensor network {opts.network!r} for netuid {opts.netuid}: "
            f"{type(exc).__name__}: {exc}. Check --subtensor.network (finney, test, or ws://...)"
        ) from exc
    hotkey = wallet.hotkey.ss58_address
    if hotkey not in list(metagraph.hotkeys):
        raise ChainError(
            f"hotkey {hotkey} (wallet {opts.wallet_name}/{opts.wallet_hotkey}) is not registered on "
            f"netuid {opts.netuid} ({opts.network}). Register it first: btcli subnet register "
            f"--netuid {opts.netuid} --wallet.name {opts.wallet_name} --wallet.hotkey "
            f"{opts.wallet_hotkey} --network {opts.network}"
        )
    return subtensor, metagraph


def _install_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: object) -> None:
        log.warning("received %s: draining", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _wait_idle(service: Any, timeout_s: float) -> bool:
    service.closing = True
    end = time.monotonic() + timeout_s
    while service.in_flight and time.monotonic() < end:
        time.sleep(0.05)
    return service.in_flight == 0


def run_serve(
    cfg: CascadeConfig, opts: ServeOptions, build_cascade: Any, stop: threading.Event | None = None, tracer: Any = None
) -> int:
    """Serve until SIGTERM/SIGINT (or `stop` is set); returns the exit code."""
    from miner.axon import build_axon, start_axon
    from miner.service import MinerService, cascade_observers
    from monitoring.logs import reapply

    reapply()  # importing bittensor (miner.axon) silenced every logger that existed before it

    mc = cfg.miner
    ensure_free(
        opts.axon_ip,
        opts.axon_port,
        "axon port",
        "pick another with --axon.port (and --axon.external_port if the announced port differs)",
    )
    if mc.health.port:
        ensure_free(
            mc.health.host,
            mc.health.port,
            "side port (/healthz, /readyz, /metrics)",
            "set another with --health-port or miner.health.port in the profile, or 0 to turn it off",
        )
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        _install_signals(stop)
    metrics = MinerMetrics()
    state = HealthState(metrics)
    health = HealthServer(state, metrics, mc.health.host, mc.health.port).start() if mc.health.port else None
    if health:
        log.info("side port: %s/healthz, /readyz, /metrics", health.url)
    wallet, subtensor, metagraph, policy = _chain_side(opts, mc, metrics)  # fail fast, before loading models
    state.set_ready(False, "chain ok; loading models")
    cascade = build_cascade()
    service = MinerService(cascade, mc, metrics, observer_factory=cascade_observers(metrics, tracer, cascade))
    axon = build_axon(
        wallet,
        service,
        policy,
        metrics,
        ip=opts.axon_ip,
        port=opts.axon_port,
        external_ip=opts.external_ip,
        external_port=opts.external_port,
    )
    if subtensor is not None:
        served = subtensor.serve_axon(netuid=opts.netuid, axon=axon)
        if not getattr(served, "success", True):  # e.g. rate limit: the chain keeps the last announcement
            log.warning("announcing the axon on chain failed: %s", getattr(served, "message", served))
        MetagraphSyncer(subtensor, metagraph, policy, metrics, mc.policy.sync_interval_s, stop).start()
    start_axon(axon)
    state.set_ready(True, f"serving on {opts.axon_ip}:{opts.axon_port}")
    log.warning(
        "miner ready: axon %s:%d, hotkey %s, deadline %.0f ms",
        opts.axon_ip,
        opts.axon_port,
        wallet.hotkey.ss58_address,
        service.deadline_ms,
    )
    if opts.ready_file:
        _write_ready_file(opts, wallet, health)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        state.set_ready(False, "draining")
        drained = _wait_idle(service, mc.drain_s)
        axon.stop()
        service.close()
        cascade.close()
        if health:
            health.stop()
        log.warning("miner stopped (%s)", "drained" if drained else f"{service.in_flight} requests cut at drain_s")
    return 0


def _write_ready_file(opts: ServeOptions, wallet: Any, health: HealthServer | None) -> None:
    import json
    from pathlib import Path

    info = {
        "axon_ip": opts.axon_ip,
        "axon_port": opts.axon_port,
        "hotkey": wallet.hotkey.ss58_address,
        "netuid": None if opts.no_chain else opts.netuid,
        "network": None if opts.no_chain else opts.network,
        "no_chain": opts.no_chain,
        "side_port_url": health.url if health else None,
    }
    path = Path(opts.ready_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2) + "\n")
    log.info("wrote the axon's address and hotkey to %s", path)


def _chain_side(opts: ServeOptions, mc: Any, metrics: MinerMetrics) -> tuple[Any, Any, Any, CallerPolicy]:
    if opts.no_chain:
        import tempfile

        from miner.local import local_wallet

        if opts.axon_ip not in ("127.0.0.1", "localhost"):
            raise ChainError(
                f"--no-chain serves every caller, so it binds 127.0.0.1 only; got --axon.ip {opts.axon_ip}"
            )
        wallet = _wallet(opts)
        if not wallet.hotkey_file.exists_on_device():
            wallet = local_wallet(tempfile.mkdtemp(prefix="roadwork-nochain-"), "miner")
        check_readable(wallet.hotkey_file.path)
        policy = CallerPolicy(mc.policy.model_copy(update={"allow_unregistered": True}), MetagraphSnapshot())
        return wallet, None, None, policy
    wallet = _wallet(opts)
    if not wallet.hotkey_file.exists_on_device():
        raise ChainError(
            f"no hotkey file for wallet {opts.wallet_name}/{opts.wallet_hotkey} under {wallet.path}; "
            "create it with btcli wallet new_hotkey, or fix --wallet.name / --wallet.hotkey / --wallet.path"
        )
    check_readable(wallet.hotkey_file.path)
    subtensor, metagraph = connect_chain(opts, wallet)
    policy = CallerPolicy(mc.policy, MetagraphSnapshot.from_metagraph(metagraph))
    metrics.metagraph_synced.set(time.time())
    return wallet, subtensor, metagraph, policy


def check_readable(path: str) -> None:
    """A key file that exists but is not ours to read (btcli makes them mode 600; a container runs
    as another uid) is named with its owner and the fix, before anything else starts."""
    import os

    if os.access(path, os.R_OK):
        return
    st = os.stat(path)
    raise ChainError(
        f"hotkey file {path} exists but uid {os.getuid()} cannot read it (owner uid {st.st_uid}, "
        f"mode {st.st_mode & 0o777:o}); run the miner as its owner (docker run --user "
        f"{st.st_uid}:{st.st_gid}; compose: MINER_UID={st.st_uid} MINER_GID={st.st_gid} in .env) "
        f"or let uid {os.getuid()} read the wallet"
    )


def _wallet(opts: ServeOptions) -> Any:
    from bittensor_wallet import Wallet

    if opts.wallet_path:
        return Wallet(name=opts.wallet_name, hotkey=opts.wallet_hotkey, path=opts.wallet_path)
    return Wallet(name=opts.wallet_name, hotkey=opts.wallet_hotkey)
