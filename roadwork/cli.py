"""The `roadwork` command: train, evaluate, fit and review models; serve and simulate the miner.

Offline by default: HF_HUB_OFFLINE=1, YOLO_OFFLINE=1 and a project-local YOLO_CONFIG_DIR are set
unless you set them yourself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from miner.cli import (  # light: bittensor loads only when they run
    build_cascade,
    cascade_service_cmd,
    load_profile_or_exit,
    serve_cmd,
    simulate_cmd,
    tracer_for,
)
from roadwork.env import configure_process
from roadwork.fetch_weights import fetch_weights_cmd  # light: torch/hub load only when it runs
from roadwork.terminal import console, fail
from training.review_cli import review_cmd  # light: FiftyOne loads only when it runs
from training.train_detector import train_detector_cmd  # light: ultralytics loads only when it runs
from vlm_tiers.cli import vllm_app

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False)
train_app = typer.Typer(help="Train models on a labelled dataset (never on the dev split).", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(vllm_app, name="vllm")

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Cascade profile (YAML).")]
DEFAULT_CONFIG = Path("configs/cpu.yaml")


@app.callback()
def _main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Debug logging (same as --log-level DEBUG).")
    ] = False,
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level", help="DEBUG, INFO, WARNING, ERROR (default WARNING; `serve` and `simulate` default to INFO)."
        ),
    ] = None,
    log_json: Annotated[
        bool, typer.Option("--log-json", help="One JSON object per log line (for log shippers).")
    ] = False,
) -> None:
    from monitoring.logs import parse_level

    if log_level is not None:
        try:
            parse_level(log_level)
        except ValueError as exc:
            fail(f"--log-level: {exc}")
    configure_process(verbose=verbose, log_level=log_level, log_json=log_json)


def _load_cascade(config: Path, profile=None):
    return build_cascade(profile or load_profile_or_exit(config), str(config))


def _load_data(data: Path, split: str | None, sources: list[str] | None, labels: Path | None = None):
    return _select_rows(_read_data(data, labels), data, split, sources)


def _read_data(data: Path, labels: Path | None = None):
    from training.datasets import apply_labels, load_dataset

    try:
        ds = load_dataset(data)
        if labels is not None:
            ds, changed = apply_labels(ds, labels)
            console.print(f"labels from {labels} laid over {data}: {changed} label(s) differ from the data's own")
        return ds
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))


LabelsOption = Annotated[
    Path | None,
    typer.Option(
        help="Corrected labels (CSV with path,label, e.g. from `roadwork review --import`) laid over DATA's own."
    ),
]


def _select_rows(ds, data: Path, split: str | None, sources: list[str] | None):
    ds = ds.select(split=split, sources=sources)
    if not len(ds):
        fail(f"{data}: no usable samples (split={split!r}, sources={sources}); {len(ds.problems)} problem rows")
    for p in ds.problems[:20]:
        console.print(f"[yellow]skipped[/yellow] {p}")
    if len(ds.problems) > 20:
        console.print(f"[yellow]... and {len(ds.problems) - 20} more skipped rows[/yellow]")
    return ds


@app.command("eval")
def eval_cmd(
    data: Annotated[Path, typer.Option(help="Folder with labels.csv, or a NATIX-style .parquet.")],
    out: Annotated[
        Path,
        typer.Option(
            help="Run folder to write predictions, metrics, plots, report (one sub-folder per regime when several run)."
        ),
    ] = Path("runs/eval"),
    config: ConfigOpt = DEFAULT_CONFIG,
    regime: Annotated[
        str,
        typer.Option(
            "--regime",
            "--transform",
            help="What validators send, comma-separated to score several in one run: 'v0.2' (224 crop + augmentation levels; alias 'validator'), 'letterbox' (224 letterbox + levels), 'full' (full resolution; alias 'none').",
        ),
    ] = "v0.2",
    split: Annotated[
        str | None,
        typer.Option(
            help="Only rows whose split column equals this. Default: 'dev' when the data has dev rows (training rows would flatter the score); 'all' scores every row."
        ),
    ] = None,
    source: Annotated[list[str] | None, typer.Option(help="Only these sources (repeatable).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the validator transform.")] = 0,
    trace: Annotated[
        str | None,
        typer.Option(
            help="Send one trace per image to this Phoenix server, e.g. http://127.0.0.1:6006 (extra `trace`); default: the profile's tracing.endpoint."
        ),
    ] = None,
    labels: LabelsOption = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Score on a Ray cluster (extra `ray`): 'auto' (started with `ray start`), 'ray://HOST:10001', "
            "or 'local' (one machine). Same metrics as a single process; every node must see --data.",
        ),
    ] = None,
    ray_replicas: Annotated[int, typer.Option(min=1, help="--ray: cascades scoring at once (one CPU each).")] = 2,
) -> None:
    """Run the cascade over a labelled dataset and score it (MCC, accuracy, AUROC, reward, ...).

    Example: roadwork eval --data ../shared/data --split dev --regime v0.2,letterbox,full --out runs/dev
    """
    from training.evaluate import evaluate, write_regime_table
    from training.transforms import make_transform, parse_regimes

    try:
        regimes = parse_regimes(regime)
    except ValueError as exc:
        fail(f"--regime: {exc}")
    every_row = _read_data(data, labels)
    split = _held_out_split(every_row, split)
    ds = _select_rows(every_row, data, split, source)
    results = {}
    profile = load_profile_or_exit(config)
    tracer = tracer_for(trace, profile.tracing, project="roadwork-eval")
    traces = (
        {"endpoint": trace, "project": "roadwork-eval"}
        if trace
        else {"endpoint": profile.tracing.endpoint, "project": profile.tracing.project}
    )

    def run_info() -> dict:
        return {
            "data_root": str(data.resolve()),
            "split": split,
            "seed": seed,
            **({"traces": traces} if tracer else {}),
        }

    if ray is not None:
        results = _eval_on_ray(ray, ray_replicas, config, profile, ds, regimes, seed, out, tracer, run_info())
    else:
        with _load_cascade(config, profile) as cascade:
            for name in regimes:
                run_dir = out / name if len(regimes) > 1 else out
                console.print(f"regime {name}: {len(ds)} images -> {run_dir}")
                observer_for = tracer.observer_for if tracer else None
                results[name] = evaluate(
                    cascade,
                    ds,
                    make_transform(name, seed),
                    name,
                    run_dir,
                    observer_for=observer_for,
                    run_info=run_info(),
                )
    if tracer:
        tracer.close()
    for result in results.values():
        _print_metrics(result.metrics)
        console.print(f"report: {result.out_dir / 'report.md'}  ({len(result.problems)} inputs skipped)")
    if len(results) > 1:
        table = write_regime_table({k: r.metrics for k, r in results.items()}, out)
        console.print(f"regimes side by side: {table}")


def _eval_on_ray(address, replicas, config, profile, ds, regimes, seed, out, tracer, run_info) -> dict:
    """`eval --ray`: each regime's images scored by cascade replicas on the cluster
    (training/ray_eval.py), the run folder written here by the same code as a single-process run."""
    import importlib.util

    from detectors.artefacts import refuse_missing
    from training.evaluate import evaluate
    from training.transforms import make_transform

    if importlib.util.find_spec("ray") is None:
        fail("--ray needs Ray: `pip install -e .[ray]`")
    if tracer is not None:
        fail("--ray does not send traces (each replica would need its own exporter); drop --trace or --ray")
    try:
        refuse_missing(profile)  # before any replica builds a model
    except FileNotFoundError as exc:
        fail(str(exc))
    from roadwork.env import join_ray
    from training.ray_eval import ray_scores

    try:
        join_ray(address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        fail(f"--ray {address}: cannot join the cluster: {exc}")
    results = {}
    for name in regimes:
        run_dir = out / name if len(regimes) > 1 else out
        console.print(f"regime {name}: {len(ds)} images on Ray ({replicas} cascade replicas) -> {run_dir}")
        scored = ray_scores(ds, config, name, seed, replicas)
        results[name] = evaluate(
            None,
            ds,
            make_transform(name, seed),
            name,
            run_dir,
            run_info=run_info,
            scored=scored,
            profile_name=profile.name,
        )
    return results


@app.command("compare")
def compare_cmd(
    run: Annotated[
        list[Path],
        typer.Argument(help="Eval run folders of the same rows; the first is the baseline. NAME=RUN names a column."),
    ],
    out: Annotated[Path, typer.Option(help="Folder for compare.md and compare.json.")] = Path("runs/compare"),
) -> None:
    """Eval runs side by side (overall, per voter, per source) and the answers that changed.

    Example, after relabelling: roadwork compare before=runs/dev-old after=runs/dev-new --out runs/compare
    """
    from training.evaluate import compare_runs

    named = {}
    for item in run:
        name, _, path = str(item).rpartition("=") if "=" in str(item) else ("", "", str(item))
        named[name or Path(path).name] = Path(path)
    if len(named) < 2:
        fail("compare needs two runs or more (give NAME=RUN to tell runs with the same folder name apart)")
    try:
        path = compare_runs(named, out)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    console.print(path.read_text())
    console.print(f"written: {path}")


def _held_out_split(ds, split: str | None) -> str | None:
    """`--split` as given; 'all' -> every row; unset -> 'dev' where the data has dev rows (said aloud)."""
    if split == "all":
        return None
    if split is not None:
        return split
    if any(s.split == "dev" for s in ds.samples):
        console.print(
            "[yellow]no --split given: scoring the held-out 'dev' rows only (training rows would "
            "flatter the figures; --split all scores every row)[/yellow]"
        )
        return "dev"
    return None


def _print_metrics(m: dict) -> None:
    from training.evaluate import fmt_metric

    out = Console()
    # one short line per fact: a table title wider than the table wraps mid-metric on 80 columns
    out.print(
        f"[bold]{m['transform']}[/bold]: {m['n']} images, MCC {fmt_metric(m['mcc'])}, accuracy {m['accuracy']:.3f}"
    )
    out.print(f"AUROC {m['auroc'] or float('nan'):.3f}, simulated reward {m['subnet_reward']['mean']:.3f}")
    if m.get("unanswered"):
        out.print(f"[yellow]{m['unanswered']} unanswered[/yellow] (no voter answered; scored wrong, as the miner's -1)")
    table = Table()
    for col in ("source", "n", "+", "MCC", "accuracy"):
        table.add_column(col, no_wrap=True)
    for s, r in m["per_source"].items():
        table.add_row(s, str(r["n"]), str(r["positives"]), fmt_metric(r["mcc"]), f"{r['accuracy']:.3f}")
    out.print(table)
    Console().print(
        f"latency p50 {m['latency_ms']['p50']:.1f} ms, p95 {m['latency_ms']['p95']:.1f} ms; "
        f"exit levels {m['exit_levels']}"
    )


def embedding_device(device: str) -> str:
    """'auto' -> cuda:0 when torch sees a GPU, else cpu; a named CUDA device that is not there is refused."""
    import torch

    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        fail(f"--device {device}: torch sees no CUDA device here; use --device cpu (or auto)")
    return device


@train_app.command("head")
def train_head_cmd(
    data: Annotated[Path, typer.Option(help="Folder with labels.csv (uses split=train rows).")],
    out: Annotated[Path, typer.Option(help="Head file to write (.npz); a manifest and OOF run go beside it.")] = Path(
        "models/l0_head.npz"
    ),
    split: Annotated[str, typer.Option(help="Split to train on. Never train on dev.")] = "train",
    backbone: Annotated[
        str, typer.Option(help="'mobilenetv2-deepsort' or a transformers id/folder.")
    ] = "mobilenetv2-deepsort",
    views: Annotated[int, typer.Option(min=1, help="Validator-transformed views per image.")] = 4,
    seed: Annotated[int, typer.Option()] = 0,
    voter: Annotated[str, typer.Option(help="Voter name written into the OOF run.")] = "l0_head",
    labels: LabelsOption = None,
    features_cache: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the embedded views, keyed by data, backbone and views: a second head or a "
            "rerun on the same backbone reads them instead of embedding again ('none': no cache)."
        ),
    ] = Path(".cache/features"),
    device: Annotated[
        str,
        typer.Option(
            help="Where the backbone embeds: cpu, cuda, cuda:1 ...; 'auto' takes the first GPU when there is one "
            "(a large transformers backbone on a CPU takes hours over a big dataset)."
        ),
    ] = "auto",
) -> None:
    """Train the L0 head on backbone embeddings with validator-style augmentation."""
    from detectors.backbones import BackboneSpec, build_backbone
    from training.train_head import HeadTrainConfig, HeadTrainError, train_head

    if split == "dev":
        fail("refusing to train on the dev split: it is for measuring. Use --split train.")
    ds = _load_data(data, split, None, labels)
    device = embedding_device(device)
    spec = (
        BackboneSpec(device=device)
        if backbone == "mobilenetv2-deepsort"
        else BackboneSpec(kind="hf-automodel", model=backbone, device=device)
    )
    console.print(f"embedding on {device}")
    try:
        bb = build_backbone(spec)
    except FileNotFoundError as exc:
        fail(str(exc))
    cache = None if features_cache is None or str(features_cache) == "none" else features_cache
    try:
        info = train_head(ds, bb, out, HeadTrainConfig(views=views, seed=seed), voter=voter, features_cache=cache)
    except HeadTrainError as exc:
        fail(str(exc))
    cv = info["cv"]
    console.print(info["features"])
    console.print(
        f"head: {info['head']} (C={cv['C']}); {cv['folds']}-fold group-CV AUROC {cv['auroc']:.3f}, "
        f"MCC@0.5 {cv['mcc_at_0.5']:.3f}; OOF run for `roadwork fit`: {info['oof_run']}"
    )


VotersOption = Annotated[
    str,
    typer.Option(
        help="Which OOF views become which voters in the OOF run: VIEW=NAME, comma-separated; a view is 224, 448, tiles or small_tiles. Name them as the profile does."
    ),
]


def _view_voters(voters: str) -> dict[str, str]:
    """`--voters` as {view: voter name}; exits naming what does not fit."""
    try:
        view_voters = dict(item.split("=", 1) for item in voters.split(","))
    except ValueError:
        fail(f"--voters {voters!r}: write VIEW=NAME pairs, e.g. 224=l0_paste,448=l0_paste_detail")
    if bad := set(view_voters) - {"224", "448", "tiles", "small_tiles"}:
        fail(f"--voters: unknown views {sorted(bad)}; the OOF run has 224, 448, tiles and small_tiles")
    return view_voters


def _with_recipe_options(command):
    """`command` also takes each option of the fine-tuning recipe (training.finetune.RECIPE_OPTIONS)
    as `--field-name`, typed, defaulted and explained as `python -m training.finetune` takes it, and
    gets them as `recipe`, a dict by field name. A parameter the command declares itself of the same
    name (its own default, say) takes that option's place."""
    import functools
    import inspect

    from training.finetune import RECIPE_OPTIONS, recipe_option_spec

    own = inspect.signature(command, eval_str=True)
    names = [name for name in RECIPE_OPTIONS if name not in own.parameters]
    options = []
    for name in names:
        kind, default, metavar = recipe_option_spec(name)
        options.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=Annotated[kind, typer.Option(help=RECIPE_OPTIONS[name], metavar=metavar)],
            )
        )

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        return command(**{k: v for k, v in kwargs.items() if k not in names}, recipe={k: kwargs[k] for k in names})

    wrapper.__signature__ = own.replace(parameters=[p for p in own.parameters.values() if p.name != "recipe"] + options)
    return wrapper


