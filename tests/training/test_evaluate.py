"""The eval report a person reads: where the data came from, the confusion matrix, the worst mistakes."""

import json

from tests.conftest import FakeVoter
from tests.monitoring.helpers import make_cascade
from training.datasets import load_folder
from training.evaluate import evaluate
from training.sample import make_sample
from training.transforms import make_transform


def test_report_names_the_data_shows_the_confusion_matrix_and_the_worst_mistakes(tmp_path):
    # given a cascade that calls everything roadwork, on a sample with both labels
    ds = load_folder(make_sample(tmp_path / "s", n=24)).select(split="dev")
    with make_cascade([FakeVoter("l0", "L0", 0.9)]) as cascade:
        result = evaluate(
            cascade,
            ds,
            make_transform("v0.2", 0),
            "v0.2",
            tmp_path / "run",
            show_progress=False,
            run_info={"split": "dev", "seed": 0},
        )
    report = (tmp_path / "run" / "report.md").read_text()
    # then the report says what was scored and how it went wrong
    assert f"data: `{ds.root.resolve()}`, split `dev`" in report and "**synthetic sample**" in report
    assert "| no roadwork | 0 | 6 |" in report and "| roadwork | 0 | 6 |" in report
    worst = json.loads((tmp_path / "run" / "metrics.json").read_text())["worst_mistakes"]
    assert len(worst) == 6 and all(w["label"] == 0 and w["prob"] == 0.9 for w in worst)
    assert all((tmp_path / "run" / w["thumbnail"]).stat().st_size > 0 for w in worst)
    assert f"roadwork review {tmp_path / 'run'}" in report and result.metrics["confusion"]["fp"] == 6


def test_a_query_nobody_answered_is_scored_wrong_like_the_minus_one_the_miner_sends(tmp_path):
    # given a cascade whose only voter fails on every frame (the verdict's prob is the 0.5 placeholder)
    ds = load_folder(make_sample(tmp_path / "s", n=24)).select(split="dev")
    with make_cascade([FakeVoter("l0", "L0", error=RuntimeError("model gone"))]) as cascade:
        result = evaluate(cascade, ds, make_transform("full", 0), "full", tmp_path / "run", show_progress=False)
    # then no negative passes as a correct "no roadwork": every query counts against the miner
    assert result.metrics["unanswered"] == 12
    assert result.metrics["accuracy"] == 0.0 and result.metrics["confusion"]["tn"] == 0
    assert (
        "unanswered (scored wrong, as the miner's -1 earns nothing): 12" in (tmp_path / "run" / "report.md").read_text()
    )
