"""Resumable partitions on real workers: a worker SIGKILLed in the middle of
a partition walked with ``partition.blocks()``; the next owner starts at the
checkpoint, so only the block that was running is done twice."""

from __future__ import annotations

import signal

import pytest

from tests.conftest import wait_for
from tests.integration.helpers import blocks, done

from elk_celery import HashPartitionStrategy

pytestmark = pytest.mark.chaos


def test_a_worker_killed_mid_partition_redoes_only_the_running_block(cluster, redis_client,
                                                                     namespace):
    c = cluster(max_id=1000, size=1000, window=1, sleep=0.3, block=100)
    w1 = c.worker("w1", concurrency=1)
    ended = lambda: [b for b in blocks(redis_client, namespace) if b[3] == "end"]  # noqa: E731
    wait_for(lambda: len(ended()) >= 3, 60, lambda: "three blocks done\n" + c.logs())
    w1.signal(signal.SIGKILL, group=True)
    w1.wait(10)
    before = blocks(redis_client, namespace)
    started = {(lo, hi) for lo, hi, _, ev in before if ev == "start"}
    finished = {(lo, hi) for lo, hi, _, ev in before if ev == "end"}
    running = started - finished
    assert len(running) <= 1, before

    c.worker("w2", concurrency=1)
    wait_for(lambda: done(redis_client, namespace, 1), 90, lambda: "the partition\n" + c.logs())

    walked = blocks(redis_client, namespace)
    starts: dict[tuple[int, int], int] = {}
    for lo, hi, _, ev in walked:
        if ev == "start":
            starts[(lo, hi)] = starts.get((lo, hi), 0) + 1
    # ten consecutive blocks of 100 cover 1..1000
    assert sorted(starts) == [(lo, lo + 99) for lo in range(1, 1001, 100)]
    twice = {r for r, n in starts.items() if n > 1}
    # only the block that was running when w1 died ran again; the finished ones did not
    assert twice == running
    assert not (twice & finished)
    p = HashPartitionStrategy(redis_client, namespace).get_partition(0)
    assert p is not None and p.checkpoint == 1000 and p.progress_items is not None
