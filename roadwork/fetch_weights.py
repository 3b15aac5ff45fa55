"""`roadwork fetch-weights PROFILE`: every checkpoint a profile needs, and (only if asked) fetch them.

The project never downloads by itself. This command lists what a profile names (hub ids of
transformers models and vLLM-served VLMs, ultralytics asset names, RF-DETR checkpoints) with
whether each is already on this machine; `--download` fetches the missing ones into the usual
caches (huggingface_hub's cache; ultralytics/RF-DETR files next to the profile, where the adapters
look for them). Trained heads (`backbone-head` `head:` files) cannot be downloaded: train them with
`roadwork train head`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cascade.config import CascadeConfig
from detectors.weights import WeightItem, profile_weights
from miner.cli import load_profile_or_exit  # light: the profile schema only
from roadwork.terminal import console, fail


def _served_models(cfg: CascadeConfig) -> dict[str, str]:
    """served_model_name -> hub id, from the launch specs named under placement.vllm_servers."""
    from vlm_tiers.launch import load_launch_spec

    out = {}
    for s in cfg.placement.vllm_servers:
        if s.launch:
            spec = load_launch_spec(str(cfg.resolve(s.launch)))
            out[spec.served_model_name] = spec.model
    return out


def items_for(cfg: CascadeConfig) -> list[WeightItem]:
    """What each enabled voter of the profile needs, in profile order (each kind's registry entry
    says: detectors/weights.py)."""
    return profile_weights(cfg, _served_models(cfg))


def hub_cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(hit, str)


def check_present(items: list[WeightItem]) -> list[WeightItem]:
    for it in items:
        if it.present is not None:
            continue
        if it.source == "hf" and "/" in it.id:
            it.present = hub_cached(it.id)
        elif it.target:
            it.present = Path(it.target).is_file()
    return items


def go_online() -> None:
    """Called only under --download: lift the offline defaults for this process."""
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "YOLO_OFFLINE"):
        os.environ[key] = "0"
    import huggingface_hub.constants as hc

    hc.HF_HUB_OFFLINE = False


def download(item: WeightItem) -> str:
    """Fetch one item; returns where it is. Never called by tests."""
    if item.source == "hf":
        from huggingface_hub import snapshot_download

        return snapshot_download(item.id)
    if item.source == "ultralytics":
        from ultralytics.utils.downloads import attempt_download_asset

        return str(attempt_download_asset(item.target or item.id))
    if item.source == "rfdetr":
        import rfdetr

        from detectors.rfdetr import VARIANTS

        variant = item.note.split()[1] if item.note.startswith("RF-DETR ") else "medium"
        getattr(rfdetr, VARIANTS[variant])(pretrain_weights=item.target, device="cpu")  # downloads if missing
        return item.target
    raise ValueError(f"{item.voter}: {item.source} items ({item.id}) cannot be downloaded; {item.note}")


def fetch_weights_cmd(
    config: Annotated[Path, typer.Argument(help="Profile, e.g. configs/h100x2.yaml.")],
    list_only: Annotated[
        bool, typer.Option("--list", help="Only list (the default when --download is not given).")
    ] = False,
    fetch_missing: Annotated[
        bool,
        typer.Option("--download", help="Fetch what is missing (needs internet; lifts HF_HUB_OFFLINE for this run)."),
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Also write the list as JSON here.")] = None,
) -> None:
    """List every hub id / file a profile needs and whether it is here; fetch them only with --download.

    Nothing in the project downloads on its own. On a machine with internet run
    `roadwork fetch-weights configs/h100x2.yaml --download` once; transformers models go to the
    Hugging Face cache, ultralytics and RF-DETR files next to the profile; vLLM reads the same cache.
    """
    if list_only and fetch_missing:
        fail("--list and --download exclude each other; give one")
    cfg = load_profile_or_exit(config)
    items = check_present(items_for(cfg))
    table = Table(title=f"{cfg.name}: {len(items)} weight items")
    for col in ("voter", "source", "id", "here", "note"):
        table.add_column(col)
    for it in items:
        here = {True: "[green]yes[/green]", False: "[red]no[/red]", None: "?"}[it.present]
        table.add_row(it.voter, it.source, it.id, here, it.note)
    Console().print(table)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps([it.to_dict() for it in items], indent=2) + "\n")
    if not fetch_missing:
        return
    go_online()
    for it in items:
        if it.present or it.source in ("bundled", "trained"):
            continue
        console.print(f"fetching {it.id} ({it.source}) ...")
        console.print(f"  -> {download(it)}")
