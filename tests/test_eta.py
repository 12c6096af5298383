"""The ETA (eta.py) replayed on completion timelines recorded from real
workers (tests/data/record_eta_timeline.py: 300 partitions of 0.4 s on two
workers; in the _join one a third worker joins after 20 s). The recordings
took 30 s; the replay stretches their time by 10 (partitions of 4 s, a
five-minute job), the scale the ETA's windows are made for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from elk_celery.eta import Eta, describe, estimate, remaining_work

DATA = Path(__file__).resolve().parent / "data"
STRETCH = 10


def _timeline(name: str):
    d = json.loads((DATA / name).read_text())
    samples = [(t * STRETCH, f) for t, f in d["samples"]]
    planned = [(t * STRETCH, n) for t, n in d["planned"]]
    end = next(t for t, f in samples if f >= d["partitions"])
    return d["partitions"], samples, planned, end


def _replay(name: str):
    """(seconds into the job, estimate, actual seconds left, planned then) per sample."""
    total, samples, planned, end = _timeline(name)
    t0 = samples[0][0]
    out = []
    for i in range(1, len(samples)):
        t, f = samples[i]
        if f >= total:
            break
        known = max((n for tp, n in planned if tp <= t), default=0)
        out.append(((t - t0) / 1000, estimate(samples[:i + 1], total - f), (end - t) / 1000,
                    known, f))
    return out


def test_a_steady_job_s_eta_is_within_20_percent_and_inside_its_range():
    points = _replay("eta_timeline.json")
    assert points[0][1].state == "estimating"  # too little known at first
    judged = [(e, actual) for _, e, actual, _, _ in points if e.state == "ok" and actual >= 20]
    assert len(judged) >= 40
    errors = [abs(e.seconds - actual) / actual for e, actual in judged]
    assert max(errors) <= 0.2, errors
    inside = sum(e.low_s * 0.9 <= actual <= e.high_s * 1.1 for e, actual in judged)
    assert inside >= 0.9 * len(judged)
    print(f"steady job: ETA error median {sorted(errors)[len(errors) // 2]:.1%}, "
          f"max {max(errors):.1%}; actual inside the range at {inside}/{len(judged)} points")


def test_counting_only_planned_partitions_was_the_bug():
    """The old ETA (planned and unfinished over the rate) said seconds while
    most of the job was not planned yet; counting the planner's end does not."""
    points = _replay("eta_timeline.json")
    early = [(e, actual, known, f) for _, e, actual, known, f in points
             if e.state == "ok" and known < 0.6 * 300]
    assert early
    for e, actual, known, f in early:
        old = (known - f) / e.rate
        assert old < 0.5 * actual, (old, actual)
        assert abs(e.seconds - actual) <= 0.2 * actual


def test_a_job_that_speeds_up_converges():
    points = _replay("eta_timeline_join.json")
    judged = [(t, abs(e.seconds - actual) / actual) for t, e, actual, _, _ in points
              if e.state == "ok" and actual >= 20]
    # the third worker could not be foreseen: too long by at most about half ...
    assert max(err for _, err in judged) <= 0.6
    # ... and the range's low end (the fastest recent stretch) follows the new rate
    late = [(e, actual) for t, e, actual, _, _ in points if e.state == "ok" and t >= 240]
    assert late and all(e.low_s <= actual * 1.15 for e, actual in late)


def test_stalled_when_nothing_finishes():
    _, samples, _, _ = _timeline("eta_timeline.json")
    part = samples[:30]
    t, f = part[-1]
    silent = part + [(t + k * 5000, f) for k in range(1, 20)]  # 95 s without a completion
    assert estimate(silent, 300 - f).state == "stalled"
    assert estimate(part, 300 - f).state == "ok"
    # a job that never finished anything for a minute is stalled too
    assert estimate([(0, 0), (30_000, 0), (61_000, 0)], 10).state == "stalled"
    assert estimate([(0, 0), (10_000, 0)], 10).state == "estimating"


@pytest.mark.parametrize("state", ["paused", "cancelled"])
def test_a_paused_or_cancelled_job_has_no_eta(state):
    _, samples, _, _ = _timeline("eta_timeline.json")
    e = estimate(samples[:40], 100, state=state)
    assert e.state == state and e.seconds is None
    assert describe(e.as_dict()).startswith(state)


def test_remaining_work_counts_what_the_planner_has_not_planned_yet():
    # 23 of 300 partitions of 1,000 IDs done, 30 planned: 270 left to plan
    left, unplanned = remaining_work(total=30, finished=23, start_id=1, cursor=30_001,
                                     planner_end=300_000, partition_size=1000)
    assert (left, unplanned) == (277.0, 270.0)
    # without an estimated end: the planned ones only
    assert remaining_work(30, 23, 1, 30_001, None) == (7.0, 0.0)
    assert estimate([(0, 0), (60_000, 60)], 0) == Eta("done", seconds=0.0, low_s=0.0, high_s=0.0)
    text = describe(estimate([(0, 0), (30_000, 30), (60_000, 60)], 120.0, unplanned=100.0).as_dict())
    assert text.startswith("2m00s (range ") and "120 partitions left (100 not planned yet)" in text


def test_a_burst_after_a_long_start_then_a_short_silence_is_an_estimate_not_a_crash():
    """Nothing for 100 s, ten completions, then 50 s of silence (short of a
    stall): counting from the first completion's sample left no completion
    in the window and divided by a rate of zero."""
    e = estimate([(0, 0), (50_000, 0), (100_000, 10), (130_000, 10), (150_000, 10)], 100)
    assert e.state in ("ok", "estimating", "stalled")
    if e.state == "ok":
        assert e.seconds is not None and e.seconds > 0