@train_app.command("backbone")
@_with_recipe_options
def train_backbone_cmd(
    data: Annotated[Path, typer.Option(help="Folder with labels.csv (uses split=train rows).")],
    out: Annotated[
        Path, typer.Option(help="Checkpoint to write (.pt); its manifest and OOF votes go beside it.")
    ] = Path("models/l0_backbone.pt"),
    head: Annotated[Path, typer.Option(help="Head file for the backbone-head voters (.npz).")] = Path(
        "models/l0_head.npz"
    ),
    device: Annotated[
        str,
        typer.Option(
            help="'cpu' (about 1.8 h a model on 2 cores, 11 h with --folds 5) or 'cuda' (278 s with --folds 5 at 12 epochs on an H200)."
        ),
    ] = "cpu",
    folds: Annotated[
        int, typer.Option(min=0, help="Group folds for out-of-fold votes (needed by `roadwork fit`); 0 skips them.")
    ] = 5,
    workers: Annotated[int, typer.Option(min=0, help="Data-loading processes.")] = 2,
    save_folds: Annotated[
        bool, typer.Option(help="Also write each fold's network (OUT.foldK.pt) to score other views out of fold later.")
    ] = False,
    oof_crops: Annotated[
        bool,
        typer.Option(
            help="Also write each OOF row's tile crop probabilities (key `crops`), to choose the tile grids from."
        ),
    ] = False,
    voters: VotersOption = "224=l0_head,448=l0_detail",
    labels: LabelsOption = None,
    *,
    recipe: dict[str, Any],
) -> None:
    """Fine-tune the L0 MobileNetV2 end to end on every validator regime (v0.2, letterbox, full).

    Writes the checkpoint the profile's `backbone.weights` points at, the head file, and with
    --folds the out-of-fold run: then `roadwork fit --run models/l0_head.oof`.

    The recipe's options, --backbone to --seed, are those of `python -m training.finetune`.

    Example: roadwork train backbone --data ../shared/data --device cuda --folds 5
    """
    from training.finetune import recipe_config, train_backbone

    view_voters = _view_voters(voters)
    try:
        cfg = recipe_config(recipe, folds=folds, workers=workers, save_folds=save_folds, oof_crops=oof_crops)
    except ValueError as exc:
        fail(str(exc))
    ds = _load_data(data, "train", None, labels)
    try:
        info = train_backbone(ds, out, head, cfg, device, voters=view_voters)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    console.print(
        f"backbone: {info['checkpoint']}, head: {info['head']} in {info['seconds']} s"
        + (f"; OOF run for `roadwork fit`: {info['oof_run']}" if "oof_run" in info else "")
    )


