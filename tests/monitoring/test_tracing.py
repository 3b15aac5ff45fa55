import asyncio
import json

import pytest

pytest.importorskip("opentelemetry.sdk", reason="tracing needs the `trace` extra (opentelemetry-sdk)")

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from cascade.budget import Deadline
from monitoring import tracing as tr
from monitoring.tracing import CascadeTracer, context_from_headers, tracing_provider
from tests.monitoring.helpers import BOXES, make_cascade, standard_voters


@pytest.fixture
def traced():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield CascadeTracer(provider), exporter
    provider.shutdown()


def run(cascade, frame, observer, seconds=2.0):
    return asyncio.run(cascade.run(frame, Deadline.after(seconds), observer=observer))


def by_name(spans):
    return {s.name: s for s in spans}


def test_one_trace_per_query_with_level_and_voter_spans(traced, frame):
    tracer, exporter = traced
    # given an unsure L0, an L1 with a box detector and a failing voter, and a VLM at L3
    with make_cascade(standard_voters(), bands={"L0": (0.1, 0.9), "L1": (0.05, 0.95)}) as cascade:
        # when two queries run
        verdicts = [run(cascade, frame, tracer.observer(query_id=f"q{i}")) for i in range(2)]
    spans = exporter.get_finished_spans()
    # then each query is its own trace
    assert len({s.context.trace_id for s in spans}) == 2
    first = [s for s in spans if s.context.trace_id == spans[0].context.trace_id]
    names = by_name(first)
    assert set(names) == {"cascade", "level L0", "level L1", "level L3", "l0_head", "yolo", "broken", "vlm_fast"}
    root = names["cascade"]
    assert root.parent is None
    # levels hang under the cascade, voters under their level
    assert all(names[f"level {lv}"].parent.span_id == root.context.span_id for lv in ("L0", "L1", "L3"))
    assert names["yolo"].parent.span_id == names["level L1"].context.span_id
    assert names["vlm_fast"].parent.span_id == names["level L3"].context.span_id
    # the root carries the verdict
    assert root.attributes[tr.KIND] == "CHAIN"
    assert root.attributes[tr.PROB] == pytest.approx(verdicts[0].prob)
    assert root.attributes[tr.EXIT_LEVEL] == verdicts[0].exit_level.name == "L3"
    assert 0 < root.attributes[tr.DEADLINE_LEFT_MS] < 2000
    assert json.loads(root.attributes[tr.OUTPUT_VALUE])["answer"] == verdicts[0].label


def test_voter_spans_carry_probability_weight_latency_and_evidence(traced, frame):
    tracer, exporter = traced
    with make_cascade(standard_voters()) as cascade:
        run(cascade, frame, tracer.observer())
    names = by_name(exporter.get_finished_spans())
    yolo, vlm, broken = names["yolo"], names["vlm_fast"], names["broken"]
    # a detector is a TOOL span whose output lists its boxes
    assert yolo.attributes[tr.KIND] == "TOOL"
    assert yolo.attributes[tr.PROB] == pytest.approx(0.8)
    assert yolo.attributes[tr.WEIGHT] == pytest.approx(1.0) and yolo.attributes[tr.LATENCY_MS] >= 0
    assert yolo.attributes[tr.BOXES] == 2
    assert json.loads(yolo.attributes[tr.OUTPUT_VALUE])["boxes"] == BOXES
    # a VLM tier is an LLM span with the prompt and answer as messages
    assert vlm.attributes[tr.KIND] == "LLM"
    assert vlm.attributes["llm.input_messages.0.message.content"] == "Is there roadwork? Answer yes or no."
    assert vlm.attributes["llm.output_messages.0.message.content"] == "yes"
    assert vlm.attributes[tr.LLM_MODEL] == "qwen-vl-tiny"
    # a failing voter abstains: its span is an error with the reason
    assert broken.attributes[tr.ABSTAINED] is True
    assert broken.status.status_code is StatusCode.ERROR and "CUDA out of memory" in broken.status.description
    # span times nest: a voter lies inside its level, a level inside the cascade
    level, root = names["level L1"], names["cascade"]
    assert root.start_time <= level.start_time <= yolo.start_time <= yolo.end_time <= level.end_time <= root.end_time


def test_vote_without_evidence_still_traces(traced, frame):
    tracer, exporter = traced
    with make_cascade(standard_voters()[:1]) as cascade:
        run(cascade, frame, tracer.observer())
    span = by_name(exporter.get_finished_spans())["l0_head"]
    assert span.attributes[tr.KIND] == "TOOL" and tr.BOXES not in span.attributes
    assert span.attributes[tr.OUTPUT_VALUE] == "0.5500"


