import pytest

from cascade.config import CascadeConfig
from cascade.placement import MemorySpec, PlanError, build_plan


def profile(voters, gpus, servers=()):
    return CascadeConfig.model_validate({"voters": voters, "placement": {"gpus": gpus, "vllm_servers": list(servers)}})


H100 = [{"id": "cuda:0", "memory_gib": 79.1}, {"id": "cuda:1", "memory_gib": 79.1}]


def voter(name, device, params_m, dtype="float16", act=1.0):
    return {
        "name": name,
        "kind": "x",
        "level": "L1",
        "device": device,
        "dtype": dtype,
        "memory": {"params_m": params_m, "activation_gib": act},
    }


def test_weights_are_params_times_dtype_bytes():
    assert MemorySpec(params_m=1024**3 / 1e6, dtype="fp16", activation_gib=0).total_gib() == pytest.approx(2.0)
    assert MemorySpec(params_m=1, measured_gib=3.5).total_gib() == 3.5
    with pytest.raises(ValueError, match="params_m"):
        MemorySpec()


def test_memory_counts_the_voters_own_dtype_and_refuses_a_second_spelling():
    # given one voter in float32, one in float16 and one stored int8, none repeating its precision
    cfg = profile(
        [
            voter("a", "cuda:0", 100, "float32"),
            voter("b", "cuda:0", 100),
            {**voter("c", "cuda:0", 100), "memory": {"params_m": 100, "dtype": "int8"}},
        ],
        H100,
    )
    # then the plan counts 4, 2 and 1 bytes per weight
    assert [v.memory.dtype for v in cfg.voters] == ["fp32", "fp16", "int8"]
    # and a memory dtype that contradicts the voter's is refused, naming both
    with pytest.raises(ValueError, match="memory.dtype fp16 disagrees with dtype float32"):
        profile([{**voter("a", "cuda:0", 100, "float32"), "memory": {"params_m": 100, "dtype": "fp16"}}], H100)


def test_voter_defaults_apply_unless_a_voter_says_otherwise():
    cfg = CascadeConfig.model_validate(
        {
            "voter_defaults": {"dtype": "float16", "batch_wait_ms": 4},
            "voters": [
                {"name": "a", "kind": "x", "level": "L1"},
                {"name": "b", "kind": "x", "level": "L2", "dtype": "float32"},
            ],
        }
    )
    assert [(v.dtype, v.batch_wait_ms) for v in cfg.voters] == [("float16", 4), ("float32", 4)]
    with pytest.raises(ValueError, match="voter_defaults.name: not a key voters share"):
        CascadeConfig.model_validate(
            {"voter_defaults": {"name": "x"}, "voters": [{"name": "a", "kind": "x", "level": "L1"}]}
        )


def test_plan_that_fits_adds_up_per_gpu():
    cfg = profile(
        [voter("yolo11x", "cuda:0", 56.9), voter("dav2l", "cuda:1", 335.3)],
        H100,
        [
            {"name": "vlm_power", "gpus": ["cuda:0"], "memory_fraction": 0.5},
            {"name": "vlm_precision", "gpus": ["cuda:0", "cuda:1"], "memory_fraction": 0.3},
        ],
    )
    plan = build_plan(cfg.voters, cfg.placement).check()
    g0, g1 = plan.gpus
    assert {i.name for i in g0.items} == {"yolo11x", "vlm_power", "vlm_precision"}
    assert g0.planned_gib == pytest.approx(56.9e6 * 2 / 1024**3 + 1 + 0.8 * 79.1)
    assert g1.planned_gib == pytest.approx(335.3e6 * 2 / 1024**3 + 1 + 0.3 * 79.1)


def test_one_batch_at_a_time_holds_all_weights_but_only_the_largest_activations():
    # given three models on one card, activations 1, 3 and 2 GiB
    voters = [
        {
            "name": n,
            "kind": "x",
            "level": "L1",
            "device": "cuda:0",
            "dtype": "float16",
            "memory": {"params_m": 1024**3 / 2e6, "activation_gib": a},
        }
        for n, a in [("a", 1.0), ("b", 3.0), ("c", 2.0)]
    ]
    cfg = profile(voters, H100)
    # when planned for threads in one process, and for a device worker that runs one batch at a time
    shared = build_plan(cfg.voters, cfg.placement).gpus[0]
    worker = build_plan(cfg.voters, cfg.placement, one_batch_at_a_time=True).gpus[0]
    # then threads may run all three batches at once (3 x 1 GiB weights + 6), a worker only the largest (+3)
    assert shared.planned_gib == pytest.approx(9.0)
    assert worker.planned_gib == pytest.approx(6.0)
    assert any("largest: b" in i.name for i in worker.items)


