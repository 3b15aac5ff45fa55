"""The HTTP tier against a real OpenAI-compatible server: `transformers serve`, started here on
127.0.0.1 with a tiny local Qwen2.5-VL (no download), sent a real image.

`transformers serve` rejects `logprobs`, so the tier uses the `transformers` preset (answer text
at hard_prob); the logprob wire format is covered by the fake server in test_client.py.
"""

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from cascade.config import VoterConfig
from cascade.types import Frame
from detectors.registry import build

pytestmark = pytest.mark.slow  # builds a model and starts a server (~30 s on 2 busy cores)

for _module in ("fastapi", "uvicorn", "openai", "accelerate"):  # what `transformers serve` needs
    pytest.importorskip(_module)


def rig(model_dir, word):
    """Make the tiny model always answer `word`: every position carries the same embedding and
    only `word`'s output row matches it (attention / MLP outputs zeroed)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    token = processor.tokenizer.convert_tokens_to_ids(word)
    lm = model.model.language_model
    with torch.no_grad():
        u = torch.rand(lm.embed_tokens.weight.shape[1]) + 0.5
        lm.embed_tokens.weight[:] = u
        for layer in lm.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        model.lm_head.weight[token] = u
    model.save_pretrained(model_dir)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import httpx

    from vlm_tiers.tiny import build_tiny_vlm

    model_dir = build_tiny_vlm(tmp_path_factory.mktemp("tiny_served"))
    rig(model_dir, "yes")
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1", "TRANSFORMERS_OFFLINE": "1"}
    log = (tmp_path_factory.getbasetemp() / "transformers_serve.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "transformers.cli.transformers",
            "serve",
            str(model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--device",
            "cpu",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited with {proc.returncode}; see {log.name}")
            try:
                if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve not healthy within 120 s; see {log.name}")
            time.sleep(0.5)
        yield url, str(model_dir)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def frame():
    rng = np.random.default_rng(3)
    return Frame(rng.integers(0, 255, (360, 480, 3), dtype=np.uint8), source="t", frame_id="srv")


def test_tier_scores_a_real_servers_answer(served):
    url, model = served
    cfg = VoterConfig(
        name="fast",
        kind="vlm-http",
        level="L3",
        params={
            "model": model,
            "endpoints": [url],
            "server": "transformers",
            "timeout_ms": 60000,
            "hard_prob": 0.9,
            "image": {"max_pixels": 224 * 224},
        },
    )
    tier = build(cfg, base_dir=None)
    tier.warmup()  # health probe against the real server
    (vote,) = tier.predict([frame()])
    assert not vote.abstained, vote.reason
    assert vote.prob == pytest.approx(0.9) and vote.evidence == {**vote.evidence, "answer": "yes", "method": "text"}
    assert [s["state"] for s in tier.breaker_states()] == ["closed"]


def test_real_server_refuses_vllm_request_fields_as_a_client_error(served):
    # why the `transformers` preset turns logprobs and structured_outputs off: the server answers
    # 4xx to them, and a 4xx does not open the circuit (the request was wrong, not the server)
    url, model = served
    cfg = VoterConfig(
        name="fast",
        kind="vlm-http",
        level="L3",
        params={"model": model, "endpoints": [url], "server": "vllm", "timeout_ms": 60000, "breaker": {"failures": 1}},
    )
    tier = build(cfg, base_dir=None)
    (vote,) = tier.predict([frame()])
    assert vote.abstained and "VLMHTTPError" in vote.reason and "HTTP 4" in vote.reason
    assert tier.breaker_states()[0]["state"] == "closed"
