"""The bittensor axon around `MinerService`: forward, blacklist and priority for both synapse types.

`Axon.attach` compares signatures exactly (parameter named `synapse`, annotated with the synapse
class; blacklist returns `typing.Tuple[bool, str]`, priority `float`), so the handlers get their
signatures set explicitly for each synapse class rather than from annotations in this file.

bittensor 10.5's axon binds uvicorn to 0.0.0.0 whatever `ip` says; `build_axon` makes it bind
to the requested interface (127.0.0.1 in local mode).
"""

from __future__ import annotations

import inspect
import logging
import socket
import time
import typing
from collections.abc import Callable

import bittensor as bt

from miner.body_limit import BodyLimit
from miner.policy import CallerPolicy
from miner.protocol import SYNAPSE_TYPES, ExtendedImageSynapse, ImageSynapse
from miner.service import MinerService
from monitoring.metrics import MinerMetrics

log = logging.getLogger(__name__)


def _with_signature(fn: Callable, synapse_cls: type, returns: object) -> Callable:
    param = inspect.Parameter("synapse", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=synapse_cls)
    fn.__signature__ = inspect.Signature([param], return_annotation=returns)  # type: ignore[attr-defined]
    return fn


def _caller(synapse: bt.Synapse) -> str | None:
    dendrite = getattr(synapse, "dendrite", None)
    return getattr(dendrite, "hotkey", None) if dendrite is not None else None


def make_handlers(
    service: MinerService, policy: CallerPolicy, metrics: MinerMetrics, synapse_cls: type[ImageSynapse]
) -> tuple[Callable, Callable, Callable]:
    """(forward, blacklist, priority) for one synapse class, ready for `axon.attach`."""
    cfg = service.config

    async def forward(synapse):
        label = getattr(synapse, "testnet_label", -1)  # testnet validators send the truth: traces only
        ans = await service.answer(
            synapse.image, synapse.timeout, policy.priority(_caller(synapse)), label if label in (0, 1) else None
        )
        synapse.prediction = ans.prediction
        synapse.image = ""  # never echo the payload back: the validator has it already
        if isinstance(synapse, ExtendedImageSynapse):
            synapse.model_url = cfg.model_url
            synapse.explanation = ans.explanation
        log.info(
            "answered %.3f in %.0f ms (%s, exit %s) to %s",
            ans.prediction,
            ans.latency_s * 1000,
            ans.reason,
            ans.exit_level,
            _caller(synapse),
        )
        return synapse

    def blacklist(synapse):
        try:
            decision = policy.check(_caller(synapse))
        except Exception as exc:
            log.error("blacklist check failed (%s: %s); refusing", type(exc).__name__, exc)
            metrics.record_refusal("error")
            return True, "internal error in blacklist check"
        if decision.refused:
            metrics.record_refusal(decision.reason)
            log.info("refused %s: %s", synapse_cls.__name__, decision.detail)
        return decision.refused, decision.detail

    def priority(synapse):
        return float(policy.priority(_caller(synapse)))

    return (
        _with_signature(forward, synapse_cls, synapse_cls),
        _with_signature(blacklist, synapse_cls, typing.Tuple[bool, str]),  # noqa: UP006 - attach compares exactly
        _with_signature(priority, synapse_cls, float),
    )


def body_limit(cfg: object) -> int:
    """Largest request body: the base64 image the decoder accepts plus room for the synapse's JSON
    and headers fields."""
    return int(cfg.decode.max_b64_chars) + 64 * 1024  # type: ignore[attr-defined]


def _refused_body(metrics: MinerMetrics, size: int) -> None:
    log.warning("refused a request body of %d bytes before parsing it (over miner.decode.max_bytes)", size)
    metrics.record_refusal("body_too_large")


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for tests and the simulator)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def build_axon(
    wallet: object,
    service: MinerService,
    policy: CallerPolicy,
    metrics: MinerMetrics,
    *,
    ip: str,
    port: int,
    external_ip: str | None = None,
    external_port: int | None = None,
) -> bt.Axon:
    """An axon with our handlers attached for every synapse type, bound to `ip:port` (not started).

    `external_ip` None means: bittensor looks it up on the internet (production); pass the ip
    explicitly for local mode.
    """
    if not 1024 < port < 65535:
        raise ValueError(f"--axon.port must be in 1025..65534, got {port}")
    config = bt.Config()  # defaults only: never parse our own command line as bittensor's
    axon = bt.Axon(wallet=wallet, config=config, port=port, ip=ip, external_ip=external_ip, external_port=external_port)
    axon.fast_config.host = ip.strip("[]") if ip not in ("[::]", "::") else "::"
    # outermost: refuses an oversized body before the axon's middleware reads and parses it
    axon.app.add_middleware(
        BodyLimit, max_bytes=body_limit(service.config), on_refused=lambda size: _refused_body(metrics, size)
    )
    for cls in SYNAPSE_TYPES:
        fwd, bl, pr = make_handlers(service, policy, metrics, cls)
        axon.attach(forward_fn=fwd, blacklist_fn=bl, priority_fn=pr)
    return axon


def start_axon(axon: bt.Axon, timeout_s: float = 15.0) -> bt.Axon:
    """Start serving and wait until uvicorn has bound its socket."""
    axon.start()
    end = time.monotonic() + timeout_s
    while not getattr(axon.fast_server, "started", False):
        if time.monotonic() > end:
            raise TimeoutError(f"axon did not start on {axon.fast_config.host}:{axon.port} within {timeout_s} s")
        time.sleep(0.01)
    return axon
