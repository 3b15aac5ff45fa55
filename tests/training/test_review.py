"""`roadwork review`: scoring and tagging, reading runs, CSV corrections; FiftyOne + App in .venv-review."""

import csv
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roadwork.cli import app
from tests.training.review_fixtures import ROWS, make_data, make_run
from training.review import hardness, read_run, tags_for
from training.review_cli import REVIEW_PYTHON_ENV, review_python
from training.review_labels import import_labels

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "label, prob, voters, low, high",
    [
        (1, 0.99, [0.99], 0.0, 0.02),  # sure and right: easy
        (1, 0.01, [0.01], 4.5, 4.7),  # sure and wrong: hard (-ln 0.01)
        (0, 0.01, [0.01], 0.0, 0.02),
        (1, 0.9, [0.5, 1.0], 0.35, 0.36),  # right, but voters disagree: std 0.25 added
    ],
)
def test_hardness(label, prob, voters, low, high):
    assert low <= hardness(label, prob, voters) <= high


@pytest.mark.parametrize(
    "label, prob, tags",
    [
        (0, 0.7, ["false_positive"]),
        (1, 0.5, ["false_negative", "uncertain"]),  # the subnet rounds 0.5 down to 0
        (1, 0.9, []),
        (0, 0.45, ["uncertain"]),
        (0, 0.5, ["uncertain"]),
    ],
)
def test_tags(label, prob, tags):
    assert tags_for(label, prob, uncertain_margin=0.15) == tags


@pytest.fixture
def data(tmp_path):
    return make_data(tmp_path / "data")


def test_read_run_takes_the_data_root_from_run_json_or_the_flag(tmp_path, data):
    info, rows = read_run(make_run(tmp_path / "run", data))
    assert info.data_root == data and info.transform == "none" and len(rows) == len(ROWS)
    bare = make_run(tmp_path / "bare", None)
    with pytest.raises(FileNotFoundError, match="--data DIR"):
        read_run(bare)
    assert read_run(bare, data=data)[0].data_root == data
    with pytest.raises(FileNotFoundError, match="roadwork eval"):
        read_run(tmp_path / "nothing")


def write_export(folder: Path, changes: dict[str, int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "key"])
        for key, label, *_ in ROWS[:3]:
            w.writerow([f"images/{key.replace('/', '__')}", changes.get(key, label), key])
    return folder


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {r["path"]: r for r in csv.DictReader(f)}


def test_import_writes_corrected_labels_csv(tmp_path, data):
    # given an export where the labeller flipped b.jpg to 0
    export = write_export(tmp_path / "relabel", {"images/cones/b.jpg": 0})
    # when it is imported
    counts = import_labels(export, data, tmp_path / "fixed.csv")
    # then only that row changed, with a note, and every other row and column is kept
    fixed, original = read_csv(tmp_path / "fixed.csv"), read_csv(data / "labels.csv")
    assert counts == {"reviewed": 3, "changed": 1, "rows": len(ROWS)}
    assert fixed["images/cones/b.jpg"]["label"] == "0"
    assert fixed["images/cones/b.jpg"]["notes"] == "looked; relabelled in review: 1 -> 0"
    assert {k: v for k, v in fixed.items() if k != "images/cones/b.jpg"} == {
        k: v for k, v in original.items() if k != "images/cones/b.jpg"
    }


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"images/cones/b.jpg": 2}, "must be 0 or 1"),
    ],
)
def test_import_rejects_bad_labels(tmp_path, data, changes, message):
    with pytest.raises(ValueError, match=message):
        import_labels(write_export(tmp_path / "x", changes), data, tmp_path / "out.csv")


def test_import_rejects_keys_of_another_dataset(tmp_path, data):
    export = write_export(tmp_path / "x", {})
    (data / "labels.csv").write_text("path,label\nimages/other.jpg,1\n")
    with pytest.raises(ValueError, match="not in .*labels.csv.*--data"):
        import_labels(export, data, tmp_path / "out.csv")


