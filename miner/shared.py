"""One cascade service behind many hotkeys (Ray Serve), and the stand-in each hotkey's axon uses.

Operators run several miners, and a validator sends the same challenge to ten miners at once, so
several of them may be yours. `roadwork cascade-service` deploys the profile's cascade once, as
Ray Serve deployments (Ray Serve gives the replicas, routing and scale-out by adding nodes; Ray is
already the engine of `eval --ray`):

  Coalescer        one replica: keys each frame by the SHA-256 of its pixels; an identical frame in
                   flight is awaited, not run again, and answered from a cache for `cache_s` after
  CascadeReplica   N replicas, each the profile's cascade built once

Each hotkey's `roadwork serve --shared-cascade ADDRESS` keeps its own axon, wallet, blacklist,
priority and metrics (miner/service.py, miner/policy.py) and runs `SharedCascade` where it would
run its own cascade; the votes of each answer are replayed into that front's observers, so its
per-voter metrics and traces count them. When the service is gone a call raises, the miner
answers as it does when its cascade fails (-1, counted as a cascade error), and the next call
looks the service up again, so the fronts recover when it is back.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import numpy as np

from cascade.budget import Deadline
from cascade.config import CascadeConfig
from cascade.types import Frame, Verdict

APP = "roadwork-cascade"
"""The Ray Serve application's name: the fronts find the service by it."""


def frame_key(image: np.ndarray) -> str:
    """What makes two frames the same challenge: their decoded pixels (and shape)."""
    h = hashlib.sha256(str(image.shape).encode())
    h.update(np.ascontiguousarray(image).data)
    return h.hexdigest()


class CascadeReplica:
    """The profile's cascade, built once per replica."""

    def __init__(self, config: str) -> None:
        from miner.profile import worker_cascade

        self.cascade = worker_cascade(config)

    async def run(self, image: np.ndarray, frame_id: str, source: str, seconds_left: float) -> Verdict:
        return await self.cascade.run(Frame(image, source=source, frame_id=frame_id), Deadline.after(seconds_left))


class Coalescer:
    """In-flight frames by key (awaited, not run twice) and recent answers (for `cache_s`)."""

    def __init__(self, replicas: Any, cache_s: float = 5.0) -> None:
        self.replicas, self.cache_s = replicas, cache_s
        self.inflight: dict[str, asyncio.Future] = {}
        self.recent: dict[str, tuple[float, Verdict]] = {}
        self.counts = {"runs": 0, "coalesced": 0, "cached": 0}

    async def run(self, key: str, image: np.ndarray, frame_id: str, source: str, seconds_left: float) -> Verdict:
        now = time.monotonic()
        self.recent = {k: (t, v) for k, (t, v) in self.recent.items() if now - t < self.cache_s}
        if key in self.recent:
            self.counts["cached"] += 1
            return self.recent[key][1]
        if key in self.inflight:
            self.counts["coalesced"] += 1
            return await asyncio.shield(self.inflight[key])
        self.counts["runs"] += 1
        future = asyncio.ensure_future(self._run(image, frame_id, source, seconds_left))
        self.inflight[key] = future
        try:
            verdict = await asyncio.shield(future)
        finally:
            self.inflight.pop(key, None)
        self.recent[key] = (time.monotonic(), verdict)
        return verdict

    async def _run(self, image: np.ndarray, frame_id: str, source: str, seconds_left: float) -> Verdict:
        return await self.replicas.run.remote(image, frame_id, source, seconds_left)

    def stats(self) -> dict[str, int]:
        """Frames run on a replica, answered by joining one in flight, and answered from the cache."""
        return dict(self.counts)


def deploy(config: str, replicas: int = 1, cpus_per_replica: float = 1.0, cache_s: float = 5.0) -> Any:
    """Start (or replace) the service on the connected Ray cluster; returns its handle."""
    from ray import serve

    serve.start(http_options={"location": "NoServer"})  # the fronts reach it through Ray, not HTTP
    cascade = serve.deployment(CascadeReplica, name="CascadeReplica").options(
        num_replicas=replicas, ray_actor_options={"num_cpus": cpus_per_replica}
    )
    coalescer = serve.deployment(Coalescer, name="Coalescer").options(
        num_replicas=1, ray_actor_options={"num_cpus": 0.1}
    )
    return serve.run(coalescer.bind(cascade.bind(config), cache_s), name=APP, route_prefix=None)


class SharedCascade:
    """What `MinerService` runs when the cascade is the shared service: the same `run` and
    `config` as `cascade.pipeline.Cascade`, the work done by the service."""

    def __init__(self, config: CascadeConfig, app: str = APP) -> None:
        self.config, self.app = config, app
        self.detectors: list = []  # the voters live in the service; their metrics are its own
        self._handle: Any = None

    async def run(self, frame: Frame, deadline: Deadline, observer: Any = None) -> Verdict:
        from ray import serve

        if observer is not None:
            observer.on_start(frame, deadline.remaining())
        try:
            if self._handle is None:
                self._handle = serve.get_app_handle(self.app)
            verdict = await self._handle.run.remote(
                frame_key(frame.image), frame.image, frame.frame_id, frame.source, deadline.remaining()
            )
        except Exception:
            self._handle = None  # look the service up again next time: it may have been redeployed
            raise
        if observer is not None:  # this hotkey's metrics and traces see the votes the service cast
            for vote in verdict.votes:
                observer.on_vote(vote)
            observer.on_verdict(verdict)
        return verdict

    def close(self) -> None:
        self._handle = None
