"""Prometheus metrics of the cascade itself, recorded by a `CascadeObserver`.

They sit beside the miner's request metrics (monitoring/metrics.py): pass the same registry
(`CascadeMetrics(miner_metrics.registry)`) and `/metrics` serves both.

| metric | type | labels | what |
| --- | --- | --- | --- |
| `roadwork_cascade_queries_total` | counter | `exit_level` | cascade runs by the level that decided (`none`: no voter answered) |
| `roadwork_cascade_query_seconds` | histogram | | on_start -> verdict |
| `roadwork_cascade_level_seconds` | histogram | `level` | wall time of each level that ran |
| `roadwork_cascade_voter_seconds` | histogram | `voter`, `level` | each voter's latency |
| `roadwork_cascade_votes_total` | counter | `voter`, `level`, `outcome` | `agree` / `disagree` with the final answer (both rounded as the subnet does), `abstain` |
| `roadwork_cascade_voter_abstentions_total` | counter | `voter`, `cause` | abstentions by cause (`cascade.types.AbstainCause`, set where the vote is made): `deadline`, `error`, `breaker`, `no_evidence` |
| `roadwork_cascade_deadline_missed_total` | counter | | verdicts produced after the cascade's deadline |
| `roadwork_cascade_deadline_left_seconds` | histogram | | time left when the verdict was made |
| `roadwork_cascade_prob` | histogram | | the pooled probability answered |
| `roadwork_cascade_breaker_state` | gauge | `tier`, `endpoint` | 0 closed, 1 half-open, 2 open (vlm_tiers' circuit breakers) |
| `roadwork_cascade_device_worker_up` | gauge | `device`, `worker` | 1 while a GPU's worker process serves, 0 while it is dead or being rebuilt (runtime.process_per_device; `worker` counts from 0 on each device, runtime.workers_per_device) |
| `roadwork_cascade_device_worker_restarts` | gauge | `device`, `worker` | times that worker has been rebuilt since start |

Agreement in Grafana: `sum by (voter) (rate(roadwork_cascade_votes_total{outcome="agree"}[5m])) /
sum by (voter) (rate(roadwork_cascade_votes_total{outcome=~"agree|disagree"}[5m]))`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cascade.types import AbstainCause, Frame, Level, Verdict, Vote

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 9.0)
LEFT = (0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)
PROB_BUCKETS = tuple(round(x, 2) for x in np.linspace(0.05, 1.0, 20))
BREAKER_STATES = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}
ABSTAIN_CAUSES = tuple(c.value for c in AbstainCause)


class CascadeMetrics:
    """The metric families, registered once in an explicit registry. Make observers with `observer()`."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        breakers: Callable[[], Iterable[Mapping[str, object]]] | None = None,
        workers: Callable[[], Iterable[Mapping[str, object]]] | None = None,
    ) -> None:
        """`breakers` returns the circuit states to export, e.g.
        `lambda: vlm_tiers.http_tier.breaker_states(cascade.detectors)`; `workers` the device worker
        states (`lambda: detectors.device_process.worker_states(cascade.owned)`). Both are read after
        every verdict."""
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.breakers, self.workers = breakers, workers
        r = self.registry
        self.queries = Counter(
            "roadwork_cascade_queries_total", "Cascade runs by the level that decided.", ["exit_level"], registry=r
        )
        self.query_seconds = Histogram(
            "roadwork_cascade_query_seconds", "Cascade run time, start to verdict.", buckets=SECONDS, registry=r
        )
        self.level_seconds = Histogram(
            "roadwork_cascade_level_seconds",
            "Wall time of each level that ran.",
            ["level"],
            buckets=SECONDS,
            registry=r,
        )
        self.voter_seconds = Histogram(
            "roadwork_cascade_voter_seconds", "Latency of each voter.", ["voter", "level"], buckets=SECONDS, registry=r
        )
        self.votes = Counter(
            "roadwork_cascade_votes_total",
            "Votes by whether they agree with the final answer (rounded), or abstained.",
            ["voter", "level", "outcome"],
            registry=r,
        )
        self.abstentions = Counter(
            "roadwork_cascade_voter_abstentions_total", "Abstaining votes by cause.", ["voter", "cause"], registry=r
        )
        self.deadline_missed = Counter(
            "roadwork_cascade_deadline_missed_total", "Verdicts produced after the cascade's deadline.", registry=r
        )
        self.deadline_left = Histogram(
            "roadwork_cascade_deadline_left_seconds",
            "Deadline left when the verdict was made.",
            buckets=LEFT,
            registry=r,
        )
        self.prob = Histogram("roadwork_cascade_prob", "Pooled probability answered.", buckets=PROB_BUCKETS, registry=r)
        self.breaker = Gauge(
            "roadwork_cascade_breaker_state",
            "Circuit breaker per tier endpoint: 0 closed, 1 half-open, 2 open.",
            ["tier", "endpoint"],
            registry=r,
        )
        self.worker_up = Gauge(
            "roadwork_cascade_device_worker_up",
            "1 while the device's worker process serves, 0 while it is dead or rebuilt.",
            ["device", "worker"],
            registry=r,
        )
        self.worker_restarts = Gauge(
            "roadwork_cascade_device_worker_restarts",
            "Times the device's worker process has been rebuilt.",
            ["device", "worker"],
            registry=r,
        )
        self.deadline_missed.inc(0)

    def observer(self) -> MetricsObserver:
        """A fresh observer for one `cascade.run`."""
        return MetricsObserver(self)

    def set_breaker_state(self, tier: str, state: str, endpoint: str = "") -> None:
        """Record a breaker's state (`closed`, `half_open` or `open`)."""
        try:
            value = BREAKER_STATES[state.lower()]
        except KeyError:
            raise ValueError(
                f"breaker state for tier {tier!r} must be one of closed, half_open, open; got {state!r}"
            ) from None
        self.breaker.labels(tier=tier, endpoint=endpoint).set(value)

    def update_breakers(self, states: Iterable[Mapping[str, object]]) -> None:
        """Export states in vlm_tiers' format: dicts with `tier`, `endpoint` and `state`."""
        for s in states:
            self.set_breaker_state(str(s["tier"]), str(s["state"]), str(s.get("endpoint", "")))

    def update_workers(self, states: Iterable[Mapping[str, object]]) -> None:
        """Export device worker states (detectors.device_process.worker_states)."""
        for s in states:
            labels = {"device": str(s["device"]), "worker": str(s.get("worker", 0))}
            self.worker_up.labels(**labels).set(float(s["up"]))
            self.worker_restarts.labels(**labels).set(float(s["restarts"]))

    def declare_voters(self, voters: list[tuple[str, Level]]) -> None:
        """Export zero-valued series for each voter, so dashboards show them before the first vote."""
        for name, level in voters:
            for outcome in ("agree", "disagree", "abstain"):
                self.votes.labels(voter=name, level=level.name, outcome=outcome)
            for cause in ABSTAIN_CAUSES:
                self.abstentions.labels(voter=name, cause=cause)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample's current value (0 when absent); for tests and reports."""
        got = self.registry.get_sample_value(name, labels or {})
        return 0.0 if got is None else float(got)


