"""A weight soup: one network whose weights are the mean of several fine-tuned networks' weights.

Networks fine-tuned from the same ImageNet start with the same recipe and different seeds stay in
one basin of the loss, so the mean of their weights is itself a network, and one that often
holds up better under a shift of camera than any of its ingredients (Wortsman et al., "Model
soups", ICML 2022). Unlike an ensemble of seeds it costs one network at inference. Measured here
on cameras the networks never saw, two pairs of seeds disagreed and neither gained through the
pool: not shipped (docs/new-camera-levers.md, "A weight soup of two seeds").

Every floating tensor (convolutions, batch-norm scales and running statistics, the linear layer)
is averaged in float32; counters (`num_batches_tracked`) are taken from the first ingredient. The
ingredients must be of one kind, with the same keys and shapes, and pooled the same way: anything
else is refused with the file and key named, as are networks that held out different sources
(their soup would have seen every source).

    python -m training.soup --out runs/soup/loso.vtti.pt runs/s0/loso.vtti.pt runs/s1/loso.vtti.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def soup_state(paths: list[Path]) -> dict[str, Any]:
    """The checkpoint dict whose backbone and linear layer are the means of `paths`' (at least 2)."""
    import torch

    from detectors.mobilenet import read_checkpoint

    if len(paths) < 2:
        raise ValueError(f"a soup needs at least 2 networks, got {len(paths)}")
    states = [read_checkpoint(p) for p in paths]
    for path, state in zip(paths, states, strict=True):
        if "backbone" not in state:
            raise ValueError(f"{str(path)!r} is not a `roadwork train backbone` checkpoint (no `backbone`)")
    infos = [json.loads(s.get("info", "{}")) for s in states]
    first, name = states[0], str(paths[0])
    for path, state, info in zip(paths[1:], states[1:], infos[1:], strict=True):
        if sorted(info.get("sources", [])) != sorted(infos[0].get("sources", [])):
            raise ValueError(
                f"{str(path)!r} held out {info.get('sources', [])}, {name!r} {infos[0].get('sources', [])}: "
                "a soup of both would have seen every source"
            )
        for key in ("kind", "pool"):
            if state.get(key) != first.get(key):
                raise ValueError(f"{str(path)!r} has {key} {state.get(key)!r}, {name!r} has {first.get(key)!r}")
        if state["backbone"].keys() != first["backbone"].keys():
            odd = sorted(state["backbone"].keys() ^ first["backbone"].keys())
            raise ValueError(f"{str(path)!r} and {name!r} differ in backbone keys (first: {odd[0]!r})")
        for key, value in state["backbone"].items():
            if value.shape != first["backbone"][key].shape:
                raise ValueError(
                    f"{str(path)!r} key {key!r} has shape {tuple(value.shape)}, {name!r} {tuple(first['backbone'][key].shape)}"
                )

    def mean(tensors: list[Any]) -> Any:
        return torch.stack([t.float() for t in tensors]).mean(0)

    backbone = {}
    for key, value in first["backbone"].items():
        if value.is_floating_point():
            backbone[key] = mean([s["backbone"][key] for s in states]).to(value.dtype)
        else:
            backbone[key] = value.clone()
    return {
        **{k: v for k, v in first.items() if k not in ("backbone", "head_weight", "head_bias", "info")},
        "backbone": backbone,
        "head_weight": mean([s["head_weight"] for s in states]),
        "head_bias": mean([s["head_bias"] for s in states]),
        "info": json.dumps({"soup_of": [str(p) for p in paths], "ingredients": infos}),
    }


def training_loaders(data: str | Path, state: dict[str, Any], workers: int) -> list[Any]:
    """Loaders of the views the ingredients trained on: their recipe (the checkpoint's `info`), on
    the train rows of `data` less any source they held out (a leave-one-source-out network)."""
    from training.datasets import load_folder
    from training.finetune import Banks, FinetuneConfig, view_loaders

    info = json.loads(state["info"])["ingredients"][0]
    if "config" not in info:
        raise ValueError("the first ingredient's checkpoint records no training `config` to draw views from")
    known = set(FinetuneConfig.__dataclass_fields__)
    cfg = FinetuneConfig(**{k: v for k, v in info["config"].items() if k in known} | {"workers": workers})
    held_out = set(info.get("sources", ()))
    ds = load_folder(data).select(split="train")
    samples = [s for s in ds.samples if s.source not in held_out]
    print(
        f"[soup] drawing training views from {len(samples)} train rows of {data}"
        + (f" (held out: {', '.join(sorted(held_out))})" if held_out else ""),
        flush=True,
    )
    images = [s.load() for s in samples]
    return view_loaders(samples, images, cfg, Banks.build(ds.root, samples, cfg))


def write_soup(
    paths: list[Path], out: Path, bn_data: str | Path | None = None, bn_batches: int = 20, workers: int = 2
) -> Path:
    """The soup of `paths` at `out`; with `bn_data` (the photos the ingredients trained on), its
    batch-norm statistics computed afresh on `bn_batches` batches of each training view."""
    import torch

    state = soup_state(paths)
    if bn_data is not None:
        from training.finetune import load_network, recalibrate_bn

        net = load_network(paths[0], state=state)  # the first path only names the soup's state
        recalibrate_bn(net, training_loaders(bn_data, state, workers), bn_batches, "cpu")
        dtypes = {k: v.dtype for k, v in state["backbone"].items()}
        state["backbone"] = {k: v.detach().to(dtypes[k]) for k, v in net.backbone.state_dict().items()}
        info = json.loads(state["info"])
        state["info"] = json.dumps(info | {"bn_recalibrated": {"data": str(bn_data), "batches": bn_batches}})
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("networks", nargs="+", type=Path, help="`roadwork train backbone` checkpoints, 2 or more")
    ap.add_argument("--out", type=Path, required=True, help="where the soup's checkpoint goes")
    ap.add_argument(
        "--bn-data",
        default=None,
        help="the photos the ingredients trained on (../shared/data): compute the soup's batch-norm "
        "statistics afresh on their training views (a source the ingredients held out stays out)",
    )
    ap.add_argument("--bn-batches", type=int, default=20, help="batches of each training view for --bn-data")
    ap.add_argument("--workers", type=int, default=2, help="processes drawing the views for --bn-data")
    args = ap.parse_args(argv)
    try:
        out = write_soup(args.networks, args.out, args.bn_data, args.bn_batches, args.workers)
    except (ValueError, FileNotFoundError) as exc:
        ap.error(str(exc))
    print(f"[soup] mean of {len(args.networks)} networks written to {out}", flush=True)


if __name__ == "__main__":
    main()
