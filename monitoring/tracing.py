"""OpenTelemetry traces of cascade runs, in OpenInference conventions (what Arize Phoenix shows).

One trace per query::

    cascade            CHAIN  input = frame, output = pooled probability, exit level, deadline left
    ├─ level L0        CHAIN  pooled probability after the level, elapsed, deadline left
    │  └─ l0_head      TOOL   probability, weight, latency (a detector or validator)
    └─ level L3        CHAIN
       └─ vlm_fast     LLM    prompt and answer as input/output messages (VLM tiers)

Tracing is off unless someone builds a `CascadeTracer` (`roadwork eval --trace URL`, or
`tracing_provider(url)` in the miner's entrypoint). Nothing here reads the global tracer provider or
the current context: a `CascadeTracer` is built from an explicit `TracerProvider`, and each query's
`TracingObserver` gets its parent context as an argument (`parent=None` starts a new trace).

The cascade reports a level once its votes are in (`on_vote` then `on_level`), so level and voter
spans are written afterwards with their measured start and end times: a level starts `elapsed_ms`
before `on_level`, and its voters (which run concurrently) start with it and last `latency_ms`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cascade.types import AbstainCause, Frame, Level, Verdict, Vote

if TYPE_CHECKING:  # the opentelemetry imports stay lazy: `import roadwork.cli` must stay fast
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

INSTRUMENTATION_NAME = "roadwork.cascade"
VLM_LEVELS = (Level.L3, Level.L4, Level.L5)

# OpenInference attribute names (openinference-semantic-conventions), spelled out so that this
# module imports without the package; tests check them against `SpanAttributes`.
KIND = "openinference.span.kind"
INPUT_VALUE, INPUT_MIME = "input.value", "input.mime_type"
OUTPUT_VALUE, OUTPUT_MIME = "output.value", "output.mime_type"
LLM_MODEL = "llm.model_name"
LLM_IN, LLM_OUT = "llm.input_messages", "llm.output_messages"
METADATA = "metadata"
JSON_MIME = "application/json"

# Our own attributes (roadwork.*): what a reviewer filters on in Phoenix.
PROB, WEIGHT, LATENCY_MS = "roadwork.prob", "roadwork.weight", "roadwork.latency_ms"
LEVEL, EXIT_LEVEL, VOTER = "roadwork.level", "roadwork.exit_level", "roadwork.voter"
DEADLINE_LEFT_MS, ELAPSED_MS = "roadwork.deadline_left_ms", "roadwork.elapsed_ms"
ABSTAINED, REASON, BOXES = "roadwork.abstained", "roadwork.reason", "roadwork.boxes"
CAUSE = "roadwork.abstain_cause"
FRAME_ID, SOURCE = "roadwork.frame_id", "roadwork.source"
LABEL, CORRECT, TAGS = "roadwork.label", "roadwork.correct", "tag.tags"
MISTAKE_TAG = "mistake"
"""Where the label is known (eval, simulate), a wrong answer's trace carries this tag and
`roadwork.correct = false`: filter on either in Phoenix to see only the mistakes."""


class TracingConfig(BaseModel):
    """`tracing:` in a profile. Off unless `endpoint` is set; a `--trace URL` flag overrides it."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str | None = None
    """Phoenix server (or OTLP/HTTP collector) base URL, e.g. http://127.0.0.1:6006; None: no traces."""
    project: str = Field(default="roadwork", min_length=1)
    """Phoenix project the traces go to."""
    batch: bool = True
    """Send spans in batches from a background thread (False: one export per span, for tests)."""

    @field_validator("endpoint")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"tracing.endpoint must be an http(s) URL such as http://127.0.0.1:6006, got {v!r}")
        return v


def tracing_provider(endpoint: str, project: str = "roadwork", batch: bool = True) -> TracerProvider:
    """A TracerProvider that sends spans to a Phoenix server (or any OTLP/HTTP collector).

    `endpoint` is the server's base URL (`http://127.0.0.1:6006`) or its full OTLP path
    (`.../v1/traces`). The provider is NOT installed as the global one: pass it to `CascadeTracer`.
    Call `provider.shutdown()` (or `force_flush()`) before the process exits so batched spans go out.
    """
    from phoenix.otel import register  # lazy: only when tracing is on

    url = endpoint.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--trace wants an http(s) URL such as http://127.0.0.1:6006, got {endpoint!r}")
    if not url.endswith("/v1/traces"):
        url += "/v1/traces"
    return register(
        endpoint=url,
        project_name=project,
        batch=batch,
        protocol="http/protobuf",
        set_global_tracer_provider=False,
        verbose=False,
    )


