"""The cascade: run levels in order, pool after each, stop early when sure, watch the deadline.

Model work runs in a small thread pool, so `await cascade.run(frame, deadline)` never blocks the
event loop. Each voter's cost is a moving average; a voter that would not finish before the
deadline is skipped, and the best pooled answer so far is returned. A voter runs only on the frame
sizes its profile entry names (`voters[].long_side`), and the votes of a frame are pooled with the
fitted pool for its size. With `runtime.start_early`, the voters of the levels it lists that read no
earlier votes start with the frame's first level; their votes still join the pool at their own level.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from cascade.budget import CostTracker, Deadline
from cascade.config import CascadeConfig
from cascade.observer import CascadeObserver, NullObserver
from cascade.types import (
    DEADLINE_META,
    EVERY_SIZE,
    AbstainCause,
    Frame,
    Level,
    LongSides,
    Verdict,
    Vote,
    covers,
    overlaps,
)
from consensus.artefact import ConsensusArtefact, Pool
from consensus.pooling import pool_votes
from detectors import registry
from detectors.base import Voter

log = logging.getLogger(__name__)


def check_artefact_voters(
    artefact: ConsensusArtefact, voters: Sequence[str], where: object = None, sides: dict[str, LongSides] | None = None
) -> None:
    """Refuse an artefact fitted on other voters: its weights, calibration and bands belong together,
    and applying half of them (weights of the voters that match, the rest kept) would be wrong. Each
    pool must hold exactly the voters that run on its frame sizes (`sides`: voter -> long_side)."""
    what = f"consensus artefact {str(where or artefact.fitted_on)!r}"
    fix = (
        "Re-run `roadwork fit --profile` on runs of these voters, or point `consensus.weights` at the "
        "artefact fitted for this profile."
    )
    fitted, have = artefact.voters, set(voters)
    if fitted != have:
        raise ValueError(
            f"{what} was fitted on voters {sorted(fitted)} but the profile runs {sorted(have)} (missing from the "
            f"artefact: {sorted(have - fitted)}; not in the profile: {sorted(fitted - have)}). {fix}"
        )
    sides = sides or {}
    for pool in artefact.pools:
        runs = {v for v in voters if overlaps(sides.get(v, EVERY_SIZE), pool.long_side)}
        if runs != set(pool.weights):
            raise ValueError(
                f"{what}: its pool for {pool.describe()} was fitted on {sorted(pool.weights)}, but on "
                f"those frames the profile runs {sorted(runs)} (voters[].long_side). {fix}"
            )


class Cascade:
    def __init__(
        self, detectors: Sequence[Voter], config: CascadeConfig, artefact: ConsensusArtefact | None = None
    ) -> None:
        if not detectors:
            raise ValueError("a cascade needs at least one voter")
        self.sides = config.voter_sides()
        """voter -> the frame sizes it scores (voters missing from the profile: every size)."""
        if artefact is not None:
            check_artefact_voters(artefact, [d.name for d in detectors], config.consensus.weights, self.sides)
        self.config = config
        self.artefact = artefact
        self.detectors = list(detectors)
        levels = sorted({d.level for d in self.detectors})
        self.levels: list[tuple[Level, list[Voter]]] = [
            (lv, [d for d in self.detectors if d.level == lv]) for lv in levels
        ]
        rt = config.runtime
        priors = {v.name: v.cost_prior_ms / 1000 for v in config.voters if v.cost_prior_ms is not None}
        self.costs = CostTracker(
            prior_s=rt.cost_prior_ms / 1000, alpha=rt.cost_ema_alpha, priors=priors, recovery_s=rt.cost_recovery_s
        )
        self.margin_s = rt.margin_ms / 1000
        self._executor = ThreadPoolExecutor(max_workers=rt.workers, thread_name_prefix="cascade")
        self._owned: list = []
        """Resources built for this cascade (device worker processes), closed with it."""
        self.prior_weights = {d.name: d.weight for d in self.detectors}
        kinds = {v.name: v.kind for v in config.voters}
        self.starts_early = {
            d.name
            for d in self.detectors
            if d.level in rt.start_early and d.name in kinds and not registry.entry(kinds[d.name]).reads_prior_votes
        }
        """Voters started with a frame's first level (`runtime.start_early`), not after the levels before theirs."""

    @classmethod
    def from_config(cls, config: CascadeConfig, warmup: bool = True) -> Cascade:
        from detectors.artefacts import refuse_missing
        from detectors.device_process import build_voters  # lazy: adapters import heavy libraries

        refuse_missing(config)  # every missing file, before any model takes memory
        artefact = None
        if config.consensus.weights is not None:
            artefact = ConsensusArtefact.load(config.resolve(config.consensus.weights))
        detectors, owned = build_voters(
            config.voters,
            config.base_dir,
            torch_threads=config.runtime.torch_threads,
            remote=config.runtime.process_per_device,
            workers_per_device=config.runtime.workers_per_device,
            lanes_per_worker=config.runtime.lanes_per_worker,
            worker_split=config.runtime.worker_split,
            hang_s=config.runtime.worker_hang_s,
            frame_transport=config.runtime.frame_transport,
        )
        cascade = cls(detectors, config, artefact)
        cascade._owned = list(owned)
        if warmup:
            cascade.warmup()
        return cascade

    def warmup(self) -> None:
        for d in self.detectors:
            d.warmup()

    def runs_on(self, voter: str, long_side: int) -> bool:
        """Whether `voter` scores a frame whose long side is `long_side` px (`voters[].long_side`)."""
        return covers(self.sides.get(voter, EVERY_SIZE), long_side)

    def fitted_pool(self, long_side: int) -> Pool | None:
        """The artefact's pool for frames of this size (None without an artefact)."""
        return None if self.artefact is None else self.artefact.pool_for(long_side)

    def weights(self, long_side: int) -> dict[str, float]:
        """Each voter's weight on a frame of this size: fitted where the artefact has one, else its prior."""
        pool = self.fitted_pool(long_side)
        return self.prior_weights if pool is None else {**self.prior_weights, **pool.weights}

    def band(self, level: Level, long_side: int) -> tuple[float, float]:
        pool = self.fitted_pool(long_side)
        if pool is not None and self.config.consensus.use_fitted_bands and level.name in pool.bands:
            return pool.bands[level.name]
        return self.config.band(level)

    def pool(self, votes: Sequence[Vote], long_side: int) -> float | None:
        pool = self.fitted_pool(long_side)
        return pool_votes(
            votes,
            self.weights(long_side),
            clip=self.config.consensus.clip,
            scale=pool.scale if pool else 1.0,
            bias=pool.bias if pool else 0.0,
        )

    async def run(
        self, frame: Frame, deadline: Deadline | None = None, observer: CascadeObserver | None = None
    ) -> Verdict:
        if deadline is None:
            deadline = Deadline.after(self.config.runtime.deadline_ms / 1000)
        obs = observer or NullObserver()
        obs.on_start(frame, deadline.remaining())
        frame = dataclasses.replace(frame, meta={**frame.meta, DEADLINE_META: deadline.at})
        votes: list[Vote] = []
        skipped: list[str] = []
        timings: dict[str, float] = {}
        side = frame.long_side
        # voters that read no earlier votes may start now; each joins the pool at its own level
        early = {
            d.name: asyncio.ensure_future(self._vote(d, frame, deadline))
            for _, level_voters in self.levels
            for d in level_voters
            if d.name in self.starts_early
            and self.runs_on(d.name, side)
            and self.costs.fits(d.name, deadline, self.margin_s)
        }
        try:
            prob, exit_level = await self._levels(frame, deadline, obs, early, votes, skipped, timings)
        finally:
            for task in early.values():  # their level did not run: the votes are dropped
                task.cancel()
        verdict = Verdict(
            prob=0.5 if prob is None else prob,
            votes=tuple(votes),
            exit_level=exit_level,
            timings_ms=timings,
            skipped=tuple(skipped),
        )
        obs.on_verdict(verdict)
        return verdict

    async def _levels(
        self,
        frame: Frame,
        deadline: Deadline,
        obs: CascadeObserver,
        early: dict[str, asyncio.Future[Vote]],
        votes: list[Vote],
        skipped: list[str],
        timings: dict[str, float],
    ) -> tuple[float | None, Level | None]:
        """Run the levels in order into `votes`, `skipped` and `timings`; the last pooled answer and its level."""
        prob: float | None = None
        exit_level: Level | None = None
        side = frame.long_side
        for level, all_detectors in self.levels:
            detectors = [d for d in all_detectors if self.runs_on(d.name, side)]
            skipped.extend(
                f"{d.name}: frame long side {side} px outside its long_side {list(self.sides[d.name])}"
                for d in all_detectors
                if d not in detectors
            )
            if not detectors:
                continue
            gate = self.config.run_when(level)
            if gate is not None and prob is not None and not gate[0] <= prob <= gate[1]:
                skipped.extend(
                    f"{d.name}: pooled {prob:.3f} outside run_when [{gate[0]}, {gate[1]}]" for d in detectors
                )
                continue
            runnable = [d for d in detectors if d.name in early or self.costs.fits(d.name, deadline, self.margin_s)]
            skipped.extend(
                f"{d.name}: est {self.costs.estimate(d.name) * 1000:.0f} ms > "
                f"{max(deadline.remaining() - self.margin_s, 0) * 1000:.0f} ms left"
                for d in detectors
                if d not in runnable
            )
            if not runnable:
                continue
            t0 = time.monotonic()
            # later levels (L2 validators) read earlier votes' boxes from frame.meta["prior_votes"]
            seen = dataclasses.replace(frame, meta={**frame.meta, "prior_votes": tuple(votes)}) if votes else frame
            new_votes = await asyncio.gather(
                *(early.pop(d.name, None) or self._vote(d, seen, deadline) for d in runnable)
            )
            for vote in new_votes:
                obs.on_vote(vote)
            votes.extend(new_votes)
            timings[level.name] = (time.monotonic() - t0) * 1000
            pooled = self.pool(votes, side)
            obs.on_level(level, pooled, timings[level.name], deadline.remaining())
            if pooled is None:
                continue
            prob, exit_level = pooled, level
            lo, hi = self.band(level, side)
            if prob < lo or prob > hi:
                break
        return prob, exit_level

    def run_sync(
        self, frame: Frame, timeout_s: float | None = None, observer: CascadeObserver | None = None
    ) -> Verdict:
        """Blocking helper for offline tools (eval, bench); do not call from an event loop."""
        seconds = self.config.runtime.deadline_ms / 1000 if timeout_s is None else timeout_s
        return asyncio.run(self.run(frame, Deadline.after(seconds), observer=observer))

    async def _vote(self, detector: Voter, frame: Frame, deadline: Deadline) -> Vote:
        loop = asyncio.get_running_loop()
        budget = max(deadline.remaining() - self.margin_s, 0.001)
        t0 = time.monotonic()
        try:
            apredict = getattr(detector, "apredict", None)
            if inspect.iscoroutinefunction(apredict):  # I/O-bound voters (VLM clients) stay on the loop
                fut = apredict([frame])
            else:
                fut = loop.run_in_executor(self._executor, detector.predict, [frame])
            (vote,) = await asyncio.wait_for(fut, timeout=budget)
        except TimeoutError:
            elapsed = time.monotonic() - t0
            # it did not finish in `elapsed`: record more than that, or the next request (same budget)
            # would start it again and a hung voter would pile up stuck threads in the shared pool
            self.costs.observe(detector.name, 2 * elapsed)
            return Vote.abstain(
                detector.name,
                detector.level,
                f"deadline: no answer within {budget * 1000:.0f} ms",
                elapsed * 1000,
                cause=AbstainCause.DEADLINE,
            )
        except Exception as exc:  # one failing voter must not take the answer down
            log.warning("voter %s failed: %s: %s", detector.name, type(exc).__name__, exc)
            return Vote.abstain(
                detector.name,
                detector.level,
                f"error: {type(exc).__name__}: {exc}",
                (time.monotonic() - t0) * 1000,
                cause=AbstainCause.ERROR,
            )
        elapsed = time.monotonic() - t0
        self.costs.observe(detector.name, elapsed)
        weight = self.weights(frame.long_side).get(detector.name, vote.weight) if not vote.abstained else 0.0
        return dataclasses.replace(vote, weight=weight, latency_ms=elapsed * 1000)

    @property
    def owned(self) -> tuple:
        """What this cascade built and closes with itself (device worker processes)."""
        return tuple(self._owned)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        for resource in self._owned:
            resource.close()
        self._owned = []

    def __enter__(self) -> Cascade:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