def test_over_committed_gpu_is_refused_naming_gpu_and_largest_items():
    cfg = profile(
        [voter("owlv2", "cuda:1", 150)],
        H100,
        [
            {"name": "vlm_power", "gpus": ["cuda:1"], "memory_fraction": 0.7},
            {"name": "vlm_fast", "gpus": ["cuda:1"], "memory_fraction": 0.3},
        ],
    )
    with pytest.raises(PlanError, match=r"cuda:1 is over-committed.*vlm_power.*vlm_fast"):
        build_plan(cfg.voters, cfg.placement).check()


def test_unknown_device_and_missing_memory_are_refused():
    cfg = profile([voter("a", "cuda:3", 10)], H100)
    with pytest.raises(PlanError, match="cuda:3"):
        build_plan(cfg.voters, cfg.placement)
    cfg = profile([{"name": "b", "kind": "x", "level": "L1", "device": "cuda:0"}], H100)
    with pytest.raises(PlanError, match="no `memory:`"):
        build_plan(cfg.voters, cfg.placement)


def test_vllm_server_on_undeclared_gpu_fails_at_load():
    with pytest.raises(ValueError, match="cuda:2"):
        profile([voter("a", "cpu", 1)], H100, [{"name": "s", "gpus": ["cuda:2"], "memory_fraction": 0.2}])


def test_the_old_profile_key_of_a_vllm_server_says_it_is_now_launch():
    with pytest.raises(ValueError, match="`profile` is now `launch`"):
        profile([voter("a", "cpu", 1)], H100, [{"name": "s", "profile": "vllm/fast.yaml"}])


def test_balance_names_the_model_that_evens_out_the_two_cards():
    from cascade.placement import gpu_balance

    # given measured costs that leave cuda:0 with 86 ms per image and cuda:1 with 53
    cfg = profile(
        [
            voter("sam", "cuda:0", 94),
            voter("owlv2", "cuda:0", 155),
            voter("rtdetrv2", "cuda:0", 42),
            voter("yolo", "cuda:0", 57),
            voter("gdino", "cuda:1", 172),
            voter("clip", "cuda:1", 428),
            voter("new", "cuda:1", 10),
        ],
        H100,
    )
    costs = {"sam": 29.0, "owlv2": 11.0, "rtdetrv2": 6.0, "yolo": 40.0, "gdino": 45.0, "clip": 8.0}
    balance = gpu_balance(cfg.voters, costs)
    # then each card's time adds up, the unmeasured model is listed, and the hint moves the model
    # closest to half the gap (16.5 ms): owlv2
    assert balance.ms_per_image == {"cuda:0": 86.0, "cuda:1": 53.0}
    assert balance.unmeasured == ["new"]
    hint = balance.warning()
    assert hint.startswith("cuda:0 has 86 ms") and "Moving owlv2 (11 ms) to cuda:1 would give 75 vs 64" in hint
    # and once it is moved the cards are within 20 % of each other: no hint
    costs_after = gpu_balance(
        profile([voter("a", "cuda:0", 1), voter("b", "cuda:1", 1)], H100).voters, {"a": 75.0, "b": 64.0}
    )
    assert costs_after.warning() is None


def test_service_replicas_each_hold_their_models_and_share_the_vllm_servers():
    # two cascade-service replicas on the same cards: every model and batch budget twice, vLLM once
    cfg = profile(
        [voter("a", "cuda:0", 500, act=2.0), voter("b", "cuda:0", 250, act=3.0)],
        H100,
        [{"name": "s", "gpus": ["cuda:0"], "memory_fraction": 0.3}],
    )
    one = build_plan(cfg.voters, cfg.placement, one_batch_at_a_time=True)
    two = build_plan(cfg.voters, cfg.placement, one_batch_at_a_time=True, replicas=2)
    vllm = 0.3 * 79.1
    g1, g2 = one.gpus[0].planned_gib - vllm, two.gpus[0].planned_gib - vllm
    assert g2 == pytest.approx(2 * g1)
    assert sum(i.kind == "activations" for i in two.gpus[0].items) == 2  # one batch budget per replica's worker
    assert sum(i.name == "s" for i in two.gpus[0].items) == 1