@train_app.command("package")
def train_package_cmd(
    checkpoint: Annotated[
        Path,
        typer.Option(
            help="A network trained elsewhere by `python -m training.finetune` (a lent GPU), with its OUT.oof.jsonl beside it when it had --folds."
        ),
    ],
    head: Annotated[
        Path,
        typer.Option(
            help="Head file to write for the backbone-head voters (.npz); no default, so that a shipped head is not overwritten by mistake."
        ),
    ],
    voters: VotersOption = "224=l0_head,448=l0_detail",
) -> None:
    """Write beside a checkpoint trained elsewhere what `roadwork train backbone` writes at its end.

    Its manifest (training config, data hash, sha256 and out-of-fold metrics), the head file and
    the out-of-fold run that `roadwork fit` reads. Train on a GPU box with `python -m
    training.finetune --folds 3 ...` (as benchmarks/train_backbone_parallel.sh folds does), copy
    back OUT.pt and OUT.oof.jsonl, then run this.

    Example: roadwork train package --checkpoint models/l0_backbone_paste_erase.pt
    --head models/l0_paste_erase_head.npz --voters 224=l0_paste_erase,448=l0_paste_erase_detail,tiles=l0_paste_erase_tiles
    """
    from training.finetune import package_checkpoint

    view_voters = _view_voters(voters)
    try:
        info = package_checkpoint(checkpoint, head, view_voters)
    except (FileNotFoundError, ValueError) as exc:
        fail(f"--checkpoint: {exc}")
    console.print(f"manifest: {info['manifest']}, head: {info['head']}")
    if "oof_run" in info:
        console.print(f"OOF run for `roadwork fit`: {info['oof_run']}")
    elif info["config"]["folds"] > 1:
        console.print(
            f"[yellow]no OOF run: it was trained with {info['config']['folds']} folds but "
            f"{checkpoint.with_suffix('.oof.jsonl')} is not there; copy it back and run this again[/yellow]"
        )


