"""A profile whose trained files are missing fails before any model is built, one line per file,
each naming the command that makes it (detectors/artefacts.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cascade.config import load_config
from detectors.artefacts import missing_artefacts
from roadwork.cli import app
from tests.conftest import REPO

CPU = REPO / "configs" / "cpu.yaml"


def half_made_profile(tmp_path: Path) -> Path:
    """The CPU profile with one head and the consensus pointing at files that do not exist."""
    data = yaml.safe_load(CPU.read_text())
    data["voters"][1]["params"]["head"] = "missing/l0_paste_erase_head.npz"
    data["consensus"]["weights"] = "missing/consensus.json"
    for v in data["voters"]:  # the rest as shipped: absolute paths into the repository's models/
        params = v["params"]
        if not params["head"].startswith("missing/"):
            params["head"] = str((CPU.parent / params["head"]).resolve())
        params["backbone"]["weights"] = str((CPU.parent / params["backbone"]["weights"]).resolve())
    path = tmp_path / "half.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_shipped_cpu_profile_has_every_file() -> None:
    assert missing_artefacts(load_config(CPU)) == []


def test_each_missing_file_is_one_line_with_its_key_and_the_command_that_makes_it(tmp_path: Path) -> None:
    lines = missing_artefacts(load_config(half_made_profile(tmp_path)))
    assert len(lines) == 2
    head, consensus = lines
    assert head.startswith("voters.1.params.head (l0_paste_erase): missing/l0_paste_erase_head.npz is missing")
    assert "roadwork train backbone --data DIR" in head and "--head " in head
    assert consensus.startswith("consensus.weights: missing/consensus.json is missing") and "roadwork fit" in consensus


def test_building_the_cascade_refuses_before_any_model_is_built(tmp_path: Path, monkeypatch) -> None:
    import detectors.device_process as dp
    from cascade.pipeline import Cascade

    def never(*args, **kwargs):
        raise AssertionError("a model was built before the missing files were reported")

    monkeypatch.setattr(dp, "build_voters", never)
    with pytest.raises(FileNotFoundError, match=r"names 2 file\(s\) that are not there"):
        Cascade.from_config(load_config(half_made_profile(tmp_path)))


def test_plan_lists_the_missing_files_and_fails(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["plan", str(half_made_profile(tmp_path))])
    assert result.exit_code != 0
    assert "plan fits" in result.output  # memory is fine; the files are not
    assert "voters.1.params.head (l0_paste_erase)" in result.output and "consensus.weights" in result.output


def test_a_random_backbone_needs_no_trained_file() -> None:
    from cascade.config import VoterConfig
    from detectors.backbone_head import artefacts

    v = VoterConfig(
        name="l0",
        kind="backbone-head",
        level="L0",
        params={
            "backbone": {"kind": "hf-automodel", "model": "x/y", "random_init": {"model_type": "dinov2"}},
            "head": None,
        },
    )
    assert artefacts(v, str) == []