class CascadeTracer:
    """Makes one `TracingObserver` per query from an explicit provider; holds no per-query state."""

    def __init__(self, provider: TracerProvider, name: str = INSTRUMENTATION_NAME) -> None:
        self.provider = provider
        self.tracer: Tracer = provider.get_tracer(name)

    def observer(
        self,
        parent: Context | None = None,
        query_id: str = "",
        metadata: Mapping[str, Any] | None = None,
        label: int | None = None,
    ) -> TracingObserver:
        """A fresh observer for one `cascade.run`; `parent=None` makes the cascade span a trace root;
        `label` (when known) marks a wrong answer's trace."""
        return TracingObserver(self.tracer, parent=parent, query_id=query_id, metadata=metadata, label=label)

    @classmethod
    def to_phoenix(cls, endpoint: str, project: str = "roadwork", batch: bool = True) -> CascadeTracer:
        """A tracer whose spans go to a Phoenix server at `endpoint` (see `tracing_provider`)."""
        return cls(tracing_provider(endpoint, project=project, batch=batch))

    @classmethod
    def from_config(cls, cfg: TracingConfig) -> CascadeTracer | None:
        """The tracer a profile asks for, or None when `tracing.endpoint` is unset."""
        return None if cfg.endpoint is None else cls.to_phoenix(cfg.endpoint, project=cfg.project, batch=cfg.batch)

    def observer_for(self, sample: Any) -> TracingObserver:
        """One observer per evaluated sample (`training.datasets.Sample`): its key, label and source
        become the trace's metadata, so Phoenix can filter on them."""
        return self.observer(
            query_id=sample.key,
            metadata={"key": sample.key, "label": sample.label, "source": sample.source},
            label=sample.label,
        )

    def flush(self, timeout_ms: int = 10_000) -> bool:
        return bool(self.provider.force_flush(timeout_ms))

    def close(self) -> None:
        """Send what is still batched and stop the provider."""
        self.provider.force_flush()
        self.provider.shutdown()


def context_from_headers(headers: Mapping[str, str]) -> Context:
    """The parent context carried by W3C `traceparent` headers (empty context when absent)."""
    from opentelemetry.context import Context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract(carrier=dict(headers), context=Context())


def _ns(monotonic_s: float, anchor_mono: float, anchor_ns: int) -> int:
    """Wall-clock nanoseconds of a monotonic instant, given one (monotonic, wall ns) pair."""
    return anchor_ns + int((monotonic_s - anchor_mono) * 1e9)


def _clean(value: Any) -> Any:
    """JSON-safe copy of evidence (numpy numbers and tuples become plain numbers and lists)."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


class TracingObserver:
    """A `CascadeObserver` that writes one query's spans. Build one per query; not reusable."""

    def __init__(
        self,
        tracer: Tracer,
        parent: Context | None = None,
        query_id: str = "",
        metadata: Mapping[str, Any] | None = None,
        label: int | None = None,
    ) -> None:
        self.tracer = tracer
        self.label = label
        self.parent = parent
        self.query_id = query_id
        self.metadata = dict(metadata or {})
        self.root: Span | None = None
        self._pending: list[Vote] = []
        self._anchor = (time.monotonic(), time.time_ns())
        self._start_mono = 0.0
        self._deadline_s = 0.0
        self._deadline_left_s: float | None = None

    # --- CascadeObserver -------------------------------------------------------------------
    def on_start(self, frame: Frame, deadline_s: float) -> None:
        from opentelemetry.context import Context

        if self.root is not None:
            raise RuntimeError("a TracingObserver traces one query; make a new one per cascade.run")
        self._start_mono, self._deadline_s = time.monotonic(), deadline_s
        width, height = frame.size
        frame_info = {
            "frame_id": frame.frame_id or self.query_id,
            "source": frame.source,
            "width": width,
            "height": height,
        }
        attrs = {
            KIND: "CHAIN",
            INPUT_VALUE: json.dumps(frame_info),
            INPUT_MIME: JSON_MIME,
            FRAME_ID: frame_info["frame_id"],
            SOURCE: frame.source,
            DEADLINE_LEFT_MS: deadline_s * 1000,
        }
        if self.metadata:
            attrs[METADATA] = json.dumps(_clean(self.metadata))
        # An explicit empty Context when there is no parent: never the ambient (global) one.
        self.root = self.tracer.start_span(
            "cascade", context=self.parent or Context(), attributes=attrs, start_time=self._wall_ns(self._start_mono)
        )

    def on_vote(self, vote: Vote) -> None:
        self._pending.append(vote)

    def on_level(self, level: Level, pooled: float | None, elapsed_ms: float, deadline_left_s: float) -> None:
        from opentelemetry import trace

        root = self._require_root()
        now = time.monotonic()
        start = now - elapsed_ms / 1000
        self._deadline_left_s = deadline_left_s
        attrs: dict[str, Any] = {
            KIND: "CHAIN",
            LEVEL: level.name,
            ELAPSED_MS: elapsed_ms,
            DEADLINE_LEFT_MS: deadline_left_s * 1000,
            INPUT_VALUE: json.dumps([v.voter for v in self._pending]),
        }
        if pooled is not None:
            attrs[PROB] = pooled
            attrs[OUTPUT_VALUE] = f"{pooled:.4f}"
        span = self.tracer.start_span(
            f"level {level.name}",
            context=trace.set_span_in_context(root),
            attributes=attrs,
            start_time=self._wall_ns(start),
        )
        ctx = trace.set_span_in_context(span)
        for vote in self._pending:
            self._vote_span(vote, ctx, start, now)
        self._pending = []
        span.end(end_time=self._wall_ns(now))

    def on_verdict(self, verdict: Verdict) -> None:
        from opentelemetry.trace import Status, StatusCode

        root = self._require_root()
        now = time.monotonic()
        left_s = self._deadline_s - (now - self._start_mono)
        exit_name = verdict.exit_level.name if verdict.exit_level is not None else "none"
        out = {
            "prob": round(verdict.prob, 6),
            "answer": verdict.label,
            "exit_level": exit_name,
            "answered": verdict.answered,
            "votes": len(verdict.votes),
            "skipped": list(verdict.skipped),
        }
        root.set_attributes(
            {
                PROB: verdict.prob,
                EXIT_LEVEL: exit_name,
                DEADLINE_LEFT_MS: left_s * 1000,
                OUTPUT_VALUE: json.dumps(out),
                OUTPUT_MIME: JSON_MIME,
                ELAPSED_MS: (now - self._start_mono) * 1000,
            }
        )
        if self.label is not None:
            correct = verdict.answered and verdict.label == self.label
            root.set_attributes(
                {LABEL: int(self.label), CORRECT: bool(correct), TAGS: [MISTAKE_TAG] if not correct else []}
            )
        if left_s < 0:
            root.set_status(Status(StatusCode.ERROR, f"answered {-left_s * 1000:.0f} ms after the deadline"))
        elif not verdict.answered:
            root.set_status(Status(StatusCode.ERROR, "no voter produced a probability"))
        root.end(end_time=self._wall_ns(now))

    # --- helpers ----------------------------------------------------------------------------
    def _wall_ns(self, monotonic_s: float) -> int:
        return _ns(monotonic_s, *self._anchor)

    def _require_root(self) -> Span:
        if self.root is None:
            raise RuntimeError("on_start was not called before this hook")
        return self.root

    def _vote_span(self, vote: Vote, ctx: Context, level_start: float, level_end: float) -> None:
        from opentelemetry.trace import Status, StatusCode

        end = min(level_start + vote.latency_ms / 1000, level_end)
        attrs = vote_attributes(vote)
        span = self.tracer.start_span(vote.voter, context=ctx, attributes=attrs, start_time=self._wall_ns(level_start))
        if vote.cause is AbstainCause.DEADLINE:
            span.add_event("deadline", {REASON: vote.reason})
        if vote.cause in (AbstainCause.ERROR, AbstainCause.BREAKER):
            span.set_status(Status(StatusCode.ERROR, vote.reason))
        span.end(end_time=self._wall_ns(end))