@train_app.command("boxes")
def train_boxes_cmd(
    data: Annotated[Path, typer.Option(help="Folder with labels.csv and boxes/<source>/ (uses split=train rows).")],
    out: Annotated[
        Path, typer.Option(help="Checkpoint to write (.pt); its manifest and held-out votes go beside it.")
    ] = Path("models/l1_rcnn.pt"),
    device: Annotated[
        str,
        typer.Option(
            help="'cuda' (the measured detector: 8 min for its three models at once on an H200) or 'cpu' (hours)."
        ),
    ] = "cpu",
    epochs: Annotated[int, typer.Option(min=1)] = 24,
    folds: Annotated[
        int, typer.Option(min=0, help="Group folds for out-of-fold votes, when no --held-out is given; 0 skips them.")
    ] = 5,
    held_out: Annotated[
        list[str] | None,
        typer.Option(
            help="Sources (comma-separated) one detector never sees and then scores; repeat. Every row then gets a vote from a detector that never saw its camera."
        ),
    ] = None,
    paste_prob: Annotated[
        float,
        typer.Option(min=0, max=1, help="Paste boxed objects, with their boxes, into this share of dashcam negatives."),
    ] = 0.3,
    erase_prob: Annotated[
        float,
        typer.Option(
            min=0, max=1, help="Erase the boxed objects from this share of boxed positives (they become background)."
        ),
    ] = 0.15,
    time_budget_s: Annotated[
        float, typer.Option(min=0, help="Cap each detector's training at this many seconds (0: none).")
    ] = 0.0,
    workers: Annotated[int, typer.Option(min=0, help="Data-loading processes.")] = 2,
    voter: Annotated[str, typer.Option(help="Voter name in the held-out run, as the profile names it.")] = "l1_rcnn",
    seed: Annotated[int, typer.Option()] = 0,
    labels: LabelsOption = None,
) -> None:
    """Fine-tune the L1 roadwork-object detector (Faster R-CNN on the ImageNet MobileNetV2).

    Trains on the boxes under DATA/boxes (cones, drums and barricades, roadwork signs, machinery,
    workers) with every negative as background, in all three validator regimes; writes the
    checkpoint a `rcnn-mobilenet` voter's `weights` points at and the held-out run for
    `roadwork fit`.

    Example: roadwork train boxes --data ../shared/data --device cuda --held-out camvid,vtti_wz --held-out gtsdb
    """
    from training.finetune_detector import DetectorConfig, train_boxes

    ds = _load_data(data, "train", None, labels)
    if ds.root is None or not (Path(ds.root) / "boxes").is_dir():
        fail(
            f"{data}: no boxes/ folder; the detector trains on boxes/<source>/*.txt (YOLO format) with "
            "classes.txt beside them"
        )
    groups = [tuple(x for x in g.split(",") if x) for g in held_out or []]
    if unknown := {s for g in groups for s in g} - {s.source for s in ds.samples}:
        fail(
            f"--held-out: no training rows of source(s) {sorted(unknown)}; sources here: "
            f"{', '.join(sorted({s.source for s in ds.samples}))}"
        )
    cfg = DetectorConfig(
        epochs=epochs,
        folds=0 if groups else folds,
        paste_prob=paste_prob,
        erase_prob=erase_prob,
        time_budget_s=time_budget_s,
        workers=workers,
        seed=seed,
    )
    try:
        info = train_boxes(ds, out, cfg, device, groups, voter)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    console.print(
        f"detector: {out} in {info.get('seconds', '?')} s"
        + (f"; held-out run for `roadwork fit`: {info['oof_run']}" if "oof_run" in info else "")
    )


