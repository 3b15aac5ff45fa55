"""`roadwork vllm print|launch|plan|compose`: the VLM tiers' vLLM servers from configs/vllm/*.yaml."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vlm_tiers.launch import LAUNCH_DIR

vllm_app = typer.Typer(
    help="vLLM servers for the L3-L5 VLM tiers (launch specs in configs/vllm/).", no_args_is_help=True
)
_err = Console(stderr=True, soft_wrap=True)

TierArg = Annotated[str, typer.Argument(help="Tier name (fast, power, precision) or a launch spec .yaml path.")]
DirOpt = Annotated[Path, typer.Option("--specs", help="Folder of launch specs.")]


def _load(tier: str, specs: Path):
    from vlm_tiers.launch import LaunchSpecError, load_launch_spec  # pydantic models: imported on use

    try:
        return load_launch_spec(tier, specs)
    except LaunchSpecError as exc:
        _err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(code=2) from exc


@vllm_app.command("print")
def print_cmd(tier: TierArg, specs: DirOpt = LAUNCH_DIR) -> None:
    """Print the `vllm serve` command line of a tier's launch spec (with CUDA_VISIBLE_DEVICES).

    Example: `roadwork vllm print fast`, then run the line on the GPU host, or use `launch`.
    """
    typer.echo(_load(tier, specs).command_line())


@vllm_app.command("launch")
def launch_cmd(
    tier: TierArg,
    specs: DirOpt = LAUNCH_DIR,
    dry_run: Annotated[bool, typer.Option(help="Print the command, do not start it.")] = False,
) -> None:
    """Start `vllm serve` for a tier in the foreground (replaces this process).

    Needs vLLM installed (`pip install -e '.[serve]'` on a GPU machine); without it, prints the
    command it would run and exits with status 2.
    """
    spec = _load(tier, specs)
    line = spec.command_line()
    if dry_run:
        typer.echo(line)
        return
    exe = shutil.which("vllm")
    if exe is None or importlib.util.find_spec("vllm") is None:
        _err.print(
            "[red]error:[/red] "
            + escape(
                "vLLM is not installed here (no `vllm` executable / module). Install it on the GPU "
                "machine with `pip install -e '.[serve]'`, or run this command there yourself:"
            )
        )
        typer.echo(line)
        raise typer.Exit(code=2)
    _err.print(f"starting: {line}")
    args = spec.serve_args()
    os.execvpe(exe, [exe, *args[1:]], {**os.environ, **spec.env()})


@vllm_app.command("wait")
def wait_cmd(
    tier: TierArg,
    specs: DirOpt = LAUNCH_DIR,
    timeout_s: Annotated[float, typer.Option(min=1, help="Give up after this many seconds.")] = 900.0,
    every_s: Annotated[float, typer.Option(min=0.1, help="Seconds between polls.")] = 5.0,
) -> None:
    """Wait until a tier's server answers GET /health (200), saying at each poll what it got.

    vLLM loads weights and captures CUDA graphs before it is healthy (minutes for the larger
    tiers). Start the server (`roadwork vllm launch fast &`, or compose), then
    `roadwork vllm wait fast` before `roadwork serve`. Exits 2 if it is not healthy in time.
    """
    import time

    import httpx

    url = f"{_load(tier, specs).base_url}/health"
    t0 = time.monotonic()
    while True:
        try:
            status = httpx.get(url, timeout=min(every_s, 10.0)).status_code
            seen = f"HTTP {status}"
        except httpx.HTTPError as exc:
            status, seen = None, f"{type(exc).__name__}"
        waited = time.monotonic() - t0
        if status == 200:
            _err.print(f"{tier}: healthy at {url} after {waited:.0f} s")
            return
        if waited + every_s > timeout_s:
            _err.print(
                f"[red]error:[/red] {escape(tier)}: not healthy at {url} within {timeout_s:.0f} s (last: {seen})"
            )
            raise typer.Exit(code=2)
        _err.print(f"{tier}: waiting for {url} ({seen}, {waited:.0f} s)")
        time.sleep(every_s)


@vllm_app.command("plan")
def plan_cmd(
    specs: DirOpt = LAUNCH_DIR,
    headroom: Annotated[
        float, typer.Option(min=0.0, max=0.9, help="Share of each card kept for the in-process detectors.")
    ] = 0.15,
) -> None:
    """Add up the tiers' GPU memory fractions per card; refuse when a card exceeds 1 - headroom."""
    from vlm_tiers.launch import gpu_shares

    loaded = []
    for path in sorted(specs.glob("*.yaml")):
        loaded.append(_load(str(path), specs))
    table = Table(title=f"vLLM tiers in {specs}")
    for col in ("tier", "model", "gpus", "TP", "mem fraction", "port"):
        table.add_column(col)
    for p in loaded:
        table.add_row(
            p.tier,
            p.model,
            ",".join(map(str, p.gpus)),
            str(p.tensor_parallel_size),
            f"{p.gpu_memory_utilization:.2f}",
            str(p.port),
        )
    Console().print(table)
    over = {g: s for g, s in gpu_shares(loaded).items() if s > 1.0 - headroom}
    for g, s in sorted(gpu_shares(loaded).items()):
        _err.print(f"GPU {g}: vLLM {s:.2f} of the card, {1 - s:.2f} left for detectors")
    if over:
        _err.print(
            f"[red]error:[/red] cards over {1 - headroom:.2f}: {over}; lower "
            "gpu_memory_utilization in configs/vllm/*.yaml or --headroom"
        )
        raise typer.Exit(code=2)


@vllm_app.command("compose")
def compose_cmd(
    specs: DirOpt = LAUNCH_DIR,
    out: Annotated[
        Path | None, typer.Option(help="Write here (e.g. deploy/compose.vllm.yaml); default: print.")
    ] = None,
) -> None:
    """The docker compose services of every launch spec (configs/vllm/*.yaml and extra/*.yaml).

    Each service runs `vllm serve` with the spec's flags on exactly the spec's cards, so the
    compose file cannot drift from `roadwork vllm print`. Example:
    `roadwork vllm compose --out deploy/compose.vllm.yaml`, then
    `docker compose -f deploy/compose.yaml -f deploy/compose.vllm.yaml --profile vllm up -d`.
    """
    from vlm_tiers.launch import compose_file

    paths = sorted(specs.glob("*.yaml")) + sorted((specs / "extra").glob("*.yaml"))
    if not paths:
        _err.print(f"[red]error:[/red] no launch specs in {specs}")
        raise typer.Exit(code=2)
    text = compose_file({path.stem: _load(str(path), specs) for path in paths})
    if out is None:
        typer.echo(text, nl=False)
        return
    out.write_text(text)
    _err.print(f"wrote {out}: {len(paths)} vLLM services")
