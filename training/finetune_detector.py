"""Fine-tune the L1 roadwork-object detector (detectors/mnv2_rcnn.py) on the dataset's boxes.

Rows: every training positive with boxes of a schema class (cones, drums and barricades, roadwork
signs, machinery, workers; training/box_schema.py maps each source's class names) and every
negative as a background frame. Positives without boxes are left out: their objects are not
annotated and would teach the detector to miss them. Sampling balances classes and (source,
label) cells, as the L0 training does.

Each step sees what validators send, with the boxes moved along: half the views are the frame
(a random crop of 60-100 % of each side, at times with colour/JPEG distortions), a quarter the
224-px letterbox and a quarter a 224-px square crop (v0.2), both with the level-2/3 distortions
and JPEG q75. `paste_prob` of the dashcam negatives get a row of boxed objects pasted onto the road
(training/copy_paste.py), and those boxes become targets; `erase_prob` of the boxed positives have
their objects erased and become background.

With `folds > 1` one detector per group fold scores its held-out rows in each regime (the seeded
views of training/finetune.py, so keys match the L0 out-of-fold votes); `--fold K` trains one fold
only (folds run in parallel on one GPU), `--without SRC,...` trains on the other sources and scores
those (leave-one-source-out). Rows carry every box (class, score, normalised xyxy); `package`
(CPU) turns them into the voter's probability with the profile's class map and writes the OOF
run `roadwork fit` reads.

    python -m training.finetune_detector train --data DIR --out models/l1_rcnn.pt --device cuda --folds 5
    python -m training.finetune_detector package --out models/l1_rcnn.pt --voter l1_rcnn

`--arch yolo --start CKPT` trains an ultralytics YOLO (detectors/yolo_boxes.py) in the R-CNN's
place with the same views, rows and held-out scoring: from the COCO YOLOv8n that
`python -m training.tflite_start` recovers from its TFLite export, or from a yaml (random weights).
It ranked cameras it never saw below the R-CNN (docs/new-camera-levers.md).

`train` imports nothing that needs pydantic (the lent GPU's image lacks it).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from detectors.mnv2_rcnn import CLASSES, build_rcnn, detections, freeze_batchnorm, save_rcnn, schema_label, to_tensors
from training.balance import sample_weights
from training.datasets import Dataset, Sample, load_folder
from training.transforms import REGIMES, SIZE, distort, jpeg_roundtrip, letterbox, letterbox_geometry, noise_and_blur


@dataclass(frozen=True)
class DetectorConfig:
    epochs: int = 24
    batch: int = 16
    lr: float = 0.02
    """SGD (momentum 0.9) peak learning rate; linear warm-up, then cosine to zero."""
    weight_decay: float = 1e-4
    warmup_iters: int = 100
    view_mix: tuple[float, float, float] = (0.5, 0.25, 0.25)
    """Share of frame, letterbox and square-crop views."""
    paste_prob: float = 0.3
    erase_prob: float = 0.15
    time_budget_s: float = 0.0
    """Cap on training time (0: none): after the first epoch the epoch count is cut to fit, and the
    learning-rate schedule follows the new count, so a capped run still ends its schedule."""
    folds: int = 0
    seed: int = 0
    workers: int = 4
    amp: bool = True
    """bf16 autocast on CUDA (as torchvision's detection reference trains with --amp)."""
    arch: str = "rcnn"
    """`rcnn`: Faster R-CNN on the ImageNet MobileNetV2 (detectors/mnv2_rcnn.py); `yolo`: an ultralytics
    YOLO from `start` (detectors/yolo_boxes.py), trained on the same views by the same loop."""
    start: str = ""
    """`yolo`: the checkpoint to start from (training/tflite_start.py recovers COCO YOLOv8n) or a yaml."""
    imgsz: int = 512
    """`yolo`: the square every view is letterboxed onto, in training and when scoring."""


@dataclass(frozen=True)
class DetectorArch:
    """One kind of detector the loop trains: how it is built and saved, and what it needs."""

    build: Callable[[DetectorConfig], Any]
    save: Callable[[Any, Path, dict[str, Any]], Path]
    lr: float
    """The SGD peak rate `--lr` defaults to for this kind."""
    needs_start: bool
    """Whether it starts from a checkpoint or yaml (`DetectorConfig.start`, `--start`)."""


def _build_rcnn(cfg: DetectorConfig) -> Any:
    return build_rcnn(imagenet=True, min_size=(384, 416, 448, 480, 512))


def _build_yolo(cfg: DetectorConfig) -> Any:
    from detectors.yolo_boxes import build_yolo

    return build_yolo(cfg.start, cfg.imgsz)


def _save_yolo(model: Any, out: Path, info: dict[str, Any]) -> Path:
    from detectors.yolo_boxes import save_yolo

    return save_yolo(model, out, info)


ARCHS = {
    "rcnn": DetectorArch(_build_rcnn, save_rcnn, lr=DetectorConfig.lr, needs_start=False),
    "yolo": DetectorArch(_build_yolo, _save_yolo, lr=0.01, needs_start=True),
}


def detector_arch(cfg: DetectorConfig) -> DetectorArch:
    if cfg.arch not in ARCHS:
        raise ValueError(f"detector arch {cfg.arch!r}: expected one of {tuple(ARCHS)}")
    return ARCHS[cfg.arch]


@dataclass
class Row:
    sample: Sample
    boxes: np.ndarray  # (n, 4) normalised xyxy
    kinds: list[int]  # torchvision labels (1 + index into CLASSES)


def detector_rows(root: Path, samples: list[Sample]) -> list[Row]:
    """Boxed positives and every negative (background); unboxed positives are left out."""
    from training.copy_paste import schema_boxes, schema_xyxy

    boxed = {s.key: b for s, b in schema_boxes(root, samples)}
    rows = []
    for s in samples:
        if s.label == 0:
            rows.append(Row(s, np.zeros((0, 4), np.float32), []))
        elif s.key in boxed:
            b = boxed[s.key]
            rows.append(Row(s, np.clip(schema_xyxy(b), 0, 1), [schema_label(k) for k, *_ in b]))
    return rows


def _keep_visible(boxes: np.ndarray, clipped: np.ndarray, min_share: float = 0.4, min_side: float = 2.0) -> np.ndarray:
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0]).clip(0) * (clipped[:, 3] - clipped[:, 1]).clip(0)
    return (inside >= min_share * np.maximum(area, 1e-6)) & ((clipped[:, 2:] - clipped[:, :2]).min(1) >= min_side)