def test_parent_context_is_taken_from_the_argument_not_from_globals(traced, frame):
    tracer, exporter = traced
    # given an ambient span that is current in this thread, and an explicit parent from headers
    ambient_provider = TracerProvider()
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with ambient_provider.get_tracer("other").start_as_current_span("ambient"):
        with make_cascade(standard_voters()[:1]) as cascade:
            run(cascade, frame, tracer.observer(parent=context_from_headers(headers)))
            run(cascade, frame, tracer.observer())
    explicit, fresh = [s for s in exporter.get_finished_spans() if s.name == "cascade"]
    # then the first joins the caller's trace, the second starts its own, neither joins the ambient span
    assert format(explicit.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(explicit.parent.span_id, "016x") == "b7ad6b7169203331"
    assert fresh.parent is None
    assert trace.get_tracer_provider() is not tracer.provider  # nothing was installed globally


def test_deadline_miss_marks_the_trace(traced, frame):
    tracer, exporter = traced
    with make_cascade(standard_voters()[:1]) as cascade:
        obs = tracer.observer()
        # a deadline already gone: the cascade skips everything; the verdict is late and unanswered
        run(cascade, frame, obs, seconds=0.0)
    root = by_name(exporter.get_finished_spans())["cascade"]
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes[tr.DEADLINE_LEFT_MS] <= 0 and root.attributes[tr.EXIT_LEVEL] == "none"


def test_an_observer_traces_one_query_only(traced, frame):
    tracer, _ = traced
    obs = tracer.observer()
    with make_cascade(standard_voters()[:1]) as cascade:
        run(cascade, frame, obs)
        with pytest.raises(RuntimeError, match="one query"):
            run(cascade, frame, obs)


@pytest.mark.parametrize(
    "endpoint, ok",
    [
        ("http://127.0.0.1:6006", True),
        ("http://127.0.0.1:6006/v1/traces", True),
        ("127.0.0.1:6006", False),  # no scheme
    ],
)
def test_tracing_provider_checks_the_url(endpoint, ok):
    pytest.importorskip("phoenix.otel", reason="needs arize-phoenix-otel (extra `trace`)")
    if not ok:
        with pytest.raises(ValueError, match="http"):
            tracing_provider(endpoint)
        return
    provider = tracing_provider(endpoint, project="t", batch=False)
    try:
        assert trace.get_tracer_provider() is not provider
    finally:
        provider.shutdown()


def test_attribute_names_match_openinference():
    semconv = pytest.importorskip("openinference.semconv.trace")
    sa = semconv.SpanAttributes
    assert (tr.KIND, tr.INPUT_VALUE, tr.OUTPUT_VALUE, tr.LLM_MODEL, tr.LLM_IN, tr.LLM_OUT, tr.METADATA) == (
        sa.OPENINFERENCE_SPAN_KIND,
        sa.INPUT_VALUE,
        sa.OUTPUT_VALUE,
        sa.LLM_MODEL_NAME,
        sa.LLM_INPUT_MESSAGES,
        sa.LLM_OUTPUT_MESSAGES,
        sa.METADATA,
    )
    kinds = {k.value for k in semconv.OpenInferenceSpanKindValues}
    assert {"CHAIN", "LLM", "TOOL"} <= kinds


def test_tracing_is_off_unless_the_profile_names_an_endpoint():
    from pydantic import ValidationError

    from miner.profile import Profile  # the deployment profile holds `tracing`; cascade/ does not
    from monitoring.tracing import TracingConfig

    voters = [{"name": "a", "kind": "fake", "level": "L0"}]
    assert Profile.model_validate({"voters": voters}).tracing.endpoint is None
    assert CascadeTracer.from_config(TracingConfig()) is None
    with pytest.raises(ValidationError, match="tracing.endpoint must be an http"):
        Profile.model_validate({"voters": voters, "tracing": {"endpoint": "127.0.0.1:6006"}})
    with pytest.raises(ValidationError, match="extra"):
        Profile.model_validate({"voters": voters, "tracing": {"url": "http://x"}})


def test_serve_and_simulate_trace_where_the_profile_says_unless_a_flag_overrides_it():
    # `roadwork eval` / `serve` / `simulate` build their tracer from --trace, else from the profile's section
    from miner.cli import tracer_for
    from monitoring.tracing import TracingConfig

    assert tracer_for(None, TracingConfig()) is None  # no flag, no endpoint: no traces
    from_profile = tracer_for(None, TracingConfig(endpoint="http://127.0.0.1:9", project="p", batch=False))
    from_flag = tracer_for("http://127.0.0.1:9", TracingConfig())
    try:
        assert isinstance(from_profile, CascadeTracer) and isinstance(from_flag, CascadeTracer)
    finally:
        for tracer in (from_profile, from_flag):
            if tracer is not None:
                tracer.provider.shutdown()
