"""Fit voter weights, calibration and routing bands from a labelled run (scikit-learn).

Input rows are what `roadwork eval` writes to predictions.jsonl (label + every vote). Missing or
abstaining votes are encoded as logit 0 (no evidence) plus a presence indicator, so a voter that
rarely runs is not punished for the rows where it did not.

Given each voter's range of frame sizes (`voter_sides`, from the profile's `voters[].long_side`), a
voter's votes on frames outside its range are dropped (the cascade never runs it there) and one pool
is fitted per part of the size axis that the ranges cut (consensus/artefact.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import matthews_corrcoef

from cascade.types import EVERY_SIZE, Level, LongSides, covers
from consensus.artefact import ConsensusArtefact, Pool
from consensus.pooling import logit, sigmoid


@dataclass(frozen=True)
class LabelledVotes:
    """One labelled row: voter name -> (level, prob or None)."""

    label: int
    votes: dict[str, tuple[Level, float | None]]
    long_side: int | None = None
    """The scored frame's long side in pixels (None: not recorded)."""
    source: str = ""
    """The row's source (its group in the data), for fits balanced by source ("": not recorded)."""


BALANCE = {"source": lambda r: (r.source,), "source-label": lambda r: (r.source, r.label)}
"""Fits that weigh each group of rows the same in all (each row 1 / its group's rows in the pool):
by source, or by source and label. Without one every row counts once, so a large source sets the
pool's weights and threshold for the rest."""


def row_weights(rows: Sequence[LabelledVotes], balance: str | None) -> np.ndarray | None:
    """Sample weights (mean 1) that make each group of `balance` count the same; None: unweighted."""
    if balance is None:
        return None
    if balance not in BALANCE:
        raise ValueError(f"balance must be one of {sorted(BALANCE)}, got {balance!r}")
    if blind := sum(not r.source for r in rows):
        raise ValueError(f"balance={balance!r}: {blind} of {len(rows)} rows do not record their source")
    group = BALANCE[balance]
    sizes = Counter(group(r) for r in rows)
    w = np.asarray([1.0 / sizes[group(r)] for r in rows])
    return w * len(w) / w.sum()


def _design(rows: Sequence[LabelledVotes], voters: list[str], clip: float) -> tuple[np.ndarray, np.ndarray]:
    x = np.zeros((len(rows), len(voters)))
    present = np.zeros_like(x)
    for i, row in enumerate(rows):
        for j, name in enumerate(voters):
            level_prob = row.votes.get(name)
            if level_prob is not None and level_prob[1] is not None:
                x[i, j] = float(logit(level_prob[1], clip))
                present[i, j] = 1.0
    return x, present


def pooled_logits(x: np.ndarray, present: np.ndarray, weights: np.ndarray) -> np.ndarray:
    w = present * weights[None, :]
    total = w.sum(axis=1)
    z = (w * x).sum(axis=1) / np.where(total > 0, total, 1.0)
    return np.where(total > 0, z, 0.0)


