"""The leader's split decisions (leader/rebalance.py) and partition sizing by
time (leader/sizing.py): pure functions of a partition's record and the
measured rate; the split itself runs on a real Redis (tests/unit/test_split.py)."""

from __future__ import annotations

from elk_celery.leader import rebalance as rb
from elk_celery.leader.sizing import BOUND, GROW, SHRINK, TimeSizer
from elk_celery.models import Partition, Status
from elk_celery.store.namespace import Flow


def _running(lo=1, hi=10_000, ckpt=1_000, blk=1_100, t0=0, at=1_000, **kw) -> Partition:
    """A partition that walked lo..ckpt in ``at`` ms since its claim."""
    return Partition(partition_id=kw.pop("pid", 1), min_id=lo, max_id=hi, status=Status.RUNNING,
                     node_id="w1", fence=5, checkpoint=ckpt, block_end=blk, run_started_ms=t0,
                     run_from=lo, checkpoint_ms=t0 + at, **kw)


def _flow(**kw) -> Flow:
    base = dict(now_ms=0, pending=0, completed=0, failed=0, queued=0, live_nodes=1, slots=4,
                breaker="closed", breaker_opened_ms=0, cursor=None, held=1)
    base.update(kw)
    return Flow(**base)


def test_the_estimate_comes_from_the_partitions_own_progress():
    e = rb.estimate(_running())
    assert e is not None
    assert (e.position, e.block, e.remaining) == (1_100, 100, 8_900)
    assert e.rate == 1_000.0 and e.remaining_s == 8.9


def test_no_estimate_without_blocks_or_before_the_first_checkpoint():
    assert rb.estimate(_running(blk=None)) is None  # checkpoint() only, or no blocks()
    assert rb.estimate(_running(ckpt=None)) is None  # no rate yet
    p = _running()
    p.status = Status.PENDING
    assert rb.estimate(p) is None


def test_idle_slots_go_to_the_longest_pieces():
    long, short = rb.estimate(_running(pid=1)), rb.estimate(_running(pid=2, hi=3_000))
    picked = dict((e.partition.partition_id, n) for e, n in rb.choose([long, short], idle=3))
    # 8.9 s left vs 1.9 s: pieces of the long one stay longer after two tails
    assert picked == {1: 3}


def test_a_piece_must_be_worth_it():
    # 0.9 s left: two pieces of 0.45 s are below SPLIT_MIN_SECONDS
    e = rb.estimate(_running(hi=2_000))
    assert rb.choose([e], idle=3) == []
    # big blocks: a piece must hold SPLIT_BLOCKS blocks
    e = rb.estimate(_running(hi=3_000, blk=1_500))  # 1.5 s left, block 0.5 s
    assert rb.choose([e], idle=3) == []


def test_at_most_a_few_tails_a_round():
    e = rb.estimate(_running(hi=10**7))
    assert rb.choose([e], idle=100) == [(e, rb.MAX_SPLITS_PER_ROUND)]


def test_cuts_make_equal_pieces_after_a_block_margin():
    e = rb.estimate(_running())
    ats = rb.cuts(e, 3)
    assert ats == sorted(ats, reverse=True)
    start = e.position + e.block
    bounds = [start] + ats[::-1] + [e.partition.max_id]
    sizes = [b - a for a, b in zip(bounds, bounds[1:])]
    assert max(sizes) - min(sizes) <= 3, sizes


def test_idle_slots_count_what_waits():
    assert _flow(slots=4, held=1).idle_slots == 3
    assert _flow(slots=4, held=1, pending=2).idle_slots == 1
    assert _flow(slots=4, held=2, queued=5).idle_slots == 0


def test_the_tail_clock():
    clock = rb.TailClock()
    assert clock.observe(_flow(now_ms=0, pending=3, held=4)) is None
    assert clock.observe(_flow(now_ms=1_000, held=4)) is None      # the tail starts
    assert clock.observe(_flow(now_ms=1_500, pending=1, held=2)) is None  # a split tail
    assert clock.observe(_flow(now_ms=3_000, held=0)) == 2.0
    assert clock.observe(_flow(now_ms=4_000, held=0)) is None
    clock.observe(_flow(now_ms=5_000, held=1))
    clock.planned()  # new work: not a tail
    assert clock.started_ms is None


def test_sizing_moves_towards_the_target_within_bounds():
    s = TimeSizer()
    assert s.size_for(1_000, 2.0) == 1_000  # no sample yet: the planner's size
    s.observe(0, 0)
    s.observe(10_000, 1_000)  # 10,000 IDs/s: 2 s = 20,000 IDs
    assert s.size_for(1_000, 2.0) == int(1_000 * GROW)
    assert s.size_for(1_000, 2.0) == int(1_000 * GROW)  # one step per sample
    for k in range(2, 40):
        s.observe(10_000 * k, 1_000 * k)
        s.size_for(1_000, 2.0)
    assert s.size == 1_000 * BOUND  # 16,000 < 20,000: the absolute bound
    # a slow stretch: shrinks by at most SHRINK a step
    s.observe(10_000 * 40 + 10, 1_000 * 40 + 10_000)
    assert s.size_for(1_000, 2.0) >= int(1_000 * BOUND * SHRINK)


def test_sizing_ignores_a_reset():
    s = TimeSizer()
    s.observe(5_000, 500)
    s.observe(0, 0)  # the stats were reset
    assert s.rate is None
