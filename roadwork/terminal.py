"""What every command prints to a person: one stderr console, one way to stop with an error.

Light (rich and typer only), so the command modules of every package share it (README, Layers).
"""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

console = Console(stderr=True, soft_wrap=True)
"""Progress, warnings and errors; results go to stdout."""


def fail(message: str) -> NoReturn:
    """Print `error: message` on stderr and exit 2 (a usage or input error, not a crash)."""
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code=2)