@app.command("fit")
def fit_cmd(
    run: Annotated[
        list[Path],
        typer.Option(
            help="A labelled run folder (predictions.jsonl), e.g. a head's OOF run; repeat to join several voters' runs by image key."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Consensus artefact to write (JSON).")] = Path("models/consensus.json"),
    profile: Annotated[
        Path | None,
        typer.Option(
            help="Fit for this profile: the runs must hold votes of exactly its voters; each voter's votes count only on the frame sizes it scores (voters[].long_side), and each part of the size axis that those ranges cut gets a pool of its own."
        ),
    ] = None,
    target: Annotated[float, typer.Option(min=0.5, max=1.0, help="Accuracy required of early exits.")] = 0.98,
    balance: Annotated[
        str | None,
        typer.Option(
            help="Weigh each source ('source') or each source and label ('source-label') the same in each pool, so a large source does not set the weights and threshold for the rest (rows must record their source). Default: every row once."
        ),
    ] = None,
    cut_off_margin: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.5,
            help="Keep each pool's cut-off at the calibrated 0.5 unless another gains more than this MCC on the fit's rows. Out-of-fold rows come from cameras training saw; on a camera it never saw, a cut-off moved up on them misses work zones (docs/new-camera-levers.md). 0: the best cut-off on the fit's rows.",
        ),
    ] = 0.01,
) -> None:
    """Learn voter weights, calibration and routing bands from labelled (out-of-fold) runs.

    Example: roadwork fit --profile configs/cpu.yaml --run models/l0_head.oof --run models/l0_paste_erase_head.oof --out models/consensus-cpu.json
    """
    from consensus.fitting import fit_consensus, rows_from_predictions
    from miner.profile import load_profile
    from training.evaluate import merge_runs, read_predictions

    try:
        sides = None if profile is None else load_profile(profile).voter_sides()
        rows = rows_from_predictions(merge_runs([read_predictions(r) for r in run]))
        artefact = fit_consensus(
            rows,
            target=target,
            fitted_on=", ".join(str(r) for r in run),
            voter_sides=sides,
            balance=balance,
            cut_off_margin=cut_off_margin,
        )
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    artefact.save(out)
    console.print(
        f"wrote {out}: fit-set MCC {artefact.metrics['mcc']:.3f} over {artefact.n_samples} rows"
        + (f", each {balance.replace('-', ' and ')} weighing the same" if balance else "")
    )
    for pool in artefact.pools:
        weights = ", ".join(f"{k} {v:.2f}" for k, v in pool.weights.items())
        console.print(
            f"  {pool.describe()} ({pool.n_samples} rows): weights {weights}; bands {pool.bands}; "
            f"roadwork when the calibrated pooled probability is >= {pool.threshold_raw:.3f}; "
            f"MCC {pool.metrics['mcc']:.3f}"
        )
        if zero := [k for k, v in pool.weights.items() if v == 0.0]:
            console.print(
                f"  [yellow]no say in this pool: {', '.join(zero)}[/yellow] (weight 0: it abstained on every "
                "row, or the fit found it adds nothing; refit on rows where it votes)"
            )
    console.print(
        "each threshold is shifted to 0.5 in the artefact, because validators round our answer at 0.5 "
        "(exactly 0.5 counts as no roadwork)"
    )


