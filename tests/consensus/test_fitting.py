import json

import numpy as np
import pytest

from cascade.types import Level
from consensus.artefact import ConsensusArtefact
from consensus.fitting import LabelledVotes, fit_consensus, rows_from_predictions


def synthetic_rows(n=400, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        y = int(rng.integers(0, 2))
        good = float(np.clip(0.8 * y + 0.1 + rng.normal(0, 0.1), 0.01, 0.99))  # informative
        noise = float(rng.uniform(0.01, 0.99))  # says nothing
        late = good if rng.random() < 0.5 else None  # an L1 voter that ran half the time
        rows.append(LabelledVotes(y, {"good": (Level.L0, good), "noise": (Level.L0, noise),
                                      "late": (Level.L1, late)}))
    return rows


def test_informative_voter_gets_more_weight_than_noise():
    art = fit_consensus(synthetic_rows())
    assert art.weights["good"] > 3 * art.weights["noise"]
    assert art.metrics["mcc"] > 0.8


def test_bands_are_fitted_per_level_and_ordered():
    art = fit_consensus(synthetic_rows(), target=0.95)
    lo, hi = art.bands["L0"]
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
    rows = rows_from_predictions([{"label": 1, "votes": [
        {"voter": "a", "level": "L0", "prob": 0.7}, {"voter": "b", "level": "L3", "prob": None}]}])
    assert rows[0].votes == {"a": (Level.L0, 0.7), "b": (Level.L3, None)}
