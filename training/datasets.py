"""Labelled datasets: a folder with labels.csv, NATIX-style parquet, YOLO box folders.

A folder dataset has `labels.csv` with at least `path,label` (paths relative to the folder) and
optionally `source`, `split`, `group`. Rows that cannot be used are returned as `problems`
(file name + reason), never dropped silently.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from training.images import ImageLoadError, load_rgb, open_image, to_rgb


@dataclass(frozen=True)
class Sample:
    key: str
    """Stable id (relative path, or parquet row) — also seeds the validator transform."""
    label: int
    source: str = "unknown"
    split: str = ""
    group: str = ""
    path: Path | None = None
    data: bytes | None = field(default=None, repr=False)

    def load(self) -> np.ndarray:
        if self.path is not None:
            return load_rgb(self.path)
        if self.data is None:
            raise ImageLoadError(f"{self.key}: sample has neither a path nor image bytes")
        try:
            with open_image(io.BytesIO(self.data)) as img:
                img.load()
                return np.ascontiguousarray(np.asarray(to_rgb(img), dtype=np.uint8))
        except (OSError, ValueError) as exc:
            raise ImageLoadError(f"{self.key}: cannot decode image bytes ({exc})") from exc


@dataclass
class Dataset:
    root: Path
    samples: list[Sample]
    problems: list[str]

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def select(self, split: str | None = None, sources: list[str] | None = None) -> Dataset:
        keep = [s for s in self.samples if (split is None or s.split == split) and (not sources or s.source in sources)]
        return Dataset(self.root, keep, list(self.problems))

    def fingerprint(self) -> str:
        """sha256 over (key, label) pairs and the bytes of each file: the 'data hash' of a model."""
        h = hashlib.sha256()
        for s in sorted(self.samples, key=lambda s: s.key):
            h.update(f"{s.key}\t{s.label}\n".encode())
            if s.path is not None and s.path.is_file():
                h.update(hashlib.sha256(s.path.read_bytes()).digest())
            elif s.data is not None:
                h.update(hashlib.sha256(s.data).digest())
        return h.hexdigest()


def _parse_label(raw: str) -> int | None:
    raw = (raw or "").strip()
    return int(raw) if raw in ("0", "1") else None


def load_folder(root: str | Path) -> Dataset:
    root = Path(root)
    csv_path = root / "labels.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"{root}: no labels.csv (expected columns path,label[,source,split,group])")
    samples: list[Sample] = []
    problems: list[str] = []
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "label"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {sorted(missing)}; found {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            rel = (row.get("path") or "").strip()
            label = _parse_label(row.get("label", ""))
            if not rel:
                problems.append(f"{csv_path.name}:{line}: empty path")
                continue
            if label is None:
                problems.append(f"{rel}: label {row.get('label')!r} is not 0 or 1 (line {line})")
                continue
            path = root / rel
            if not path.is_file():
                problems.append(f"{rel}: file not found (line {line})")
                continue
            samples.append(
                Sample(
                    key=rel,
                    label=label,
                    source=(row.get("source") or "unknown").strip(),
                    split=(row.get("split") or "").strip(),
                    group=(row.get("group") or "").strip() or rel,
                    path=path,
                )
            )
    return Dataset(root, samples, problems)


def load_parquet(path: str | Path, image_column: str = "image", label_column: str = "label") -> Dataset:
    """NATIX-style parquet: one row per image, image bytes (or {'bytes': ...}) and a 0/1 label."""
    import pyarrow.parquet as pq

    path = Path(path)
    table = pq.read_table(path)
    cols = set(table.column_names)
    if image_column not in cols or label_column not in cols:
        raise ValueError(f"{path}: needs columns {image_column!r} and {label_column!r}; found {sorted(cols)}")
    rows = table.to_pylist()
    samples: list[Sample] = []
    problems: list[str] = []
    for i, row in enumerate(rows):
        img = row[image_column]
        data = img.get("bytes") if isinstance(img, dict) else img
        label = _parse_label(str(row[label_column]))
        key = f"{path.name}#{i}"
        if label is None:
            problems.append(f"{key}: label {row[label_column]!r} is not 0 or 1")
        elif not isinstance(data, (bytes, bytearray)):
            problems.append(f"{key}: no image bytes in column {image_column!r}")
        else:
            samples.append(
                Sample(
                    key=key,
                    label=label,
                    source=str(row.get("source") or path.stem),
                    split=str(row.get("split") or ""),
                    group=key,
                    data=bytes(data),
                )
            )
    return Dataset(path.parent, samples, problems)


def load_dataset(path: str | Path) -> Dataset:
    path = Path(path)
    if path.suffix == ".parquet":
        return load_parquet(path)
    if path.is_dir():
        return load_folder(path)
    if path.suffix == ".csv":
        raise FileNotFoundError(
            f"{path}: a labels file, not a dataset; pass the data folder (or .parquet) as "
            f"--data and this file as --labels (corrected labels laid over the data's own)"
        )
    raise FileNotFoundError(f"{path}: expected a folder with labels.csv or a .parquet file")


def apply_labels(dataset: Dataset, labels_csv: str | Path) -> tuple[Dataset, int]:
    """The dataset with the labels of `labels_csv` (columns `path,label`; e.g. what `roadwork review
    --import` writes) laid over its own: each listed key takes the file's label, the rest keep
    theirs. A key the dataset does not have or a label other than 0/1 is refused, naming the row.
    Returns the dataset and how many labels changed."""
    labels_csv = Path(labels_csv)
    if not labels_csv.is_file():
        raise FileNotFoundError(f"--labels {labels_csv}: no such file")
    with open(labels_csv, newline="") as f:
        reader = csv.DictReader(f)
        if not {"path", "label"} <= set(reader.fieldnames or []):
            raise ValueError(f"{labels_csv}: needs columns path,label; found {reader.fieldnames}")
        rows = list(reader)
    by_key = {s.key: s for s in dataset.samples}
    new: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        key, label = (row.get("path") or "").strip(), _parse_label(row.get("label", ""))
        if label is None:
            raise ValueError(f"{labels_csv}:{line}: label {row.get('label')!r} for {key!r} is not 0 or 1")
        if key not in by_key:
            raise ValueError(
                f"{labels_csv}:{line}: {key!r} is not a row of {dataset.root} (labels of another "
                f"dataset, or a row skipped as unusable?)"
            )
        new[key] = label
    changed = sum(1 for k, v in new.items() if by_key[k].label != v)
    samples = [replace(s, label=new[s.key]) if s.key in new else s for s in dataset.samples]
    return Dataset(dataset.root, samples, list(dataset.problems)), changed


def read_yolo_boxes(txt: str | Path) -> np.ndarray:
    """(n, 5) array of class, cx, cy, w, h (normalised) from a YOLO label file; empty file -> (0, 5)."""
    rows = [line.split() for line in Path(txt).read_text().splitlines() if line.strip()]
    arr = np.array([[float(v) for v in r[:5]] for r in rows], dtype=np.float64).reshape(-1, 5)
    if arr.size and (np.any(arr[:, 1:] < 0) or np.any(arr[:, 1:] > 1)):
        raise ValueError(f"{txt}: YOLO coordinates must be normalised to [0, 1]")
    return arr
