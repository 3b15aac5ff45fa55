"""The L1/L2 GPU benchmark's CPU smoke mode runs end to end and writes the JSON the lead reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import benchmark_script


@pytest.mark.slow
def test_bench_tiny_mode_writes_json(tmp_path: Path) -> None:
    pytest.importorskip("ultralytics")
    bench = benchmark_script("l1l2_gpu_bench")
    out = tmp_path / "bench.json"
    bench.main(
        [
            "--tiny",
            "--device",
            "cpu",
            "--frames",
            "4",
            "--rounds",
            "1",
            "--only",
            "yolo11n",
            "siglip",
            "--out",
            str(out),
        ]
    )
    result = json.loads(out.read_text())
    assert set(result["models"]) == {"yolo11n", "siglip"} and set(result["levels"]) == {"L1", "L2"}
    for r in result["models"].values():
        assert r["ours_img_s"] > 0 and r["loop_img_s"] > 0 and r["batcher"]["batches"] <= r["batcher"]["calls"]
    assert result["levels"]["L1"]["ours_img_s"] > 0
