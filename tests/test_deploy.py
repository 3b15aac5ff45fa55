"""deploy/: the compose files and the image against the launch specs and profiles they serve."""

from __future__ import annotations

import re

import pytest
import yaml
from typer.testing import CliRunner

from miner.profile import load_profile
from roadwork.cli import app
from tests.conftest import REPO

DEPLOY = REPO / "deploy"


def test_the_vllm_compose_file_is_what_the_launch_profiles_generate():
    result = CliRunner().invoke(app, ["vllm", "compose"])
    assert result.exit_code == 0, result.output
    assert (DEPLOY / "compose.vllm.yaml").read_text() == result.output, (
        "deploy/compose.vllm.yaml drifted: run `roadwork vllm compose --out deploy/compose.vllm.yaml`"
    )


def test_every_vllm_server_the_production_profile_calls_has_a_service_on_its_cards():
    services = yaml.safe_load((DEPLOY / "compose.vllm.yaml").read_text())["services"]
    served = {}
    for name, svc in services.items():
        cmd = svc["command"]
        served[int(cmd[cmd.index("--port") + 1])] = svc
        env = svc.get("environment", {})
        # a container given card 1 alone sees it as device 0: CUDA_VISIBLE_DEVICES=1 would hide it
        assert "CUDA_VISIBLE_DEVICES" not in env, name
        assert svc["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"], name
    # the endpoints each tier calls, as the loader fills them from the launch specs they name
    profile = load_profile(REPO / "configs" / "h100x2.yaml")
    urls = [url for v in profile.voters if v.kind == "vlm-http" for url in v.params["endpoints"]]
    wanted = {int(re.search(r":(\d+)$", url.rstrip("/")).group(1)) for url in urls}
    assert wanted and wanted <= set(served), f"no vLLM service for ports {sorted(wanted - set(served))}"
    miner_compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    assert not [n for n in miner_compose if n.startswith("vllm")], "vLLM services live in the generated file only"


def test_the_image_has_the_trace_extra_and_runs_as_the_wallet_owner():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    extras = re.search(r'ARG EXTRAS="([^"]+)"', dockerfile).group(1).split(",")
    assert "trace" in extras  # `serve --trace` must work in the image
    miner = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["miner"]
    assert miner["user"].startswith("${MINER_UID")  # btcli's 600 key files are readable by their owner only
    assert any(v.endswith(":ro") and ".bittensor/wallets" in v for v in miner["volumes"])


def test_an_unreadable_hotkey_file_is_named_with_its_owner_and_the_fix(tmp_path, monkeypatch):
    import os

    from miner.serve import ChainError, check_readable

    key = tmp_path / "hotkey"
    key.write_text("{}")
    key.chmod(0o600)
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # the tests run as root, who reads anything
    with pytest.raises(ChainError, match=r"cannot read it \(owner uid \d+, mode 600\).*MINER_UID="):
        check_readable(str(key))
