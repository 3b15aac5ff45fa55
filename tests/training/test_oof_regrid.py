"""training/oof_regrid.py: tile votes redone from some of the tile voter's grids."""

from __future__ import annotations

import gzip
import json

import pytest

from training.oof_regrid import main, parse_grids, regrid


def _row(key: str, crops: list[float] | None) -> dict:
    probs = {"v0.2": {"224": 0.4}, "full": {"224": 0.3, "tiles": max(crops) if crops else 0.9}}
    return {"key": key, "label": 1, "probs": probs, **({"crops": {"full": crops}} if crops is not None else {})}


def test_the_tile_vote_becomes_the_max_over_the_chosen_grid_and_nothing_else_moves(tmp_path):
    # given a frame whose best crop is one of the 2x3 grid's six, and one whose best is in the 3x4 grid
    big_first = [0.9] + [0.1] * 5 + [0.2] * 11 + [0.3]
    big_last = [0.1] * 17 + [0.8]
    rows = [_row("a", big_first), _row("b", big_last), {"key": "c", "label": 0, "probs": {"v0.2": {"224": 0.2}}}]
    # when the votes keep the 3x4 grid only
    out = regrid(rows, parse_grids("3x4"))
    # then each tile vote is the max of the last twelve crops, and every other vote is as it was
    assert [r["probs"]["full"]["tiles"] for r in out[:2]] == [0.3, 0.8]
    assert [r["probs"]["v0.2"] for r in out] == [r["probs"]["v0.2"] for r in rows]
    assert out[0]["probs"]["full"]["224"] == 0.3 and rows[0]["probs"]["full"]["tiles"] == 0.9  # input untouched
    assert [r["probs"]["full"]["tiles"] for r in regrid(rows, parse_grids("2x3,3x4"))[:2]] == [0.9, 0.8]
    # and the command writes the same, gzipped when asked
    src = tmp_path / "v.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    main(["--votes", str(src), "--grids", "3x4", "--out", str(tmp_path / "out.jsonl.gz")])
    written = [json.loads(x) for x in gzip.decompress((tmp_path / "out.jsonl.gz").read_bytes()).decode().splitlines()]
    assert written == out


def test_a_grid_beyond_the_voters_own_is_read_from_the_crops_it_was_written_with():
    # given a row whose crops hold a 4x6 grid after the voter's own 18 (`--crop-grids 4x6`)
    crops = [0.9] * 18 + [0.2] * 23 + [0.4]
    row = {**_row("a", crops), "crop_grids": [[2, 3], [3, 4], [4, 6]]}
    # then the 4x6 grid alone gives the max of the last 24, and the voter's grids their own
    assert regrid([row], parse_grids("4x6"))[0]["probs"]["full"]["tiles"] == 0.4
    assert regrid([row], parse_grids("3x4,4x6"))[0]["probs"]["full"]["tiles"] == 0.9


def test_votes_without_crops_or_other_grids_are_refused_naming_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="--oof-crops"):
        regrid([_row("a", None)], parse_grids("3x4"))
    with pytest.raises(ValueError, match="12 crops at full, not the 18"):
        regrid([_row("a", [0.5] * 12)], parse_grids("3x4"))
    with pytest.raises(ValueError, match=r"no crops of grids \[\(4, 6\)\]"):
        regrid([_row("a", [0.5] * 18)], parse_grids("4x6"))
    with pytest.raises(ValueError, match="write ROWSxCOLS"):
        parse_grids("three")
    src = tmp_path / "v.jsonl"
    src.write_text(json.dumps(_row("a", None)) + "\n")
    with pytest.raises(SystemExit, match="error: a: a tile vote at full without its crops"):
        main(["--votes", str(src), "--grids", "3x4", "--out", str(tmp_path / "o.jsonl")])
