"""The square probe: vehicle-camera frames of tile size, as they are and in the square shapes SDXL
challenges come in, each labelled as the frame was."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from tests.conftest import benchmark_script
from training.datasets import load_folder


def _frame(w: int, h: int) -> np.ndarray:
    """A street whose left edge is red and right edge blue: tells a squash from a centre crop."""
    img = np.full((h, w, 3), 90, np.uint8)
    img[:, : w // 10] = (200, 0, 0)
    img[:, -w // 10 :] = (0, 0, 200)
    return img


def test_the_square_probe_keeps_each_frame_and_its_label_in_three_shapes(tmp_path):
    probe = benchmark_script("square_probe")
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    lines = ["path,label,source,split,group"]
    for name, source, label, split, (w, h) in (
        ("wz.png", "vtti_wz", 1, "dev", (960, 540)),
        ("street.png", "camvid", 0, "dev", (960, 720)),
        ("small.png", "idd_lite", 0, "dev", (320, 227)),  # under the tiles' 448 px: not probed
        ("photo.png", "rf_trafficcones", 1, "dev", (640, 640)),  # not a vehicle camera
        ("trained.png", "camvid", 0, "train", (960, 720)),  # another split
    ):
        Image.fromarray(_frame(w, h)).save(data / "images" / name)
        lines.append(f"images/{name},{label},{source},{split},{name}")
    (data / "labels.csv").write_text("\n".join(lines) + "\n")

    out = tmp_path / "probe"
    assert probe.build(data, out, "dev") == 2 * len(probe.VERSIONS)
    rows = load_folder(out).samples
    assert sorted({s.source.split(":")[0] for s in rows}) == ["camvid street", "vtti_wz roadwork"]
    for s in rows:
        assert s.label == (s.source.startswith("vtti_wz")), s.source
        pixels, version = s.load(), s.source.split(":")[1]
        if version == "as_is":
            assert pixels.shape[1] == 960
        else:
            assert pixels.shape[:2] == (probe.SQUARE, probe.SQUARE)
        edges = pixels[probe.SQUARE // 2 if version != "as_is" else 100, [5, -5]]
        squashed_or_whole = version != "centre_square"
        assert (edges[0, 0] > 150 and edges[1, 2] > 150) == squashed_or_whole, version  # the sides stay or go

    # the work zone found as it is and in its centre, lost when squashed; the street right but in its centre
    probs = {
        "vtti_wz roadwork": {"as_is": 0.9, "squashed": 0.2, "centre_square": 0.9},
        "camvid street": {"as_is": 0.1, "squashed": 0.1, "centre_square": 0.8},
    }
    predictions = tmp_path / "predictions.jsonl"
    with predictions.open("w") as f:
        for s in rows:
            p = probs[s.source.split(":")[0]][s.source.split(":")[1]]
            f.write(
                json.dumps(
                    {"source": s.source, "label": s.label, "prob": p, "votes": [{"voter": "tiles", "prob": 1 - p}]}
                )
                + "\n"
            )
    got = probe.by_version(predictions)
    assert {v: got[v]["pooled"]["mcc"] for v in probe.VERSIONS} == {"as_is": 1.0, "squashed": 0.0, "centre_square": 0.0}
    assert got["as_is"]["pooled"]["n"] == 2 and got["as_is"]["tiles"]["auroc"] == 0.0  # the voter turned round


def test_a_probe_scores_its_folder_with_the_shipped_profile_and_writes_its_result(tmp_path):
    from tests.conftest import REPO

    frame_probe = benchmark_script("frame_probe")

    def build(folder):
        (folder / "images").mkdir(parents=True)
        lines = ["path,label,source,split,group"]
        for version, label in (("plain", 0), ("lit", 1)):
            frame = _frame(640, 480)
            if label:
                frame[300:420, 280:360] = (250, 110, 10)  # an orange block on the road
            Image.fromarray(frame).save(folder / "images" / f"{version}.jpg")
            lines.append(f"images/{version}.jpg,{label},street:{version},dev,{version}")
        (folder / "labels.csv").write_text("\n".join(lines) + "\n")
        return 2

    out = tmp_path / "result.json"
    result = frame_probe.run(
        "made_up_probe.py",
        "What it asks.\n\nWhat it\ndoes.\n",
        ["--flag", "1"],
        out,
        str(REPO / "configs" / "cpu.yaml"),
        build,
        lambda predictions: {"by_camera": frame_probe.summary(predictions)},
        flag=1,
    )
    doc = json.loads(out.read_text())
    assert list(doc) == ["note", "command", "machine", "config", "flag", "seconds", "by_camera"]
    assert doc["note"] == "What it does." and doc["command"] == "python benchmarks/made_up_probe.py --flag 1"
    assert result == {"by_camera": doc["by_camera"]}
    cells = doc["by_camera"]["street"]
    assert set(cells) == {"plain", "lit"} and all(c["pooled"]["n"] == 1 for c in cells.values())
    # frames of 640 px are answered by the tile voters; the whole-frame voters stay out of the summary
    assert {"l0_tiles", "l0_paste_erase_tiles"} <= set(cells["plain"]) and "l0_head" not in cells["plain"]
