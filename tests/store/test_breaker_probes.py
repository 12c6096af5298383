"""Half-open probes belong to the round that admitted them (issue 11,
finding 5): a probe from an earlier round neither frees a slot of the
current round nor closes a breaker that re-opened after it started, and a
preempted probe hands its slot on. Real Redis, both strategies."""

from __future__ import annotations

import pytest

from elk_celery.store.connection import text

from tests.invariants import check_invariants, eventually

#: one probe at a time, short open timeout, failures are final
BREAKER = {"circuit_breaker_consecutive_failures": 3, "circuit_breaker_open_timeout": 0.3,
           "circuit_breaker_half_open_max_requests": 1, "max_retries": 0}


def _breaker(s) -> dict[str, str]:
    return {text(k): text(v) for k, v in s.redis.hgetall(s.keys.breaker).items()}


def _fail(s, pid, node="n1"):
    c = s.claim(pid, node)
    assert c.ok, c
    s.fail_partition(pid, node, c.fence, "boom")


def _open(s, early: int | None = None):
    """Trip the breaker with partitions 1-3; ``early`` starts running before."""
    c = s.claim(early, "slow") if early is not None else None
    for pid in (1, 2, 3):
        _fail(s, pid)
    assert _breaker(s)["state"] == "open"
    return c


def _probe(s, pid, node="n1"):
    return eventually(lambda: (lambda c: c if c.ok else None)(s.claim(pid, node)))


@pytest.fixture
def s(make_strategy):
    s = make_strategy(**BREAKER)
    s.create_partitions_if_not_exist(
        [{"partition_id": i, "min_id": 10 * i, "max_id": 10 * i + 9} for i in range(1, 10)])
    return s


def _second_round(s, how: str):
    """Probe 4 of round 1, then round 2 with probe 5; returns probe 4's claim."""
    early = _open(s, early=7)
    p4 = _probe(s, 4)
    assert _breaker(s)["state"] == "half_open"
    if how == "reopened":
        # a partition running since before the trip fails: open again
        s.fail_partition(7, "slow", early.fence, "still broken")
        assert _breaker(s)["state"] == "open"
    # else: probe 4 never reports, and the round restarts after the timeout
    _probe(s, 5, "n2")
    b = _breaker(s)
    assert b["state"] == "half_open" and b["probes"] == "1"
    return p4


@pytest.mark.parametrize("how", ["reopened", "timed_out"])
@pytest.mark.parametrize("end", ["release", "delete"])
def test_a_stale_probe_frees_no_slot_of_the_new_round(s, how, end):
    p4 = _second_round(s, how)
    if end == "release":
        assert s.release_partition(4, "n1", p4.fence)
    else:
        assert s.delete_partition(4)
    assert _breaker(s)["probes"] == "1"  # probe 5 still holds the only slot
    assert s.claim(6, "n3").code == "breaker"
    check_invariants(s)


@pytest.mark.parametrize("how", ["reopened", "timed_out"])
def test_a_stale_probe_success_does_not_close_the_new_round(s, how):
    p4 = _second_round(s, how)
    s.complete_partition(4, "n1", p4.fence, 1)
    b = _breaker(s)
    assert b["state"] == "half_open" and b["probes"] == "1"
    assert s.claim(6, "n3").code == "breaker"
    check_invariants(s)


def test_a_probe_of_the_current_round_still_closes_it(s):
    _second_round(s, "reopened")
    c5 = s.get_partition(5)
    s.complete_partition(5, "n2", c5.fence, 1)
    assert _breaker(s)["state"] == "closed"
    assert s.claim(6, "n3").ok


def test_a_preempted_probe_hands_its_slot_on(s):
    _open(s)
    p4 = _probe(s, 4)
    assert _breaker(s)["probes"] == "1"
    taken = s.claim(4, "n2", force=True)  # an operator (or a preemption) takes the probe over
    assert taken.code == "preempted" and taken.fence > p4.fence
    assert _breaker(s)["probes"] == "1"  # the same slot, not a second one
    assert s.claim(5, "n3").code == "breaker"
    s.complete_partition(4, "n2", taken.fence, 1)  # the new owner's success closes it
    assert _breaker(s)["state"] == "closed"
    check_invariants(s)


def test_a_preempted_probe_with_the_breaker_off_for_the_claimer_frees_its_slot(s, make_strategy):
    _open(s)
    _probe(s, 4)
    off = make_strategy(**{**BREAKER, "circuit_breaker_enabled": False})
    assert off.claim(4, "n2", force=True).code == "preempted"
    assert _breaker(s)["probes"] == "0"
    assert s.claim(5, "n3").ok  # the slot is free for a real probe
