"""The `roadwork review` command. Light to import: FiftyOne is loaded only when the command runs.

FiftyOne 1.22 needs starlette<1.4 while the bittensor/fastapi of the main environment needs
starlette>=1.6, so FiftyOne lives in its own environment, `.venv-review` (`make review-venv`).
Run from an environment without FiftyOne, this command starts the same command in that one.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from roadwork.terminal import fail

REPO = Path(__file__).resolve().parents[1]
REVIEW_PYTHON_ENV = "ROADWORK_REVIEW_PYTHON"


def review_python() -> Path | None:
    """The interpreter of the review environment: $ROADWORK_REVIEW_PYTHON, else REPO/.venv-review."""
    explicit = os.environ.get(REVIEW_PYTHON_ENV)
    path = Path(explicit) if explicit else REPO / ".venv-review" / "bin" / "python"
    return path if path.is_file() else None


def review_cmd(
    run: Annotated[Path, typer.Argument(help="Run folder written by `roadwork eval` (predictions.jsonl, run.json).")],
    data: Annotated[Path | None, typer.Option(help="Dataset folder; overrides the data root in RUN/run.json.")] = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the FiftyOne App.")] = 5151,
    address: Annotated[str, typer.Option(help="Address the App binds to (loopback by default).")] = "127.0.0.1",
    name: Annotated[str | None, typer.Option(help="FiftyOne dataset name (default roadwork-<run folder>).")] = None,
    top: Annotated[int, typer.Option(min=1, help="Size of the `hardest` view and of --export.")] = 100,
    uncertain: Annotated[
        float, typer.Option(min=0.0, max=0.5, help="Tag `uncertain` when |prob - 0.5| < this.")
    ] = 0.15,
    export: Annotated[
        Path | None, typer.Option("--export", help="Write the hardest --top images for labelling here.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="Export/import format: csv, coco, yolo or cvat.")] = "csv",
    import_dir: Annotated[
        Path | None, typer.Option("--import", help="Export folder with corrected labels to bring back.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="labels.csv to write on --import (default RUN/labels-reviewed.csv).")
    ] = None,
    app: Annotated[
        bool | None, typer.Option("--app/--no-app", help="Open the App (default: unless --export/--import).")
    ] = None,
) -> None:
    """Load an eval run into FiftyOne: ground truth, each voter's probability and boxes, mistakes and
    hardness; open the App with saved views `mistakes`, `hardest` and `uncertain`.

    Examples:
      roadwork review runs/dev                                   # App on http://127.0.0.1:5151
      roadwork review runs/dev --export runs/relabel --top 50    # hardest 50 for labelling (CSV)
      roadwork review runs/dev --export runs/relabel --format cvat
      roadwork review runs/dev --import runs/relabel --out labels-fixed.csv
    """
    from training.review_labels import check_format

    try:
        check_format(fmt)
    except ValueError as exc:
        fail(str(exc))
    if import_dir is not None and fmt == "csv":  # CSV corrections need no FiftyOne
        _import(run, data, import_dir, out, None)
        return
    if importlib.util.find_spec("fiftyone") is None:
        _reexec()
    _review(run, data, port, address, name, top, uncertain, export, fmt, import_dir, out, app)


def _reexec() -> None:
    python = review_python()
    if python is None:
        fail(
            "FiftyOne is not installed here and there is no review environment: run `make review-venv` "
            f"(or set {REVIEW_PYTHON_ENV} to a Python that has fiftyone and this project)"
        )
    args = sys.argv[sys.argv.index("review") + 1 :] if "review" in sys.argv else sys.argv[1:]
    os.execv(str(python), [str(python), "-m", "training.review_cli", *args])


def _import(run: Path, data: Path | None, import_dir: Path, out: Path | None, fmt: str | None) -> None:
    from rich.console import Console

    from training.review import read_run
    from training.review_labels import import_labels

    try:
        info, _ = read_run(run, data)
        target = out or run / "labels-reviewed.csv"
        counts = import_labels(import_dir, info.data_root, target, fmt)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    Console(stderr=True).print(
        f"{counts['reviewed']} reviewed, {counts['changed']} label(s) changed -> {target} "
        f"({counts['rows']} rows); retrain on it with `roadwork train head --data {info.data_root} "
        f"--labels {target}` (or `train backbone` / `train boxes`), then compare the two "
        f"models' eval runs with `roadwork compare RUN_OLD RUN_NEW`"
    )


def _review(
    run: Path,
    data: Path | None,
    port: int,
    address: str,
    name: str | None,
    top: int,
    uncertain: float,
    export: Path | None,
    fmt: str,
    import_dir: Path | None,
    out: Path | None,
    app: bool | None,
) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from training.review import build_dataset, launch, read_run, summary
    from training.review_database import start_database
    from training.review_labels import export_hardest

    console = Console(stderr=True)
    # our App operator (export the hardest from the App); an explicit FIFTYONE_PLUGINS_DIR wins
    os.environ.setdefault("FIFTYONE_PLUGINS_DIR", str(REPO / "training" / "fiftyone_plugins"))
    try:
        start_database()
    except (RuntimeError, TimeoutError) as exc:
        fail(str(exc))
    if import_dir is not None:
        _import(run, data, import_dir, out, fmt)
        return
    try:
        info, rows = read_run(run, data)
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), console=console
        ) as bar:
            task = bar.add_task("review", total=len(rows))
            ds, missing = build_dataset(
                info, rows, name=name, top=top, uncertain_margin=uncertain, progress=lambda: bar.advance(task)
            )
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    for key in missing[:10]:
        console.print(f"[yellow]not found under {info.data_root}:[/yellow] {key}")
    console.print(f"dataset {ds.name!r}: {summary(ds)}; saved views {ds.list_saved_views()}")
    if export is not None:
        path = export_hardest(ds, export, top, fmt)
        console.print(
            f"exported the {min(top, len(ds))} hardest to {path.parent} ({fmt}); "
            f"fix `label` there, then `roadwork review {run} --import {path.parent}`"
        )
    if app if app is not None else export is None:
        session = launch(ds, port=port, address=address)
        console.print(f"FiftyOne App on http://{address}:{port} (view `mistakes`); Ctrl-C to stop")
        signal.signal(signal.SIGTERM, _interrupt)  # stop on SIGTERM as on Ctrl-C: close the App server too
        try:
            session.wait(-1)
        except KeyboardInterrupt:
            console.print("closing the App")
        finally:
            session.close()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":  # the review environment runs `python -m training.review_cli ...`
    import importlib
    import logging

    from roadwork.env import configure_process

    configure_process()
    importlib.import_module("fiftyone")  # it gives its loggers (and eta's progress bars) stdout of their
    for name in ("fiftyone", "eta"):  # own on import; through the root handler too, each line came out twice
        logging.getLogger(name).propagate = False
    typer.run(review_cmd)
