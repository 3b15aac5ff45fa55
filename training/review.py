"""`roadwork review RUN`: look at an evaluation run in the FiftyOne App, export hard examples.

One FiftyOne sample per evaluated image, showing what the cascade saw (the validator-transformed
frame, materialised under RUN/review/frames/, or the original photo for `--transform none` runs):

| field | what |
| --- | --- |
| `ground_truth`, `prediction` | Classifications `roadwork` / `none` (prediction confidence = its probability) |
| `prob`, `exit_level`, `latency_ms` | the cascade's answer |
| `vote_<voter>` | each voter's probability (None where it abstained or did not run) |
| `boxes_<voter>` | Detections of each detector that reported boxes (`evidence["boxes"]`) |
| `gt_boxes` | the dataset's own boxes (`boxes/<source>/<stem>.txt`), where the frame is the original |
| `hardness` | cross-entropy of `prob` against the label + spread (std) of the voters' probabilities |
| `source`, `group`, `key`, `original_path` | where the image came from |
| `truth`, `answer`, `votes` | the same in words, shown on every grid tile with the boxes: "truth: roadwork", "answer 0.31 (no roadwork), exit L0", "l0_head 0.31 · l0_detail 0.28" |
| tags | `false_positive`, `false_negative` (the subnet's rounding at 0.5), `uncertain` |

Saved views: `mistakes` (FP + FN, hardest first), `hardest` (top N by hardness), `uncertain`.
The run folder names its data root in RUN/run.json (written by `roadwork eval`); `--data` overrides it.
FiftyOne and the main environment's bittensor pin different starlette versions, so FiftyOne lives
in `.venv-review` (`make review-venv`); `roadwork review` re-runs itself there when needed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cascade.types import subnet_answer
from training.datasets import Sample, load_dataset, read_yolo_boxes
from training.transforms import canonical, make_transform

if TYPE_CHECKING:
    import fiftyone as fo

TAGS = ("false_positive", "false_negative", "uncertain")
POSITIVE, NEGATIVE = "roadwork", "none"
TILE_FIELDS = ("truth", "answer", "votes")
"""Fields the App shows on every grid tile (with every voter's boxes and the dataset's own)."""
VIEWS = ("mistakes", "hardest", "uncertain")


@dataclass(frozen=True)
class RunInfo:
    run_dir: Path
    data_root: Path
    transform: str
    seed: int


def read_run(run_dir: str | Path, data: str | Path | None = None) -> tuple[RunInfo, list[dict[str, Any]]]:
    """The run's rows (predictions.jsonl) and where its images are (RUN/run.json or `data`)."""
    run_dir = Path(run_dir)
    path = run_dir / "predictions.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"{run_dir}: no predictions.jsonl; make one with `roadwork eval --data DIR --out {run_dir}`"
        )
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{path} is empty: the evaluation wrote no prediction")
    meta_path = run_dir / "run.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    root = data if data is not None else meta.get("data_root")
    if root is None:
        raise FileNotFoundError(
            f"{run_dir}: no run.json naming the data root (older run?); pass the dataset folder with --data DIR"
        )
    transform = str(meta.get("transform") or rows[0].get("transform") or "none")
    if transform.endswith("(oof)"):  # a training OOF run (`roadwork train ... --folds`)
        rows, transform = oof_rows(rows, transform)
    return RunInfo(run_dir, Path(root), transform, int(meta.get("seed", 0))), rows


OOF_REVIEW_REGIME = "full"
"""Which regime's rows of a training out-of-fold run (`roadwork train ... --folds`) review shows: the
photo itself, so a labeller sees what the label is about."""


def oof_rows(rows: list[dict[str, Any]], transform: str) -> tuple[list[dict[str, Any]], str]:
    """An OOF run's rows as eval rows (keyed by the image) and the regime they show: one row per
    image already (`train head`: transform "validator(oof)"), or, where keys are "path#regime"
    (`train backbone`), the rows of `OOF_REVIEW_REGIME`."""
    if not any("#" in r["key"] for r in rows):
        return rows, transform.removesuffix("(oof)")
    regime = OOF_REVIEW_REGIME
    out = [
        {**r, "key": r["key"].rsplit("#", 1)[0], "transform": regime} for r in rows if r["key"].endswith(f"#{regime}")
    ]
    if not out:
        raise ValueError(f"this out-of-fold run has no {regime!r} rows to review")
    return out, regime