def test_cli_import_needs_no_fiftyone(tmp_path, data):
    run = make_run(tmp_path / "run", data)
    export = write_export(tmp_path / "relabel", {"images/cones/c.jpg": 0})
    result = CliRunner().invoke(app, ["review", str(run), "--import", str(export)])
    assert result.exit_code == 0, result.output
    assert read_csv(run / "labels-reviewed.csv")["images/cones/c.jpg"]["label"] == "0"


def test_cli_without_fiftyone_says_how_to_get_it(tmp_path, data, monkeypatch):
    import importlib.util

    if importlib.util.find_spec("fiftyone") is not None:
        pytest.skip("fiftyone is installed in this environment")
    monkeypatch.setenv(REVIEW_PYTHON_ENV, str(tmp_path / "no-such-python"))
    result = CliRunner().invoke(app, ["review", str(make_run(tmp_path / "run", data)), "--no-app"])
    assert result.exit_code == 2 and "make review-venv" in result.output


def test_cli_rejects_an_unknown_format(tmp_path, data):
    result = CliRunner().invoke(app, ["review", str(make_run(tmp_path / "run", data)), "--format", "voc"])
    assert result.exit_code == 2 and "csv, coco, yolo, cvat" in result.output and "'voc'" in result.output


# --- the real thing: FiftyOne with its bundled mongod, in .venv-review -------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def review_env(tmp_path):
    python = review_python()
    if python is None:
        pytest.skip("no review environment: run `make review-venv` (FiftyOne cannot share .venv with bittensor)")
    env = {
        **os.environ,
        "FIFTYONE_DATABASE_DIR": str(tmp_path / "fodb"),
        "FIFTYONE_DO_NOT_TRACK": "true",
        "FIFTYONE_DEFAULT_APP_ADDRESS": "127.0.0.1",
        "PYTHONPATH": str(REPO),
        "FIFTYONE_CONFIG_PATH": str(tmp_path / "fo-config.json"),
        "HOME": str(tmp_path / "home"),
    }
    return python, env


def run_review(python, env, *args, timeout=240):
    cmd = [str(python), "-m", "training.review_cli", *map(str, args)]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


INSPECT = """
import json, sys, fiftyone as fo
from training.review_database import start_database
start_database()  # mongod's own port (FiftyOne's own look can take its service's socket)
ds = fo.load_dataset(sys.argv[1])
s = ds.match({"key": "images/cones/a.jpg"}).first()
print(json.dumps({"n": len(ds), "views": ds.list_saved_views(), "tags": ds.count_sample_tags(),
  "fields": sorted(ds.get_field_schema()), "mistakes": [x["key"] for x in ds.load_saved_view("mistakes")],
  "hardest": [x["key"] for x in ds.load_saved_view("hardest")],
  "a": {"gt": s.ground_truth.label, "vote": s.vote_yolo_11n, "boxes": [d.bounding_box for d in s.boxes_yolo_11n.detections],
        "gt_boxes": [d.label for d in s.gt_boxes.detections], "truth": s.truth, "answer": s.answer, "votes": s.votes},
  "tile_fields": ds.app_config.active_fields.paths}))
import fiftyone.operators as foo
res = foo.execute_operator("@roadwork/review/export_hardest", ctx={"view": ds.load_saved_view("mistakes"),
                           "params": {"top": 2, "format": "csv", "out_dir": sys.argv[2]}})
print(json.dumps({"plugin": res.result, "error": res.error}))
"""