def best_threshold(
    y: np.ndarray,
    p: np.ndarray,
    lo: float = 0.2,
    hi: float = 0.8,
    sample_weight: np.ndarray | None = None,
    margin: float = 0.0,
) -> float:
    """The MCC-maximising threshold, searched on a coarse grid inside [lo, hi] to limit overfit.
    With `margin` > 0, the threshold nearest the calibrated 0.5 among those within `margin` MCC of
    the best: a cut-off moved off 0.5 on the fit's own rows must gain more than that."""
    grid = np.round(np.arange(lo, hi + 1e-9, 0.025), 4)
    scores = np.asarray([matthews_corrcoef(y, (p >= t).astype(int), sample_weight=sample_weight) for t in grid])
    best = float(np.max(scores))
    if margin > 0:
        near = grid[scores >= best - margin]
        return float(near[np.argmin(np.abs(near - 0.5))])
    # among near-ties take the middle one: less sensitive to a few samples
    near = grid[scores >= best - 1e-3]
    return float(near[len(near) // 2])


def exit_band(y: np.ndarray, p: np.ndarray, target: float, min_support: int) -> tuple[float, float]:
    """The widest uncertainty band [lo, hi] outside of which decisions are at least `target` correct."""
    hi, lo = 1.0, 0.0
    for t in np.unique(np.round(p, 4))[::-1]:
        sel = p >= t
        if sel.sum() >= min_support and y[sel].mean() >= target:
            hi = float(t)
        elif sel.sum() >= min_support:
            break
    for t in np.unique(np.round(p, 4)):
        sel = p <= t
        if sel.sum() >= min_support and (1 - y[sel]).mean() >= target:
            lo = float(t)
        elif sel.sum() >= min_support:
            break
    return (min(lo, hi), max(lo, hi))


def fit_pool(
    rows: Sequence[LabelledVotes],
    *,
    clip: float = 1e-4,
    target: float = 0.98,
    min_support: int = 20,
    long_side: LongSides = EVERY_SIZE,
    balance: str | None = None,
    cut_off_margin: float = 0.0,
) -> Pool:
    """Weights (logistic regression on the votes' logits), calibration, threshold and bands of one pool."""
    where = "" if long_side == EVERY_SIZE else f" (frames with long side in {list(long_side)})"
    if not rows:
        raise ValueError(f"no labelled rows to fit on{where}")
    y = np.asarray([r.label for r in rows], dtype=int)
    if set(np.unique(y)) != {0, 1}:
        raise ValueError(f"fitting needs both labels 0 and 1{where}, got {sorted(set(y.tolist()))}")
    voters = sorted({name for r in rows for name, (_, p) in r.votes.items() if p is not None})
    if not voters:
        raise ValueError(f"no voter produced a probability in this run{where}")
    x, present = _design(rows, voters, clip)
    lr = LogisticRegression(C=1.0, max_iter=1000)
    lr.fit(np.hstack([x, present]), y, sample_weight=row_weights(rows, balance))
    beta = np.clip(lr.coef_[0][: len(voters)], 0.0, None)
    if beta.sum() <= 0:
        beta = np.ones(len(voters))
    weights = dict(zip(voters, beta / beta.sum() * len(voters), strict=True))
    return calibrated_pool(
        rows,
        weights,
        clip=clip,
        target=target,
        min_support=min_support,
        long_side=long_side,
        balance=balance,
        cut_off_margin=cut_off_margin,
    )


def calibrated_pool(
    rows: Sequence[LabelledVotes],
    weights: Mapping[str, float],
    *,
    clip: float = 1e-4,
    target: float = 0.98,
    min_support: int = 20,
    long_side: LongSides = EVERY_SIZE,
    balance: str | None = None,
    cut_off_margin: float = 0.0,
) -> Pool:
    """A pool with these voter weights: its calibration, threshold and bands fitted on the rows
    (`fit_pool` after fitting the weights; also for weights chosen another way, in an experiment)."""
    y = np.asarray([r.label for r in rows], dtype=int)
    voters = list(weights)
    levels = {name: lv for r in rows for name, (lv, _) in r.votes.items()}
    x, present = _design(rows, voters, clip)
    sw = row_weights(rows, balance)
    w = np.asarray([weights[v] for v in voters], dtype=float)

    z = pooled_logits(x, present, w)
    cal = LogisticRegression(C=1e4, max_iter=1000).fit(z[:, None], y, sample_weight=sw)
    scale, bias = float(cal.coef_[0][0]), float(cal.intercept_[0])
    p_cal = sigmoid(scale * z + bias)
    t = best_threshold(y, p_cal, sample_weight=sw, margin=cut_off_margin)
    bias_shifted = bias - float(logit(t))
    p_final = sigmoid(scale * z + bias_shifted)

    bands: dict[str, tuple[float, float]] = {}
    for level in sorted(set(levels.values())):
        upto = np.asarray([levels[v] <= level for v in voters], dtype=float)
        z_l = pooled_logits(x, present * upto[None, :], w)
        has = (present * upto[None, :]).sum(axis=1) > 0
        p_l = sigmoid(scale * z_l + bias_shifted)
        if has.sum() >= min_support:
            bands[level.name] = exit_band(y[has], p_l[has], target, min_support)

    pred = (p_final >= 0.5).astype(int)
    metrics = {"mcc": float(matthews_corrcoef(y, pred)), "accuracy": float((pred == y).mean())}
    # a voter that ran on these rows but abstained on every one (OCR that read no text) has nothing
    # to be weighed by: weight 0, so the pool ignores it until a fit on rows where it votes
    silent = sorted({name for r in rows for name in r.votes} - set(voters))
    return Pool(
        long_side=long_side,
        weights={**{v: float(weights[v]) for v in voters}, **dict.fromkeys(silent, 0.0)},
        scale=scale,
        bias=bias_shifted,
        bands=bands,
        threshold_raw=t,
        n_samples=len(rows),
        metrics=metrics,
    )


def size_ranges(voter_sides: Mapping[str, LongSides]) -> list[LongSides]:
    """The parts of the frame-size axis that the voters' ranges cut it into, smallest first."""
    cuts = sorted({lo for lo, _ in voter_sides.values() if lo > 0} | {hi for _, hi in voter_sides.values() if hi})
    edges: list[int | None] = [0, *cuts, None]
    return [(int(edges[i] or 0), edges[i + 1]) for i in range(len(edges) - 1)]


def scored_by_their_voters(rows: Sequence[LabelledVotes], voter_sides: Mapping[str, LongSides]) -> list[LabelledVotes]:
    """Each row with only the votes of voters whose range covers its frame (the cascade skips the
    others there); a row left with no vote is dropped. Refuses runs whose voters are not exactly
    those of `voter_sides` and, when any range is not every frame, rows that do not say their frame's
    size."""
    voted = {v for r in rows for v in r.votes}
    unknown = sorted(voted - set(voter_sides))
    if unknown:
        raise ValueError(
            f"the run has votes of {unknown}, which the profile does not run "
            f"(its voters: {sorted(voter_sides)}); fit on runs of the profile's voters only "
            "(an OOF run names its voters with `roadwork train backbone --voters VIEW=NAME,...`)"
        )
    if absent := sorted(set(voter_sides) - voted):
        raise ValueError(f"the profile runs {absent}, but no run holds their votes")
    if all(sides == EVERY_SIZE for sides in voter_sides.values()):
        return list(rows)
    blind = sum(r.long_side is None for r in rows)
    if blind:
        raise ValueError(
            f"{blind} of {len(rows)} rows do not record their frame's long_side, but the profile's "
            "voters score only some frame sizes (voters[].long_side); make the run again with "
            "this build (`roadwork eval`, or the OOF files of `roadwork train backbone`)"
        )
    out = []
    for r in rows:
        votes = {v: lp for v, lp in r.votes.items() if covers(voter_sides[v], int(r.long_side))}  # type: ignore[arg-type]
        if votes:
            out.append(replace(r, votes=votes))
    return out


def fit_consensus(
    rows: Sequence[LabelledVotes],
    *,
    clip: float = 1e-4,
    target: float = 0.98,
    min_support: int = 20,
    fitted_on: str = "",
    voter_sides: Mapping[str, LongSides] | None = None,
    balance: str | None = None,
    cut_off_margin: float = 0.0,
) -> ConsensusArtefact:
    """One pool for every frame; or, given each voter's range of frame sizes, one pool per part of
    the size axis that the ranges cut, each fitted on the rows of its part with the votes the
    cascade would have there. `balance` (a key of BALANCE) weighs each group the same in each pool;
    `cut_off_margin` keeps each pool's cut-off at 0.5 unless another gains more MCC than that
    (`best_threshold`)."""
    if not 0 <= cut_off_margin < 1:
        raise ValueError(f"cut_off_margin is an MCC difference from 0 up to 1, got {cut_off_margin}")
    common = {
        "clip": clip,
        "target": target,
        "min_support": min_support,
        "balance": balance,
        "cut_off_margin": cut_off_margin,
    }
    if voter_sides is None:
        pools = [fit_pool(rows, **common)]
    else:
        rows = scored_by_their_voters(rows, voter_sides)
        pools = [
            fit_pool([r for r in rows if covers(sides, int(r.long_side or 0))], long_side=sides, **common)
            for sides in size_ranges(voter_sides)
        ]
    art = ConsensusArtefact(
        clip=clip,
        pools=pools,
        fitted_on=fitted_on,
        n_samples=len(rows),
        balance=balance,
        cut_off_margin=cut_off_margin,
    )
    y = np.asarray([r.label for r in rows], dtype=int)
    pred = (artefact_probs(art, rows) >= 0.5).astype(int)
    return art.model_copy(
        update={"metrics": {"mcc": float(matthews_corrcoef(y, pred)), "accuracy": float((pred == y).mean())}}
    )


def pool_probs(pool: Pool, rows: Sequence[LabelledVotes], clip: float) -> np.ndarray:
    """One pool's calibrated probability for each row (voters absent from a row abstain)."""
    voters = list(pool.weights)
    x, present = _design(rows, voters, clip)
    z = pooled_logits(x, present, np.array([pool.weights[v] for v in voters]))
    return sigmoid(pool.scale * z + pool.bias)


def artefact_probs(artefact: ConsensusArtefact, rows: Sequence[LabelledVotes]) -> np.ndarray:
    """The fitted consensus's calibrated probability for each row, from the pool for its frame size."""
    if len(artefact.pools) == 1:
        return pool_probs(artefact.pools[0], rows, artefact.clip)
    if any(r.long_side is None for r in rows):
        raise ValueError("the artefact has one pool per frame size, but some rows do not record their long_side")
    out = np.zeros(len(rows))
    for pool in artefact.pools:
        idx = [i for i, r in enumerate(rows) if covers(pool.long_side, int(r.long_side))]  # type: ignore[arg-type]
        if idx:
            out[idx] = pool_probs(pool, [rows[i] for i in idx], artefact.clip)
    return out


def rows_from_predictions(predictions: Sequence[dict]) -> list[LabelledVotes]:
    """Turn `roadwork eval` predictions.jsonl rows into fitting rows."""
    rows = []
    for r in predictions:
        votes = {v["voter"]: (Level.parse(v["level"]), v["prob"]) for v in r.get("votes", [])}
        rows.append(
            LabelledVotes(
                label=int(r["label"]), votes=votes, long_side=r.get("long_side"), source=str(r.get("source") or "")
            )
        )
    return rows