class MetricsObserver:
    """Records one query into `CascadeMetrics`. Cheap; one per `cascade.run`."""

    def __init__(self, metrics: CascadeMetrics) -> None:
        self.m = metrics
        self._start = 0.0
        self._deadline_s = 0.0

    def on_start(self, frame: Frame, deadline_s: float) -> None:
        self._start, self._deadline_s = time.monotonic(), deadline_s

    def on_vote(self, vote: Vote) -> None:
        self.m.voter_seconds.labels(voter=vote.voter, level=vote.level.name).observe(vote.latency_ms / 1000)
        if vote.abstained:
            self.m.abstentions.labels(voter=vote.voter, cause=vote.cause.value).inc()

    def on_level(self, level: Level, pooled: float | None, elapsed_ms: float, deadline_left_s: float) -> None:
        self.m.level_seconds.labels(level=level.name).observe(elapsed_ms / 1000)

    def on_verdict(self, verdict: Verdict) -> None:
        took = time.monotonic() - self._start
        left = self._deadline_s - took
        self.m.query_seconds.observe(took)
        self.m.deadline_left.observe(max(left, 0.0))
        if left < 0:
            self.m.deadline_missed.inc()
        self.m.queries.labels(exit_level=verdict.exit_level.name if verdict.exit_level is not None else "none").inc()
        self.m.prob.observe(verdict.prob)
        answer = verdict.label
        for vote in verdict.votes:
            if vote.abstained:
                outcome = "abstain"
            else:
                outcome = "agree" if int(np.round(vote.prob)) == answer else "disagree"
            self.m.votes.labels(voter=vote.voter, level=vote.level.name, outcome=outcome).inc()
        if self.m.breakers is not None:
            self.m.update_breakers(self.m.breakers())
        if self.m.workers is not None:
            self.m.update_workers(self.m.workers())
