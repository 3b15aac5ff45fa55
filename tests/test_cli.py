"""End to end through the `roadwork` command, as a user runs it."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from roadwork.cli import app
from tests.conftest import REPO

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    invoke("make-sample", "--out", str(out), "--n", "24")
    return out


def test_train_fit_eval_bench_on_a_made_sample(sample, tmp_path):
    # given a head trained on the sample's train split and consensus fitted on its OOF run
    invoke("train", "head", "--data", str(sample), "--out", str(tmp_path / "head.npz"), "--views", "1")
    manifest = json.loads((tmp_path / "head.manifest.json").read_text())
    assert manifest["n_images"] == 12 and len(manifest["data_hash"]) == 64
    invoke("fit", "--run", str(tmp_path / "head.oof"), "--out", str(tmp_path / "consensus.json"))
    # the cut-off stays at 0.5 unless another gains more than 0.01 MCC on the OOF rows (the default)
    assert json.loads((tmp_path / "consensus.json").read_text())["cut_off_margin"] == 0.01
    profile = yaml.safe_load((REPO / "configs" / "cpu.yaml").read_text())
    profile["voters"] = profile["voters"][:1]  # the ImageNet backbone that `train head` embeds with
    profile["voters"][0]["params"] = {"backbone": {"kind": "mobilenetv2-deepsort"}, "head": str(tmp_path / "head.npz")}
    profile["consensus"]["weights"] = str(tmp_path / "consensus.json")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(profile))
    # when we evaluate on the dev split and benchmark
    invoke(
        "eval",
        "--data",
        str(sample),
        "--split",
        "dev",
        "--config",
        str(tmp_path / "p.yaml"),
        "--out",
        str(tmp_path / "run"),
    )
    invoke("bench", "--config", str(tmp_path / "p.yaml"), "--images", "5", "--out", str(tmp_path / "b.json"))
    # then the run folder holds what the report promises
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n"] == 12 and {"mcc", "accuracy", "auroc", "ece", "subnet_reward"} <= set(metrics)
    rows = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and all(r["votes"][0]["voter"] == "l0_head" for r in rows)
    assert all((run / f).stat().st_size > 0 for f in ("roc.png", "reliability.png", "latency.png", "report.md"))
    bench = json.loads((tmp_path / "b.json").read_text())
    assert bench["images"] == 5 and bench["latency_ms"]["p95"] >= bench["latency_ms"]["p50"] > 0


def test_eval_reports_bad_rows_by_name_and_goes_on(sample, tmp_path):
    labels = (sample / "labels.csv").read_text() + "images/ghost.jpg,1,synthetic,dev,g\n"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "images").symlink_to(sample / "images")
    (bad / "labels.csv").write_text(labels)
    result = invoke("eval", "--data", str(bad), "--split", "dev", "--out", str(tmp_path / "run"))
    assert "images/ghost.jpg" in result.output
    assert "images/ghost.jpg: file not found" in (tmp_path / "run" / "problems.txt").read_text()


def test_refuses_to_train_on_dev(sample, tmp_path):
    result = runner.invoke(
        app, ["train", "head", "--data", str(sample), "--split", "dev", "--out", str(tmp_path / "h.npz")]
    )
    assert result.exit_code == 2 and "dev" in result.output


def test_train_head_says_where_it_embeds_and_refuses_a_gpu_that_is_not_there(sample, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on this CPU-only machine
    args = ["train", "head", "--data", str(sample), "--out", str(tmp_path / "h.npz"), "--views", "1"]
    result = runner.invoke(app, [*args, "--device", "cuda:0"])
    assert result.exit_code == 2 and "--device cuda:0: torch sees no CUDA device" in result.output
    assert not (tmp_path / "h.npz").exists()
    # auto falls to the CPU here, and says so
    assert "embedding on cpu" in invoke(*args).output


def regrouped(sample: Path, folder: Path, groups: int) -> Path:
    """The sample's images, its train rows put in `groups` groups."""
    folder.mkdir()
    (folder / "images").symlink_to(sample / "images")
    lines = (sample / "labels.csv").read_text().splitlines()
    rows = [line.split(",") for line in lines[1:]]
    out = [lines[0]] + [",".join([*r[:4], f"g{i % groups}"]) for i, r in enumerate(rows)]
    (folder / "labels.csv").write_text("\n".join(out) + "\n")
    return folder