@pytest.mark.slow
def test_review_builds_the_dataset_exports_and_serves_the_app(tmp_path, data, review_env):
    python, env = review_env
    run = make_run(tmp_path / "run", data)
    # when the run is loaded and the 3 hardest are exported for CVAT (no App)
    t0 = time.monotonic()
    done = run_review(
        python, env, run, "--name", "t", "--top", "3", "--export", tmp_path / "relabel", "--format", "cvat"
    )
    build_s = time.monotonic() - t0
    assert done.returncode == 0, done.stdout + done.stderr
    # FiftyOne's and eta's lines come out once, on their own handler, not again through ours
    assert not re.search(r" (INFO|WARNING) (fiftyone|eta)[\w.]*: ", done.stderr), done.stderr
    # then the dataset holds every field, tag and saved view
    inspect_env = {**env, "FIFTYONE_PLUGINS_DIR": str(REPO / "training" / "fiftyone_plugins")}
    lines = subprocess.run(
        [str(python), "-c", INSPECT, "t", tmp_path / "from-app"],
        env=inspect_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.splitlines()
    got, plugin = json.loads(lines[-2]), json.loads(lines[-1])
    assert got["n"] == len(ROWS) and set(got["views"]) == {"mistakes", "hardest", "uncertain"}
    assert got["tags"] == {"false_negative": 2, "false_positive": 1, "uncertain": 2}
    assert {
        "ground_truth",
        "prediction",
        "prob",
        "hardness",
        "vote_l0_head",
        "vote_yolo_11n",
        "boxes_yolo_11n",
        "gt_boxes",
        "source",
        "exit_level",
    } <= set(got["fields"])
    assert set(got["mistakes"]) == {"images/cones/b.jpg", "images/cones/c.jpg", "images/street/e.jpg"}
    # e (sure and wrong), b (wrong), f (right, but near 0.5 with voters at 0.2 and 0.6)
    assert got["hardest"] == ["images/street/e.jpg", "images/cones/b.jpg", "images/street/f.jpg"]
    assert got["a"]["gt"] == "roadwork" and got["a"]["vote"] == pytest.approx(0.97)
    assert got["a"]["boxes"] == [pytest.approx([0.1, 0.2, 0.4, 0.6])]
    assert got["a"]["gt_boxes"] == ["cone", "barrier"]
    # and each grid tile says the truth, the answer with its exit level and every vote, over the boxes
    assert got["a"]["truth"] == "truth: roadwork" and got["a"]["answer"].startswith("answer 0.")
    assert ", exit L" in got["a"]["answer"] and "l0_head 0.90 · yolo-11n 0.97" == got["a"]["votes"]
    assert got["tile_fields"] == ["truth", "answer", "votes", "boxes_yolo_11n", "gt_boxes"]
    # and the App's operator exports from a view (here the 2 hardest mistakes)
    assert plugin["error"] is None, plugin
    assert list(read_csv(Path(plugin["plugin"]["labels_csv"]))) == [
        "images/images__street__e.jpg",
        "images/images__cones__b.jpg",
    ]
    # and the export is a labels.csv folder plus a CVAT task that round-trips with no change
    exported = read_csv(tmp_path / "relabel" / "labels.csv")
    assert len(exported) == 3 and all((tmp_path / "relabel" / p).is_file() for p in exported)
    assert (tmp_path / "relabel" / "cvat" / "labels.xml").is_file()
    back = run_review(
        python, env, run, "--import", tmp_path / "relabel", "--format", "cvat", "--out", tmp_path / "fixed.csv"
    )
    assert back.returncode == 0 and "0 label(s) changed" in back.stderr, back.stdout + back.stderr
    # when the App is opened on a loopback port, it answers HTTP
    port = free_port()
    log = tmp_path / "app.log"  # a file, not a pipe that nobody reads
    proc = subprocess.Popen(
        [str(python), "-m", "training.review_cli", str(run), "--name", "t", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
    )
    try:
        body, deadline = "", time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                    body = resp.read().decode(errors="replace")
                    break
            except OSError:
                time.sleep(1)
        assert proc.poll() is None, log.read_text()[-3000:]
        assert "FiftyOne" in body or "<html" in body.lower()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    # and stopping the command stops the App server with it
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and port_open(port):
        time.sleep(1)
    assert not port_open(port), "the App server outlived `roadwork review`"
    print(f"review build + export took {build_s:.1f} s (includes the mongod start)", file=sys.stderr)
