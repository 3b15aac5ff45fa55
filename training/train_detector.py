"""Fine-tune a roadwork object detector (ultralytics YOLO, RT-DETR or YOLOE, RF-DETR, transformers
D-FINE / RT-DETR v2) on the dataset's boxes.

Each source in `<data>/boxes/<source>/` has its own `classes.txt`; `box_schema.SCHEMA_MAP` maps those names
onto one schema (cone, barrier, sign, machinery, worker); classes outside it (cars, potholes,
animals...) are dropped, so they are background. Images of label 0 without a box file are added
as pure background; label-1 images without boxes are left out (their objects are unannotated and
would teach the model to miss them). COCO-style box files (the ROADWork dataset's
`instances_*.json`, `--coco`) join the same schema through the same map. The YOLO dataset is a
folder of symlinks plus label files under `runs/` (images are never copied), train split only:
dev is for measuring.

The weights start from a model yaml (random init, e.g. `yolo11n.yaml`) or a released ultralytics
`.pt` (`yolo11x.pt`, `rtdetr-x.pt`, `yoloe-11l-seg.pt`: the family is picked from the name, as the
L1 adapter picks it; YOLOE through ultralytics' `YOLOEPETrainer`, its head first set to the schema
classes, `yoloe_start`), an RF-DETR checkpoint (its own trainer) or a transformers DETR-family checkpoint (D-FINE,
RT-DETR v2; `transformers.Trainer`, written as a folder an `hf-detector` voter names by path);
training is capped by wall time (`time_h`; RF-DETR by epochs only), so it always ends.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from detectors.heads import sha256_file
from training.box_schema import SCHEMA, SCHEMA_PROMPTS, map_class
from training.datasets import Dataset, read_yolo_boxes


class DetectorTrainError(ValueError):
    """What it was given cannot train a detector: the rows, or the start (said to the user, not as a
    traceback)."""


@dataclass(frozen=True)
class DetectorTrainConfig:
    model: str = "yolo11n.yaml"
    """Model yaml (random init) or an ultralytics .pt to fine-tune."""
    imgsz: int = 320
    epochs: int = 60
    time_h: float = 0.5
    """Hard wall-time cap in hours (ultralytics' `time`, overrides epochs)."""
    batch: int = 16
    workers: int = 2
    seed: int = 0
    device: str = "cpu"
    patience: int = 100


@dataclass(frozen=True)
class CocoBoxes:
    """A COCO-style box file and its images folder (the ROADWork dataset's `instances_*.json`)."""

    annotations: Path
    images: Path
    source: str = "coco"
    """Name used for class mapping (`name@source`) and in the YOLO dataset's file names."""


def add_coco_boxes(coco: CocoBoxes, out_dir: Path, val_fraction: float, seed: int, stats: Counter[str]) -> None:
    """Link each image of a COCO file that has a mapped box into `out_dir` with its YOLO label
    file; images whose boxes all map to background are left out (unlabelled roadwork objects may
    be in them). The val part takes whole sequences (the file name without its last `_<frame>`)."""
    import random

    data = json.loads(coco.annotations.read_text())
    names = {c["id"]: c["name"] for c in data.get("categories", [])}
    boxes: dict[Any, list[str]] = {}
    for a in data.get("annotations", []):
        target = map_class(names.get(a["category_id"], str(a["category_id"])), coco.source)
        if target is None:
            stats[f"dropped:{coco.source}:{names.get(a['category_id'])}"] += 1
            continue
        boxes.setdefault(a["image_id"], []).append(a["bbox"] + [SCHEMA.index(target)])
        stats[f"box:{target}"] += 1
    images = [im for im in data.get("images", []) if im["id"] in boxes]
    sequence = {im["id"]: Path(im["file_name"]).stem.rsplit("_", 1)[0] for im in images}
    sequences = sorted(set(sequence.values()))
    random.Random(seed).shuffle(sequences)
    val = set(sequences[: int(len(sequences) * val_fraction)])
    for im in images:
        src = coco.images / im["file_name"]
        if not src.is_file():
            stats[f"missing_image:{coco.source}"] += 1
            continue
        w, h = float(im["width"]), float(im["height"])
        lines = [
            f"{cls} {(x + bw / 2) / w:.6f} {(y + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}\n"
            for x, y, bw, bh, cls in boxes[im["id"]]
        ]
        part = "val" if sequence[im["id"]] in val else "train"
        name = f"{coco.source}__{Path(im['file_name']).name}"
        image = out_dir / "images" / part / name
        image.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(src.resolve(), image)
        label = out_dir / "labels" / part / f"{Path(name).stem}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(lines))
        stats[f"images_{part}"] += 1
        stats[f"images_{coco.source}"] += 1


def build_yolo_dataset(
    dataset: Dataset,
    out_dir: Path,
    val_fraction: float = 0.1,
    seed: int = 0,
    coco: tuple[CocoBoxes, ...] = (),
) -> tuple[Path, dict[str, Any]]:
    """Write `out_dir/{images,labels}/{train,val}` (images as symlinks) and `data.yaml`, from the
    dataset's own boxes and any COCO-style box files.

    The val part is a group-wise slice of the *train* split, used only for ultralytics' own
    early stopping / best.pt choice.
    """
    import random

    if any(s.split == "dev" for s in dataset):
        raise ValueError("build_yolo_dataset got dev-split samples; pass dataset.select(split='train')")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    stats: Counter[str] = Counter()
    class_names: dict = {}
    usable = []
    for s in dataset:
        box_file = dataset.root / "boxes" / s.source / (Path(s.key).stem + ".txt")
        lines = _mapped_lines(box_file, dataset.root / "boxes" / s.source, s.source, class_names, stats)
        if lines is None and s.label == 1:
            stats["skipped_positive_without_boxes"] += 1
            continue
        usable.append((s, lines))
    groups = sorted({s.group for s, _ in usable})  # the val slice is cut from images that are used
    if len(groups) < 2 and not coco:
        raise DetectorTrainError(
            f"{len(usable)} usable training image(s) in {len(groups)} group(s): the detector needs images from at "
            "least two groups (one for ultralytics' val slice); positives without boxes are left out "
            f"({stats['skipped_positive_without_boxes']} here)"
        )
    rng = random.Random(seed)
    rng.shuffle(groups)
    val_groups = set(groups[: max(1, int(len(groups) * val_fraction))])
    for s, lines in usable:
        rel = Path(s.key)
        part = "val" if s.group in val_groups else "train"
        img_dst = out_dir / "images" / part / f"{s.source}__{rel.name}"
        lbl_dst = out_dir / "labels" / part / f"{s.source}__{rel.stem}.txt"
        img_dst.parent.mkdir(parents=True, exist_ok=True)
        lbl_dst.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(s.path.resolve(), img_dst)
        lbl_dst.write_text("".join(lines or []))
        stats[f"images_{part}"] += 1
    for c in coco:
        add_coco_boxes(c, out_dir, val_fraction, seed, stats)
    yaml_path = out_dir / "data.yaml"
    yaml_path.write_text(
        json.dumps(
            {
                "path": str(out_dir.resolve()),
                "train": "images/train",
                "val": "images/val",
                "names": dict(enumerate(SCHEMA)),
            },
            indent=1,
        )
    )
    return yaml_path, dict(stats)


def _mapped_lines(
    box_file: Path, src_dir: Path, source: str, cache: dict[str, list[str]], stats: Counter[str]
) -> list[str] | None:
    if not box_file.is_file():
        return None
    if source not in cache:
        cfile = src_dir / "classes.txt"
        cache[source] = cfile.read_text().split("\n") if cfile.is_file() else []
    names = [n for n in cache[source] if n.strip()] if cache[source] else []
    lines = []
    for cls, cx, cy, w, h in read_yolo_boxes(box_file):
        src_name = names[int(cls)] if int(cls) < len(names) else str(int(cls))
        target = map_class(src_name, source)
        if target is None:
            stats[f"dropped:{source}:{src_name}"] += 1
            continue
        stats[f"box:{target}"] += 1
        lines.append(f"{SCHEMA.index(target)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    return lines


def ensure_font(config_dir: Path | None = None) -> None:
    """ultralytics downloads Arial.ttf for plots unless a font is already in its config dir."""
    import matplotlib

    cfg = config_dir or Path(os.environ.get("YOLO_CONFIG_DIR", Path.cwd() / ".cache" / "ultralytics"))
    target = cfg / "Ultralytics" / "Arial.ttf"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        shutil.copyfile(src, target)


TRAINABLE = ("yolo", "rtdetr", "yoloe", "rfdetr", "transformers")
"""Families this command fine-tunes (YOLO-World is not one: it needs ultralytics' world trainers)."""


def is_transformers_model(model: str) -> bool:
    """A transformers detector: a local folder with a config.json, or a hub id (`org/name`, no file suffix)."""
    from detectors.weights import is_path

    p = Path(model).expanduser()
    if p.is_dir():
        return (p / "config.json").is_file()
    return model.count("/") == 1 and not p.suffix and not is_path(model)


def rfdetr_variant(model: str) -> str | None:
    """`rfdetr-nano`, `rf-detr-large-2026.pth` -> the RF-DETR variant the name says; None for other models."""
    from detectors.rfdetr import VARIANTS

    name = Path(model).name.lower()
    if not name.startswith(("rfdetr", "rf-detr")):
        return None
    found = [v for v in VARIANTS if v in name]
    if not found:
        raise ValueError(f"--model {model!r}: say the RF-DETR variant in the name ({', '.join(VARIANTS)})")
    return found[0]


def detector_family(model: str) -> str:
    """The family of a model name, as the L1 adapters pick it; refused when this command cannot train it."""
    from detectors.ultralytics_yolo import pick_family

    if is_transformers_model(model):
        return "transformers"
    family = "rfdetr" if rfdetr_variant(model) else pick_family(model, "auto")
    if family not in TRAINABLE:
        raise ValueError(
            f"--model {model!r} is an ultralytics {family!r} model: fine-tuning it needs ultralytics' world "
            f"trainers, which `roadwork train detector` does not drive; fine-tune a {', '.join(TRAINABLE)} model"
        )
    return family


def yoloe_start(model: str, work_dir: Path, seed: int) -> tuple[Path, str]:
    """A YOLOE checkpoint whose head already classifies the schema classes, for ultralytics'
    `YOLOEPETrainer` (which then trains it like a closed-set YOLO), and how its classes were set.

    A released `-seg` checkpoint becomes the detection model of the same scale with its weights
    (our folders hold boxes, no masks), as ultralytics' YOLOE fine-tuning guide does. Its head is
    fused with the text embeddings of `SCHEMA_PROMPTS`, which needs YOLOE's text encoder
    (`mobileclip_blt.ts`, fetched by `roadwork fetch-weights PROFILE --download`). A yaml starts
    from random weights: text embeddings would mean nothing there, so its head is fused with seeded
    random class embeddings and no text encoder is needed.
    """
    import torch
    from ultralytics import YOLOE

    from_yaml = Path(model).suffix in (".yaml", ".yml")
    if from_yaml:
        net_model = YOLOE(model)
        how = f"{model}: random weights, class embeddings random (seed {seed}), no text encoder"
    else:
        released = YOLOE(model)
        task = released.task
        stem = Path(str(released.model.yaml.get("yaml_file", model))).stem
        if task == "segment":  # the detection model of the same scale, with the seg checkpoint's weights
            net_model = YOLOE(stem.replace("-seg", "") + ".yaml").load(model)
        else:
            net_model = released
        how = f"{Path(model).name}, classes embedded from {list(SCHEMA_PROMPTS.values())}"
    net = net_model.model
    net.eval()
    head = net.model[-1]
    names = list(SCHEMA)
    if head.is_fused:
        if list(net.names.values()) != names:
            raise DetectorTrainError(
                f"--model {model!r}: its head is already fused to the classes {list(net.names.values())}, "
                f"not {names}; start from the released (unfused) checkpoint"
            )
    else:
        if from_yaml:
            pe = torch.randn(1, len(names), head.embed, generator=torch.Generator().manual_seed(seed))
        else:
            try:
                pe = net.get_text_pe([SCHEMA_PROMPTS[n] for n in names])
            except Exception as exc:  # the text encoder is a download: missing offline, several error types
                raise DetectorTrainError(
                    f"--model {model!r}: YOLOE's text encoder (mobileclip_blt.ts) is needed to embed the roadwork "
                    f"classes and could not be loaded ({type(exc).__name__}: {exc}); fetch it with "
                    "`roadwork fetch-weights PROFILE --download` on a machine with internet"
                ) from exc
        net.set_classes(names, pe)
        head.fuse(net.pe)
    start = work_dir / "yoloe_start.pt"
    start.parent.mkdir(parents=True, exist_ok=True)
    net_model.save(str(start))
    return start, how


def _train_ultralytics(cfg: DetectorTrainConfig, family: str, yaml_path: Path, work_dir: Path, out_path: Path) -> dict:
    from detectors.ultralytics_yolo import load_ultralytics

    ensure_font()
    extra: dict[str, Any] = {}
    started: dict[str, str] = {}
    start = cfg.model
    if family == "yoloe":
        from ultralytics.models.yolo.yoloe import YOLOEPETrainer

        start_path, started["started_from"] = yoloe_start(cfg.model, work_dir, cfg.seed)
        start, extra = str(start_path), {"trainer": YOLOEPETrainer}
    model = load_ultralytics(start, family, None)  # type: ignore[arg-type]
    model.train(
        **extra,
        data=str(yaml_path),
        imgsz=cfg.imgsz,
        epochs=cfg.epochs,
        time=cfg.time_h,
        batch=cfg.batch,
        workers=cfg.workers,
        seed=cfg.seed,
        device=cfg.device,
        patience=cfg.patience,
        project=str(work_dir),
        name="train",
        exist_ok=True,
        plots=False,
        verbose=False,
        amp=False,
    )
    trainer = model.trainer
    best = Path(trainer.best if Path(trainer.best).is_file() else trainer.last)
    _strip_checkpoint(best, out_path)
    metrics = {k: float(v) for k, v in (trainer.metrics or {}).items()}
    return {"val_metrics_train_split_holdout": metrics, "epochs_run": int(trainer.epoch) + 1, **started}


def torch_device(device: str) -> str:
    """ultralytics' device spelling (`0`, `0,1`, `cpu`) as torch's, for the trainers that take one
    device: `0` -> `cuda:0`, `0,1` -> `cuda:0` (the first), `cpu` and `cuda:1` unchanged."""
    first = device.split(",")[0].strip()
    return f"cuda:{first}" if first.isdigit() else first


def _train_rfdetr(cfg: DetectorTrainConfig, yaml_path: Path, work_dir: Path, out_path: Path) -> dict:
    """RF-DETR's own trainer on the same YOLO folder (it reads data.yaml); from the released
    checkpoint when --model is that file, else from random weights. It stops by epochs only."""
    import rfdetr

    from detectors.rfdetr import VARIANTS

    variant = rfdetr_variant(cfg.model)
    start = cfg.model if Path(cfg.model).is_file() else None
    device = torch_device(cfg.device)
    model = getattr(rfdetr, VARIANTS[variant])(pretrain_weights=start, device=device)  # type: ignore[index]
    run = work_dir / "rfdetr"
    model.train(
        dataset_dir=str(yaml_path.parent),
        epochs=cfg.epochs,
        batch_size=cfg.batch,
        grad_accum_steps=1,
        output_dir=str(run),
        device=device,
        num_workers=cfg.workers,
        seed=cfg.seed,
    )
    shutil.copyfile(run / "checkpoint_best_total.pth", out_path)
    return {"variant": variant, "started_from": start or "random weights", "epochs_run": cfg.epochs}


def _yolo_rows(folder: Path, part: str) -> list[tuple[Path, list[list[float]]]]:
    """(image, [[class, cx, cy, w, h], ...]) of one part of the YOLO folder `build_yolo_dataset` wrote."""
    rows = []
    for image in sorted((folder / "images" / part).iterdir()):
        label = folder / "labels" / part / f"{image.stem}.txt"
        boxes = [[float(x) for x in line.split()] for line in label.read_text().splitlines() if line.strip()]
        rows.append((image, boxes))
    return rows


def _train_transformers(cfg: DetectorTrainConfig, yaml_path: Path, work_dir: Path, out_path: Path) -> dict:
    """A transformers DETR-family detector (D-FINE, RT-DETR v2, ...) fine-tuned with `Trainer` on the
    same YOLO folder: its head re-made for the five roadwork classes, images at --imgsz, stopped by
    --epochs or --time-h. Writes a folder (save_pretrained) that an `hf-detector` voter names."""
    import torch
    import transformers as T
    from PIL import Image

    source = str(Path(cfg.model).expanduser()) if Path(cfg.model).expanduser().is_dir() else cfg.model
    model = T.AutoModelForObjectDetection.from_pretrained(
        source,
        id2label=dict(enumerate(SCHEMA)),
        label2id={n: i for i, n in enumerate(SCHEMA)},
        ignore_mismatched_sizes=True,  # the checkpoint's head has its own classes (COCO's 80)
    )
    processor = T.AutoImageProcessor.from_pretrained(source, size={"height": cfg.imgsz, "width": cfg.imgsz})
    rows = _yolo_rows(yaml_path.parent, "train")

    class Boxed(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, i: int) -> dict:
            path, boxes = rows[i]
            image = Image.open(path).convert("RGB")
            w, h = image.size
            annotations = [
                {
                    "bbox": [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h],
                    "category_id": int(c),
                    "area": bw * w * bh * h,
                    "iscrowd": 0,
                }
                for c, cx, cy, bw, bh in boxes
            ]
            enc = processor(images=image, annotations={"image_id": i, "annotations": annotations}, return_tensors="pt")
            return {"pixel_values": enc["pixel_values"][0], "labels": enc["labels"][0]}

    def collate(batch: list[dict]) -> dict:
        return {"pixel_values": torch.stack([b["pixel_values"] for b in batch]), "labels": [b["labels"] for b in batch]}

    t_end = time.monotonic() + cfg.time_h * 3600

    class WallClock(T.TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            control.should_training_stop = time.monotonic() > t_end
            return control

    args = T.TrainingArguments(
        output_dir=str(work_dir / "transformers"),
        per_device_train_batch_size=cfg.batch,
        num_train_epochs=cfg.epochs,
        learning_rate=5e-5,
        weight_decay=1e-4,
        remove_unused_columns=False,
        save_strategy="no",
        report_to=[],
        use_cpu=cfg.device == "cpu",
        dataloader_num_workers=cfg.workers,
        seed=cfg.seed,
        logging_steps=10,
    )
    trainer = T.Trainer(model=model, args=args, train_dataset=Boxed(), data_collator=collate, callbacks=[WallClock()])
    result = trainer.train()
    model.save_pretrained(out_path)
    processor.save_pretrained(out_path)
    return {
        "started_from": cfg.model,
        "epochs_run": round(float(trainer.state.epoch or 0), 2),
        "train_loss": round(float(result.training_loss), 4),
    }


def train_detector(
    dataset: Dataset,
    out_path: str | Path,
    work_dir: str | Path,
    cfg: DetectorTrainConfig,
    coco: tuple[CocoBoxes, ...] = (),
) -> dict[str, Any]:
    """Train, then write the best checkpoint to `out_path` with a manifest (data hash, metrics, sha256)."""
    family = detector_family(cfg.model)
    work_dir = Path(work_dir).resolve()
    yaml_path, stats = build_yolo_dataset(dataset, work_dir / "dataset", seed=cfg.seed, coco=coco)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    if family == "rfdetr":
        trained = _train_rfdetr(cfg, yaml_path, work_dir, out_path)
    elif family == "transformers":
        trained = _train_transformers(cfg, yaml_path, work_dir, out_path)
    else:
        trained = _train_ultralytics(cfg, family, yaml_path, work_dir, out_path)
    info = {
        "format": f"ultralytics-{family}" if family in ("yolo", "rtdetr", "yoloe") else family,
        "classes": list(SCHEMA),
        "config": asdict(cfg),
        "coco": [str(c.annotations) for c in coco],
        "data_hash": dataset.fingerprint(),
        "n_images": len(dataset),
        "dataset_stats": stats,
        **trained,
        "train_seconds": round(time.monotonic() - t0, 1),
    }
    write_detector_manifest(out_path, info)
    return {"weights": str(out_path), **info}


def _strip_checkpoint(src: Path, dst: Path) -> None:
    """Keep only the fp16 model in the committed file (no optimizer state)."""
    from ultralytics.utils.torch_utils import strip_optimizer

    shutil.copyfile(src, dst)
    strip_optimizer(str(dst))


def write_detector_manifest(weights: Path, info: dict[str, Any]) -> Path:
    """WEIGHTS.manifest.json beside the checkpoint (a file, or a save_pretrained folder: the hash is
    its model.safetensors')."""
    hashed = weights / "model.safetensors" if weights.is_dir() else weights
    manifest = {"file": weights.name, "sha256": sha256_file(hashed), **info}
    out = (
        weights.with_suffix(".manifest.json") if weights.is_file() else weights.parent / f"{weights.name}.manifest.json"
    )
    out.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return out


def train_detector_cmd(
    data: Annotated[
        Path, typer.Option(help="Folder with labels.csv and boxes/<source>/*.txt (uses split=train rows).")
    ],
    out: Annotated[Path, typer.Option(help="Weights to write (.pt); a manifest goes beside it.")] = Path(
        "models/roadwork_yolo11n.pt"
    ),
    work: Annotated[
        Path, typer.Option(help="Work folder for the YOLO dataset (symlinks) and ultralytics' run.")
    ] = Path("runs/train_detector"),
    model: Annotated[
        str,
        typer.Option(
            help="What to fine-tune: an ultralytics yaml (random init) or .pt (YOLO, RT-DETR, YOLOE: a released "
            "YOLOE needs its text encoder, see fetch-weights); RF-DETR by "
            "checkpoint file (rf-detr-large-2026.pth) or name (rfdetr-nano: random init); a transformers "
            "detector by hub id or folder (ustc-community/dfine-large-coco, PekingU/rtdetr_v2_r50vd): --out "
            "is then a folder."
        ),
    ] = "yolo11n.yaml",
    imgsz: Annotated[int, typer.Option(min=32, help="Training image size.")] = 320,
    epochs: Annotated[int, typer.Option(min=1)] = 60,
    time_h: Annotated[
        float,
        typer.Option("--time-h", min=0.01, help="Hard wall-time cap in hours (ultralytics; RF-DETR stops by epochs)."),
    ] = 0.5,
    batch: Annotated[int, typer.Option(min=1)] = 16,
    device: Annotated[str, typer.Option(help="cpu, 0, 0,1 ...")] = "cpu",
    split: Annotated[str, typer.Option(help="Split to train on. Never train on dev.")] = "train",
    seed: Annotated[int, typer.Option()] = 0,
    coco: Annotated[
        Path | None,
        typer.Option(
            help="Also a COCO-style box file (e.g. ROADWork's annotations/instances_train_gps_split.json); "
            "its categories map onto the same schema."
        ),
    ] = None,
    coco_images: Annotated[
        Path | None, typer.Option(help="--coco: the folder its file_names are relative to (ROADWork: scene/images).")
    ] = None,
) -> None:
    """Fine-tune a roadwork detector (cone, barrier, sign, machinery, worker): YOLO, RT-DETR, YOLOE, RF-DETR or D-FINE / RT-DETR v2.

    Each source's classes.txt is mapped onto one schema (training/box_schema.py: SCHEMA_MAP);
    the YOLO dataset is built from symlinks under --work, so no image is copied. Training stops at
    --time-h hours at the latest; best.pt is stripped to fp16 and written to --out with a manifest
    (data hash, metrics, sha256). Add it to a profile as an `ultralytics` L1 voter.
    """
    from rich.console import Console

    from training.datasets import load_dataset

    console = Console(stderr=True)
    if split == "dev":
        console.print("[red]error:[/red] refusing to train on the dev split: it is for measuring. Use --split train.")
        raise typer.Exit(code=2)
    try:
        ds = load_dataset(data).select(split=split)
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=2) from exc
    if not len(ds):
        console.print(f"[red]error:[/red] {data}: no samples with split={split!r}")
        raise typer.Exit(code=2)
    extra: tuple[CocoBoxes, ...] = ()
    if coco is not None:
        if coco_images is None or not coco.is_file() or not coco_images.is_dir():
            console.print("[red]error:[/red] --coco needs an existing file and --coco-images an existing folder")
            raise typer.Exit(code=2)
        extra = (CocoBoxes(coco, coco_images, source=coco.stem),)
    try:
        detector_family(model)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=2) from exc
    cfg = DetectorTrainConfig(
        model=model, imgsz=imgsz, epochs=epochs, time_h=time_h, batch=batch, device=device, seed=seed
    )
    try:
        info = train_detector(ds, out, work, cfg, coco=extra)
    except DetectorTrainError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=2) from exc
    m = info.get("val_metrics_train_split_holdout", {})
    console.print(
        f"wrote {info['weights']} ({info['format']}, {info['epochs_run']} epochs, {info['train_seconds']:.0f} s)"
        + (f"; hold-out mAP50 {m['metrics/mAP50(B)']:.3f}" if "metrics/mAP50(B)" in m else "")
    )