def hardness(label: int, prob: float, voter_probs: list[float]) -> float:
    """How wrong the answer was (cross-entropy, 0 = sure and right) plus how much the voters disagreed."""
    p_true = min(max(prob if label == 1 else 1.0 - prob, 1e-4), 1.0)
    spread = float(np.std(voter_probs)) if len(voter_probs) > 1 else 0.0
    return round(-math.log(p_true) + spread, 6)


def tags_for(label: int, prob: float, uncertain_margin: float) -> list[str]:
    """Mistakes as the subnet scores them (np.round: 0.5 counts as 0), and answers near 0.5."""
    answer = subnet_answer(prob)
    tags = []
    if answer == 1 and label == 0:
        tags.append("false_positive")
    if answer == 0 and label == 1:
        tags.append("false_negative")
    if abs(prob - 0.5) < uncertain_margin:
        tags.append("uncertain")
    return tags


def field_name(voter: str) -> str:
    """A voter name as a FiftyOne field suffix (letters, digits and _ only)."""
    return re.sub(r"[^0-9A-Za-z_]", "_", voter)


def to_detections(boxes: Any) -> fo.Detections | None:
    """Evidence boxes (xyxy normalised, score, label) as FiftyOne Detections ([x, y, w, h] relative)."""
    import fiftyone as fo

    if not isinstance(boxes, list):
        return None
    dets = []
    for b in boxes:
        x1, y1, x2, y2 = (min(max(float(v), 0.0), 1.0) for v in b["xyxy"])
        dets.append(
            fo.Detection(
                label=str(b.get("label", "object")),
                bounding_box=[x1, y1, x2 - x1, y2 - y1],
                confidence=float(b["score"]) if b.get("score") is not None else None,
            )
        )
    return fo.Detections(detections=dets)


def gt_detections(root: Path, sample: Sample) -> fo.Detections | None:
    """The dataset's YOLO boxes for this image, named by its source's classes.txt; None where absent."""
    import fiftyone as fo

    if sample.path is None:
        return None
    rel = Path(sample.key)
    txt = root / "boxes" / sample.source / f"{rel.stem}.txt"
    if not txt.is_file():
        return None
    names_file = txt.parent / "classes.txt"
    names = names_file.read_text().split("\n") if names_file.is_file() else []
    dets = []
    for cls, cx, cy, w, h in read_yolo_boxes(txt):
        i = int(cls)
        label = names[i].strip() if i < len(names) and names[i].strip() else f"class_{i}"
        dets.append(fo.Detection(label=label, bounding_box=[cx - w / 2, cy - h / 2, w, h]))
    return fo.Detections(detections=dets)


def media_path(info: RunInfo, sample: Sample, frames_dir: Path) -> Path:
    """The image the cascade saw: the original file, or the transformed frame written once to frames_dir."""
    if canonical(info.transform) == "full" and sample.path is not None:
        return sample.path
    out = frames_dir / (re.sub(r"[^0-9A-Za-z_.-]", "_", sample.key) + ".jpg")
    if not out.is_file():
        from PIL import Image

        image = sample.load()
        image = make_transform(info.transform, info.seed)(image, sample.key)
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(out, quality=90)
    return out


