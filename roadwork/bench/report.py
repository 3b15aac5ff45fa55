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
Files = dict[str, Any]
"""A row's result files by the name the row gives them, loaded; `at`: the part of them the row reads, if any."""


@dataclass(frozen=True)
class Row:
    label: str
    files: dict[str, str]
    """name -> file under benchmarks/results."""
    at: str | None = None
    """The part of its file a row reads (a concurrency, a step); its cells get it as `files["at"]`."""


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


def _load_cells(f: Files) -> dict[str, Any]:
    """One concurrency of a `--gpu --bursts` run (row `at`), as the load tables show it."""
    r = _at(f["run"], f["at"])
    lat = r["latency_ms"]
    return {
        "img/s": f"{r['img_per_s']:.2f}",
        "p50 / p95": f"{lat['p50'] / 1000:.2f} / {lat['p95'] / 1000:.2f} s",
        "first / later p95": f"x{r['first_over_later_p95']:.2f}",
        "GPU busy": _busy(r["utilisation"]["gpu_busy_pct_mean"]),
        "worker busy": _busy(r["utilisation"]["worker_busy_pct"]),
    }


LOAD_HEADER = ("run", "img/s", "p50 / p95", "first / later p95", "GPU busy", "worker busy")
LOAD_COLUMNS = tuple((lambda f, k=k: _load_cells(f)[k]) for k in LOAD_HEADER[1:])


def _pair_ratios(rows: list[Files]) -> list[str]:
    """For rows in pairs at one concurrency (the setting measured against, then the other): the
    second's img/s over the first's, as "x1.23 at 10", one a pair."""
    return [
        f"x{_at(two['run'], two['at'])['img_per_s'] / _at(one['run'], one['at'])['img_per_s']:.2f} at {one['at']}"
        for one, two in zip(rows[::2], rows[1::2], strict=True)
    ]


def _second_over_first(label: str) -> Any:
    """A footer: `_pair_ratios` of every pair, after `label`."""

    def footer(rows: list[Files]) -> list[str]:
        return [label, ", ".join(_pair_ratios(rows)), "", "", "", ""]

    return footer


def _one_call_pairs(
    gpu: str,
    calls: tuple[str, ...],
    pair: tuple[tuple[str, str], tuple[str, str]],
    lone: tuple[str, str, str],
    footer: str,
) -> Table:
    """Two settings of two workers x four lanes measured in one call at 10 and 64 frames, in each of
    `calls` (`pair`: (label, file tag), the one measured against first), then one setting's run
    from another call (`lone`: call, label, file tag), and each call's img/s ratio of the pair."""

    def row(at: str, at_call: str, what: str, tag: str) -> Row:
        return Row(
            f"{at_call}: {at} concurrent, {what}",
            {"run": f"gpu_bench_1gpu_workers2_lanes4{tag}_{gpu}_{at_call}.json"},
            at,
        )

    def ratios(rows: list[Files]) -> list[str]:
        by_call = [", ".join(_pair_ratios(rows[4 * i : 4 * i + 4])) for i in range(len(calls))]
        cells = by_call[0] if len(calls) == 1 else "; ".join(f"{c}: {r}" for c, r in zip(calls, by_call, strict=True))
        return [footer, cells, "", "", "", ""]

    return Table(
        LOAD_HEADER,
        LOAD_COLUMNS,
        tuple(row(at, call, what, tag) for call in calls for at in ("10", "64") for what, tag in pair)
        + tuple(row(at, *lone) for at in ("10", "64")),
        footer=ratios,
    )


WORKER_LANE_CALLS = (("e", "f", (1, 1), (2, 2)), ("g", "g", (1, 1), (2, 2)), ("h", "h", (2, 2), (2, 4)))
"""Device calls of the workers x lanes comparison: (call of the first setting, call of the second,
(workers, lanes) measured against, (workers, lanes) compared). Call e's 2 x 2 run was cut in its
warm-up, so its pair comes from two calls, e and f."""


def _setting(workers: int, lanes: int) -> str:
    return f"{workers} worker{'s' if workers > 1 else ''} x {lanes} lane{'s' if lanes > 1 else ''}"


