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
