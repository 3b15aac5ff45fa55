"""`roadwork bench --report README.md`: the README's speed tables, rendered from benchmarks/results.

Each table is data: its header, and per row a label, the result files it reads and one function
per column that turns those files into a cell. In the README a table sits between
`<!-- bench-table NAME -->` and `<!-- /bench-table -->`; `render_into` rewrites what lies between
from the files, and `--check` only says whether the README still matches them (a test runs it), so
a figure in those tables cannot drift from its result file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
Files = dict[str, dict[str, Any]]
"""A row's result files by the name the row gives them, loaded."""


@dataclass(frozen=True)
class Row:
    label: str
    files: dict[str, str]
    """name -> file under benchmarks/results."""


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    """The first cell heads the labels; one more per column."""
    columns: tuple[Callable[[Files], str], ...]
    rows: tuple[Row, ...]
    footer: Callable[[list[Files]], list[str]] | None = None
    """Extra rows computed from every row's files (ratios between rows)."""


def _cpu(f: dict[str, Any]) -> str:
    lat = f["latency_ms"]
    return f"{lat['p50']:.0f} / {lat['p95']:.0f} ms"


def _at(f: dict[str, Any], c: str) -> dict[str, Any]:
    return f["concurrency"][c]


def _img_s(f: dict[str, Any], digits: int) -> str:
    return " / ".join(f"{_at(f, c)['img_per_s']:.{digits}f}" for c in ("64", "128"))


def _busy(values: dict[str, float]) -> str:
    return " / ".join(f"{v:.0f} %" for v in values.values())


def _peak(f: dict[str, Any]) -> str:
    return ", ".join(
        f"{m['peak_allocated_gib']:.2f} vs {m['planned_gib']:.2f} GiB (x{m['measured_over_planned']:.2f})"
        for m in f["memory"].values()
    )


def _two_over_one(rows: list[Files]) -> list[str]:
    one, two = rows[0]["run"], rows[1]["run"]
    ratios = " / ".join(f"{_at(two, c)['img_per_s'] / _at(one, c)['img_per_s']:.2f}x" for c in ("64", "128"))
    return ["2 GPUs over 1", f"**{ratios}**", "", "", ""]


TABLES: dict[str, Table] = {
    "cpu-cost": Table(
        ("p50 / p95", "224 px", "1920x1080"),
        (lambda f: _cpu(f["224"]), lambda f: _cpu(f["1920"])),
        (
            Row(
                "shipped (3 voters on 224-px frames, 2 tile voters on large ones)",
                {"224": "bench_cpu_224.json", "1920": "bench_cpu_1920x1080.json"},
            ),
            Row(
                "the default until this release",
                {"224": "bench_cpu_224_prev.json", "1920": "bench_cpu_1920x1080_prev.json"},
            ),
        ),
    ),
    "gpu-2x-h100": Table(
        ("run", "img/s at 64 / 128 concurrent", "p95 at 64", "vs native sum", "vs per-model loop", "GPU busy"),
        (
            lambda f: _img_s(f["run"], 1),
            lambda f: f"{_at(f['run'], '64')['latency_ms']['p95'] / 1000:.1f} s",
            lambda f: f"{100 * _at(f['run'], '64')['overhead_vs_native_sum']:+.0f} %".replace("+", ""),
            lambda f: f"{_at(f['run'], '64')['speedup_vs_loop']:.1f}x",
            lambda f: _busy(_at(f["run"], "64")["utilisation"]["gpu_busy_pct_mean"]),
        ),
        (
            Row("2 GPUs, a worker per GPU (profile default)", {"run": "gpu_bench_2gpu_workers_h100.json"}),
            Row("2 GPUs, one process", {"run": "gpu_bench_2gpu_oneprocess_h100.json"}),
        ),
    ),
    "gpu-1-vs-2": Table(
        ("run", "img/s at 64 / 128", "p50 / p95 at 64", "worker busy", "peak vs plan"),
        (
            lambda f: _img_s(f["run"], 2),
            lambda f: " / ".join(f"{_at(f['run'], '64')['latency_ms'][q] / 1000:.1f}" for q in ("p50", "p95")) + " s",
            lambda f: _busy(_at(f["run"], "64")["utilisation"]["worker_busy_pct"]),
            lambda f: _peak(f["run"]),
        ),
        (
            Row("1 GPU (`--single-gpu`)", {"run": "gpu_bench_1gpu_workers_h100_run8.json"}),
            Row("2 GPUs", {"run": "gpu_bench_2gpu_workers_h100_run8.json"}),
        ),
        footer=_two_over_one,
    ),
}


def _line(cells: list[str] | tuple[str, ...]) -> str:
    return "| " + " | ".join(cells) + " |"


def render(name: str, results: Path = RESULTS) -> str:
    """The markdown of one table, from its result files."""
    table = TABLES[name]
    loaded = [{k: json.loads((results / f).read_text()) for k, f in row.files.items()} for row in table.rows]
    lines = [_line(table.header), _line(["---"] * len(table.header))]
    for row, files in zip(table.rows, loaded, strict=True):
        lines.append(_line([row.label, *(cell(files) for cell in table.columns)]))
    if table.footer is not None:
        lines.append(_line(table.footer(loaded)))
    return "\n".join(lines)


MARKED = re.compile(r"(<!-- bench-table (?P<name>[\w-]+) -->\n)(?P<body>.*?)(\n<!-- /bench-table -->)", re.DOTALL)


def render_into(text: str, results: Path = RESULTS) -> str:
    """`text` with every marked table rendered again; an unknown table name is refused."""

    def one(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in TABLES:
            raise KeyError(f"<!-- bench-table {name} -->: no such table; known: {', '.join(sorted(TABLES))}")
        return m.group(1) + render(name, results) + m.group(4)

    return MARKED.sub(one, text)


def marked_tables(text: str) -> list[str]:
    return [m.group("name") for m in MARKED.finditer(text)]
