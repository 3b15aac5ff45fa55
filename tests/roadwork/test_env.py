"""roadwork/env.py: offline defaults and project-local caches, without overriding the user."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from roadwork.env import configure_process


def test_caches_are_project_local_unless_the_user_chose_a_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("TORCHINDUCTOR_CACHE_DIR", "YOLO_CONFIG_DIR", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    configure_process(cache_dir=tmp_path)
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "torchinductor")
    assert os.environ["YOLO_CONFIG_DIR"] == str(tmp_path / "ultralytics")
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/srv/inductor")
    configure_process(cache_dir=tmp_path)
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == "/srv/inductor"
