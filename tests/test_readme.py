"""The README says what the code does: its command list and the torch it installs."""

from __future__ import annotations

import re

import typer.main

from roadwork.cli import app
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def cli_commands() -> set[str]:
    """Every command path of `roadwork` (`eval`, `train backbone`, `vllm print`, ...)."""
    out = set()
    for name, cmd in typer.main.get_command(app).commands.items():
        subs = getattr(cmd, "commands", None)
        out |= {f"{name} {s}" for s in subs} if subs else {name}
    return out


def readme_commands() -> set[str]:
    block = README.split("## The `roadwork` command")[1].split("```bash")[1].split("```")[0]
    groups = {c.split()[0] for c in cli_commands() if " " in c}
    out = set()
    for line in block.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "roadwork":
            continue
        if words[1] in groups:
            out |= {f"{words[1]} {sub}" for sub in words[2].split("|")}
        else:
            out.add(words[1])
    return out


def test_the_readme_lists_every_command_and_no_other():
    listed, real = readme_commands(), cli_commands()
    assert not listed - real, f"README lists commands that do not exist: {sorted(listed - real)}"
    assert not real - listed, f"README's command list lacks: {sorted(real - listed)}"


def test_the_readme_names_the_torch_the_makefile_installs():
    pins = re.search(r"^TORCH\s*\?=\s*(.+)$", (REPO / "Makefile").read_text(), re.M).group(1).split()
    assert pins and all(p.startswith(("torch==", "torchvision==")) for p in pins), pins
    for pin in pins:
        assert f"`{pin}`" in README, f"README does not name {pin}, which the Makefile installs"
    named = set(re.findall(r"`(torch(?:vision)?==[^`]+)`", README))
    assert named <= set(pins), f"README names torch pins the Makefile does not install: {sorted(named - set(pins))}"


def test_the_speed_tables_are_the_result_files() -> None:
    from roadwork.bench.report import TABLES, marked_tables, render_into

    assert set(marked_tables(README)) == set(TABLES)  # every table is in the README, once
    assert render_into(README) == README, "run `roadwork bench --report README.md`"


def test_a_result_file_that_changes_shows_in_its_table(tmp_path) -> None:
    import json
    import shutil

    from typer.testing import CliRunner

    from roadwork.bench.report import RESULTS, render

    for f in RESULTS.glob("bench_cpu_*.json"):
        shutil.copy(f, tmp_path / f.name)
    data = json.loads((tmp_path / "bench_cpu_224.json").read_text())
    data["latency_ms"]["p95"] = 999.0
    (tmp_path / "bench_cpu_224.json").write_text(json.dumps(data))
    assert "| 135 / 999 ms |" in render("cpu-cost", tmp_path)
    # and --check refuses a README whose table was edited by hand
    edited = tmp_path / "README.md"
    edited.write_text(README.replace("| 135 / 203 ms |", "| 135 / 190 ms |"))
    result = CliRunner().invoke(app, ["bench", "--report", str(edited), "--check"])
    assert result.exit_code != 0 and "differs from its result files" in result.output
    assert CliRunner().invoke(app, ["bench", "--report", str(REPO / "README.md"), "--check"]).exit_code == 0


def test_a_load_table_row_reads_its_own_concurrency(tmp_path) -> None:
    import json
    import shutil

    from roadwork.bench.report import RESULTS, render

    for f in RESULTS.glob("gpu_bench_1gpu_workers*_h200_b.json"):
        shutil.copy(f, tmp_path / f.name)
    two = tmp_path / "gpu_bench_1gpu_workers2_h200_b.json"
    data = json.loads(two.read_text())
    data["concurrency"]["64"]["img_per_s"] = (
        2 * json.loads((tmp_path / "gpu_bench_1gpu_workers1_h200_b.json").read_text())["concurrency"]["64"]["img_per_s"]
    )
    two.write_text(json.dumps(data))
    table = render("gpu-workers-h200", tmp_path)
    row_10, row_64 = (
        line
        for line in table.splitlines()
        if line.startswith("| 10 concurrent, 2") or line.startswith("| 64 concurrent, 2")
    )
    assert row_10.split(" | ")[1] == f"{data['concurrency']['10']['img_per_s']:.2f}"  # 10 is untouched
    assert row_64.split(" | ")[1] == f"{data['concurrency']['64']['img_per_s']:.2f}"
    assert "x2.00 at 64" in table  # the footer pairs each 2-worker row with its 1-worker row


def test_a_new_empty_table_is_filled_and_the_text_after_it_kept() -> None:
    from roadwork.bench.report import render, render_into

    text = (
        "intro\n<!-- bench-table cpu-cost -->\n<!-- /bench-table -->\nprose between\n"
        "<!-- bench-table gpu-load-h200 -->\nstale\n<!-- /bench-table -->\nend\n"
    )
    out = render_into(text)
    assert out == (
        "intro\n<!-- bench-table cpu-cost -->\n" + render("cpu-cost") + "\n<!-- /bench-table -->\nprose between\n"
        "<!-- bench-table gpu-load-h200 -->\n" + render("gpu-load-h200") + "\n<!-- /bench-table -->\nend\n"
    )
    assert render_into(out) == out