def vote_attributes(vote: Vote) -> dict[str, Any]:
    """Span attributes of one vote: LLM spans (prompt/answer messages) for VLM tiers, TOOL otherwise."""
    ev = vote.evidence or {}
    is_llm = vote.level in VLM_LEVELS or "prompt" in ev or "answer" in ev
    attrs: dict[str, Any] = {
        KIND: "LLM" if is_llm else "TOOL",
        VOTER: vote.voter,
        LEVEL: vote.level.name,
        WEIGHT: vote.weight,
        LATENCY_MS: vote.latency_ms,
        ABSTAINED: vote.abstained,
    }
    if vote.prob is not None:
        attrs[PROB] = vote.prob
    if vote.reason:
        attrs[REASON] = vote.reason
    if vote.cause is not None:
        attrs[CAUSE] = vote.cause.value
    if is_llm:
        attrs.update(_llm_attributes(ev))
    else:
        attrs[OUTPUT_VALUE] = "abstained: " + vote.reason if vote.prob is None else f"{vote.prob:.4f}"
    boxes = ev.get("boxes")
    if isinstance(boxes, list):
        attrs[BOXES] = len(boxes)
        if not is_llm:
            attrs[OUTPUT_VALUE] = json.dumps({"prob": vote.prob, "boxes": _clean(boxes)})
            attrs[OUTPUT_MIME] = JSON_MIME
    rest = {k: v for k, v in ev.items() if k not in ("prompt", "answer", "boxes", "model")}
    if rest:
        attrs[METADATA] = json.dumps(_clean(rest))
    return attrs


def _llm_attributes(ev: Mapping[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if ev.get("model"):
        attrs[LLM_MODEL] = str(ev["model"])
    prompt, answer = ev.get("prompt"), ev.get("answer")
    if prompt is not None:
        attrs[INPUT_VALUE] = str(prompt)
        attrs[f"{LLM_IN}.0.message.role"] = "user"
        attrs[f"{LLM_IN}.0.message.content"] = str(prompt)
    if answer is not None:
        attrs[OUTPUT_VALUE] = str(answer)
        attrs[f"{LLM_OUT}.0.message.role"] = "assistant"
        attrs[f"{LLM_OUT}.0.message.content"] = str(answer)
    return attrs