@app.command("bench")
def bench_cmd(
    config: ConfigOpt = DEFAULT_CONFIG,
    out: Annotated[
        Path | None,
        typer.Option(
            help="JSON file to write (default runs/bench.json; with --gpu or --expected-cost $OUT/ or runs/gpu_bench.json, expected_cost.json)."
        ),
    ] = None,
    images: Annotated[int, typer.Option(min=1, help="Timed images.")] = 100,
    size: Annotated[int, typer.Option(min=16, help="Image side in pixels (validators send 224).")] = 224,
    frame: Annotated[
        str | None,
        typer.Option(
            help="Non-square frames WxH instead of --size, e.g. 1920x1080 (full-resolution validators); with --gpu too."
        ),
    ] = None,
    gpu: Annotated[
        bool, typer.Option("--gpu", help="Concurrent-load bench of the in-process levels (roadwork/bench/gpu.py).")
    ] = False,
    random_weights: Annotated[
        bool,
        typer.Option(
            "--random-weights", help="--gpu: build every model at full size with random weights (no downloads)."
        ),
    ] = False,
    device: Annotated[
        str | None, typer.Option(help="--gpu: put every in-process model on this device (e.g. cuda:0, cpu).")
    ] = None,
    single_gpu: Annotated[
        bool, typer.Option("--single-gpu", help="--gpu: remap cuda:N to cuda:0 (1-GPU vs 2-GPU comparison).")
    ] = False,
    concurrency: Annotated[
        str, typer.Option(help="--gpu: concurrent frames per run, comma-separated.")
    ] = "32,64,128,256",
    tiny: Annotated[bool, typer.Option("--tiny", help="--gpu: tiny configs on the CPU (smoke run).")] = False,
    no_early_exit: Annotated[
        bool, typer.Option("--no-early-exit", help="--gpu: open every band so every frame runs every in-process level.")
    ] = False,
    dtype: Annotated[
        str | None, typer.Option(help="--gpu: override the models' dtype: float16, bfloat16 or float32.")
    ] = None,
    levers: Annotated[
        bool,
        typer.Option(
            "--levers",
            help="--gpu: also time each model in fp16 vs bf16 and channels_last, and the first "
            "L0 backbone under torch.compile (with and without CUDA graphs).",
        ),
    ] = False,
    only: Annotated[list[str] | None, typer.Option(help="--gpu: only these voters (repeatable).")] = None,
    bursts: Annotated[
        int,
        typer.Option(
            min=1,
            help="--gpu: bursts of new frames at each concurrency; with 2 or more the first load after "
            "warm-up is reported apart from the later ones (first/later p95) and the figures are the later ones'.",
        ),
    ] = 1,
    process_per_device: Annotated[
        bool | None,
        typer.Option(
            "--process-per-device/--one-process",
            help="--gpu: each GPU's voters in a worker process of their own, or all in this process "
            "(default: the profile's runtime.process_per_device); --tiny puts CPU voters in a worker.",
        ),
    ] = None,
    workers_per_device: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="--gpu: worker processes per GPU, each with its own copy of that GPU's voters (default: the "
            "profile's runtime.workers_per_device). Run the bench once with 1 and once with 2 to compare.",
        ),
    ] = None,
    lanes_per_worker: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=8,
            help="--gpu: calls each worker process runs at once, each voter on a lane (thread and CUDA stream) "
            "of its own (default: the profile's runtime.lanes_per_worker). Run the bench with 1 and 2 to compare.",
        ),
    ] = None,
    frame_transport: Annotated[
        str | None,
        typer.Option(
            help="--gpu: how frames reach the worker processes, pipe or shared-memory (default: the profile's "
            "runtime.frame_transport). Run the bench with each, with --frame 1920x1080, to compare.",
        ),
    ] = None,
    input_scale: Annotated[
        bool,
        typer.Option(
            "--input-scale/--no-input-scale",
            help="--gpu: scale frames down to each voter's input_long_side before its model (the profile's "
            "setting), or not: the models get frames as they came. Run both with --frame 1920x1080 to compare.",
        ),
    ] = True,
    native: Annotated[
        bool,
        typer.Option(
            "--native/--no-native",
            help="--gpu: also time each model's own batched cost and a sequential loop (the overhead and "
            "speed-up figures), or skip them to save about 50 s a run (two settings in one device call).",
        ),
    ] = True,
    expected_cost: Annotated[
        Path | None,
        typer.Option(
            "--expected-cost",
            help="An eval run folder (e.g. runs/dev): early-exit shares and expected GPU cost per query.",
        ),
    ] = None,
    costs: Annotated[
        Path | None, typer.Option(help="--expected-cost: a --gpu bench JSON for the L0-L2 costs (else priors).")
    ] = None,
    artefact: Annotated[Path, typer.Option(help="--expected-cost: consensus artefact with the fitted L0 band.")] = Path(
        "models/consensus-cpu.json"
    ),
    continue_share: Annotated[
        list[str] | None,
        typer.Option("--continue", help="--expected-cost: LEVEL=SHARE still unsure after a level (prior), repeatable."),
    ] = None,
    level_cost: Annotated[
        list[str] | None, typer.Option("--level-cost", help="--expected-cost: LEVEL=MS GPU cost per image, repeatable.")
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="A markdown file (README.md): render its marked speed tables from benchmarks/results in place.",
        ),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="--report: change nothing; fail where a table differs from its files.")
    ] = False,
) -> None:
    """Measure per-image latency (p50/p95) and images/s of a profile on this machine.

    `--gpu --random-weights` instead drives the in-process levels with 32-256 concurrent frames
    (see roadwork/bench/gpu.py); `--expected-cost RUN` turns early-exit shares into GPU ms per query;
    `--report README.md [--check]` renders the README's speed tables from benchmarks/results.
    """
    from roadwork.bench import cli as bench_cli

    if report is not None:
        bench_cli.run_report(report, check)
        return
    if expected_cost is not None:
        bench_cli.run_expected_cost(expected_cost, costs, artefact, continue_share, level_cost, out)
        return
    shape = (size, size)
    if frame is not None:
        try:
            w, h = (int(v) for v in frame.lower().split("x"))
        except ValueError:
            fail(f"--frame must be WIDTHxHEIGHT, e.g. 1920x1080; got {frame!r}")
        shape = (w, h)
    if gpu:
        bench_cli.run_gpu(
            config,
            out,
            random_weights=random_weights,
            device=device,
            single_gpu=single_gpu,
            concurrency=concurrency,
            tiny=tiny,
            no_early_exit=no_early_exit,
            dtype=dtype,
            levers=levers,
            size=size if frame is None else shape,
            only=only,
            process_per_device=process_per_device,
            workers_per_device=workers_per_device,
            lanes_per_worker=lanes_per_worker,
            frame_transport=frame_transport,
            input_scale=input_scale,
            bursts=bursts,
            native=native,
        )
        return
    from roadwork.bench.cpu import run_bench

    out = out or Path("runs/bench.json")
    with _load_cascade(config) as cascade:
        result = run_bench(cascade, n=images, size=shape)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    lat = result["latency_ms"]
    console.print(
        f"p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms, {result['images_per_s_sequential']:.1f} img/s -> {out}"
    )


