"""Early exit in numbers: the share of queries that stop at each level and the GPU cost that leaves.

A level runs only for queries that did not exit before it, so with reach(L0) = 1 and
reach(L_k+1) = reach(L_k) x continue(L_k), the expected GPU cost per query is

    E[cost] = sum_k reach(L_k) x cost(L_k)

`continue(L0)` is measured: the share of a labelled run's pooled L0 probabilities that fall inside
the L0 exit band (the fitted band from the consensus artefact). Deeper levels have no labelled
run on this machine yet, so their continue shares are stated priors (`--continue L1=0.4`), and
their costs come from a `roadwork bench --gpu` JSON (L0-L2: the sum of each level's models'
native batched ms per image) or stated priors (VLM tiers: GPU ms per image under batching).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LEVELS = ["L0", "L1", "L2", "L3", "L4", "L5"]
# Priors, stated as such in the output. Continue shares: of the queries that reach a level, the
# share still unsure after it. Costs: GPU ms per image under batching on one H100 (L0-L2 from the
# production profile's sizes; L3-L5 from prefill/decode token counts: fast ~340 prompt tokens on a
# 7B + 2B + 1B, power ~500 on 3B-active + 8B + 4B, precision ~1k reasoning tokens on 32B + 4B).
PRIOR_CONTINUE = {"L1": 0.5, "L2": 0.6, "L3": 0.5, "L4": 0.4}
PRIOR_COST_MS = {"L0": 2.0, "L1": 25.0, "L2": 20.0, "L3": 40.0, "L4": 70.0, "L5": 1800.0}


def read_rows(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "predictions.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: give --expected-cost a run folder from `roadwork eval`")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def l0_continue_share(rows: list[dict[str, Any]], band: tuple[float, float]) -> dict[str, Any]:
    """Share of answered rows whose pooled L0 probability lies inside [lo, hi] (they go on to L1)."""
    lo, hi = band
    probs = [float(r["prob"]) for r in rows if r.get("answered", True) and r.get("exit_level") == "L0"]
    if not probs:
        raise ValueError(
            "the run has no rows that exited at L0 with an answer; run it with an L0-only "
            "profile such as configs/cpu.yaml"
        )
    inside = sum(1 for p in probs if lo <= p <= hi)
    low = sum(1 for p in probs if p < lo)
    out = {
        "n": len(probs),
        "band": [lo, hi],
        "exit_low": low / len(probs),
        "exit_high": (len(probs) - inside - low) / len(probs),
        "continue": inside / len(probs),
    }
    labelled = [
        (float(r["prob"]), int(r["label"]))
        for r in rows
        if r.get("exit_level") == "L0" and r.get("label") is not None and not lo <= float(r["prob"]) <= hi
    ]
    if labelled:  # how right the early exits are (the subnet rounds at 0.5)
        out["exit_accuracy"] = sum(int(p > 0.5) == y for p, y in labelled) / len(labelled)
    return out


def expected_cost(
    continue_share: dict[str, float], cost_ms: dict[str, float], levels: list[str] = LEVELS
) -> dict[str, Any]:
    """reach, exit share and cost contribution per level, and the expected ms per query."""
    reach, out, total = 1.0, {}, 0.0
    for i, lv in enumerate(levels):
        cont = continue_share.get(lv, 0.0) if i < len(levels) - 1 else 0.0
        if not 0.0 <= cont <= 1.0:
            raise ValueError(f"continue share of {lv} must be in [0, 1], got {cont}")
        cost = cost_ms[lv]
        out[lv] = {"reach": reach, "exit": reach * (1 - cont), "cost_ms": cost, "expected_ms": reach * cost}
        total += reach * cost
        reach *= cont
    every = sum(cost_ms[lv] for lv in levels)
    return {
        "levels": out,
        "expected_ms_per_query": total,
        "all_levels_ms": every,
        "saving_vs_all_levels": 1 - total / every if every else 0.0,
    }


def parse_pairs(items: list[str] | None, what: str) -> dict[str, float]:
    """['L1=0.4', 'L3=0.5'] -> {'L1': 0.4, 'L3': 0.5}; the error names the flag and the bad item."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().upper()
        try:
            if not sep or key not in LEVELS:
                raise ValueError
            out[key] = float(value)
        except ValueError:
            raise ValueError(f"{what}: expected LEVEL=NUMBER with LEVEL in {LEVELS}, got {item!r}") from None
    return out


def report(
    run_dir: Path,
    band: tuple[float, float],
    bench: dict[str, Any] | None = None,
    continue_over: dict[str, float] | None = None,
    cost_over: dict[str, float] | None = None,
) -> dict:
    from roadwork.bench.results import parse_gpu_bench

    l0 = l0_continue_share(read_rows(run_dir), band)
    cont = {"L0": l0["continue"], **PRIOR_CONTINUE, **(continue_over or {})}
    measured = parse_gpu_bench(bench).level_costs() if bench else {}
    costs = {**PRIOR_COST_MS, **measured, **(cost_over or {})}
    sources = {lv: ("flag" if lv in (cost_over or {}) else "bench" if lv in measured else "prior") for lv in LEVELS}
    result = expected_cost(cont, costs)
    result.update(
        run=str(run_dir),
        l0=l0,
        continue_shares=cont,
        cost_sources=sources,
        continue_sources={
            lv: ("measured" if lv == "L0" else "flag" if lv in (continue_over or {}) else "prior") for lv in LEVELS[:-1]
        },
    )
    return result
