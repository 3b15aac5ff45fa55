"""The production recipe's training steps at full size with random weights: time and GPU memory per
step (issue 16, item 3), written as JSON after every step so a run cut short keeps its figures.

    python benchmarks/recipe_steps.py --data .carry/data --limit 96 --device cuda:0 \
        --out $OUT/recipe_steps_h200.json
    python benchmarks/recipe_steps.py --data ../shared/data --limit 12 --tiny --out runs/recipe_steps_tiny.json

Each step is the command an operator runs (README, "From an empty GPU box to a serving miner"),
invoked in this process so its peak GPU memory can be read:
- `roadwork train head` on the two L0 backbones of configs/h100x2.yaml (DINOv2-L, DINOv3-L), each
  saved first as a folder with random weights from its config (no download);
- `roadwork train detector` for one epoch for each L1 family the profile fine-tunes: YOLO11x,
  YOLO26x, RT-DETR-x and YOLOE-11l from their yamls, RF-DETR large by name, D-FINE large and
  RT-DETR v2 R50 as random folders.
`--tiny` swaps in the smallest configs of each family (the CPU check of this script). The data is
the train split, cut to `--limit` images (a few iterations, not a training run).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from detectors.random_weights import FULL_CONFIGS, TINY_BY_TYPE
from roadwork.bench.utilisation import machine
from roadwork.cli import app

BACKBONES = {"l0_dinov2_l": "facebook/dinov2-large", "l0_dinov3_l": "facebook/dinov3-vitl16-pretrain-lvd1689m"}
"""configs/h100x2.yaml's L0 backbones (its `backbone.model` ids)."""
DETECTORS = {  # voter: (full-size start, tiny start); None: a random folder from the hub id's config
    "yolo11x": ("yolo11x.yaml", "yolo11n.yaml"),
    "yolo26x": ("yolo26x.yaml", "yolo26n.yaml"),
    "rtdetr_x": ("rtdetr-x.yaml", "rtdetr-l.yaml"),
    "yoloe_11l": ("yoloe-11l.yaml", "yoloe-11s.yaml"),
    "rfdetr_l": ("rfdetr-large", "rfdetr-nano"),
    "dfine_l": ("ustc-community/dfine-large-coco", None),
    "rtdetrv2_r50": ("PekingU/rtdetr_v2_r50vd", None),
}


def random_folder(hub_id: str, folder: Path, tiny: bool, image_size: int, detector: bool) -> Path:
    """A transformers checkpoint folder with random weights from the hub id's config (no download)."""
    import transformers as T

    from detectors.hf_common import random_config

    spec = dict(FULL_CONFIGS[hub_id])
    if tiny:
        spec = dict(TINY_BY_TYPE[spec["model_type"]])
    auto = T.AutoModelForObjectDetection if detector else T.AutoModel
    auto.from_config(random_config(spec)).save_pretrained(folder)
    size = {"height": image_size, "width": image_size}
    (T.RTDetrImageProcessor(size=size) if detector else T.ViTImageProcessor(size=size)).save_pretrained(folder)
    return folder


def round_robin(rows: list[dict], n: int) -> list[dict]:
    """Up to n rows, taken from each source in turn."""
    by_source: dict[str, list[dict]] = {}
    for r in rows:
        by_source.setdefault(r["source"], []).append(r)
    picked: list[dict] = []
    while len(picked) < n and any(by_source.values()):
        for rows_of in by_source.values():
            if rows_of and len(picked) < n:
                picked.append(rows_of.pop(0))
    return picked


