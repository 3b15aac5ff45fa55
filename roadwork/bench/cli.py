"""CLI bodies of `roadwork bench --gpu`, `--expected-cost` and `--report`.

Light at import (typer, rich, json); torch and the adapters load only when a command runs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import get_args

from rich.console import Console
from rich.table import Table

from cascade.config import FrameTransport
from miner.cli import load_profile_or_exit  # light: the profile schema only
from roadwork.terminal import console, fail


def default_out(name: str) -> Path:
    """$OUT/<name> when $OUT is set (the GPU machine), else runs/<name>."""
    return Path(os.environ.get("OUT", "runs")) / name


def parse_concurrency(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise ValueError(f"--concurrency must be comma-separated positive integers such as 32,64,128,256, got {text!r}")
    return values


def run_gpu(
    config: Path,
    out: Path | None,
    *,
    random_weights: bool,
    device: str | None,
    single_gpu: bool,
    concurrency: str,
    tiny: bool,
    no_early_exit: bool,
    dtype: str | None,
    levers: bool,
    size: int | tuple[int, int],
    only: list[str] | None,
    process_per_device: bool | None = None,
    bursts: int = 1,
    workers_per_device: int | None = None,
    lanes_per_worker: int | None = None,
    frame_transport: str | None = None,
    input_scale: bool = True,
    native: bool = True,
) -> Path:
    """`roadwork bench --gpu`: build, warm up, drive, write the JSON; returns its path."""
    from roadwork.bench.gpu import run_gpu_bench
    from roadwork.bench.options import GpuBenchOptions

    if not random_weights:
        fail("--gpu measures with random weights only (no downloads on the GPU machine): add --random-weights")
    if dtype not in (None, "float16", "bfloat16", "float32"):
        fail(f"--dtype must be float16, bfloat16 or float32, got {dtype!r}")
    if frame_transport is not None and frame_transport not in get_args(FrameTransport):
        fail(f"--frame-transport must be one of {', '.join(get_args(FrameTransport))}, got {frame_transport!r}")
    try:
        conc = parse_concurrency(concurrency)
    except ValueError as exc:
        fail(str(exc))
    cfg = load_profile_or_exit(config)
    from roadwork.env import set_torch_threads

    set_torch_threads(cfg.runtime.torch_threads)
    opts = GpuBenchOptions(
        concurrency=conc,
        device=device,
        single_gpu=single_gpu,
        tiny=tiny,
        no_early_exit=no_early_exit,
        dtype=dtype,
        levers=levers,
        size=size,
        only=only,
        native_batch=8 if tiny else 32,
        loop_frames=2 if tiny else 8,
        process_per_device=process_per_device,
        workers_per_device=workers_per_device,
        lanes_per_worker=lanes_per_worker,
        frame_transport=frame_transport,
        input_scale=input_scale,
        bursts=bursts,
        native=native,
    )
    out = out or default_out("gpu_bench_single.json" if single_gpu else "gpu_bench.json")
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(result: dict) -> None:  # after every stage: a run cut off by a time limit keeps its figures
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")

    start = time.monotonic()

    def progress(msg: str) -> None:  # a spinner in a terminal; elsewhere (a log file) a line per stage
        status.update(msg)
        if not console.is_terminal:
            console.print(
                f"[bench {time.monotonic() - start:6.0f} s] {msg}", markup=False, highlight=False, soft_wrap=True
            )

    with console.status("gpu bench") as status:
        try:
            result = run_gpu_bench(cfg, opts, progress=progress, checkpoint=write)
        except RuntimeError as exc:
            fail(str(exc))
    _print_gpu(result)
    console.print(f"wrote {out}")
    return out


def _print_gpu(r: dict) -> None:
    fq = r["first_query_ms"]
    native = (
        f"native sum {r['native_sum_ms_per_image']:.1f} ms/img, loop {r['loop_ms_per_image']:.1f} ms/img"
        if r["native_sum_ms_per_image"] is not None
        else "native cost and loop skipped"
    )
    table = Table(
        title=f"{r['profile']}: {len(r['voters'])} in-process voters ({native}; "
        f"first query {fq['cold']:.0f} ms cold, {fq['after_warmup']:.0f} ms warm)"
    )
    for col in ("concurrency", "img/s", "p50 ms", "p95 ms", "overhead", "x loop", "GPU busy %", "CPU cores"):
        table.add_column(col)
    for c, run in r["concurrency"].items():
        util = run.get("utilisation", {})
        busy = " ".join(f"{v:.0f}" for v in util.get("gpu_busy_pct_mean", {}).values()) or "-"
        table.add_row(
            c,
            f"{run['img_per_s']:.1f}",
            f"{run['latency_ms']['p50']:.0f}",
            f"{run['latency_ms']['p95']:.0f}",
            "-" if run["overhead_vs_native_sum"] is None else f"{100 * run['overhead_vs_native_sum']:+.1f}%",
            "-" if run["speedup_vs_loop"] is None else f"{run['speedup_vs_loop']:.2f}",
            busy,
            f"{util.get('cpu_cores_busy', float('nan')):.1f}",
        )
    Console().print(table)
    for c, run in r["concurrency"].items():
        if "bursts" in run:
            first, later = run["bursts"][0], run["bursts"][1:]
            console.print(
                f"concurrency {c}: first burst p95 {first['p95']:.0f} ms, later "
                + ", ".join(f"{b['p95']:.0f}" for b in later)
                + f" ms: first/later x{run['first_over_later_p95']:.2f} (goal <= 1.2)"
            )
    for name, why in {**r["skipped"], **r["excluded"]}.items():
        console.print(f"[yellow]not run[/yellow] {name}: {why}")
    for dev, m in r["memory"].items():
        console.print(
            f"{dev}: peak {m['peak_allocated_gib']:.2f} GiB vs planned {m['planned_gib']:.2f} GiB "
            f"(x{m['measured_over_planned']})"
        )


def run_expected_cost(
    run: Path, costs: Path | None, artefact: Path, cont: list[str] | None, cost: list[str] | None, out: Path | None
) -> Path:
    """`roadwork bench --expected-cost RUN`: early-exit shares and expected GPU ms per query."""
    from consensus.artefact import ConsensusArtefact
    from roadwork.bench.expected_cost import parse_pairs, report

    try:
        fitted = ConsensusArtefact.load(artefact)
        if len(fitted.pools) > 1:
            raise ValueError(
                f"{artefact} has one pool per frame size; --expected-cost reads an artefact with "
                "one pool (a profile whose voters score every frame)"
            )
        band = tuple(fitted.pools[0].bands["L0"])
        bench = json.loads(costs.read_text()) if costs else None
        result = report(run, band, bench, parse_pairs(cont, "--continue"), parse_pairs(cost, "--level-cost"))
    except KeyError:
        fail(f"{artefact} has no fitted L0 band; fit one with `roadwork fit` or pass another --artefact")
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    out = out or default_out("expected_cost.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    table = Table(
        title=f"{result['l0']['n']} dev images: {100 * (1 - result['l0']['continue']):.1f}% exit at L0 "
        f"(band {result['l0']['band']}); expected {result['expected_ms_per_query']:.1f} GPU ms "
        f"per query vs {result['all_levels_ms']:.0f} ms through every level"
    )
    for col in ("level", "reach", "exits here", "cost ms", "source", "expected ms"):
        table.add_column(col)
    for lv, row in result["levels"].items():
        table.add_row(
            lv,
            f"{row['reach']:.3f}",
            f"{row['exit']:.3f}",
            f"{row['cost_ms']:.1f}",
            result["cost_sources"][lv],
            f"{row['expected_ms']:.1f}",
        )
    Console().print(table)
    console.print(f"wrote {out}")
    return out


def run_report(path: Path, check: bool) -> None:
    """`roadwork bench --report FILE [--check]`: the marked tables of FILE from benchmarks/results."""
    from roadwork.bench.report import marked_tables, render_into

    if not path.is_file():
        fail(f"--report {path}: no such file")
    text = path.read_text()
    names = marked_tables(text)
    if not names:
        fail(f"--report {path}: no table is marked (`<!-- bench-table NAME -->` ... `<!-- /bench-table -->`)")
    try:
        rendered = render_into(text)
    except (KeyError, FileNotFoundError) as exc:
        fail(f"--report {path}: {exc}")
    if rendered == text:
        console.print(f"{path}: {len(names)} tables match their result files ({', '.join(names)})")
        return
    if check:
        fail(f"{path}: a speed table differs from its result files; run `roadwork bench --report {path}`")
    path.write_text(rendered)
    console.print(f"{path}: rendered {len(names)} tables from benchmarks/results ({', '.join(names)})")