@app.command("plan")
def plan_cmd(
    config: Annotated[Path, typer.Argument(help="Profile to check, e.g. configs/h100x2.yaml.")],
    costs: Annotated[
        Path | None,
        typer.Option(
            help="A `roadwork bench --gpu` JSON: also add up each GPU's measured model time per image "
            "and name a model to move when one card is >20 % busier (e.g. "
            "benchmarks/results/gpu_bench_1gpu_workers_h100_run8.json)."
        ),
    ] = None,
    service_replicas: Annotated[
        int,
        typer.Option(
            min=1, help="Plan this many `roadwork cascade-service` replicas on these cards (each its own models)."
        ),
    ] = 1,
) -> None:
    """Add up each GPU's memory (models + vLLM shares) and refuse an over-committed plan.

    With --costs, also the time balance: with a worker process per GPU the card whose models take
    longest per image sets the cascade's throughput.
    """
    from cascade.config import ConfigError
    from cascade.placement import PlanError, build_plan
    from detectors.device_process import planned_lanes, planned_workers
    from miner.profile import load_profile, planned_concurrency

    try:
        cfg = load_profile(config)
        rt = cfg.runtime
        plan = build_plan(
            cfg.voters,
            cfg.placement,
            one_batch_at_a_time=cfg.runtime.process_per_device,
            replicas=service_replicas,
            workers_per_device=cfg.runtime.workers_per_device,
            lanes=planned_lanes(cfg.voters, rt.lanes_per_worker, rt.workers_per_device, rt.worker_split)
            if rt.process_per_device
            else None,
            workers=planned_workers(cfg.voters, rt.workers_per_device, rt.worker_split)
            if rt.process_per_device
            else None,
        )
    except (ConfigError, PlanError) as exc:
        fail(str(exc))
    table = Table(title=f"placement plan: {cfg.name}")
    for col in ("device", "item", "kind", "GiB"):
        table.add_column(col)
    for g in plan.gpus:
        for item in sorted(g.items, key=lambda i: -i.gib):
            table.add_row(g.gpu.id, item.name, item.kind, f"{item.gib:.2f}")
        table.add_row(
            g.gpu.id,
            "[bold]total[/bold]",
            f"of {g.usable_gib:.1f} usable",
            f"[{'green' if g.fits else 'red'}]{g.planned_gib:.2f}[/]",
            end_section=True,
        )
    for item in plan.cpu_items:
        table.add_row("cpu", item.name, item.kind, f"{item.gib:.2f}")
    Console().print(table)
    if costs is not None:
        _print_balance(cfg, costs)
    problems = plan.problems()
    if problems:
        fail("\n".join(problems))
    console.print("[green]plan fits[/green]")
    planned = planned_concurrency(cfg, default=1)
    if cfg.miner.max_concurrent < planned:
        console.print(
            f"[yellow]miner.max_concurrent {cfg.miner.max_concurrent} lets fewer frames in at once than the "
            f"largest planned batch ({planned}): batches will not fill; set it to `from-plan`[/yellow]"
        )
    from detectors.artefacts import refuse_missing

    try:
        refuse_missing(cfg)
    except FileNotFoundError as exc:
        fail(str(exc))
    console.print("[green]every trained file the profile names is there[/green]")


