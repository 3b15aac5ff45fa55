"""vLLM launch specs (configs/vllm/*.yaml) and `roadwork vllm print|launch|wait|plan`."""

import json
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from roadwork.cli import app
from vlm_tiers.launch import (
    LAUNCH_DIR,
    LaunchSpec,
    LaunchSpecError,
    compose_service,
    gpu_shares,
    load_launch_spec,
    placement_entry,
)

TIERS = ["fast", "power", "precision"]
runner = CliRunner()


def flag(argv, name):
    return argv[argv.index(name) + 1]


@pytest.mark.parametrize("tier", TIERS)
def test_shipped_profile_gives_the_serving_floor(tier):
    p = load_launch_spec(tier)
    argv = p.serve_args()
    assert argv[:3] == ["vllm", "serve", p.model] and flag(argv, "--served-model-name") == tier
    assert "--enable-prefix-caching" in argv and "--enable-chunked-prefill" in argv
    assert flag(argv, "--kv-cache-dtype") == "fp8"
    assert json.loads(flag(argv, "--limit-mm-per-prompt")) == {"image": 1, "video": 0}
    assert flag(argv, "--host") == "127.0.0.1"
    assert int(flag(argv, "--max-logprobs")) >= 10  # the client asks top_logprobs=10
    if p.tensor_parallel_size > 1:
        assert flag(argv, "--mm-encoder-tp-mode") == "data"
        assert p.env()["CUDA_VISIBLE_DEVICES"] == ",".join(map(str, p.gpus))


def test_shipped_profiles_fit_two_h100s_with_room_for_detectors():
    profiles = [load_launch_spec(t) for t in TIERS]
    shares = gpu_shares(profiles)
    assert set(shares) == {0, 1} and all(s <= 0.85 for s in shares.values())
    assert len({p.port for p in profiles}) == 3


def test_placement_entries_are_valid_placement_specs():
    placement = pytest.importorskip("cascade.placement")
    cfg = placement.PlacementConfig.model_validate(
        {
            "gpus": [{"id": "cuda:0", "memory_gib": 79.1}, {"id": "cuda:1", "memory_gib": 79.1}],
            "vllm_servers": [placement_entry(load_launch_spec(t), LAUNCH_DIR / f"{t}.yaml") for t in TIERS],
        }
    )
    plan = placement.build_plan([], cfg)
    assert plan.problems() == []


BASE = yaml.safe_load((LAUNCH_DIR / "fast.yaml").read_text())


@pytest.mark.parametrize(
    "change, message",
    [
        ({"tensor_parallel_size": 2, "gpus": [0, 1]}, "mm_encoder_tp_mode: data"),
        ({"tensor_parallel_size": 2}, "1 cards, but tensor_parallel_size x pipeline_parallel_size is 2"),
        ({"gpus": [0, 0], "tensor_parallel_size": 2, "mm_encoder_tp_mode": "data"}, "repeats a card"),
        ({"gpu_memory_utilization": 0.99}, "gpu_memory_utilization"),
        ({"limit_mm_per_prompt": {"image": 0}}, "must allow 1 image"),
        ({"enable_chunked_prefill": False, "max_num_batched_tokens": 2048}, "enable_chunked_prefill"),
        ({"kv_cache_dtype": "int4"}, "kv_cache_dtype"),
        ({"enable_prefix_cache": True}, "enable_prefix_cache"),  # typo: unknown keys are refused
    ],
)
def test_bad_profile_names_the_key(tmp_path, change, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**BASE, **change}))
    with pytest.raises(LaunchSpecError, match=message):
        load_launch_spec(str(path))


def test_unknown_tier_lists_the_known_ones():
    with pytest.raises(LaunchSpecError, match="known: fast, power, precision"):
        load_launch_spec("turbo")


def test_cli_print_renders_the_command():
    result = runner.invoke(app, ["vllm", "print", "precision"])
    assert result.exit_code == 0
    assert result.stdout.startswith("CUDA_VISIBLE_DEVICES=0,1 vllm serve Qwen/")
    assert "--tensor-parallel-size 2" in result.stdout


@pytest.mark.skipif(shutil.which("vllm") is not None, reason="vllm is installed here")
def test_cli_launch_refuses_without_vllm_and_prints_the_command():
    result = runner.invoke(app, ["vllm", "launch", "fast"])
    assert result.exit_code == 2
    assert "vLLM is not installed" in result.output and "pip install -e '.[serve]'" in result.output
    assert "vllm serve Qwen/Qwen2.5-VL-7B-Instruct" in result.output


