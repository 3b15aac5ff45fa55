"""Sample weights that balance the classes and each (source, label) cell.

Most round-1 sources hold one label only, so a model can learn a source's style instead of
roadwork; weighting each (source, label) cell by 1/sqrt(size) keeps big one-label sources from
dominating, then both classes get equal total weight. Used by the head and the backbone training.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import numpy as np


def sample_weights(
    labels: np.ndarray, sources: list[str], source_balance: bool, boost: Mapping[tuple[str, int], float] | None = None
) -> np.ndarray:
    """`boost` multiplies the weight of the (source, label) cells it names before the classes are
    balanced: e.g. {("vtti_wz", 1): 3.0} draws VTTI's work zones three times as often against the
    other positives, the negatives unchanged."""
    boost = boost or {}
    cells = Counter(zip(sources, labels.tolist(), strict=True))
    w = np.array(
        [
            (1.0 / np.sqrt(cells[(s, y)]) if source_balance else 1.0) * boost.get((s, y), 1.0)
            for s, y in zip(sources, labels.tolist(), strict=True)
        ]
    )
    for y in (0, 1):  # then balance the classes
        sel = labels == y
        if sel.any():
            w[sel] *= 0.5 / w[sel].sum()
    return w / w.mean()
