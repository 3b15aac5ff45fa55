"""Circuit breaker states and the round-robin endpoint pool, on a fake clock."""

import pytest

from vlm_tiers.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, EndpointPool
from vlm_tiers.errors import TierUnavailableError


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_opens_after_n_consecutive_failures_only():
    clock = Clock()
    br = CircuitBreaker(failures=3, reset_s=10, clock=clock)
    br.record_failure("a")
    br.record_failure("b")
    br.record_success()  # a success resets the count
    br.record_failure("c")
    br.record_failure("d")
    assert br.state == CLOSED and br.try_acquire()
    br.record_failure("e")
    assert br.state == OPEN and not br.try_acquire()
    assert br.snapshot()["last_error"] == "e" and br.snapshot()["times_opened"] == 1


@pytest.mark.parametrize("probe_ok, state_after", [(True, CLOSED), (False, OPEN)])
def test_half_open_lets_one_probe_through(probe_ok, state_after):
    clock = Clock()
    br = CircuitBreaker(failures=1, reset_s=10, clock=clock)
    br.record_failure("down")
    clock.t += 9.9
    assert br.state == OPEN and not br.try_acquire()
    clock.t += 0.2
    assert br.state == HALF_OPEN
    assert br.try_acquire() is True  # the probe
    assert br.try_acquire() is False  # nobody else while it is in flight
    br.record_success() if probe_ok else br.record_failure("still down")
    assert br.state == state_after
    if not probe_ok:  # reopened for a full reset period
        clock.t += 5
        assert not br.try_acquire()


def test_released_probe_can_be_taken_again():
    clock = Clock()
    br = CircuitBreaker(failures=1, reset_s=1, clock=clock)
    br.record_failure("x")
    clock.t += 2
    assert br.try_acquire()
    br.release()  # the probe call was cancelled
    assert br.try_acquire()


def test_pool_round_robins_and_skips_open_circuits():
    clock = Clock()
    pool = EndpointPool("fast", ["http://a:1", "http://b:1/", "http://c:1"], failures=1, reset_s=10, clock=clock)
    assert [pool.acquire().url for _ in range(4)] == ["http://a:1", "http://b:1", "http://c:1", "http://a:1"]
    pool.endpoints[1].breaker.record_failure("refused")
    assert [pool.acquire().url for _ in range(4)] == ["http://c:1", "http://a:1", "http://c:1", "http://a:1"]
    assert pool.acquire(exclude=["http://c:1"]).url == "http://a:1"
    states = {s["endpoint"]: s["state"] for s in pool.states()}
    assert states == {"http://a:1": CLOSED, "http://b:1": OPEN, "http://c:1": CLOSED}


def test_pool_with_every_circuit_open_raises_and_names_them():
    pool = EndpointPool("power", ["http://a:1"], failures=1, reset_s=10, clock=Clock())
    pool.endpoints[0].breaker.record_failure("x")
    with pytest.raises(TierUnavailableError, match=r"tier 'power'.*http://a:1=open"):
        pool.acquire()


@pytest.mark.parametrize("kwargs", [{"failures": 0}, {"reset_s": 0}])
def test_bad_breaker_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        CircuitBreaker(**kwargs)