def _workers_lanes_over(rows: list[Files]) -> list[str]:
    """img/s of each pair's second setting over its first, at each concurrency (two pairs a call)."""
    pair_ratios, ratios = _pair_ratios(rows), []
    for i, (one, two, lo, hi) in enumerate(WORKER_LANE_CALLS):
        cells = pair_ratios[2 * i : 2 * i + 2]
        where = "one call" if one == two else f"two calls, {one} and {two}"
        ratios.append(f"{two}: {_setting(*hi)} over {_setting(*lo)} ({where}) {', '.join(cells)}")
    return ["img/s, second setting over first", "; ".join(ratios), "", "", "", ""]


LANE_CALLS = (("a", 1, 2), ("b", 2, 4), ("c", 1, 4), ("d", 1, 4))
"""Device calls of the lanes comparison: (call, lanes of its first run, lanes of its second)."""


def _lanes_over(rows: list[Files]) -> list[str]:
    """img/s of each call's second run over its first, at each concurrency (two pairs a call)."""
    pair_ratios, ratios = _pair_ratios(rows), []
    for i, (call, lo, hi) in enumerate(LANE_CALLS):
        cells = pair_ratios[2 * i : 2 * i + 2]
        ratios.append(f"{call}: {hi} lanes over {lo} {', '.join(cells)}")
    return ["img/s ratios within a call", "; ".join(ratios), "", "", "", "", ""]


def _step_result(step: dict[str, Any]) -> str:
    """ok, or the last line of the step's error."""
    if step["ok"]:
        return "ok"
    last = step["error"].strip().splitlines()[-1]
    return "failed: " + (last if len(last) <= 90 else last[:87] + "...").replace("|", "/")


def _ipc(f: Files, transport: str) -> dict[str, Any]:
    return f["run"]["runs"][f"{f['at']}/{transport}"]


def _two_over_one(rows: list[Files]) -> list[str]:
    one, two = rows[0]["run"], rows[1]["run"]
    ratios = " / ".join(f"{_at(two, c)['img_per_s'] / _at(one, c)['img_per_s']:.2f}x" for c in ("64", "128"))
    return ["2 GPUs over 1", f"**{ratios}**", "", "", ""]


SHM = "shared-memory"
FULLRES_MODELS = (
    "l0_dinov2_l",
    "yolo11x",
    "rtdetr_x",
    "dfine_l",
    "owlv2_b16",
    "gdino_t",
    "depth_da2_l",
    "depth_metric_outdoor_b",
    "sam_mask_b",
    "scene_siglip_so400m",
    "ocr_signs",
)
"""The full-resolution table's models: one of each family (the others' figures are in the files)."""


