import numpy as np
import pytest

from training.metrics import BinaryMetrics, expected_calibration_error, subnet_reward_stream


def test_perfect_answers_earn_full_reward_and_wrong_ones_nothing():
    y = np.array([0, 1] * 60)
    assert subnet_reward_stream(y, y.astype(float))[-1] == pytest.approx(1.0)
    assert subnet_reward_stream(y, 1.0 - y)[-1] == pytest.approx(0.0)


def test_reward_rounds_like_numpy():
    y = np.array([0, 1] * 20)
    half = np.full(len(y), 0.5)  # np.round(0.5) == 0: every answer says "no roadwork"
    r = subnet_reward_stream(y, half)
    assert r[-1] == pytest.approx((0.5 * 0 + 0.5 * 0.5) ** 3)


def test_a_stream_that_starts_with_one_label_scores_quietly():
    # the first answers of `make run` were all one label: sklearn warned on each, into the report
    import warnings

    y = np.array([1, 1, 1, 0, 1, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = subnet_reward_stream(y, y.astype(float))
    # no correlation to measure while one label is all there is: half the reward's base (accuracy)
    assert r[:3] == pytest.approx([0.5**3] * 3) and r[-1] == pytest.approx(1.0)


def test_ece_of_calibrated_and_overconfident():
    y = np.array([1, 0] * 50)
    assert expected_calibration_error(y, np.full(100, 0.5)) == pytest.approx(0.0)
    assert expected_calibration_error(y, np.full(100, 0.99)) == pytest.approx(0.49)


def test_compute_reports_sources_latency_and_exit_levels():
    m = BinaryMetrics()
    for i in range(20):
        m.update(i % 2, 0.9 if i % 2 else 0.1, "a" if i < 10 else "b", float(i), "L0")
    out = m.compute()
    assert out["mcc"] == pytest.approx(1.0) and out["auroc"] == pytest.approx(1.0)
    assert set(out["per_source"]) == {"a", "b"} and out["exit_levels"] == {"L0": 20}
    assert out["latency_ms"]["p50"] == pytest.approx(9.5)
    m.reset()
    with pytest.raises(ValueError, match="no predictions"):
        m.compute()


def test_progress_without_a_terminal_prints_plain_lines_and_the_end():
    import io

    from rich.console import Console

    from training.evaluate import progress_bar

    out = io.StringIO()
    with progress_bar(every_s=0) as bar:
        bar.console.file = out  # not a terminal, as under pm2 or in a file
        task = bar.add_task("eval", total=3)
        for _ in range(3):
            bar.advance(task)
    lines = [x for x in out.getvalue().splitlines() if x.startswith("eval:")]
    assert lines[0].startswith("eval: 1/3 after") and lines[-1].startswith("eval: 3/3 after")
    assert not Console(file=out).is_terminal