def crop_with_boxes(
    img: Image.Image, boxes: np.ndarray, window: tuple[int, int, int, int]
) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    """Crop to window (x0, y0, x1, y1); boxes (pixels) moved and clipped; the mask of boxes kept."""
    x0, y0, x1, y1 = window
    moved = boxes - np.array([x0, y0, x0, y0], np.float32)
    clipped = moved.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, x1 - x0)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, y1 - y0)
    keep = _keep_visible(moved, clipped)
    return img.crop(window), clipped[keep], keep


def train_view(
    image: np.ndarray, boxes: np.ndarray, kinds: list[int], rng: np.random.Generator, cfg: DetectorConfig
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """One augmented view as validators could send it: (RGB uint8, pixel xyxy boxes, labels)."""
    img = Image.fromarray(image)
    w, h = img.size
    px = boxes * np.array([w, h, w, h], np.float32)
    labels = np.asarray(kinds, np.int64)
    mode = int(rng.choice(3, p=np.asarray(cfg.view_mix) / sum(cfg.view_mix)))
    if mode == 0:  # the frame as sent (full regime), often cropped
        if rng.random() < 0.5:
            cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            img, px, keep = crop_with_boxes(img, px, (x0, y0, x0 + cw, y0 + ch))
            labels = labels[keep]
        if rng.random() < 0.3:
            img = distort(img, rng)
    else:
        if mode == 1:  # letterbox: the whole frame on black bars
            scale, _, _, left, top = letterbox_geometry(w, h)
            px = px * scale + np.array([left, top, left, top], np.float32)
            img = letterbox(img)
        else:  # v0.2: a square crop (centre for level 0, random otherwise), resized to 224
            side = int(min(w, h) * (1.0 if rng.random() < 0.25 else rng.uniform(0.45, 1.0)))
            x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
            img, px, keep = crop_with_boxes(img, px, (x0, y0, x0 + side, y0 + side))
            labels = labels[keep]
            px = px * (SIZE / side)
            img = img.resize((SIZE, SIZE), Image.BILINEAR)
        level = int(rng.integers(4))
        if level >= 2:
            img = distort(img, rng)
        if level == 3:
            img = noise_and_blur(img, rng)
        img = jpeg_roundtrip(img, 75)
    out = np.asarray(img)
    if rng.random() < 0.5:
        out = out[:, ::-1].copy()
        px = px.copy()
        px[:, [0, 2]] = out.shape[1] - px[:, [2, 0]]
    keep = (px[:, 2:] - px[:, :2]).min(1) >= 2 if len(px) else np.zeros(0, bool)
    return out, px[keep].astype(np.float32), labels[keep].tolist()


class _BoxViews:
    """torch Dataset: index -> (image tensor, target dict); images decoded once, kept in RAM."""

    def __init__(self, rows: list[Row], images: list[np.ndarray], cfg: DetectorConfig, root: Path | None) -> None:
        self.rows, self.images, self.cfg, self.calls = rows, images, cfg, 0
        self.paste = self.erase = None
        samples = [r.sample for r in rows]
        if root is not None and cfg.paste_prob > 0:
            from training.copy_paste import PasteBank

            self.paste = PasteBank.from_samples(root, samples)
        if root is not None and cfg.erase_prob > 0:
            from training.copy_paste import EraseBank

            self.erase = EraseBank.from_samples(root, samples)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[Any, dict[str, Any]]:
        import torch

        from training.copy_paste import DASHCAM_SOURCES

        self.calls += 1
        rng = np.random.default_rng([self.cfg.seed, i, self.calls, torch.initial_seed() % (1 << 31)])
        row, image = self.rows[i], self.images[i]
        boxes, kinds = row.boxes, row.kinds
        if (
            self.paste is not None
            and row.sample.label == 0
            and row.sample.source in DASHCAM_SOURCES
            and rng.random() < self.cfg.paste_prob
        ):
            image, placed = self.paste.paste_boxes(image, rng)
            h, w = image.shape[:2]
            boxes = np.array([[x0 / w, y0 / h, x1 / w, y1 / h] for _, x0, y0, x1, y1 in placed], np.float32).reshape(
                -1, 4
            )
            kinds = [schema_label(k) for k, *_ in placed]
        elif self.erase is not None and row.sample.key in self.erase and rng.random() < self.cfg.erase_prob:
            image, boxes, kinds = self.erase.erase(image, row.sample.key, rng), np.zeros((0, 4), np.float32), []
        view, px, labels = train_view(image, boxes, kinds, rng, self.cfg)
        return to_tensors([view])[0], {
            "boxes": torch.from_numpy(px).reshape(-1, 4),
            "labels": torch.as_tensor(labels, dtype=torch.int64),
        }


def build_model(cfg: DetectorConfig) -> Any:
    return detector_arch(cfg).build(cfg)


def save_model(model: Any, out: Path, info: dict[str, Any], cfg: DetectorConfig) -> Path:
    return detector_arch(cfg).save(model, out, info)


def _collate(batch: list) -> tuple[list, list]:
    return [b[0] for b in batch], [b[1] for b in batch]


def _log(msg: str) -> None:
    print(f"[finetune-detector {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def train_detector(
    rows: list[Row], images: list[np.ndarray], cfg: DetectorConfig, device: str, root: Path | None, tag: str = ""
) -> Any:
    import torch
    from torch.utils.data import DataLoader, WeightedRandomSampler

    torch.manual_seed(cfg.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    model = build_model(cfg).to(device)
    labels = np.array([r.sample.label for r in rows])
    weights = torch.as_tensor(sample_weights(labels, [r.sample.source for r in rows], True), dtype=torch.double)
    data = _BoxViews(rows, images, cfg, root)
    loader = DataLoader(
        data,
        batch_size=cfg.batch,
        sampler=WeightedRandomSampler(weights, len(rows), replacement=True),
        num_workers=cfg.workers,
        drop_last=True,
        collate_fn=_collate,
        persistent_workers=cfg.workers > 0,
    )
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    plan = {"epochs": cfg.epochs, "total": max(1, cfg.epochs * len(loader))}

    def lr_at(it: int) -> float:
        warm = min(1.0, (it + 1) / cfg.warmup_iters)
        return warm * 0.5 * (1 + math.cos(math.pi * min(it, plan["total"]) / plan["total"]))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    use_amp = cfg.amp and device.startswith("cuda")
    t0 = time.time()
    epoch = 0
    while epoch < plan["epochs"]:
        model.train()
        if not getattr(model, "train_batchnorm", False):
            freeze_batchnorm(model)
        total, n = 0.0, 0
        for xs, ts in loader:
            xs = [x.to(device, non_blocking=True) for x in xs]
            ts = [{k: v.to(device) for k, v in t.items()} for t in ts]
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                losses = model(xs, ts)
            loss = sum(v.float() for v in losses.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            sched.step()
            total, n = total + float(loss.detach()), n + 1
        epoch += 1
        spent = time.time() - t0
        if epoch == 1 and cfg.time_budget_s > 0:  # fit the rest of the run into the budget
            fit = max(1, min(cfg.epochs, int(cfg.time_budget_s / max(spent, 1e-3))))
            if fit < cfg.epochs:
                _log(f"{tag}: one epoch took {spent:.0f} s; {fit} epochs fit the {cfg.time_budget_s:.0f} s budget")
                plan.update(epochs=fit, total=fit * len(loader))
        _log(f"{tag} epoch {epoch}/{plan['epochs']}: loss {total / max(n, 1):.4f} ({spent:.0f} s)")
    model.epochs_trained = epoch
    return model.eval()


def held_out_rows(
    model: Any, samples: list[Sample], images: list[np.ndarray], held: list[int], seed: int, device: str, **extra: Any
) -> list[dict[str, Any]]:
    """Each held-out image's boxes in each regime's held-back view (the L0 OOF views), best first."""
    from training.finetune import regime_views

    rows = []
    for i in held:
        views = regime_views(images[i], samples[i].key, seed)
        found = detections(model, [views[r] for r in REGIMES], device)
        rows.append(
            {
                "key": samples[i].key,
                "label": samples[i].label,
                "source": samples[i].source,
                "group": samples[i].group,
                "boxes": {
                    r: [[c, round(s, 4), *(round(v, 4) for v in b)] for c, s, *b in dets[:30]]
                    for r, dets in zip(REGIMES, found, strict=True)
                },
                **extra,
            }
        )
    return rows


def _append(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))


@dataclass(frozen=True)
class Prepared:
    """A training split decoded once, for every detector trained on it (folds, held-out groups, final)."""

    dataset: Dataset
    samples: list[Sample]
    images: list[np.ndarray]
    rows: list[Row]
    index: dict[str, int]
    data_hash: str


def prepare(dataset: Dataset) -> Prepared:
    t0 = time.time()
    samples = list(dataset.samples)
    images = [s.load() for s in samples]
    rows = detector_rows(dataset.root, samples)
    _log(
        f"{len(samples)} images decoded in {time.time() - t0:.0f} s; {len(rows)} detector rows "
        f"({sum(len(r.kinds) for r in rows)} boxes on {sum(r.sample.label for r in rows)} positives)"
    )
    return Prepared(dataset, samples, images, rows, {s.key: i for i, s in enumerate(samples)}, dataset.fingerprint())


def train(
    dataset: Dataset,
    out: str | Path,
    cfg: DetectorConfig,
    device: str,
    fold: int | None = None,
    without: tuple[str, ...] = (),
    held_out_name: str = "",
    final_only: bool = False,
    prepared: Prepared | None = None,
) -> dict[str, Any]:
    """Folds (all, only `fold`, or none with `final_only`), then the final detector on every row;
    or, with `without`, one detector on the other sources scoring the rows of those (OUT.loso.jsonl).
    `prepared` (from `prepare(dataset)`) saves decoding the split again."""
    import torch

    from training.finetune import group_folds

    t0 = time.time()
    out = Path(out)
    prep = prepared or prepare(dataset)
    samples, images, rows, index = prep.samples, prep.images, prep.rows, prep.index
    info: dict[str, Any] = {
        "config": asdict(cfg),
        "device": device,
        "n_rows": len(rows),
        "classes": list(CLASSES),
        "data_hash": prep.data_hash,
        "torch": torch.__version__,
    }

    def fit(keep_rows: list[Row], tag: str) -> Any:
        return train_detector(
            keep_rows, [images[index[r.sample.key]] for r in keep_rows], cfg, device, dataset.root, tag
        )

    if without:
        held = [i for i, s in enumerate(samples) if s.source in without]
        model = fit([r for r in rows if r.sample.source not in without], f"without {','.join(without)}")
        _append(
            out.with_suffix(".loso.jsonl"),
            held_out_rows(model, samples, images, held, cfg.seed, device, held_out=held_out_name or ",".join(without)),
        )
        _log(f"scored {len(held)} held-out rows in {time.time() - t0:.0f} s")
        return info
    if cfg.folds > 1 and not final_only:
        fold_of = group_folds(samples, cfg.folds, cfg.seed)
        for f in range(cfg.folds) if fold is None else [fold]:
            model = fit([r for r in rows if fold_of[index[r.sample.key]] != f], f"fold {f + 1}/{cfg.folds}")
            held = [i for i, g in enumerate(fold_of) if g == f]
            path = out.with_suffix(f".fold{f}.oof.jsonl")
            path.unlink(missing_ok=True)
            _append(path, held_out_rows(model, samples, images, held, cfg.seed, device, fold=f))
        if fold is not None:
            return info
    model = fit(rows, "all rows")
    info.update(seconds=round(time.time() - t0, 1), epochs_trained=model.epochs_trained)
    save_model(model, out, info, cfg)
    _log(f"wrote {out} in {info['seconds']} s")
    return info


def train_boxes(
    dataset: Dataset,
    out: str | Path,
    cfg: DetectorConfig,
    device: str,
    held_out: list[tuple[str, ...]] | None = None,
    voter: str = "l1_rcnn",
) -> dict[str, Any]:
    """`roadwork train boxes`: held-out votes (one detector per `held_out` group of sources, else
    group folds when `cfg.folds > 1`), the detector on every row, then `package`."""
    out = Path(out)
    if held_out:
        votes = out.with_suffix(".loso.jsonl")
        votes.unlink(missing_ok=True)  # each group appends its rows
        prep = prepare(dataset)
        for k, group in enumerate(held_out):
            train(dataset, out, cfg, device, without=group, held_out_name=f"group{k}", prepared=prep)
        train(dataset, out, cfg, device, final_only=True, prepared=prep)
        return package(out, voter, [votes])
    train(dataset, out, cfg, device)
    return package(out, voter)


def box_votes(rows: list[dict[str, Any]], class_map: Any) -> list[dict[str, Any]]:
    """Rows with boxes -> the same rows with `probs` {regime: {"det": p}}, p as the voter computes it."""
    from detectors.rcnn_detector import boxes_from_detections

    return [
        {
            **r,
            "probs": {
                regime: {"det": class_map.image_probability(boxes_from_detections(dets))}
                for regime, dets in r["boxes"].items()
            },
        }
        for r in rows
    ]


def package(out: str | Path, voter: str, votes: list[str | Path] | None = None) -> dict[str, Any]:
    """CPU side: gather the held-out votes (`votes` files, else OUT.fold*.oof.jsonl) into
    OUT.oof.jsonl with the voter's probabilities (the default class map), write the OOF run for
    `roadwork fit` and the manifest."""
    from detectors.evidence import ClassMap
    from detectors.heads import write_manifest
    from detectors.mnv2_rcnn import read_info
    from detectors.yolo_boxes import read_yolo_info
    from training.finetune import oof_metrics, write_oof_run

    out = Path(out)
    try:
        info = read_info(out)  # the R-CNN's checkpoint, read as data
    except ValueError:
        info = read_yolo_info(out)  # an ultralytics checkpoint: a pickled network, read as ultralytics reads it
        if info is None:
            raise
    folds = info["config"]["folds"]
    parts = [Path(v) for v in votes] if votes else [out.with_suffix(f".fold{f}.oof.jsonl") for f in range(folds)]
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"out-of-fold files missing: {missing}")
    rows = [json.loads(x) for p in parts for x in p.read_text().splitlines() if x.strip()]
    if rows:
        rows = box_votes(rows, ClassMap())
        oof = out.with_suffix(".oof.jsonl")
        oof.write_text("".join(json.dumps(r) + "\n" for r in rows))
        info["cv"] = oof_metrics(rows)
        info["held_out_votes"] = [p.name for p in parts]
        info["oof_run"] = str(write_oof_run(oof, out.parent / f"{out.stem}.oof", {"det": voter}, level="L1"))
    write_manifest(out, info)
    return info


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="fine-tune (GPU or, slowly, CPU)")
    t.add_argument("--data", required=True, help="Folder with labels.csv and boxes/ (the train split is used).")
    t.add_argument("--out", required=True, help="Checkpoint to write (.pt).")
    t.add_argument("--device", default="cpu")
    t.add_argument("--epochs", type=int, default=DetectorConfig.epochs)
    t.add_argument("--batch", type=int, default=DetectorConfig.batch)
    t.add_argument("--folds", type=int, default=0)
    t.add_argument("--fold", type=int, default=None, help="Train this fold only (0-based) and stop.")
    t.add_argument(
        "--final-only",
        action="store_true",
        help="Train only the model on every row (its folds ran elsewhere, e.g. in parallel with --fold).",
    )
    t.add_argument("--without", default="", help="Comma list of sources: train on the rest, score these.")
    t.add_argument("--name", default="", help="With --without: the held-out name its rows carry.")
    t.add_argument("--paste-prob", type=float, default=DetectorConfig.paste_prob)
    t.add_argument("--erase-prob", type=float, default=DetectorConfig.erase_prob)
    t.add_argument("--time-budget-s", type=float, default=0.0)
    t.add_argument("--workers", type=int, default=DetectorConfig.workers)
    t.add_argument("--no-amp", action="store_true", help="Train in float32 on CUDA too.")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--arch",
        choices=tuple(ARCHS),
        default=DetectorConfig.arch,
        help="rcnn: Faster R-CNN on the ImageNet MobileNetV2; yolo: an ultralytics YOLO from --start.",
    )
    t.add_argument(
        "--start",
        default="",
        help="--arch yolo: ultralytics checkpoint to fine-tune (python -m training.tflite_start makes COCO YOLOv8n) "
        "or a model yaml (random weights).",
    )
    t.add_argument("--imgsz", type=int, default=DetectorConfig.imgsz, help="--arch yolo: the letterbox square.")
    t.add_argument(
        "--lr",
        type=float,
        default=None,
        help="SGD peak rate (default: " + ", ".join(f"{k} {a.lr}" for k, a in ARCHS.items()) + ").",
    )
    t.add_argument("--limit", type=int, default=0, help="Use only the first N rows (smoke runs).")
    p = sub.add_parser("package", help="OOF files -> voter probabilities, OOF run and manifest (CPU)")
    p.add_argument("--out", required=True, help="The checkpoint `train` wrote.")
    p.add_argument("--voter", default="l1_rcnn", help="Voter name the OOF run gives the votes.")
    p.add_argument(
        "--votes",
        action="append",
        default=[],
        help="A file of held-out votes (`train --without` writes OUT.loso.jsonl); repeat. "
        "Default: the fold files OUT.fold*.oof.jsonl.",
    )
    args = ap.parse_args(argv)
    if args.cmd == "package":
        info = package(args.out, args.voter, args.votes)
        print(json.dumps(info.get("cv", {}), indent=1))
        return
    arch = ARCHS[args.arch]
    if arch.needs_start and not args.start:
        ap.error(
            f"--arch {args.arch} needs --start: an ultralytics .pt (python -m training.tflite_start makes COCO "
            "YOLOv8n) or a yaml"
        )
    ds = load_folder(args.data).select(split="train")
    if args.limit:
        from dataclasses import replace

        ds = replace(ds, samples=ds.samples[: args.limit])
    cfg = DetectorConfig(
        epochs=args.epochs,
        batch=args.batch,
        folds=args.folds,
        paste_prob=args.paste_prob,
        erase_prob=args.erase_prob,
        time_budget_s=args.time_budget_s,
        workers=args.workers,
        amp=not args.no_amp,
        seed=args.seed,
        arch=args.arch,
        start=args.start,
        imgsz=args.imgsz,
        lr=args.lr if args.lr is not None else arch.lr,
    )
    train(
        ds,
        args.out,
        cfg,
        args.device,
        args.fold,
        tuple(x for x in args.without.split(",") if x),
        args.name,
        args.final_only,
    )


if __name__ == "__main__":
    main()