def _native(f: dict[str, Any], voter: str) -> float:
    return f["voters"][voter]["native"]["ms_per_image"]


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
                "the `_v1` default",
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
    # one call on the lent H200 (issue 18): 1 and 2 worker processes per GPU, side by side
    "gpu-workers-h200": Table(
        LOAD_HEADER,
        LOAD_COLUMNS,
        tuple(
            Row(
                f"{at} concurrent, {w} worker{'s' if w > 1 else ''} per GPU",
                {"run": f"gpu_bench_1gpu_workers{w}_h200_b.json"},
                at,
            )
            for at in ("10", "64")
            for w in (1, 2)
        ),
        footer=_second_over_first("2 workers over 1 (img/s)"),
    ),
    # an earlier call on another H200 (1, 4 and 10 concurrent; its 1-worker run was cut before 64)
    "gpu-load-h200": Table(
        LOAD_HEADER,
        LOAD_COLUMNS,
        tuple(
            Row(
                f"{at} concurrent, {w} worker{'s' if w > 1 else ''} per GPU",
                {"run": f"gpu_bench_1gpu_workers{w}_h200_a.json"},
                at,
            )
            for at in ("1", "4", "10")
            for w in (1, 2)
        )
        + (Row("64 concurrent, 2 workers per GPU", {"run": "gpu_bench_1gpu_workers2_h200_a.json"}, "64"),),
    ),
    # full-resolution frames on the lent H200 (issue 18): one worker, shared memory, before input_long_side
    "gpu-fullres-h200": Table(
        LOAD_HEADER,
        LOAD_COLUMNS,
        (
            Row("10 concurrent 224x224 (as above)", {"run": "gpu_bench_1gpu_workers1_h200_b.json"}, "10"),
            Row("10 concurrent 1920x1080", {"run": f"gpu_bench_1gpu_workers1_1920x1080_{SHM}_h200.json"}, "10"),
        ),
    ),
    # the lent H200's calls in LANE_CALLS (issue 18): runtime.lanes_per_worker, two settings a
    # call; a model that failed in a run is left out of it, so the table says how many ran
    "gpu-lanes-h200": Table(
        (*LOAD_HEADER, "models run"),
        (*LOAD_COLUMNS, lambda f: str(len(f["run"]["voters"]))),
        tuple(
            Row(
                f"{call}: {at} concurrent, {lanes} lane{'s' if lanes > 1 else ''}",
                {"run": f"gpu_bench_1gpu_lanes{lanes}_h200_{call}.json"},
                at,
            )
            for call, lo, hi in LANE_CALLS
            for at in ("10", "64")
            for lanes in (lo, hi)
        ),
        footer=_lanes_over,
    ),
    # issue 18: two workers a card with two and four lanes each, against the committed setting (one
    # worker, one lane) and each other, in pairs (WORKER_LANE_CALLS)
    "gpu-workers-lanes-h200": Table(
        LOAD_HEADER,
        LOAD_COLUMNS,
        tuple(
            Row(
                f"{call}: {at} concurrent, {_setting(w, lanes)}",
                {"run": f"gpu_bench_1gpu_workers{w}_lanes{lanes}_h200_{call}.json"},
                at,
            )
            for one, two, lo, hi in WORKER_LANE_CALLS
            for at in ("10", "64")
            for call, (w, lanes) in ((one, lo), (two, hi))
        ),
        footer=_workers_lanes_over,
    ),
    # issue 18: runtime.start_early: [L2] against the profile as committed, one call (m), two
    # workers x four lanes; call l ran the committed setting alone first, on a cold machine
    "gpu-start-early-h200": _one_call_pairs(
        "h200",
        ("m",),
        (("as committed", ""), ("start_early: [L2]", "_start_early")),
        ("l", "as committed (call of its own)", ""),
        "img/s, start_early over as committed (call m)",
    ),
    # issue 18: runtime.worker_split: models against copies (the default), two workers x four
    # lanes, on one lent H100: call p ran both from a warm compile cache (copies first); call o's
    # copies run came first on a fresh machine and was cut in its warm-up, its split run finished
    "gpu-worker-split-h100": _one_call_pairs(
        "h100",
        ("p",),
        (("copies (default)", ""), ("worker_split: models", "_worker_split")),
        ("o", "worker_split: models", "_worker_split"),
        "img/s, models over copies (call p)",
    ),
    # issue 18: SAM's folded attention and Grounding DINO's level-summed deformable sampling (the
    # profile now) against transformers' forms (as committed before), two workers x four lanes, on
    # one lent H100: calls r (transformers first) and s (the forms first) ran both from a warm
    # compile cache; call q ran the forms alone first, on the fresh machine
    "gpu-attention-forms-h100": _one_call_pairs(
        "h100",
        ("r", "s"),
        (("transformers' forms (before)", "_transformers"), ("folded SAM + level-summed deformable", "_forms")),
        ("q", "folded SAM + level-summed deformable, cold machine", "_forms"),
        "img/s, the forms over transformers'",
    ),
    "gpu-fullres-models-h200": Table(
        ("model", "224x224, ms an image", "1920x1080, ms an image", "1920x1080 over 224"),
        (
            lambda f: f"{_native(f['small'], f['at']):.1f}",
            lambda f: f"{_native(f['full'], f['at']):.1f}",
            lambda f: f"x{_native(f['full'], f['at']) / _native(f['small'], f['at']):.1f}",
        ),
        tuple(
            Row(
                name,
                {
                    "small": "gpu_bench_1gpu_workers1_h200_b.json",
                    "full": f"gpu_bench_1gpu_workers1_1920x1080_{SHM}_h200.json",
                },
                name,
            )
            for name in FULLRES_MODELS
        ),
    ),
    # the profile's tiny mirror on 2 CPU cores, 1920x1080 frames, with and without input_long_side
    "input-scale-tiny-cpu": Table(
        ("run", "img/s", "p50 / p95", "models' own cost, ms an image", "the same without OWLv2"),
        (
            lambda f: _load_cells(f)["img/s"],
            lambda f: _load_cells(f)["p50 / p95"],
            lambda f: f"{f['run']['native_sum_ms_per_image']:.0f}",
            lambda f: f"{f['run']['native_sum_ms_per_image'] - _native(f['run'], 'owlv2_b16'):.0f}",
        ),
        (
            Row("10 concurrent, input_long_side", {"run": "gpu_bench_tiny_1920x1080_scaled_cpu.json"}, "10"),
            Row("10 concurrent, --no-input-scale", {"run": "gpu_bench_tiny_1920x1080_unscaled_cpu.json"}, "10"),
        ),
    ),
    # benchmarks/ipc_frames.py: frames to a worker process, piped or through shared memory (2-core CPU)
    "ipc-frames": Table(
        ("frames x batch", "pipe, ms a frame", "shared memory, ms a frame", "pipe over shared memory"),
        (
            lambda f: f"{_ipc(f, 'pipe')['ms_per_frame']:.2f}",
            lambda f: f"{_ipc(f, 'shared-memory')['ms_per_frame']:.2f}",
            lambda f: f"{_ipc(f, 'pipe')['median_ms_per_call'] / _ipc(f, 'shared-memory')['median_ms_per_call']:.1f}x",
        ),
        tuple(
            Row(f"{shape} x{batch}", {"run": "ipc_frames_cpu.json"}, f"{shape}/{batch}")
            for shape in ("224x224", "1920x1080")
            for batch in (1, 8, 16)
        ),
    ),
    # benchmarks/recipe_steps.py at full size with random weights on the lent H200 (issue 16)
    "recipe-steps-h200": Table(
        ("step", "seconds", "peak GPU", "result"),
        (
            lambda f: f"{f['run']['steps'][f['at']]['seconds']:.1f}",
            lambda f: f"{f['run']['steps'][f['at']]['peak_gpu_gib']:.2f} GiB",
            lambda f: _step_result(f["run"]["steps"][f["at"]]),
        ),
        tuple(
            Row(step, {"run": "recipe_steps_h200.json"}, step)
            for step in (
                *(f"train head {v}" for v in ("l0_dinov2_l", "l0_dinov3_l")),
                *(
                    f"train detector {v}"
                    for v in ("yolo11x", "yolo26x", "rtdetr_x", "yoloe_11l", "rfdetr_l", "dfine_l", "rtdetrv2_r50")
                ),
            )
        ),
    ),
}