def _print_balance(cfg: Any, costs: Path) -> None:
    from cascade.placement import gpu_balance
    from roadwork.bench.results import read_gpu_bench

    try:
        measured = read_gpu_bench(costs).model_costs()
    except ValueError as exc:
        fail(f"--costs: not a `roadwork bench --gpu` result: {exc}")
    if not measured:
        fail(f"--costs {costs}: no voters with a measured native cost (run `roadwork bench --gpu` to completion)")
    balance = gpu_balance(cfg.voters, measured)
    table = Table(title=f"model time per image on each GPU (from {costs.name})")
    for col in ("device", "models", "ms / image"):
        table.add_column(col)
    for device, ms in sorted(balance.ms_per_image.items()):
        table.add_row(device, str(len(balance.by_device[device])), f"{ms:.1f}")
    Console().print(table)
    if balance.unmeasured:
        console.print(f"[yellow]not in {costs.name}, not counted: {', '.join(balance.unmeasured)}[/yellow]")
    hint = balance.warning()
    if hint:
        console.print(f"[yellow]{hint}[/yellow]")


@app.command("make-sample")
def make_sample_cmd(
    out: Annotated[Path, typer.Option(help="Folder to write images/ and labels.csv into.")] = Path("runs/sample"),
    n: Annotated[int, typer.Option(min=2, help="Number of images (half roadwork).")] = 40,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Make a small synthetic labelled sample, for machines without real data."""
    from training.sample import make_sample

    console.print(f"wrote {make_sample(out, n, seed) / 'labels.csv'}")


app.command("review")(review_cmd)
app.command("serve")(serve_cmd)
app.command("cascade-service")(cascade_service_cmd)
app.command("simulate")(simulate_cmd)
train_app.command("detector")(train_detector_cmd)
app.command("fetch-weights")(fetch_weights_cmd)

if __name__ == "__main__":
    app()
