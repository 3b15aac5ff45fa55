"""`roadwork serve` and `roadwork simulate` (registered in roadwork/cli.py). Light to import."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from roadwork.terminal import console, fail

REPO = Path(__file__).resolve().parents[1]


def _quiet_pillow() -> None:
    """Entrypoint-only: Pillow's bomb and corrupt-EXIF warnings would let a caller spam our logs.

    Our own limits (miner.decode) are stricter than Pillow's warning threshold, and every refusal
    is logged once with its reason by the miner itself.
    """
    import warnings

    from PIL import Image

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\..*")


def load_profile_or_exit(path: Path):
    """The profile at `path` (`miner.profile.load_profile`), or exit 2 with the key named: how every
    command reads its --config."""
    from cascade.config import ConfigError
    from miner.profile import load_profile

    try:
        return load_profile(path)
    except ConfigError as exc:
        fail(str(exc))


def build_cascade(cfg, where: str):
    """Build and warm up the profile's cascade, or exit with a message naming `where` it came from.
    The one place every command (eval, bench, serve, simulate) builds a cascade."""
    from cascade.pipeline import Cascade
    from detectors.backbone_head import backbone_compile
    from detectors.device_process import DeviceProcessError
    from roadwork.env import set_torch_threads

    set_torch_threads(cfg.runtime.torch_threads)
    compiled = [
        v.name for v in cfg.voters if v.enabled and v.device.startswith("cuda") and backbone_compile(v) != "none"
    ]
    if compiled:  # where an operator waits: say why, and that the next start is faster
        console.print(
            f"compiling {', '.join(compiled)} during warm-up: about a minute on a fresh machine (58.6 s on "
            "2x H100), less once the kernels are in TORCHINDUCTOR_CACHE_DIR; /readyz answers 503 until then"
        )
    try:
        with console.status(f"loading {cfg.name} ({len(cfg.voters)} voters) and warming up"):
            return Cascade.from_config(cfg)
    except (FileNotFoundError, ValueError, KeyError, DeviceProcessError) as exc:
        fail(f"cannot build the cascade from {where}: {exc}")


def _cascade_builder(cfg):
    def build():
        return build_cascade(cfg, "the profile")

    return build


def serve_cmd(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Cascade profile (YAML); its `miner:` section tunes serving.")
    ] = Path("configs/cpu.yaml"),
    wallet_name: Annotated[
        str, typer.Option("--wallet.name", help="Coldkey wallet name (btcli's --wallet.name).")
    ] = "default",
    wallet_hotkey: Annotated[str, typer.Option("--wallet.hotkey", help="Hotkey name inside the wallet.")] = "default",
    wallet_path: Annotated[
        str | None, typer.Option("--wallet.path", help="Wallets folder (default ~/.bittensor/wallets).")
    ] = None,
    netuid: Annotated[int, typer.Option("--netuid", help="Subnet: 72 on finney (StreetVision), 323 on test.")] = 72,
    network: Annotated[
        str, typer.Option("--subtensor.network", help="finney, test, local or a ws:// endpoint.")
    ] = "finney",
    axon_port: Annotated[
        int, typer.Option("--axon.port", help="Port the axon listens on (open it in your firewall).")
    ] = 8091,
    axon_ip: Annotated[
        str, typer.Option("--axon.ip", help="Interface to bind; 0.0.0.0 so validators can reach you.")
    ] = "0.0.0.0",
    external_ip: Annotated[
        str | None, typer.Option("--axon.external_ip", help="Public IP announced on chain (default: looked up).")
    ] = None,
    external_port: Annotated[
        int | None, typer.Option("--axon.external_port", help="Public port announced on chain (default: --axon.port).")
    ] = None,
    health_port: Annotated[
        int | None,
        typer.Option(
            "--health-port", help="Side port for /healthz, /readyz, /metrics (overrides miner.health.port; 0 = off)."
        ),
    ] = None,
    no_chain: Annotated[
        bool,
        typer.Option("--no-chain", help="Smoke test: no chain, temporary wallet, 127.0.0.1 only, every caller served."),
    ] = False,
    trace: Annotated[
        str | None,
        typer.Option(
            help="Send one trace per request to this Phoenix server, e.g. http://127.0.0.1:6006 (extra `trace`)."
        ),
    ] = None,
    ready_file: Annotated[
        Path | None,
        typer.Option(
            "--ready-file",
            help="Once serving, write the axon's ip, port and hotkey (and the side port URL) here as JSON, for an outside client to test against.",
        ),
    ] = None,
    shared_cascade: Annotated[
        str | None,
        typer.Option(
            "--shared-cascade",
            help="Answer with the cascade service on this Ray cluster (`roadwork cascade-service`; 'auto' or "
            "'ray://HOST:10001') instead of loading the cascade here: several hotkeys, one set of models.",
        ),
    ] = None,
) -> None:
    """Run the miner: a bittensor axon that answers validators' ImageSynapse with P(roadwork).

    Loads and warms the cascade, checks that your hotkey is registered on --netuid, announces the axon on chain and serves until SIGTERM/SIGINT (then drains for miner.drain_s). Callers not in the metagraph, without a validator permit or under miner.policy.min_stake are refused; the rest are served by stake. Health and Prometheus metrics on 127.0.0.1:18091 by default.

    Example: roadwork serve --config configs/cpu.yaml --wallet.name miner --wallet.hotkey default --netuid 323 --subtensor.network test --axon.port 8091
    """
    from miner.serve import ChainError, ServeOptions, run_serve

    _quiet_pillow()
    cfg = load_profile_or_exit(config)
    if health_port is not None:
        cfg = cfg.model_copy(
            update={
                "miner": cfg.miner.model_copy(
                    update={"health": cfg.miner.health.model_copy(update={"port": health_port})}
                )
            }
        )
    from monitoring.logs import default_level

    default_level("INFO")
    opts = ServeOptions(
        wallet_name,
        wallet_hotkey,
        wallet_path,
        netuid,
        network,
        "127.0.0.1" if no_chain and axon_ip == "0.0.0.0" else axon_ip,
        axon_port,
        external_ip or ("127.0.0.1" if no_chain else None),
        external_port,
        no_chain,
        None if ready_file is None else str(ready_file),
    )
    tracer = tracer_for(trace, cfg.tracing)
    builder = _cascade_builder(cfg) if shared_cascade is None else _shared_builder(cfg, shared_cascade)
    try:
        code = run_serve(cfg, opts, builder, tracer=tracer)
    except (ChainError, ValueError, TimeoutError, OSError) as exc:
        fail(str(exc))
    finally:
        if tracer is not None:
            tracer.close()
    raise typer.Exit(code=code)


def _shared_builder(cfg, address: str):
    def build():
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            fail("--shared-cascade needs Ray: `pip install -e .[ray]`")
        from miner.shared import SharedCascade
        from roadwork.env import join_ray

        try:
            join_ray(address)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            fail(f"--shared-cascade {address}: cannot join the Ray cluster: {exc}")
        console.print(f"answering with the shared cascade service on {address} (`roadwork cascade-service`)")
        return SharedCascade(cfg)

    return build


def cascade_service_cmd(
    config: Annotated[Path, typer.Option("--config", "-c", help="Profile whose cascade the service runs.")] = Path(
        "configs/cpu.yaml"
    ),
    ray_address: Annotated[
        str,
        typer.Option("--ray", help="Ray cluster: 'auto' (started with `ray start`), 'ray://HOST:10001' or 'local'."),
    ] = "auto",
    replicas: Annotated[int, typer.Option(min=1, help="Cascades serving at once (Ray Serve replicas).")] = 1,
    cpus: Annotated[float, typer.Option(min=0.1, help="CPUs reserved per replica.")] = 1.0,
    cache_s: Annotated[float, typer.Option(min=0, help="Seconds an answer is kept for the same frame.")] = 5.0,
) -> None:
    """Serve one profile's cascade to many hotkeys: `roadwork serve --shared-cascade ADDRESS` on each.

    Ray Serve deployments on the cluster: a coalescer that runs an identical frame once (keyed by
    the SHA-256 of its pixels) and keeps its answer for --cache-s, in front of --replicas cascades.
    Runs until Ctrl-C / SIGTERM, printing how many frames ran, joined one in flight or came from the
    cache. Example: ray start --head; roadwork cascade-service --config configs/cpu.yaml --ray auto
    """
    import signal
    import time

    from miner.shared import APP, deploy
    from roadwork.env import join_ray

    cfg = load_profile_or_exit(config)
    try:
        from ray import serve
    except ImportError:
        fail("cascade-service needs Ray Serve: `pip install -e .[ray]`")
    try:
        join_ray(ray_address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        fail(f"--ray {ray_address}: cannot join the Ray cluster: {exc} (start one with `ray start --head`)")
    with console.status(f"deploying {cfg.name}'s cascade ({replicas} replica(s))"):
        handle = deploy(str(config.resolve()), replicas=replicas, cpus_per_replica=cpus, cache_s=cache_s)
    console.print(f"serving {cfg.name} as Ray Serve app {APP!r}; fronts: roadwork serve --shared-cascade {ray_address}")

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            time.sleep(30)
            console.print(f"frames: {handle.stats.remote().result(timeout_s=10)}")
    except KeyboardInterrupt:
        pass
    finally:
        serve.delete(APP)
        console.print(f"removed {APP!r}")


def tracer_for(url: str | None, tracing=None, project: str = "roadwork-miner"):
    """The tracer of a command: `--trace URL` (to `project`), else the profile's `tracing` section,
    else None. Every command (eval, simulate, serve) asks here."""
    if url is None and (tracing is None or tracing.endpoint is None):
        return None
    try:
        from monitoring.tracing import CascadeTracer

        if url is None:
            return CascadeTracer.from_config(tracing)
        return CascadeTracer.to_phoenix(url, project=project)
    except ImportError as exc:
        fail(f"--trace needs the `trace` extra (pip install -e '.[trace]'): {exc}")
    except ValueError as exc:
        fail(str(exc))


def _default_data(out: Path) -> tuple[Path, str | None]:
    for candidate in (Path("../shared/data"), REPO.parent / "shared" / "data"):
        if (candidate / "labels.csv").is_file():
            return candidate, "dev"
    from training.sample import make_sample

    console.print("[yellow]no ../shared/data here: making a synthetic sample[/yellow]")
    return make_sample(out / "sample", 40, 0), None


def simulate_cmd(
    data: Annotated[
        Path | None,
        typer.Option(
            help="Folder with labels.csv or a .parquet; default ../shared/data (split dev), else a synthetic sample."
        ),
    ] = None,
    config: Annotated[Path, typer.Option("--config", "-c", help="Cascade profile (YAML).")] = Path("configs/cpu.yaml"),
    split: Annotated[str | None, typer.Option(help="Only rows of this split (e.g. dev).")] = None,
    queries: Annotated[int, typer.Option(min=1, help="Challenges to send.")] = 60,
    concurrency: Annotated[int, typer.Option(min=1, help="Queries in flight at once.")] = 4,
    out: Annotated[
        Path, typer.Option(help="Run folder: queries.jsonl, summary.json/.md, simulation.png, metrics.prom.")
    ] = Path("runs/sim"),
    transform: Annotated[
        str,
        typer.Option(
            "--regime",
            "--transform",
            help="What the simulated validator sends: 'v0.2' (224 crop + augmentation levels; alias 'validator'), 'letterbox' or 'full' (alias 'none').",
        ),
    ] = "v0.2",
    seed: Annotated[int, typer.Option(help="Seed of challenge choice and transform.")] = 0,
    trace: Annotated[
        str | None,
        typer.Option(
            help="Send one trace per query to this Phoenix server (project roadwork-miner); each challenge carries its label as testnet_label, so a wrong answer's trace is tagged `mistake` (extra `trace`)."
        ),
    ] = None,
) -> None:
    """Play validator against our own miner, locally: no chain, no internet.

    Starts the real axon on 127.0.0.1 with throw-away no-password wallets, then a bittensor dendrite sends validator-style challenges (label 50/50, validator transform, base64 JPEG, timeout 9 s). Reports per-query latency, timeouts, running MCC / accuracy and the subnet reward over time, as a table here and as files in --out.

    Example: roadwork simulate --data ../shared/data --split dev --queries 60 --out runs/sim
    """
    from miner.rig import LocalRig
    from miner.sim_report import table_rows
    from miner.simulate import make_challenges, pick_samples, query_row, run_queries, settings_dict, write_run
    from training.evaluate import progress_bar
    from training.transforms import canonical, make_transform

    try:
        transform = canonical(transform)
    except ValueError as exc:
        fail(f"--regime: {exc}")
    _quiet_pillow()
    if data is None:
        data, default_split = _default_data(out)
        split = split or default_split
    ds = _dataset(data, split)
    cfg = load_profile_or_exit(config)
    samples = pick_samples(ds, queries, seed)
    with progress_bar(transient=True) as bar:
        task = bar.add_task("preparing challenges", total=len(samples))
        challenges, problems = make_challenges(samples, make_transform(transform, seed), lambda: bar.advance(task))
    for p in problems[:10]:
        console.print(f"[yellow]skipped[/yellow] {p}")
    import asyncio

    from monitoring.logs import reapply

    reapply()  # miner.rig imported bittensor, which silences every logger that existed before it
    tracer = tracer_for(trace, cfg.tracing)
    cascade = _cascade_builder(cfg)()
    with cascade, LocalRig(cascade, cfg.miner, tracer=tracer) as rig:
        console.print(f"axon on 127.0.0.1:{rig.axon.port}; side port {rig.health.url}/metrics")
        done: list = []
        interrupted = False
        with progress_bar() as bar:
            task = bar.add_task(f"querying ({concurrency} in flight)", total=len(challenges))
            try:
                asyncio.run(run_queries(rig, challenges, concurrency, lambda: bar.advance(task), done=done))
            except KeyboardInterrupt:  # like eval: keep and report what was answered
                interrupted = True
        if interrupted:
            console.print(
                f"[yellow]interrupted[/yellow] after {len(done)} of {len(challenges)} queries; writing those to {out}"
            )
        rows = [query_row(*r) for r in sorted(done, key=lambda r: r[0].index)]
        if not rows:
            fail("interrupted before any query was answered; nothing written")
        summary = write_run(
            out,
            rows,
            rig,
            settings_dict(
                data=data,
                split=split,
                queries=queries,
                concurrency=concurrency,
                config=config,
                transform=transform,
                seed=seed,
                interrupted=interrupted,
            ),
        )
    table = Table(title=f"simulated validator · {data} · split {split}")
    table.add_column("measure")
    table.add_column("value")
    for k, v in table_rows(summary):
        table.add_row(k, v)
    Console().print(table)
    console.print(f"run folder: {out} (summary.md, simulation.png, queries.jsonl, metrics.prom)")
    if tracer is not None:
        tracer.close()
        console.print(f"traces: {trace}, project roadwork-miner; filter mistakes with tag.tags contains 'mistake'")
    if interrupted:
        raise typer.Exit(code=130)  # the shell's code for Ctrl-C: the run is partial


def _dataset(data: Path, split: str | None):
    from training.datasets import load_dataset

    try:
        ds = load_dataset(data)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    ds = ds.select(split=split)
    if not len(ds):
        fail(f"{data}: no usable samples with split={split!r} (try --split dev, or leave --split out)")
    return ds