def make_sample(
    row: dict[str, Any], info: RunInfo, sample: Sample, frames_dir: Path, uncertain_margin: float
) -> fo.Sample:
    import fiftyone as fo

    label, prob = int(row["label"]), float(row["prob"])
    voter_probs = [v["prob"] for v in row.get("votes", []) if v.get("prob") is not None]
    answer = subnet_answer(prob)
    fields: dict[str, Any] = {
        "key": row["key"],
        "source": row.get("source", sample.source),
        "group": row.get("group", ""),
        "original_path": str(sample.path) if sample.path is not None else "",
        "ground_truth": fo.Classification(label=POSITIVE if label else NEGATIVE),
        "prediction": fo.Classification(
            label=POSITIVE if answer else NEGATIVE, confidence=prob if answer else 1.0 - prob
        ),
        "prob": prob,
        "exit_level": row.get("exit_level") or "none",
        "latency_ms": float(row.get("latency_ms", 0.0)),
        "hardness": hardness(label, prob, voter_probs),
        # what a grid tile shows (TILE_FIELDS): said in words, since two "roadwork" pills do not say
        # which is the truth
        "truth": f"truth: {'roadwork' if label else 'no roadwork'}",
        "answer": f"answer {prob:.2f} ({'roadwork' if answer else 'no roadwork'}), exit {row.get('exit_level') or 'none'}",
        "votes": " · ".join(
            f"{v['voter']} {v['prob']:.2f}" if v.get("prob") is not None else f"{v['voter']} abstained"
            for v in row.get("votes", [])
        )
        or "no vote",
    }
    for vote in row.get("votes", []):
        name = field_name(vote["voter"])
        fields[f"vote_{name}"] = vote.get("prob")
        dets = to_detections((vote.get("evidence") or {}).get("boxes"))
        if dets is not None:
            fields[f"boxes_{name}"] = dets
    if canonical(info.transform) == "full":
        gt = gt_detections(info.data_root, sample)
        if gt is not None:
            fields["gt_boxes"] = gt
    filepath = media_path(info, sample, frames_dir)
    return fo.Sample(filepath=str(filepath), tags=tags_for(label, prob, uncertain_margin), **fields)


def build_dataset(
    info: RunInfo,
    rows: list[dict[str, Any]],
    name: str | None = None,
    top: int = 100,
    uncertain_margin: float = 0.15,
    persistent: bool = True,
    progress: Any = None,
) -> tuple[fo.Dataset, list[str]]:
    """The FiftyOne dataset of a run plus its saved views; returns it and the keys it could not find."""
    import fiftyone as fo

    by_key = {s.key: s for s in load_dataset(info.data_root)}
    frames_dir = info.run_dir / "review" / "frames"
    samples, missing = [], []
    for row in rows:
        sample = by_key.get(row["key"])
        if sample is None:
            missing.append(row["key"])
        else:
            samples.append(make_sample(row, info, sample, frames_dir, uncertain_margin))
        if progress is not None:
            progress()
    if not samples:
        raise FileNotFoundError(
            f"none of the run's {len(rows)} images is under {info.data_root} "
            f"(first key {rows[0]['key']!r}); pass the dataset folder with --data DIR"
        )
    ds = fo.Dataset(name or f"roadwork-{info.run_dir.resolve().name}", persistent=persistent, overwrite=True)
    ds.add_samples(samples)
    ds.info = {
        "run": str(info.run_dir.resolve()),
        "data_root": str(info.data_root.resolve()),
        "transform": info.transform,
        "seed": info.seed,
    }
    boxes = sorted(f for f in ds.get_field_schema() if f.startswith("boxes_") or f == "gt_boxes")
    ds.app_config.active_fields = fo.ActiveFields(paths=[*TILE_FIELDS, *boxes])
    ds.save()
    save_views(ds, top)
    return ds, missing


def save_views(ds: fo.Dataset, top: int) -> None:
    ds.save_view(
        "mistakes",
        ds.match_tags(["false_positive", "false_negative"]).sort_by("hardness", reverse=True),
        description="False positives and false negatives, hardest first",
        overwrite=True,
    )
    ds.save_view(
        "hardest",
        ds.sort_by("hardness", reverse=True).limit(top),
        description=f"The {top} samples with the highest hardness",
        overwrite=True,
    )
    ds.save_view(
        "uncertain",
        ds.match_tags("uncertain").sort_by("hardness", reverse=True),
        description="Answers close to 0.5",
        overwrite=True,
    )


def summary(ds: fo.Dataset) -> dict[str, int]:
    counts = ds.count_sample_tags()
    return {"samples": len(ds), **{t: int(counts.get(t, 0)) for t in TAGS}}


def launch(ds: fo.Dataset, port: int, address: str = "127.0.0.1", view: str | None = "mistakes") -> Any:
    """Serve the App on `address:port` (loopback by default) and return the session."""
    import fiftyone as fo

    start = ds.load_saved_view(view) if view else ds
    return fo.launch_app(start, port=port, address=address, remote=True, auto=False)