def _line(cells: list[str] | tuple[str, ...]) -> str:
    return "| " + " | ".join(cells) + " |"


def render(name: str, results: Path = RESULTS) -> str:
    """The markdown of one table, from its result files."""
    table = TABLES[name]
    loaded = [
        {k: json.loads((results / f).read_text()) for k, f in row.files.items()} | ({"at": row.at} if row.at else {})
        for row in table.rows
    ]
    lines = [_line(table.header), _line(["---"] * len(table.header))]
    for row, files in zip(table.rows, loaded, strict=True):
        lines.append(_line([row.label, *(cell(files) for cell in table.columns)]))
    if table.footer is not None:
        lines.append(_line(table.footer(loaded)))
    return "\n".join(lines)


MARKED = re.compile(
    r"(?P<open><!-- bench-table (?P<name>[\w-]+) -->\n)(?P<body>(?:(?!<!-- ).)*?)\n?(?P<close><!-- /bench-table -->)",
    re.DOTALL,
)
"""A marked table; its body holds no other marker, so an empty one (a new table) is found too."""


def render_into(text: str, results: Path = RESULTS) -> str:
    """`text` with every marked table rendered again; an unknown table name is refused."""

    def one(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in TABLES:
            raise KeyError(f"<!-- bench-table {name} -->: no such table; known: {', '.join(sorted(TABLES))}")
        return m.group("open") + render(name, results) + "\n" + m.group("close")

    return MARKED.sub(one, text)


def marked_tables(text: str) -> list[str]:
    return [m.group("name") for m in MARKED.finditer(text)]