def subset(data: Path, limit: int, out: Path) -> Path:
    """`limit` train rows of `data`, half of them boxed positives, taken from every source in turn,
    as a labels.csv over its images and boxes."""
    import csv

    def boxed(r: dict) -> bool:
        f = data / "boxes" / r["source"] / (Path(r["path"]).stem + ".txt")
        return f.is_file() and f.stat().st_size > 0

    rows = list(csv.DictReader((data / "labels.csv").open()))
    train = [r for r in rows if r["split"] == "train"]
    pos = round_robin([r for r in train if r["label"] == "1" and boxed(r)], limit // 2)
    neg = round_robin([r for r in train if r["label"] == "0"], limit - len(pos))
    out.mkdir(parents=True, exist_ok=True)
    for name in ("images", "boxes"):
        link = out / name
        if not link.exists():
            link.symlink_to((data / name).resolve())
    with (out / "labels.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(pos + neg)
    return out


class Steps:
    """Runs each step, timing it and reading its peak GPU memory; the JSON is rewritten after each."""

    def __init__(self, out: Path, device: str, meta: dict[str, Any]) -> None:
        self.out, self.device = out, device
        self.result: dict[str, Any] = {**meta, "steps": {}, "complete": False}
        self.runner = CliRunner()

    def run(self, name: str, args: list[str], wrote: Path) -> None:
        import torch

        cuda = self.device.startswith("cuda")
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        print(f"[recipe] {name}: roadwork {' '.join(args)}", flush=True)
        t0 = time.perf_counter()
        res = self.runner.invoke(app, args)
        step: dict[str, Any] = {"command": "roadwork " + " ".join(args), "seconds": round(time.perf_counter() - t0, 1)}
        if cuda:
            step["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated(self.device) / 1024**3, 2)
        step["ok"] = res.exit_code == 0
        if not step["ok"]:
            tail = (res.output or "") + (repr(res.exception) if res.exception else "")
            step["error"] = tail[-1500:]
        paths = [wrote] if wrote.is_file() else sorted(p for p in wrote.rglob("*") if p.is_file())
        step["wrote"] = {str(p): p.stat().st_size for p in paths if p.exists()}
        self.result["steps"][name] = step
        print(f"[recipe] {name}: {'ok' if step['ok'] else 'FAILED'} in {step['seconds']} s", flush=True)
        self.save()

    def save(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.result, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="labels.csv folder (its train split is used)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("runs/recipe_steps"))
    ap.add_argument("--limit", type=int, default=96, help="train images used by every step")
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--tiny", action="store_true", help="the smallest config of each family (CPU check)")
    ap.add_argument("--only", action="append", help="these steps only (voter names), repeatable")
    args = ap.parse_args(argv)

    import torch

    work = args.work.resolve()
    data = subset(args.data, args.limit, work / "data")
    cuda = args.device.startswith("cuda")
    meta = {
        "what": "the recipe's training steps with random weights, a few iterations each (benchmarks/recipe_steps.py)",
        "machine": machine(),  # as `roadwork bench --gpu` names it: GPUs, cores, python, torch, CUDA
        "device": torch.cuda.get_device_name(args.device) if cuda else f"CPU ({platform.processor() or 'unknown'})",
        "tiny": args.tiny,
        "images": args.limit,
    }
    steps = Steps(args.out, args.device, meta)
    wanted = set(args.only or [*BACKBONES, *DETECTORS])
    size = 56 if args.tiny else 224
    for voter, hub_id in BACKBONES.items():
        if voter in wanted:
            folder = random_folder(hub_id, work / voter, args.tiny, size, detector=False)
            head = work / "models" / f"{voter}_head.npz"
            steps.run(
                f"train head {voter}",
                ["train", "head", "--data", str(data), "--backbone", str(folder), "--views", "1", "--device",
                 args.device, "--features-cache", str(work / "features"), "--out", str(head)],
                head,
            )  # fmt: skip
    # train detector takes ultralytics' spelling: 0, 1 ... (cuda alone: the first card)
    device = (args.device.split(":")[1] if ":" in args.device else "0") if cuda else "cpu"
    for voter, (full, tiny) in DETECTORS.items():
        if voter not in wanted:
            continue
        hub = "/" in full
        if hub:
            start = str(random_folder(full, work / f"{voter}_start", args.tiny, 64 if args.tiny else 640, True))
        else:
            start = tiny if args.tiny and tiny else full
        out = work / "models" / (f"roadwork_{voter}" + ("" if hub else ".pt"))
        steps.run(
            f"train detector {voter}",
            ["train", "detector", "--data", str(data), "--model", start, "--imgsz", "64" if args.tiny else "640",
             "--epochs", "1", "--batch", "4" if args.tiny else "8", "--time-h", "0.1",
             "--device", device,
             "--work", str(work / f"work_{voter}"), "--out", str(out)],
            out,
        )  # fmt: skip
    steps.result["complete"] = True
    steps.save()
    failed = [n for n, s in steps.result["steps"].items() if not s["ok"]]
    print(f"[recipe] wrote {args.out}" + (f"; failed: {failed}" if failed else ""), flush=True)


if __name__ == "__main__":
    main()
