"""`roadwork eval --trace`: one trace per evaluated image, and run.json for `roadwork review`."""

import json

import pytest
from typer.testing import CliRunner

pytest.importorskip("opentelemetry.sdk", reason="tracing needs the `trace` extra (opentelemetry-sdk)")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from monitoring.tracing import CascadeTracer
from roadwork.cli import app
from tests.conftest import FakeVoter
from tests.monitoring.helpers import make_cascade
from training.datasets import load_dataset
from training.evaluate import evaluate
from training.sample import make_sample
from training.transforms import make_transform


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    return make_sample(tmp_path_factory.mktemp("sample"), 4, 0)


def memory_tracer() -> tuple[InMemorySpanExporter, CascadeTracer]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, CascadeTracer(provider)


def test_evaluate_traces_each_image_and_writes_run_json(tmp_path, sample_dir):
    exporter, tracer = memory_tracer()
    ds = load_dataset(sample_dir)
    with make_cascade([FakeVoter("l0_head", "L0", 0.7)]) as cascade:
        evaluate(
            cascade,
            ds,
            make_transform("validator", 3),
            "validator",
            tmp_path / "run",
            show_progress=False,
            observer_for=tracer.observer_for,
            run_info={"seed": 3, "split": None},
        )
    roots = [s for s in exporter.get_finished_spans() if s.name == "cascade"]
    assert len(roots) == len(ds) == 4 and len({s.context.trace_id for s in roots}) == 4
    meta = {json.loads(s.attributes["metadata"])["key"]: json.loads(s.attributes["metadata"]) for s in roots}
    assert {k: m["label"] for k, m in meta.items()} == {s.key: s.label for s in ds}
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run == {
        "data_root": str(sample_dir.resolve()),
        "transform": "validator",
        "profile": "unnamed",
        "seed": 3,
        "split": None,
    }


def test_eval_rejects_a_trace_url_without_scheme(sample_dir, tmp_path):
    result = CliRunner().invoke(
        app, ["eval", "--data", str(sample_dir), "--out", str(tmp_path / "r"), "--trace", "127.0.0.1:6006"]
    )
    assert result.exit_code == 2 and "http://127.0.0.1:6006" in result.output and "'127.0.0.1:6006'" in result.output


def test_a_wrong_answers_trace_is_tagged_and_the_report_links_the_project(tmp_path, sample_dir):
    exporter, tracer = memory_tracer()
    ds = load_dataset(sample_dir)
    with make_cascade([FakeVoter("l0_head", "L0", 0.9)]) as cascade:  # calls everything roadwork
        evaluate(
            cascade,
            ds,
            make_transform("v0.2", 3),
            "v0.2",
            tmp_path / "run",
            show_progress=False,
            observer_for=tracer.observer_for,
            run_info={
                "seed": 3,
                "split": None,
                "traces": {"endpoint": "http://127.0.0.1:6006", "project": "roadwork-eval"},
            },
        )
    roots = {
        json.loads(s.attributes["metadata"])["key"]: s for s in exporter.get_finished_spans() if s.name == "cascade"
    }
    for sample in ds:
        attrs = roots[sample.key].attributes
        assert attrs["roadwork.label"] == sample.label and attrs["roadwork.correct"] == (sample.label == 1)
        assert list(attrs["tag.tags"]) == ([] if sample.label == 1 else ["mistake"])
    report = (tmp_path / "run" / "report.md").read_text()
    assert "http://127.0.0.1:6006" in report and "roadwork.correct" in report


def test_a_testnet_label_tags_the_miners_wrong_answers_without_changing_them(tmp_path):
    """Testnet validators send the truth in testnet_label: the miner's trace marks a wrong answer
    (as `simulate --trace` does for its challenges), and the prediction ignores the label."""
    pytest.importorskip("bittensor")
    import asyncio

    from miner.config import MinerConfig
    from miner.rig import LocalRig
    from tests.miner.helpers import encode

    exporter, tracer = memory_tracer()
    payload = encode(size=(224, 224))

    async def ask(rig):
        try:
            return [await rig.query(payload, label=label) for label in (1, 0, -1)]
        finally:
            await rig.aclose()

    with (
        make_cascade([FakeVoter("l0_head", "L0", 0.9)]) as cascade,
        LocalRig(cascade, MinerConfig(), tracer=tracer) as rig,
    ):  # calls everything roadwork
        results = asyncio.run(ask(rig))
    tracer.close()
    assert [r.prediction for r in results] == [pytest.approx(0.9)] * 3  # the label never reaches the answer
    roots = sorted((s for s in exporter.get_finished_spans() if s.name == "cascade"), key=lambda s: s.start_time)
    assert [s.attributes.get("roadwork.correct") for s in roots] == [True, False, None]
    assert "mistake" in roots[1].attributes["tag.tags"] and "mistake" not in roots[0].attributes.get("tag.tags", ())
