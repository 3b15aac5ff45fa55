"""benchmarks/vlm_prefill_bench.py: the tiny CPU mode runs and writes JSON; the 7B config is right."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "vlm_prefill_bench.py"

pytestmark = pytest.mark.slow  # imports transformers in a subprocess (~15 s on 2 busy cores)


def test_tiny_mode_writes_prefill_and_decode_costs(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--tiny",
            "--sizes",
            "224",
            "448",
            "--batches",
            "1",
            "2",
            "--repeats",
            "1",
            "--warmup",
            "0",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "vlm_prefill_bench.json").read_text())
    rows = {(r["size_px"], r["batch"]): r for r in result["results"]}
    assert set(rows) == {(224, 1), (224, 2), (448, 1), (448, 2)}
    # 224 px is 8x8 merged patches, 448 px 16x16: the visual token count the router pays for
    assert rows[(224, 1)]["visual_tokens_per_image"] == 64 and rows[(448, 1)]["visual_tokens_per_image"] == 256
    assert all(r["prefill_ms"]["median"] > 0 and r["decode_ms"]["median"] > 0 for r in rows.values())
    assert set(result["cost_prior_ms_hint"]) == {"224", "448"} and result["dtype"] == "float32"


def test_full_config_is_qwen25_vl_7b():
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import vlm_prefill_bench as bench
    finally:
        sys.path.remove(str(SCRIPT.parent))
    cfg = Qwen2_5_VLConfig(
        text_config=bench.QWEN25_VL_7B_TEXT, vision_config=bench.QWEN25_VL_7B_VISION, **bench.QWEN_IDS
    )
    with torch.device("meta"):  # no memory: only shapes
        model = Qwen2_5_VLForConditionalGeneration(cfg)
    # the published parameter count of Qwen2.5-VL-7B-Instruct (8.29 B)
    assert sum(p.numel() for p in model.parameters()) == 8_292_166_656
