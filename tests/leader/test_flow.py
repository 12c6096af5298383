"""The leader's flow sizing (elk_celery/leader/flow.py): pure arithmetic, no Redis."""

from __future__ import annotations

import pytest

from elk_celery import ElkSettings
from elk_celery.leader.flow import MIN_REFILL, QUEUED_HORIZON_MAX, FlowMeter
from elk_celery.store.namespace import Flow


def flow(now_ms: int, finished: int, *, pending: int = 100, queued: int = 10, slots: int = 4) -> Flow:
    return Flow(now_ms, pending, finished, 0, queued, 2, slots, "closed", 0, 1)


def test_an_unmeasured_job_keeps_one_message_per_slot_and_the_originals_backlog():
    m = FlowMeter()
    m.observe(1_000, 0)
    t = m.targets(ElkSettings(), flow(1_000, 0))
    assert (t.slots, t.queued, t.pending) == (4, 4, 4 * 5)
    assert t.refill_below == 2 and t.pending > t.plan_below >= t.queued


def test_the_targets_follow_the_measured_rate():
    m = FlowMeter()
    m.observe(0, 0)
    for k in range(1, 41):  # 200 partitions/s for 4 s, a round every 0.1 s
        m.observe(k * 100, k * 20)
    assert 150 < m.rate <= 200 and m.inst == 200
    t = m.targets(ElkSettings(), flow(4_000, 800))
    # slots + 2 x rate x refill latency (at least MIN_REFILL), and a second more pending
    assert t.queued == 4 + round(2 * 200 * MIN_REFILL)
    assert t.pending == t.queued + 200


def test_an_idle_job_keeps_its_rate_for_when_work_comes_back():
    m = FlowMeter()
    m.observe(0, 0)
    for k in range(1, 41):
        m.observe(k * 100, k * 20)
    busy_rate = m.rate
    for k in range(41, 200):  # 16 s with nothing pending or sent, nothing finishing
        m.observe(k * 100, 800, busy=False)
    assert m.rate == busy_rate
    m.observe(20_100, 800, busy=True)  # work, and nothing finishing: that is a slowdown
    assert m.rate < busy_rate


def test_a_round_that_saw_few_completions_does_not_size_the_flow():
    m = FlowMeter()
    m.observe(0, 0)
    m.observe(10, 1)  # one completion 10 ms later is not a rate of 100/s
    assert m.inst == 0
    assert m.targets(ElkSettings(), flow(10, 1)).pending == 20


def test_max_pending_partitions_caps_both_targets():
    m = FlowMeter()
    m.observe(0, 0)
    m.observe(1_000, 1_000)
    t = m.targets(ElkSettings(max_pending_partitions=30), flow(1_000, 1_000))
    assert t.pending == 30 and t.queued <= 30


def test_a_sent_message_counts_as_queued_for_three_times_the_wait_it_implies():
    m = FlowMeter()
    assert m.queued_horizon_ms(100) == 2_000  # no rate yet: the least horizon
    m.observe(0, 0)
    for k in range(1, 41):
        m.observe(k * 100, k * 2)  # 20 partitions/s
    assert m.queued_horizon_ms(200) == pytest.approx(3 * 200 / m.rate * 1000, rel=0.01)


def test_the_queued_horizon_stays_bounded_when_nothing_finishes_for_minutes():
    m = FlowMeter()
    m.observe(0, 0)
    for k in range(1, 21):
        m.observe(k * 100, k * 20)
    for k in range(1, 361):  # three minutes busy, nothing finishing
        m.observe(2_000 + k * 500, 400, busy=True)
    assert m.queued_horizon_ms(100) == int(QUEUED_HORIZON_MAX * 1000)


def test_the_targets_stay_numbers_the_scripts_take_with_huge_settings():
    from elk_celery.models import MAX_EXACT as MAX_COUNT
    m = FlowMeter()
    m.observe(0, 0)
    m.observe(1_000, 1_000)
    t = m.targets(ElkSettings(worker_partition_multiple=MAX_COUNT),
                  flow(1_000, 1_000, slots=MAX_COUNT))
    for v in (t.slots, t.queued, t.refill_below, t.pending, t.plan_below):
        assert 0 <= v <= 2 ** 53 - 1