def test_train_head_holds_out_as_many_groups_as_there_are_and_refuses_one(sample, tmp_path):
    # three groups: three folds (not the five a larger dataset gets), and the output says so
    three = regrouped(sample, tmp_path / "three", 3)
    args = ["train", "head", "--views", "1", "--features-cache", "none"]
    result = invoke(*args, "--data", str(three), "--out", str(tmp_path / "a.npz"))
    assert "3-fold group-CV" in result.output
    assert json.loads((tmp_path / "a.manifest.json").read_text())["cv"]["folds"] == 3
    # one group: no out-of-fold run can be made, refused with the reason instead of sklearn's traceback
    one = regrouped(sample, tmp_path / "one", 1)
    refused = runner.invoke(app, [*args, "--data", str(one), "--out", str(tmp_path / "b.npz")])
    assert refused.exit_code == 2 and "in 1 group(s)" in refused.output and "at least two groups" in refused.output


def test_bad_profile_fails_with_the_key(tmp_path, sample):
    (tmp_path / "p.yaml").write_text("voters:\n - {name: a, kind: nope, level: L0}\n")
    result = runner.invoke(app, ["eval", "--data", str(sample), "--config", str(tmp_path / "p.yaml")])
    assert result.exit_code == 2 and "unknown voter kind 'nope'" in result.output


@pytest.mark.slow
def test_committed_embedded_default_on_real_dev_split(shared_data, tmp_path):
    """The committed L0 voters must stay useful on real dev photographs, in every regime."""
    invoke(
        "eval",
        "--data",
        str(shared_data),
        "--split",
        "dev",
        "--config",
        str(REPO / "configs" / "cpu.yaml"),
        "--regime",
        "v0.2,full",
        "--out",
        str(tmp_path / "run"),
    )
    for regime in ("v0.2", "full"):
        m = json.loads((tmp_path / "run" / regime / "metrics.json").read_text())
        assert m["n"] == 423 and m["skipped_inputs"] == 0
        # measured when committed: v0.2 MCC 0.77 / AUROC 0.95, full 0.85 / 0.97 (README)
        assert m["mcc"] > 0.7 and m["auroc"] > 0.92, (regime, m["mcc"], m["auroc"])


