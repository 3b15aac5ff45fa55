"""Hard examples out for labelling, corrected labels back in (`roadwork review --export / --import`).

`--export DIR` writes the hardest N images of a run as a small dataset folder of our own format:

    DIR/labels.csv          path,label,source,split,group,license,notes + key, prob, hardness, tags
    DIR/images/*.jpg        the original photographs (not the transformed frames)
    DIR/coco|yolo|cvat/     the same images with box pre-annotations, for a labelling tool (optional)

The tool formats carry boxes, not image labels: roadwork images come with the dataset's own boxes
(and detector boxes where they line up with the original), other images with none. Fix labels by
editing `label` in DIR/labels.csv; in a tool, drawing a box on an image makes it roadwork (removing
boxes does not make an image negative: set its label to 0 in labels.csv). `--import DIR` then writes
a copy of the data root's labels.csv with the corrected labels (and a note on each changed row),
ready for `roadwork train head --data`.
"""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import fiftyone as fo

FORMATS = ("csv", "coco", "yolo", "cvat")
LABEL_COLUMNS = ["path", "label", "source", "split", "group", "license", "notes"]
EXTRA_COLUMNS = ["key", "prob", "hardness", "tags"]


def _fo_type(fmt: str) -> Any:
    import fiftyone as fo

    return {"coco": fo.types.COCODetectionDataset, "yolo": fo.types.YOLOv5Dataset, "cvat": fo.types.CVATImageDataset}[
        fmt
    ]


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    return fmt


def read_labels(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def export_hardest(ds: fo.Dataset, out_dir: str | Path, top: int, fmt: str = "csv") -> Path:
    """Write the `top` hardest samples (originals + labels.csv [+ tool format]); returns DIR/labels.csv."""
    import fiftyone as fo

    check_format(fmt)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    root = Path(ds.info["data_root"])
    _, source_rows = read_labels(root / "labels.csv") if (root / "labels.csv").is_file() else ([], [])
    by_key = {r["path"]: r for r in source_rows}
    rows, tool_samples = [], []
    for s in ds.sort_by("hardness", reverse=True).limit(top):
        original = Path(s["original_path"] or s.filepath)
        name = re.sub(r"[^0-9A-Za-z_.-]", "_", s["key"].replace("/", "__"))
        if not name.lower().endswith((".jpg", ".jpeg", ".png")):
            name += original.suffix or ".jpg"
        shutil.copyfile(original, out / "images" / name)
        src = by_key.get(s["key"], {})
        rows.append(
            {
                **{c: src.get(c, "") for c in LABEL_COLUMNS},
                "path": f"images/{name}",
                "label": 1 if s["ground_truth"].label == "roadwork" else 0,
                "source": s["source"],
                "group": s["group"],
                "key": s["key"],
                "prob": f"{s['prob']:.6f}",
                "hardness": f"{s['hardness']:.4f}",
                "tags": " ".join(s.tags),
            }
        )
        boxes = _pre_annotation(s, root)
        tool_samples.append(
            fo.Sample(filepath=str((out / "images" / name).resolve()), ground_truth=s["ground_truth"], detections=boxes)
        )
    labels_csv = out / "labels.csv"
    with open(labels_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LABEL_COLUMNS + EXTRA_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    if fmt != "csv":
        tool = fo.Dataset(persistent=False)
        tool.add_samples(tool_samples)
        classes = sorted({d.label for s in tool_samples for d in s.detections.detections} | {"roadwork"})
        # CVAT needs its label set declared (an export with no box would otherwise not load back)
        tool.info = {"task_labels": [{"name": c, "attributes": []} for c in classes]}
        tool.save()
        tool.export(
            export_dir=str(out / fmt),
            dataset_type=_fo_type(fmt),
            label_field="detections",
            **({"classes": classes} if fmt == "yolo" else {}),
        )
        tool.delete()
    return labels_csv


def _pre_annotation(s: Any, root: Path) -> Any:
    """Boxes offered to the labeller on the original photo: the dataset's own (roadwork images only)."""
    import fiftyone as fo

    from training.datasets import Sample
    from training.review import gt_detections

    if s["ground_truth"].label != "roadwork" or not s["original_path"]:
        return fo.Detections()
    sample = Sample(key=s["key"], label=1, source=s["source"], path=Path(s["original_path"]))
    boxes = gt_detections(root, sample)
    return fo.Detections() if boxes is None else boxes


def _tool_labels(in_dir: Path, fmt: str) -> dict[str, int]:
    """basename -> 1 for each image with at least one box in the tool's export."""
    import fiftyone as fo

    ds = fo.Dataset.from_dir(dataset_dir=str(in_dir / fmt), dataset_type=_fo_type(fmt), label_field="detections")
    try:
        if not ds.has_sample_field("detections"):  # no image has a box
            return {}
        return {Path(s.filepath).name: 1 for s in ds if s["detections"] and s["detections"].detections}
    finally:
        ds.delete()


def import_labels(
    in_dir: str | Path, data_root: str | Path, out_csv: str | Path, fmt: str | None = None
) -> dict[str, int]:
    """Merge corrected labels from an export folder into a copy of DATA/labels.csv written to out_csv."""
    in_dir, data_root = Path(in_dir), Path(data_root)
    export_csv = in_dir / "labels.csv"
    if not export_csv.is_file():
        raise FileNotFoundError(
            f"{in_dir}: no labels.csv; make the folder with `roadwork review RUN --export {in_dir}`"
        )
    _, exported = read_labels(export_csv)
    corrected: dict[str, int] = {}
    for row in exported:
        raw = str(row.get("label", "")).strip()
        if raw not in ("0", "1"):
            raise ValueError(f"{export_csv}: label {raw!r} for {row.get('path')!r} must be 0 or 1")
        corrected[row["key"]] = int(raw)
    if fmt is not None and check_format(fmt) != "csv":
        by_file = {Path(r["path"]).name: r["key"] for r in exported}
        for name, label in _tool_labels(in_dir, fmt).items():
            if name not in by_file:
                raise ValueError(f"{in_dir / fmt}: image {name!r} is not in {export_csv}")
            corrected[by_file[name]] = label
    fields, rows = read_labels(data_root / "labels.csv")
    known = {r["path"] for r in rows}
    unknown = sorted(set(corrected) - known)
    if unknown:
        raise ValueError(
            f"{len(unknown)} exported key(s) are not in {data_root / 'labels.csv'}, "
            f"e.g. {unknown[0]!r}; pass the data root the run used with --data DIR"
        )
    changed = 0
    for row in rows:
        new = corrected.get(row["path"])
        if new is not None and str(new) != row["label"].strip():
            note = f"relabelled in review: {row['label'].strip()} -> {new}"
            row["label"] = str(new)
            if "notes" in row:
                row["notes"] = f"{row['notes']}; {note}" if row["notes"] else note
            changed += 1
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with open(out_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return {"reviewed": len(corrected), "changed": changed, "rows": len(rows)}
