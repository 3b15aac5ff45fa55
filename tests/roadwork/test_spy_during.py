"""benchmarks/spy_during.py: py-spy's raw stacks summarised per process and thread."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO, benchmark_script


def load():
    return benchmark_script("spy_during")


def test_worker_samples_go_to_the_worker_not_to_its_parent(tmp_path: Path) -> None:
    # given --subprocesses stacks, where a worker's frames come under its parent's "process" frame
    raw = tmp_path / "spy.txt"
    raw.write_text(
        'process 10:"python -m roadwork.cli bench";thread (10): MainThread;run (a.py:1);wait (threading.py:355) 20\n'
        'process 10:"python -m roadwork.cli bench";process 11:"python -c spawn_main";thread (11): MainThread;'
        "_predict (detectors/device_process.py:80);forward (torch/nn/modules/linear.py:134) 90\n"
        'process 10:"python -m roadwork.cli bench";process 11:"python -c spawn_main";thread (11): MainThread;'
        "_predict (detectors/device_process.py:80) 5\n"
    )
    # when it is summarised for 1 s at 100 Hz
    out = load().summarise(raw, rate=100, seconds=1)
    # then the worker was on the CPU 95 % of the time and its parent 20 %, each with its own frames
    worker = next(v for k, v in out.items() if k.startswith("process 11"))
    parent = next(v for k, v in out.items() if k.startswith("process 10"))
    assert worker["active_cores"] == 0.95 and parent["active_cores"] == 0.2
    assert worker["threads_active_share"] == {"thread (11): MainThread": 0.95}
    assert next(iter(worker["innermost"])) == "forward (torch/nn/modules/linear.py:134)"
    assert next(iter(parent["innermost"])) == "wait (threading.py:355)"


def test_frames_of_this_repo_are_told_from_libraries_by_their_full_path() -> None:
    # py-spy runs with --full-filenames, so a frame's file is absolute
    ours = load().ours
    assert ours(f"_predict ({REPO}/detectors/device_process.py:80)")
    assert not ours("forward (/opt/venv/lib/python3.12/site-packages/torch/nn/modules/linear.py:134)")
    assert not ours("wait (/usr/lib/python3.12/threading.py:355)")
