"""The miner's main job, free of any transport: base64 image in, prediction out, always in time.

`MinerService.answer(image, validator_timeout_s, priority, label)` is what the axon's `forward` awaits:

    admission (bounded slots, queue by priority) -> decode in a thread -> cascade.run(frame, deadline)
    -> float in [0, 1]

- The budget is our deadline (the profile's one `runtime.deadline_ms`, read from the cascade),
  capped by the validator's own timeout less `miner.reserve_ms`. A hard cut at that deadline (`_hard_cut`) backs the cascade's own deadline
  handling: if it ever fires, the best pooled answer seen so far (via a cascade observer) is sent.
- -1 (the protocol's "no answer") only when nothing at all ran: overloaded queue, no slot before
  the deadline, every voter abstained, or the input was refused (`miner.bad_input_prediction`).
- Nothing here blocks the event loop: decode runs in its own small thread pool, model work in
  the cascade's.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cascade.budget import Deadline
from cascade.observer import CascadeObserver, NullObserver
from cascade.pipeline import Cascade
from cascade.types import Frame, Level, Verdict, Vote
from miner.config import MinerConfig
from miner.decode import DecodeError, decode_image
from monitoring.metrics import MinerMetrics

log = logging.getLogger(__name__)
NO_ANSWER = -1.0
BOX_SCORE_FOR_EXPLANATION = 0.3


@dataclass(frozen=True)
class Answer:
    prediction: float
    """In [0, 1], or -1 when nothing ran."""
    exit_level: str | None
    reason: str
    latency_s: float
    explanation: str = ""


class Admission:
    """At most `slots` requests inside at once; up to `max_queue` wait, highest priority first.

    Lives on one event loop (the axon's). `acquire` returns False at once when the queue is full,
    or when no slot frees up before `give_up_at` (a monotonic time).
    """

    def __init__(self, slots: int, max_queue: int) -> None:
        self._free = slots
        self.max_queue = max_queue
        self._waiters: list[tuple[float, int, asyncio.Future]] = []
        self._seq = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, f in self._waiters if not f.done())

    async def acquire(self, priority: float, give_up_at: float) -> bool:
        if self._free > 0 and not self.waiting:
            self._free -= 1
            return True
        if self.waiting >= self.max_queue:
            return False
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (-priority, next(self._seq), fut))
        try:
            await asyncio.wait({fut}, timeout=max(give_up_at - time.monotonic(), 0.0))
        except asyncio.CancelledError:  # the caller went away while queued: never leak a slot
            if fut.done() and not fut.cancelled():
                self.release()
            fut.cancel()
            raise
        if fut.done() and not fut.cancelled():
            return True  # release() handed its slot to us
        fut.cancel()
        return False

    def release(self) -> None:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(True)  # the slot passes straight to the best waiter
                return
        self._free += 1


class BestSoFar:
    """Observer that remembers the last pooled probability, then forwards to an inner observer."""

    def __init__(self, inner: CascadeObserver | None = None) -> None:
        self.inner = inner or NullObserver()
        self.prob: float | None = None
        self.level: Level | None = None
        self.votes: list[Vote] = []

    def on_start(self, frame: Frame, deadline_s: float) -> None:
        self.inner.on_start(frame, deadline_s)

    def on_vote(self, vote: Vote) -> None:
        self.votes.append(vote)
        self.inner.on_vote(vote)

    def on_level(self, level: Level, pooled: float | None, elapsed_ms: float, deadline_left_s: float) -> None:
        if pooled is not None and math.isfinite(pooled):
            self.prob, self.level = pooled, level
        self.inner.on_level(level, pooled, elapsed_ms, deadline_left_s)

    def on_verdict(self, verdict: Verdict) -> None:
        self.inner.on_verdict(verdict)


def explain(votes: list[Vote], limit: int = 4) -> str:
    """Short words for ExtendedImageSynapse.explanation: objects the detectors boxed, then the votes."""
    counted = sorted((v for v in votes if not v.abstained), key=lambda v: -abs((v.prob or 0.5) - 0.5))
    objects: Counter[str] = Counter()
    for v in counted:
        boxes = v.evidence.get("boxes") if isinstance(v.evidence, dict) else None
        for box in boxes if isinstance(boxes, list) else []:
            if isinstance(box, dict) and float(box.get("score", 0) or 0) >= BOX_SCORE_FOR_EXPLANATION:
                objects[str(box.get("label", "object"))] += 1
    parts = [", ".join(f"{n} {label}" for label, n in objects.most_common(5))] if objects else []
    parts += [f"{v.voter} ({v.level.name}) p={v.prob:.2f}" for v in counted[:limit]]
    return "; ".join(parts)


async def _hard_cut(fut: asyncio.Future, deadline: Deadline):
    """The future's result, or TimeoutError at the deadline.

    Unlike `asyncio.wait_for`, which waits for a cancelled task to finish (forever, if a stage
    swallows the cancellation), this returns at the deadline; the late task is cancelled and its
    outcome only logged.
    """
    done, _ = await asyncio.wait({fut}, timeout=max(deadline.remaining(), 0.0))
    if fut in done:
        return fut.result()
    fut.cancel()
    fut.add_done_callback(_log_late)
    raise TimeoutError


def _log_late(fut: asyncio.Future) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        exc = fut.exception()
        log.info("a request's work ended after its deadline with %s: %s", type(exc).__name__, exc)


class MinerService:
    def __init__(
        self, cascade: Cascade, config: MinerConfig, metrics: MinerMetrics | None = None, observer_factory=None
    ) -> None:
        self.cascade = cascade
        self.config = config
        self.deadline_ms = cascade.config.runtime.deadline_ms
        self.metrics = metrics or MinerMetrics()
        self.observer_factory = observer_factory
        if not isinstance(config.max_concurrent, int):
            raise ValueError(
                "miner.max_concurrent 'from-plan' is resolved by miner.profile.load_profile; load it there"
            )
        self.admission = Admission(config.max_concurrent, config.max_queue)
        self._decode_pool = ThreadPoolExecutor(max_workers=config.decode_workers, thread_name_prefix="decode")
        self.in_flight = 0
        self.closing = False

    async def answer(
        self, image: object, validator_timeout_s: float | None = None, priority: float = 0.0, label: int | None = None
    ) -> Answer:
        """`label` is the request's `testnet_label` where a testnet validator sent one: it goes to
        the trace only (a wrong answer's trace is tagged), never into the prediction."""
        t0 = time.monotonic()
        deadline = Deadline(t0 + self.config.budget_s(self.deadline_ms, validator_timeout_s))
        if self.closing:
            return self._done(t0, NO_ANSWER, None, "shutting down", "shutdown")
        self.metrics.queue_depth.set(self.admission.waiting + 1)
        got = await self.admission.acquire(priority, deadline.at - self.config.min_run_ms / 1000)
        self.metrics.queue_depth.set(self.admission.waiting)
        if not got:
            why = (
                f"overloaded: {self.admission.waiting} waiting (miner.max_queue={self.config.max_queue})"
                if deadline.remaining() * 1000 > self.config.min_run_ms
                else "no cascade slot before the deadline"
            )
            return self._done(t0, NO_ANSWER, None, why, "overloaded")
        self.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            return await self._answer_admitted(image, deadline, t0, label)
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()
            self.admission.release()

    async def _answer_admitted(self, image: object, deadline: Deadline, t0: float, label: int | None = None) -> Answer:
        loop = asyncio.get_running_loop()
        decoding = loop.run_in_executor(self._decode_pool, decode_image, image, self.config.decode)
        try:
            frame = await _hard_cut(decoding, deadline)
        except DecodeError as exc:
            log.warning("refused input: %s: %s", exc.reason, exc)
            return self._done(
                t0, self.config.bad_input_prediction, None, f"bad input: {exc.reason}: {exc}", f"decode_{exc.reason}"
            )
        except TimeoutError:
            return self._done(t0, NO_ANSWER, None, "deadline passed while decoding", "deadline")
        best = BestSoFar(self.observer_factory(label) if self.observer_factory else None)
        verdict: Verdict | None = None
        cut = "ok"
        try:
            verdict = await _hard_cut(asyncio.ensure_future(self.cascade.run(frame, deadline, observer=best)), deadline)
        except TimeoutError:
            cut = "deadline: best so far"
            self.metrics.record_error("deadline")
            log.warning(
                "frame %s: cascade still running at the deadline; sending the best pooled answer so far", frame.frame_id
            )
        except Exception as exc:
            cut = f"cascade error ({type(exc).__name__}): best so far"
            self.metrics.record_error("cascade")
            log.error("frame %s: cascade failed: %s: %s", frame.frame_id, type(exc).__name__, exc)
        if verdict is not None and verdict.answered:
            prob, level, votes = verdict.prob, verdict.exit_level, list(verdict.votes)
        else:
            prob, level, votes = best.prob, best.level, best.votes
        if prob is None or level is None:
            return self._done(t0, NO_ANSWER, None, "no voter produced a probability", "no_vote")
        prob = min(max(float(prob), 0.0), 1.0)
        text = explain(votes) if self.config.explanation == "votes" else ""
        return self._done(t0, prob, level.name, cut, None, text)

    def _done(
        self, t0: float, prediction: float, level: str | None, reason: str, error: str | None, explanation: str = ""
    ) -> Answer:
        seconds = time.monotonic() - t0
        if error is not None:
            self.metrics.record_error(error)
        if level is not None:
            outcome = "ok" if reason == "ok" else "best_so_far"
        else:
            outcome = "bad_input" if error and error.startswith("decode_") else "no_answer"
        self.metrics.record_answer(level, seconds, outcome=outcome)
        return Answer(prediction, level, reason, seconds, explanation)

    async def drain(self, timeout_s: float) -> bool:
        """Stop taking work and wait up to timeout_s for requests already inside; True when empty."""
        self.closing = True
        end = time.monotonic() + timeout_s
        while self.in_flight and time.monotonic() < end:
            await asyncio.sleep(0.05)
        return self.in_flight == 0

    def close(self) -> None:
        self.closing = True
        self._decode_pool.shutdown(wait=False, cancel_futures=True)


def cascade_observers(metrics: MinerMetrics, tracer: object | None = None, cascade: object | None = None):
    """`observer_factory` for MinerService: cascade metrics into the miner's registry, plus traces.

    `tracer` is a `monitoring.tracing.CascadeTracer` (extra `trace`) or None. With `cascade`, the VLM
    tiers' circuit breakers and the device worker processes are exported too, and every voter's
    series start at 0.
    """
    from monitoring.cascade_metrics import CascadeMetrics
    from monitoring.observers import ObserverGroup

    breakers = workers = None
    if cascade is not None:
        from detectors.device_process import worker_states
        from vlm_tiers.http_tier import breaker_states

        def breakers():
            return breaker_states(cascade.detectors)

        def workers():
            return worker_states(getattr(cascade, "owned", ()))

    cascade_metrics = CascadeMetrics(metrics.registry, breakers=breakers, workers=workers)
    if cascade is not None:  # each voter's vote and abstention series at 0, for the voter-failing alert
        cascade_metrics.declare_voters([(d.name, d.level) for d in cascade.detectors])

    def factory(label: int | None = None) -> ObserverGroup:
        return ObserverGroup(cascade_metrics.observer(), tracer.observer(label=label) if tracer is not None else None)

    return factory
