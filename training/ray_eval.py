"""`roadwork eval --ray ADDRESS`: the same evaluation, its images scored by cascade replicas on a Ray
cluster (Ray Data), for labelled sets of 100k+ images (the NATIX parquet, a dashcam archive).

Each replica is a Ray actor that loads the profile and builds the cascade once, then scores the
rows Ray Data hands it with `training.evaluate.score_sample`, the function the single-process run
uses, and the same transform (seeded by each image's key). Rows come back in the dataset's order
(`preserve_order`) with a thumbnail of what the cascade saw; the driver writes the run folder with
the single-process code, so the metrics are those of a single-process run over the same rows.
Images travel as file paths (every node must see the same data folder, e.g. a shared mount) or, for
parquet rows, as their bytes.

ADDRESS is what `ray.init(address=...)` takes: `auto` (a cluster started with `ray start` on this
machine), `ray://HOST:10001` (Ray Client), or `local` for a one-machine cluster started here.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from training.datasets import Dataset, Sample
from training.evaluate import Scored

THUMB = 160
"""Side of the thumbnail sent back per image (WorstMistakes keeps the most confident errors' thumbnails)."""


def _item(i: int, s: Sample) -> dict[str, Any]:
    return {
        "i": i,
        "key": s.key,
        "label": s.label,
        "source": s.source,
        "split": s.split,
        "group": s.group,
        "path": str(s.path) if s.path is not None else "",
        "data": s.data or b"",
    }


class CascadeReplica:
    """One cascade on a Ray worker: built once from the profile, scoring batch after batch."""

    def __init__(self, config: str, regime: str, seed: int) -> None:
        from miner.profile import worker_cascade
        from training.transforms import make_transform

        self.cascade = worker_cascade(config)
        self.regime, self.transform = regime, make_transform(regime, seed)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        from PIL import Image

        from training.evaluate import score_sample

        out: dict[str, list[Any]] = {"i": [], "row": [], "thumb": [], "problem": []}
        for j in range(len(batch["i"])):
            path, data = str(batch["path"][j]), bytes(batch["data"][j])
            sample = Sample(
                key=str(batch["key"][j]),
                label=int(batch["label"][j]),
                source=str(batch["source"][j]),
                split=str(batch["split"][j]),
                group=str(batch["group"][j]),
                path=Path(path) if path else None,
                data=data or None,
            )
            scored = score_sample(self.cascade, sample, self.transform, self.regime)
            thumb = b""
            if scored.image is not None:
                img = Image.fromarray(scored.image)
                img.thumbnail((THUMB, THUMB))
                buf = io.BytesIO()
                img.save(buf, format="PNG")
                thumb = buf.getvalue()
            out["i"].append(int(batch["i"][j]))
            out["row"].append(json.dumps(scored.row) if scored.row is not None else "")
            out["thumb"].append(thumb)
            out["problem"].append(scored.problem)
        return out


def ray_scores(
    dataset: Dataset, config: str | Path, regime: str, seed: int, replicas: int, batch: int = 8
) -> Iterator[Scored]:
    """Every sample of `dataset` scored on the cluster, in the dataset's order."""
    import ray
    from PIL import Image

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    items = ray.data.from_items([_item(i, s) for i, s in enumerate(dataset.samples)])
    results = items.map_batches(
        CascadeReplica,
        fn_constructor_kwargs={"config": str(Path(config).resolve()), "regime": regime, "seed": seed},
        batch_size=batch,
        concurrency=replicas,
        num_cpus=1,
        batch_format="numpy",
    )
    for r in results.iter_rows():
        sample = dataset.samples[int(r["i"])]
        if not r["row"]:
            yield Scored(sample, None, problem=str(r["problem"]))
            continue
        thumb = np.asarray(Image.open(io.BytesIO(bytes(r["thumb"])))) if len(r["thumb"]) else None
        yield Scored(sample, json.loads(r["row"]), thumb)
