from pathlib import Path

import pytest

from cascade.config import ConfigError, load_config
from tests.conftest import REPO


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(text)
    return p


def test_shipped_cpu_profile_loads_and_resolves_paths():
    cfg = load_config(REPO / "configs" / "cpu.yaml")
    # every voter the fitted artefact weighs is in the profile, and nothing else
    from consensus.artefact import ConsensusArtefact

    artefact = ConsensusArtefact.load(cfg.resolve(cfg.consensus.weights))
    assert sorted(v.name for v in cfg.voters) == sorted(artefact.voters)
    assert all(cfg.resolve(v.params["head"]).is_file() for v in cfg.voters)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("voters: []\n", "no enabled voter"),
        ("voters:\n - {name: a, kind: x, level: L7}\n", "voters.0.level"),
        ("voters:\n - {name: a, kind: x, level: L6}\n", "L6 is the consensus"),
        ("voters:\n - {name: a, kind: x, level: L0, colour: red}\n", "voters.0.colour"),
        ("voters:\n - {name: a, kind: x, level: L0}\n - {name: a, kind: y, level: L1}\n", "repeated"),
        ("runtime: {deadline_ms: 100, margin_ms: 200}\nvoters:\n - {name: a, kind: x, level: L0}\n", "margin_ms"),
        ("levels: [{level: L0, band: [0.9, 0.1]}]\nvoters:\n - {name: a, kind: x, level: L0}\n", "levels.0.band"),
        ("voters: [oops\n", "not valid YAML"),
        ("voters:\n - {name: a, kind: x, level: L0, long_side: [448, 224]}\n", "voters.0.long_side"),
    ],
)
def test_bad_profile_names_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_missing_profile_says_so(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