def test_workers_per_device_each_hold_the_gpu_models_and_a_batch_budget_but_not_the_cpu_voters():
    # two worker processes per GPU: each GPU model and the largest batch budget twice, a CPU voter once
    cfg = profile(
        [voter("a", "cuda:0", 500, act=2.0), voter("b", "cuda:0", 250, act=3.0), voter("c", "cpu", 10)],
        H100,
    )
    one = build_plan(cfg.voters, cfg.placement, one_batch_at_a_time=True)
    two = build_plan(cfg.voters, cfg.placement, one_batch_at_a_time=True, workers_per_device=2)
    assert two.gpus[0].planned_gib == pytest.approx(2 * one.gpus[0].planned_gib)
    assert sum(i.kind == "activations" for i in two.gpus[0].items) == 2
    assert {i.name for i in two.gpus[0].items if i.kind == "x"} == {
        "a (worker 1)",
        "a (worker 2)",
        "b (worker 1)",
        "b (worker 2)",
    }
    assert [i.name for i in two.cpu_items] == ["c"]
    with pytest.raises(PlanError, match="workers_per_device must be at least 1"):
        build_plan(cfg.voters, cfg.placement, workers_per_device=0)


def test_each_lane_of_a_worker_counts_the_largest_batch_budget_of_its_own_voters():
    # three GPU voters over two lanes: a and c on the first, b on the second
    cfg = profile(
        [voter("a", "cuda:0", 500, act=2.0), voter("b", "cuda:0", 250, act=3.0), voter("c", "cuda:0", 10, act=5.0)],
        H100,
    )
    one = build_plan(cfg.voters, cfg.placement, one_batch_at_a_time=True)
    two = build_plan(cfg.voters, cfg.placement, one_batch_at_a_time=True, lanes={"a": 0, "b": 1, "c": 0})
    acts = sorted(i.gib for i in two.gpus[0].items if i.kind == "activations")
    assert [i.gib for i in one.gpus[0].items if i.kind == "activations"] == pytest.approx([5.0])
    assert acts == pytest.approx([3.0, 5.0])  # c's 5 GiB on lane 1, b's 3 GiB on lane 2
    assert two.gpus[0].planned_gib == pytest.approx(one.gpus[0].planned_gib + 3.0)


@pytest.mark.parametrize("key", ["workers_per_device", "lanes_per_worker"])
def test_workers_and_lanes_per_device_need_worker_processes(key: str):
    from cascade.config import ConfigError

    with pytest.raises((ConfigError, ValueError), match=rf"runtime.{key} \(2\) needs runtime.process_per_device"):
        CascadeConfig.model_validate({"voters": [voter("a", "cuda:0", 1)], "runtime": {key: 2}})
    ok = CascadeConfig.model_validate(
        {"voters": [voter("a", "cuda:0", 1)], "runtime": {key: 2, "process_per_device": True}}
    )
    assert getattr(ok.runtime, key) == 2


def test_models_split_over_workers_count_each_model_once_and_a_batch_budget_per_worker():
    # two workers on one GPU that divide its three models (runtime.worker_split: models)
    cfg = profile(
        [voter("a", "cuda:0", 500, act=2.0), voter("b", "cuda:0", 250, act=3.0), voter("c", "cuda:0", 10, act=5.0)],
        H100,
    )
    one = build_plan(cfg.voters, cfg.placement, one_batch_at_a_time=True)
    split = build_plan(
        cfg.voters, cfg.placement, one_batch_at_a_time=True, workers_per_device=2, workers={"a": 0, "b": 1, "c": 0}
    )
    weights = {i.name: i.gib for i in split.gpus[0].items if i.kind == "x"}
    assert set(weights) == {"a (worker 1)", "b (worker 2)", "c (worker 1)"}
    assert sum(weights.values()) == pytest.approx(sum(i.gib for i in one.gpus[0].items if i.kind == "x"))
    acts = sorted(i.gib for i in split.gpus[0].items if i.kind == "activations")
    assert acts == pytest.approx([3.0, 5.0])  # c's 5 GiB in worker 1, b's 3 GiB in worker 2
