"""The hard-example loop end to end: train -> review the training OOF mistakes -> export -> fix a label
-> import -> retrain on the corrected labels -> evaluate both models -> one report comparing them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.test_cli import invoke
from tests.training.test_review import review_env, run_review  # noqa: F401 (review_env is a fixture)
from training.sample import make_sample


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def profile_for(head: Path, out: Path) -> Path:
    p = yaml.safe_load((REPO / "configs" / "cpu.yaml").read_text())
    p["voters"] = [
        {
            "name": "l0_head",
            "kind": "backbone-head",
            "level": "L0",
            "device": "cpu",
            "batch": 8,
            "params": {"backbone": {"kind": "mobilenetv2-deepsort"}, "head": str(head)},
        }
    ]
    p.pop("consensus", None)
    out.write_text(yaml.safe_dump(p))
    return out


@pytest.mark.slow
def test_review_relabel_retrain_and_compare(tmp_path, review_env):  # noqa: F811
    python, env = review_env
    # given a dataset where one training image carries the wrong label
    data = make_sample(tmp_path / "data", n=24)
    table = rows(data / "labels.csv")
    wrong = next(r for r in table if r["split"] == "train" and r["label"] == "1")
    wrong["label"] = "0"
    with open(data / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    # and model A trained on it, with its out-of-fold votes on the training rows
    invoke("train", "head", "--data", str(data), "--out", str(tmp_path / "a" / "head.npz"))
    oof = tmp_path / "a" / "head.oof"
    assert any(json.loads(x)["key"] == wrong["path"] for x in (oof / "predictions.jsonl").read_text().splitlines())
    # when the training mistakes are reviewed and the hardest exported for labelling
    done = run_review(
        python, env, oof, "--data", data, "--name", "loop", "--top", "12", "--export", tmp_path / "relabel", "--no-app"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    exported = rows(tmp_path / "relabel" / "labels.csv")
    assert wrong["path"] in {r["key"] for r in exported}, "the wrong label is among the hardest training rows"
    # and the labeller puts the true label back
    for r in exported:
        if r["key"] == wrong["path"]:
            r["label"] = "1"
    with open(tmp_path / "relabel" / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(exported[0]))
        w.writeheader()
        w.writerows(exported)
    # and the corrections come back as labels laid over the data's own
    fixed = tmp_path / "labels-fixed.csv"
    back = invoke("review", str(oof), "--data", str(data), "--import", str(tmp_path / "relabel"), "--out", str(fixed))
    assert "1 label(s) changed" in back.output and "--labels" in back.output
    assert rows(data / "labels.csv") == table, "the dataset itself is never rewritten"
    # and model B is trained with them
    out = invoke(
        "train", "head", "--data", str(data), "--labels", str(fixed), "--out", str(tmp_path / "b" / "head.npz")
    )
    assert "1 label(s) differ" in out.output
    a_hash = json.loads((tmp_path / "a" / "head.manifest.json").read_text())["data_hash"]
    b_hash = json.loads((tmp_path / "b" / "head.manifest.json").read_text())["data_hash"]
    assert a_hash != b_hash, "the model records that it saw other labels"
    # then both models score the same dev rows, and one report sets them side by side
    for name in ("a", "b"):
        invoke(
            "eval",
            "--data",
            str(data),
            "--split",
            "dev",
            "--config",
            str(profile_for(tmp_path / name / "head.npz", tmp_path / f"{name}.yaml")),
            "--regime",
            "full",
            "--out",
            str(tmp_path / f"run-{name}"),
        )
    report = invoke(
        "compare", f"before={tmp_path / 'run-a'}", f"after={tmp_path / 'run-b'}", "--out", str(tmp_path / "compare")
    )
    text = (tmp_path / "compare" / "compare.md").read_text()
    assert "| | before | after |" in text and "| MCC |" in text and "| synthetic |" in text
    assert "## `after` against `before`:" in text and "compare.md" in report.output
    metrics = json.loads((tmp_path / "compare" / "compare.json").read_text())
    assert metrics["before"]["n"] == metrics["after"]["n"] == 12


def test_labels_of_another_dataset_are_refused_with_the_row(tmp_path):
    data = make_sample(tmp_path / "data", n=8)
    (tmp_path / "other.csv").write_text("path,label\nimages/not_here.jpg,1\n")
    from typer.testing import CliRunner

    from roadwork.cli import app

    result = CliRunner().invoke(app, ["train", "head", "--data", str(data), "--labels", str(tmp_path / "other.csv")])
    assert result.exit_code != 0 and "other.csv:2" in result.output and "not_here.jpg" in result.output


def test_a_labels_file_given_as_data_says_to_use_labels(tmp_path):
    data = make_sample(tmp_path / "data", n=8)
    from typer.testing import CliRunner

    from roadwork.cli import app

    result = CliRunner().invoke(app, ["train", "head", "--data", str(data / "labels.csv")])
    assert result.exit_code != 0 and "--labels" in result.output