def test_plan_prints_table_and_refuses_over_commitment(tmp_path):
    profile = {
        "name": "two-gpus",
        "voters": [
            {
                "name": "yolo",
                "kind": "backbone-head",
                "level": "L1",
                "device": "cuda:0",
                "params": {"head": "h.npz"},
                "dtype": "float16",
                "memory": {"params_m": 57},
            }
        ],
        "placement": {
            "gpus": [{"id": "cuda:0", "memory_gib": 79.1}, {"id": "cuda:1", "memory_gib": 79.1}],
            "vllm_servers": [{"name": "vlm_power", "gpus": ["cuda:1"], "memory_fraction": 0.6}],
        },
    }
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(profile))
    (tmp_path / "h.npz").touch()  # plan checks that the trained files it names are there
    result = invoke("plan", str(tmp_path / "ok.yaml"))
    assert "vlm_power" in result.output and "plan fits" in result.output
    profile["placement"]["vllm_servers"].append({"name": "vlm_big", "gpus": ["cuda:1"], "memory_fraction": 0.5})
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(profile))
    result = runner.invoke(app, ["plan", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 2
    assert "cuda:1 is over-committed" in result.output and "vlm_big" in result.output


def test_plan_refuses_a_misspelt_kind_or_param_naming_the_key(tmp_path):
    # given a profile with a kind that does not exist and a typo in a detector's params
    profile = {
        "name": "typos",
        "voters": [
            {"name": "l0", "kind": "backbone-head", "level": "L0", "params": {"head": "h.npz"}},
            {"name": "det", "kind": "rf-detr", "level": "L1"},
            {"name": "yolo", "kind": "ultralytics", "level": "L1", "params": {"weights": "yolo11n.pt", "hallf": True}},
            {
                "name": "wbf",
                "kind": "wbf-ensemble",
                "level": "L1",
                "enabled": False,
                "params": {
                    "members": [
                        {"name": "m1", "kind": "ultralytics", "params": {"weights": "a.pt"}},
                        {"name": "m2", "kind": "ultralytics", "params": {"weights": "b.pt", "imgz": 640}},
                    ]
                },
            },
        ],
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(profile))
    # when it is planned, then it is refused before any model loads, each bad key on its own line
    result = runner.invoke(app, ["plan", str(tmp_path / "p.yaml")])
    assert result.exit_code == 2 and "plan fits" not in result.output
    assert "voters.1.kind: unknown voter kind 'rf-detr'" in result.output and "rfdetr" in result.output
    assert "voters.2.params.hallf" in result.output
    assert "voters.3.params.members.1.params.imgz" in result.output  # a disabled voter's typo shows too


def test_plan_with_costs_shows_each_cards_time_and_names_a_model_to_move(tmp_path):
    # given two cards, the heavy models on cuda:0, and a bench JSON with their time in the workers
    def v(name, device):
        return {
            "name": name,
            "kind": "backbone-head",
            "level": "L1",
            "device": device,
            "params": {"head": "h.npz"},
            "dtype": "float16",
            "memory": {"params_m": 50},
        }

    profile = {
        "name": "two-gpus",
        "voters": [v("sam", "cuda:0"), v("owlv2", "cuda:0"), v("gdino", "cuda:1")],
        "placement": {"gpus": [{"id": "cuda:0", "memory_gib": 79.1}, {"id": "cuda:1", "memory_gib": 79.1}]},
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(profile))
    bench = {
        "voters": {
            "sam": {"native": {"ms_per_image": 99.0}},
            "owlv2": {"native": {"ms_per_image": 99.0}},
            "gdino": {"native": {"ms_per_image": 99.0}},
        },
        "concurrency": {
            "64": {"frames": 64, "worker_ms_per_image": {"sam": 30.0, "owlv2": 12.0, "gdino": 20.0}},
            "8": {"frames": 8, "worker_ms_per_image": {"sam": 1.0, "owlv2": 1.0, "gdino": 1.0}},
        },
    }
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    (tmp_path / "h.npz").touch()  # plan checks that the trained files it names are there
    # when the plan is asked with --costs
    result = invoke("plan", str(tmp_path / "p.yaml"), "--costs", str(tmp_path / "bench.json"))
    # then the largest run's worker times are added up per card (42 vs 20) and owlv2 is named
    assert "42.0" in result.output and "20.0" in result.output
    assert "Moving owlv2 (12 ms) to cuda:1" in result.output.replace("\n", " ")
    # and a file that is not a bench JSON fails with a message, not a traceback
    (tmp_path / "junk.json").write_text("[1, 2")
    bad = runner.invoke(app, ["plan", str(tmp_path / "p.yaml"), "--costs", str(tmp_path / "junk.json")])
    assert bad.exit_code == 2 and "not a `roadwork bench --gpu` result" in bad.output
    # and one whose figures are not numbers names the key
    (tmp_path / "junk.json").write_text(json.dumps({"voters": {"sam": {"native": {"ms_per_image": "fast"}}}}))
    bad = runner.invoke(app, ["plan", str(tmp_path / "p.yaml"), "--costs", str(tmp_path / "junk.json")])
    assert bad.exit_code == 2 and "voters.sam.native.ms_per_image" in bad.output.replace("\n", "")


def test_eval_without_split_scores_the_held_out_rows_and_says_so(sample, tmp_path):
    result = invoke("eval", "--data", str(sample), "--out", str(tmp_path / "run"))
    assert "scoring the held-out 'dev' rows only" in result.output
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["n"] == 12
    invoke("eval", "--data", str(sample), "--split", "all", "--out", str(tmp_path / "all"))
    assert json.loads((tmp_path / "all" / "metrics.json").read_text())["n"] == 24


def test_plan_says_where_an_old_precision_key_went(tmp_path):
    profile = {
        "name": "old",
        "voters": [
            {"name": "yolo", "kind": "ultralytics", "level": "L1", "params": {"weights": "yolo11n.pt", "half": True}}
        ],
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(profile))
    result = runner.invoke(app, ["plan", str(tmp_path / "p.yaml")])
    assert result.exit_code == 2 and "voters.0.params.half" in result.output and "voters[].dtype" in result.output
