import json

import numpy as np
import pytest

from cascade.types import Level
from consensus.artefact import ConsensusArtefact
from consensus.fitting import LabelledVotes, fit_consensus, fit_pool, rows_from_predictions


def synthetic_rows(n=400, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        y = int(rng.integers(0, 2))
        good = float(np.clip(0.8 * y + 0.1 + rng.normal(0, 0.1), 0.01, 0.99))  # informative
        noise = float(rng.uniform(0.01, 0.99))  # says nothing
        late = good if rng.random() < 0.5 else None  # an L1 voter that ran half the time
        rows.append(LabelledVotes(y, {"good": (Level.L0, good), "noise": (Level.L0, noise), "late": (Level.L1, late)}))
    return rows


def test_informative_voter_gets_more_weight_than_noise():
    art = fit_consensus(synthetic_rows())
    (pool,) = art.pools
    assert pool.weights["good"] > 3 * pool.weights["noise"]
    assert art.metrics["mcc"] > 0.8


def test_a_pool_given_its_weights_keeps_them_and_is_calibrated_on_the_rows():
    from consensus.fitting import calibrated_pool

    rows = synthetic_rows()
    fitted = fit_pool(rows)
    assert calibrated_pool(rows, {v: w for v, w in fitted.weights.items() if w}) == fitted  # fit_pool's second half
    equal = calibrated_pool(rows, {"good": 1.0, "noise": 1.0, "late": 1.0})
    assert equal.weights == {"good": 1.0, "noise": 1.0, "late": 1.0}
    assert equal.metrics["mcc"] < fitted.metrics["mcc"]  # the noise voter now has as much say as the good one
    assert equal.metrics["mcc"] > 0.5 and 0 < equal.threshold_raw < 1


def test_bands_are_fitted_per_level_and_ordered():
    art = fit_consensus(synthetic_rows(), target=0.95)
    lo, hi = art.pools[0].bands["L0"]
    assert 0.0 <= lo < 0.5 < hi <= 1.0


def test_single_label_runs_are_refused():
    rows = [LabelledVotes(1, {"a": (Level.L0, 0.9)})] * 10
    with pytest.raises(ValueError, match="both labels"):
        fit_consensus(rows)


def test_artefact_round_trip_and_version_check(tmp_path):
    art = fit_consensus(synthetic_rows())
    path = art.save(tmp_path / "w.json")
    assert ConsensusArtefact.load(path) == art
    data = json.loads(path.read_text())
    data["schema_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="schema_version 99"):
        ConsensusArtefact.load(path)
    data["schema_version"] = 1
    data["labels"] = [0, 2]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="labels"):
        ConsensusArtefact.load(path)


def test_rows_from_eval_predictions_keep_abstentions():
    rows = rows_from_predictions(
        [
            {
                "label": 1,
                "votes": [{"voter": "a", "level": "L0", "prob": 0.7}, {"voter": "b", "level": "L3", "prob": None}],
            }
        ]
    )
    assert rows[0].votes == {"a": (Level.L0, 0.7), "b": (Level.L3, None)}


def sized_rows(n=600, seed=1):
    """Small frames scored by a whole-frame voter, large ones by a tile voter whose scale differs:
    its probabilities run high, so one calibration for both would misplace the threshold."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        y = int(rng.integers(0, 2))
        large = i % 2 == 0
        whole = float(np.clip(0.2 + 0.5 * y + rng.normal(0, 0.12), 0.01, 0.99))
        tiles = float(np.clip(0.75 + 0.2 * y + rng.normal(0, 0.05), 0.01, 0.99))
        rows.append(
            LabelledVotes(
                y,
                {"whole": (Level.L0, whole), "tiles": (Level.L0, tiles if large else None)},
                long_side=1920 if large else 224,
            )
        )
    return rows


def test_a_profile_that_splits_frames_by_size_gets_a_pool_per_part():
    sides = {"whole": (0, 448), "tiles": (448, None)}
    art = fit_consensus(sized_rows(), voter_sides=sides)
    small, large = art.pools
    # each part is fitted on its own frames, with only the votes the cascade has there
    assert (small.long_side, large.long_side) == ((0, 448), (448, None))
    assert set(small.weights) == {"whole"} and set(large.weights) == {"tiles"}
    assert small.n_samples == large.n_samples == 300
    assert art.pool_for(224) is small and art.pool_for(1920) is large
    # and each part's threshold lands where its voter separates the labels
    assert min(small.metrics["mcc"], large.metrics["mcc"]) > 0.8 and art.metrics["mcc"] > 0.8


def test_splitting_by_size_needs_rows_that_record_their_size():
    rows = [LabelledVotes(r.label, r.votes) for r in sized_rows()]
    with pytest.raises(ValueError, match="do not record their frame's long_side"):
        fit_consensus(rows, voter_sides={"whole": (0, 448), "tiles": (448, None)})
    with pytest.raises(ValueError, match=r"votes of \['tiles'\], which the profile does not run"):
        fit_consensus(sized_rows(), voter_sides={"whole": (0, None)})
    with pytest.raises(ValueError, match=r"the profile runs \['ocr'\], but no run holds their votes"):
        fit_consensus(sized_rows(), voter_sides={"whole": (0, 448), "tiles": (448, None), "ocr": (0, None)})


def test_a_schema_1_artefact_still_loads_as_one_pool_for_every_frame(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "labels": [0, 1],
                "weights": {"a": 2.0},
                "scale": 1.5,
                "bias": -0.2,
                "bands": {"L0": [0.1, 0.9]},
                "threshold_raw": 0.55,
                "n_samples": 10,
                "metrics": {"mcc": 0.5},
            }
        )
    )
    art = ConsensusArtefact.load(path)
    (pool,) = art.pools
    assert pool.long_side == (0, None) and pool.weights == {"a": 2.0} and pool.bands == {"L0": (0.1, 0.9)}
    assert art.pool_for(224) is art.pool_for(4000) is pool and art.metrics == {"mcc": 0.5}


def test_pools_that_leave_a_frame_size_uncovered_are_refused():
    from consensus.artefact import Pool

    with pytest.raises(ValueError, match="cover every frame size once"):
        ConsensusArtefact(
            pools=[Pool(long_side=(0, 448), weights={"a": 1.0}), Pool(long_side=(500, None), weights={"b": 1.0})]
        )


def test_a_voter_that_abstained_on_every_row_is_kept_with_no_say() -> None:
    # OCR that read no text in any fit row: the artefact still names it (the profile runs it), weight 0
    rng = np.random.default_rng(0)
    rows = [
        LabelledVotes(y, {"l0": (Level.L0, float(np.clip(0.3 + 0.4 * y + rng.normal(0, 0.1), 0.01, 0.99))),
                          "ocr": (Level.L2, None)})
        for y in [0, 1] * 30
    ]  # fmt: skip
    pool = fit_pool(rows)
    assert pool.weights["ocr"] == 0.0 and pool.weights["l0"] > 0


def two_cameras(seed: int = 0) -> list[LabelledVotes]:
    """A large source whose positives score high, and a small one (a new kind of camera) whose
    positives score lower: one threshold cannot suit both."""
    rng = np.random.default_rng(seed)
    rows = []
    for source, n, pos_mean in (("photos", 900, 0.75), ("dashcam", 100, 0.42)):
        for _ in range(n):
            y = int(rng.integers(0, 2))
            p = float(np.clip((pos_mean if y else 0.2) + rng.normal(0, 0.06), 0.01, 0.99))
            rows.append(LabelledVotes(y, {"l0": (Level.L0, p)}, source=source))
    return rows


def test_a_fit_balanced_by_source_serves_the_small_source_too(tmp_path):
    from sklearn.metrics import matthews_corrcoef

    from consensus.fitting import artefact_probs

    rows = two_cameras()
    small = [r for r in rows if r.source == "dashcam"]
    y = np.array([r.label for r in small])

    def small_mcc(art):
        return matthews_corrcoef(y, artefact_probs(art, small) >= 0.5)

    plain, balanced = fit_consensus(rows), fit_consensus(rows, balance="source")
    assert small_mcc(balanced) > small_mcc(plain) + 0.05  # 0.89 -> 0.96: the large source no longer sets it alone
    assert plain.balance is None and balanced.balance == "source"
    assert ConsensusArtefact.load(balanced.save(tmp_path / "c.json")).balance == "source"


def test_a_balanced_fit_needs_each_rows_source():
    rows = [LabelledVotes(r.label, r.votes) for r in two_cameras()]
    with pytest.raises(ValueError, match="do not record their source"):
        fit_consensus(rows, balance="source")
    with pytest.raises(ValueError, match="balance must be one of"):
        fit_consensus(two_cameras(), balance="camera")


def test_rows_from_predictions_keep_the_source():
    (row,) = rows_from_predictions(
        [{"key": "a", "label": 1, "source": "gtsdb", "votes": [{"voter": "l0", "level": "L0", "prob": 0.7}]}]
    )
    assert row.source == "gtsdb"


def test_a_cut_off_moves_off_one_half_only_for_more_than_the_margin():
    from consensus.fitting import best_threshold

    # 100 negatives at 0.40 and 100 positives at 0.60, except 3 negatives at 0.55: the best cut-off
    # is above 0.55 (every answer right); 0.5 gets the 3 wrong (MCC 0.971)
    y = np.array([0] * 100 + [1] * 100)
    p = np.array([0.40] * 97 + [0.55] * 3 + [0.60] * 100)
    assert best_threshold(y, p) > 0.55
    assert best_threshold(y, p, margin=0.05) == 0.5  # a gain of 0.03 MCC is inside the margin
    assert best_threshold(y, p, margin=0.01) > 0.55  # outside this one
    rows = [LabelledVotes(int(label), {"v": (Level.L0, float(q))}) for label, q in zip(y, p, strict=True)]
    art = fit_consensus(rows, cut_off_margin=0.05)
    assert art.cut_off_margin == 0.05 and art.pools[0].threshold_raw == 0.5
    assert ConsensusArtefact.model_validate_json(art.model_dump_json()).cut_off_margin == 0.05
    with pytest.raises(ValueError, match="cut_off_margin is an MCC difference from 0 up to 1, got 1.5"):
        fit_consensus(rows, cut_off_margin=1.5)
