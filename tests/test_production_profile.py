"""configs/h100x2.yaml: 26 voters over L0-L5, a plan that fits two H100s, real hub ids, no downloads."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cascade.placement import PlanError, build_plan
from detectors.random_weights import FULL_CONFIGS, IN_PROCESS_EXCLUDED, random_voter
from miner.profile import load_profile as load_deployment  # it also reads the vLLM launch specs
from roadwork.cli import app
from roadwork.fetch_weights import items_for
from vlm_tiers.launch import load_launch_spec

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "configs" / "h100x2.yaml"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
ULTRALYTICS_ASSET = re.compile(r"^(yolo|rtdetr|yoloe)[\w.-]*\.pt$")


@pytest.fixture(scope="module")
def cfg():
    return load_deployment(PROFILE)


def test_profile_has_26_voters_across_levels(cfg) -> None:
    # given the production profile / when counting voters per level / then the user's cascade is there
    per_level = Counter(v.level.name for v in cfg.voters if v.enabled)
    assert sum(per_level.values()) == 26
    assert per_level == {"L0": 2, "L1": 9, "L2": 7, "L3": 3, "L4": 3, "L5": 2}
    assert all(v.kind == "vlm-http" for v in cfg.voters if v.level.name in ("L3", "L4", "L5"))


def test_plan_fits_and_every_gpu_voter_has_memory(cfg) -> None:
    # the profile runs a worker per GPU (one batch at a time), and `roadwork plan` plans it so
    assert cfg.runtime.process_per_device
    plan = build_plan(cfg.voters, cfg.placement, one_batch_at_a_time=True).check()
    assert [g.gpu.id for g in plan.gpus] == ["cuda:0", "cuda:1"]
    for g in plan.gpus:
        assert g.planned_gib <= g.usable_gib
        assert any(i.kind.startswith("vllm") for i in g.items) and any(not i.kind.startswith("vllm") for i in g.items)
    assert all(v.memory is not None for v in cfg.voters if v.device.startswith("cuda"))


def test_one_more_vllm_share_overcommits_and_names_the_gpu(cfg) -> None:
    servers = [
        s.model_copy(update={"memory_fraction": s.memory_fraction + 0.05}) if s.name == "power" else s
        for s in cfg.placement.vllm_servers
    ]
    with pytest.raises(PlanError, match=r"cuda:1 is over-committed.*power"):
        build_plan(cfg.voters, cfg.placement.model_copy(update={"vllm_servers": servers})).check()


def test_every_weight_is_a_hub_id_or_an_asset_name(cfg) -> None:
    items = items_for(cfg)
    # every enabled voter is listed, so `fetch-weights --download` leaves none to fetch at serve time
    assert {it.voter for it in items} == {v.name for v in cfg.voters if v.enabled}
    hub = [it.id for it in items if it.source == "hf"]
    assert hub and all(HUB_ID.match(i) for i in hub), hub
    assets = [it.id for it in items if it.source == "ultralytics" and it.id.endswith(".pt")]
    assert assets and all(ULTRALYTICS_ASSET.match(a) for a in assets), assets


def test_vllm_servers_match_their_launch_profiles_and_tier_voters(cfg) -> None:
    voters = {v.params["model"]: v for v in cfg.voters if v.kind == "vlm-http"}
    ports = set()
    for s in cfg.placement.vllm_servers:
        prof = load_launch_spec(str(cfg.resolve(s.launch)))
        assert prof.gpu_memory_utilization == pytest.approx(s.memory_fraction), s.name
        assert [f"cuda:{g}" for g in prof.gpus] == s.gpus, s.name
        voter = voters[prof.served_model_name]  # each server has its tier voter
        assert voter.level.name == prof.level and voter.params["endpoints"] == [prof.base_url]
        ports.add(prof.port)
    assert len(ports) == len(cfg.placement.vllm_servers) == len(voters)  # one port, one server per tier voter


def test_every_in_process_voter_has_a_full_size_random_form(cfg) -> None:
    # what `roadwork bench --gpu --random-weights` builds: nothing may need a hub config
    for v in cfg.voters:
        if v.kind in IN_PROCESS_EXCLUDED:
            continue
        params = random_voter(v).params
        if v.kind == "backbone-head":  # a transformers backbone from its config, a random head of its width
            assert params["backbone"]["random_init"] == FULL_CONFIGS[v.params["backbone"]["model"]]
            assert params["head"] is None
            continue
        assert "model" not in params, v.name
        if v.kind == "ultralytics":
            assert params["weights"].endswith(".yaml") and "prompts" not in params


def test_fetch_weights_lists_without_downloading(tmp_path: Path) -> None:
    out = tmp_path / "weights.json"
    res = CliRunner().invoke(app, ["fetch-weights", str(PROFILE), "--list", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())
    ids = {r["id"] for r in rows}
    assert {"facebook/dinov2-large", "yolo11x.pt", "Qwen/Qwen3-VL-32B-Thinking-FP8"} <= ids
    heads = [r for r in rows if r["source"] == "trained"]
    assert len(heads) == 2 and all("roadwork train head" in r["note"] for r in heads)


def test_fetch_weights_refuses_list_and_download_together() -> None:
    res = CliRunner().invoke(app, ["fetch-weights", str(PROFILE), "--list", "--download"])
    assert res.exit_code == 2 and "exclude each other" in res.output


def test_a_vllm_server_and_its_tier_are_said_once_in_their_launch_profile() -> None:
    # given the production profile with a server share and a tier's model that contradict their launch specs
    import yaml

    data = yaml.safe_load(PROFILE.read_text())
    data["placement"]["vllm_servers"][3]["memory_fraction"] = 0.48  # power.yaml says 0.47
    vlm = next(i for i, v in enumerate(data["voters"]) if v["kind"] == "vlm-http")
    data["voters"][vlm]["params"]["model"] = "fast-v2"  # fast.yaml serves "fast"
    path = PROFILE.parent / "test_said_once.yaml"  # beside the original: its relative paths must resolve
    try:
        path.write_text(yaml.safe_dump(data))
        # when it is planned, then each contradiction is refused, naming the key and the launch spec
        result = CliRunner().invoke(app, ["plan", str(path)])
    finally:
        path.unlink()
    assert result.exit_code == 2
    assert "placement.vllm_servers.3.memory_fraction: 0.48 disagrees with vllm/power.yaml (0.47)" in result.output
    assert f"voters.{vlm}.params.model: 'fast-v2' is not what vllm/fast.yaml serves ('fast')" in result.output


def test_a_profile_copied_away_from_its_launch_specs_says_only_that(tmp_path: Path) -> None:
    # given the production profile copied to a folder without its vllm/ launch specs
    import yaml

    (tmp_path / "h100x2.yaml").write_text(PROFILE.read_text())
    tiers = [i for i, v in enumerate(yaml.safe_load(PROFILE.read_text())["voters"]) if v["kind"] == "vlm-http"]
    # when it is planned
    result = CliRunner().invoke(app, ["plan", str(tmp_path / "h100x2.yaml")])
    # then each tier names its missing launch spec, and not the model and endpoints that the spec
    # would have filled in
    assert result.exit_code == 2
    assert all(f"voters.{i}.params.launch: launch spec" in result.output for i in tiers)
    assert "vllm/fast.yaml' not found" in result.output
    assert "Field required" not in result.output


def test_cuda_graph_compilation_is_refused_in_the_one_process_layout() -> None:
    # given the production profile (L0 compiled with CUDA graphs) served from one process
    import yaml

    from cascade.config import ConfigError

    data = yaml.safe_load(PROFILE.read_text())
    data["runtime"]["process_per_device"] = False
    path = PROFILE.parent / "test_one_process.yaml"  # beside the original: its relative paths must resolve
    try:
        path.write_text(yaml.safe_dump(data))
        # when it loads, then each compiled L0 is refused, naming the key, the reason and the fixes
        with pytest.raises(ConfigError) as err:
            load_deployment(path)
    finally:
        path.unlink()
    lines = [line for line in str(err.value).splitlines() if "compile" in line]
    assert len(lines) == 2 and all("voters.0" in line or "voters.1" in line for line in lines)
    assert "process_per_device: true" in lines[0] and "compile: default" in lines[0]
