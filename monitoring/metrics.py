"""Prometheus metrics of the miner, in a registry of its own (never the process-global one).

| metric | type | labels | what |
| --- | --- | --- | --- |
| `roadwork_request_latency_seconds` | histogram | `outcome` | arrival -> answer, per answered request |
| `roadwork_answers_total` | counter | `exit_level` | answers by the cascade level that decided (`none` = -1) |
| `roadwork_errors_total` | counter | `kind` | bad input (`decode_<reason>`), `deadline`, `overloaded`, `cascade` |
| `roadwork_refused_total` | counter | `reason` | callers refused by the blacklist |
| `roadwork_in_flight` | gauge | | requests inside the cascade now |
| `roadwork_queue_depth` | gauge | | requests waiting for a slot |
| `roadwork_ready` | gauge | | 1 once models are loaded, warmed up and the axon serves |
| `roadwork_metagraph_synced_timestamp` | gauge | | unix time of the last good metagraph sync |

Build one `MinerMetrics` per process (or per test) and pass it to whoever records.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 12.0)
REFUSAL_REASONS = ("no_hotkey", "unregistered", "no_validator_permit", "low_stake", "error", "body_too_large")
ERROR_KINDS = (
    "deadline",
    "cascade",
    "no_vote",
    "overloaded",
    "shutdown",
    "metagraph_sync",
    *(
        f"decode_{r}"
        for r in ("not_text", "too_large", "empty", "too_many_pixels", "bad_size", "corrupt", "unsupported_format")
    ),
)
"""Every `roadwork_errors_total{kind}` the miner records, exported at 0 from the start: a rate()
alert over a series that does not exist yet cannot fire on the first errors."""


class MinerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.latency = Histogram(
            "roadwork_request_latency_seconds",
            "Request latency, arrival to answer.",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.answers = Counter(
            "roadwork_answers_total", "Answers by the cascade level that decided.", ["exit_level"], registry=r
        )
        self.errors = Counter("roadwork_errors_total", "Requests that went wrong, by kind.", ["kind"], registry=r)
        self.refused = Counter("roadwork_refused_total", "Callers refused by the blacklist.", ["reason"], registry=r)
        self.in_flight = Gauge("roadwork_in_flight", "Requests inside the cascade.", registry=r)
        self.queue_depth = Gauge("roadwork_queue_depth", "Requests waiting for a cascade slot.", registry=r)
        self.ready = Gauge("roadwork_ready", "1 when models are warm and the axon serves.", registry=r)
        self.metagraph_synced = Gauge(
            "roadwork_metagraph_synced_timestamp", "Unix time of the last good metagraph sync.", registry=r
        )
        for reason in REFUSAL_REASONS:  # export zeros, so dashboards see the series before the first refusal
            self.refused.labels(reason=reason)
        for kind in ERROR_KINDS:
            self.errors.labels(kind=kind)
        self.answers.labels(exit_level="none")  # so the error-rate alert's denominator exists from the start

    def record_answer(self, exit_level: str | None, seconds: float, outcome: str = "ok") -> None:
        self.answers.labels(exit_level=exit_level or "none").inc()
        self.latency.labels(outcome=outcome).observe(seconds)

    def record_error(self, kind: str) -> None:
        self.errors.labels(kind=kind).inc()

    def record_refusal(self, reason: str) -> None:
        self.refused.labels(reason=reason).inc()

    def exposition(self) -> tuple[bytes, str]:
        """(body, content type) of the Prometheus text format."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample's current value (0 when absent); for tests and reports."""
        got = self.registry.get_sample_value(name, labels or {})
        return 0.0 if got is None else float(got)
