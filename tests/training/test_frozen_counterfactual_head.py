"""benchmarks/frozen_counterfactual_head.py: no head sees the source or fold it scores, copies included."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import REPO, benchmark_script

REGIMES = ("v0.2", "letterbox", "full")


@pytest.fixture
def probe(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # it imports loso_networks from beside it
    return benchmark_script("frozen_counterfactual_head")


def rows(keys: list[tuple[str, str, int]], made: bool) -> dict[str, np.ndarray]:
    """One row per regime of each (key, source, label); features that say the label."""
    table = [(k, s, y, r) for k, s, y in keys for r in REGIMES]
    return {
        "feat": np.array([[float(y), float(i % 3)] for i, (_, _, y, _) in enumerate(table)]),
        "label": np.array([y for _, _, y, _ in table]),
        "source": np.array([s for _, s, _, _ in table]),
        "key": np.array([k for k, _, _, _ in table]),
        "regime": np.array([r for *_, r in table]),
        "counterfactual": np.full(len(table), made),
    }


def test_no_head_is_fitted_on_the_photos_or_copies_it_scores(probe, monkeypatch):
    photos = [
        (f"images/{s}/{i}.jpg", s, i % 2)
        for s in ("camvid", "gtsdb", "vtti_wz", "tracon", "idd_lite", "dawn_fog", "pp_nightwork")
        for i in range(4)
    ]
    originals = rows(photos, made=False)
    copies = rows([(k, s, 1 - y) for k, s, y in photos], made=True)  # every photo's counterfactual
    folds = {k: i % 3 for i, (k, _, _) in enumerate(photos)}
    seen_keys = []  # the photos (and copies of photos) each head is fitted on, in the order fitted
    real_held = probe.fit_head

    def held(originals_, counterfactuals, train_base, cf_base, C):
        keys = set(originals_["key"][train_base])
        if counterfactuals is not None:
            keys |= set(counterfactuals["key"][cf_base])
        seen_keys.append(keys)
        return real_held(originals_, counterfactuals, train_base, cf_base, C)

    monkeypatch.setattr(probe, "fit_head", held)
    loso, oof = probe.votes(originals, copies, {f: copies for f in range(3)}, folds, True, 0.01)
    # every held-out photo has a vote in each regime, from a head that saw nothing of its source
    held_out = {k for k, s, _ in photos if s in probe.HELD_OUT_SOURCES}
    assert set(loso) == held_out and all(set(REGIMES) <= set(v) for v in loso.values())
    names = list(probe.HELD_OUT)
    for name, keys in zip(names, seen_keys[: len(names)], strict=True):
        assert not {k for k in keys if k.split("/")[1] in probe.HELD_OUT[name]}, name
    # and every photo has an out-of-fold vote from the head of the other folds, copies included
    assert set(oof) == {k for k, _, _ in photos}
    for f, keys in enumerate(seen_keys[len(names) :]):
        assert keys and not {k for k in keys if folds[k] == f}
        assert all(oof[k]["fold"] == folds[k] for k in oof)