def test_cli_plan_refuses_an_overcommitted_card(tmp_path):
    for t in TIERS:
        (tmp_path / f"{t}.yaml").write_text((LAUNCH_DIR / f"{t}.yaml").read_text())
    ok = runner.invoke(app, ["vllm", "plan", "--specs", str(tmp_path)])
    assert ok.exit_code == 0 and "GPU 1: vLLM 0.77" in ok.output
    data = yaml.safe_load((tmp_path / "power.yaml").read_text())
    (tmp_path / "power.yaml").write_text(yaml.safe_dump({**data, "gpu_memory_utilization": 0.65}))
    bad = runner.invoke(app, ["vllm", "plan", "--specs", str(tmp_path)])
    assert bad.exit_code == 2 and "cards over" in bad.output


def test_wait_returns_once_the_server_is_healthy_and_fails_when_it_never_is(tmp_path):
    from tests.vlm_tiers.fake_openai import FakeServer, dead_url

    def spec_on(url: str):
        data = yaml.safe_load((LAUNCH_DIR / "fast.yaml").read_text())
        (tmp_path / "fast.yaml").write_text(yaml.safe_dump({**data, "port": int(url.rsplit(":", 1)[1])}))
        return str(tmp_path / "fast.yaml")

    with FakeServer() as server:
        ok = runner.invoke(app, ["vllm", "wait", spec_on(server.url), "--timeout-s", "5", "--every-s", "0.1"])
    assert ok.exit_code == 0 and "healthy at" in ok.output
    assert [r["path"] for r in server.requests] == ["/health"]
    down = runner.invoke(app, ["vllm", "wait", spec_on(dead_url()), "--timeout-s", "1", "--every-s", "0.2"])
    assert down.exit_code == 2 and "not healthy" in down.output and "ConnectError" in down.output


@pytest.mark.parametrize("tier", TIERS)
def test_flags_parse_with_vllms_own_argument_parser(tier):
    pytest.importorskip("vllm")
    try:  # the parser's home moved between vLLM releases
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:
        from vllm.utils import FlexibleArgumentParser
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.openai.cli_args import make_arg_parser, validate_parsed_serve_args

    argv = load_launch_spec(tier).serve_args()
    parser = make_arg_parser(FlexibleArgumentParser())
    args = parser.parse_args(["--model", argv[2], *argv[3:]])
    validate_parsed_serve_args(args)
    engine = AsyncEngineArgs.from_cli_args(args)
    assert engine.enable_prefix_caching is True and engine.kv_cache_dtype == "fp8"


def test_profile_model_round_trips():
    p = load_launch_spec("fast")
    assert LaunchSpec.model_validate(p.model_dump()) == p


def multi_node(**over):
    data = yaml.safe_load((LAUNCH_DIR / "precision.yaml").read_text())
    data.update(gpus=[0, 1], tensor_parallel_size=2, pipeline_parallel_size=2, nodes=2)
    return {**data, "distributed_executor_backend": "ray", **over}


def test_a_server_across_nodes_runs_on_vllms_ray_executor_and_says_how_to_start_it():
    spec = LaunchSpec.model_validate(multi_node())
    argv = spec.serve_args()
    assert flag(argv, "--pipeline-parallel-size") == "2" and flag(argv, "--distributed-executor-backend") == "ray"
    steps = spec.command_line().splitlines()
    assert steps[0].startswith("# 1. on this (head) node: CUDA_VISIBLE_DEVICES=0,1 ray start --head")
    assert "ray start --address HEAD_IP:6379" in steps[1] and steps[-1].startswith(
        "CUDA_VISIBLE_DEVICES=0,1 vllm serve"
    )
    # compose runs one host's containers: a multi-node server is refused there, with the way to start it
    with pytest.raises(LaunchSpecError, match="spans 2 nodes"):
        compose_service(spec)


@pytest.mark.parametrize(
    "over, error",
    [
        ({"distributed_executor_backend": "mp"}, "needs distributed_executor_backend: ray"),
        ({"pipeline_parallel_size": 1}, "4 cards, but tensor_parallel_size x pipeline_parallel_size is 2"),
    ],
)
def test_a_multi_node_spec_that_cannot_run_is_refused(over, error):
    with pytest.raises(ValueError, match=error):
        LaunchSpec.model_validate(multi_node(**over))
