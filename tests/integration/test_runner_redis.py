"""The worker's own Redis writes under a Redis outage (a private redis-server
killed and restarted with AOF)."""

from __future__ import annotations

import threading

import pytest

from elk_celery import ElkSettings, HashPartitionStrategy, Hooks
from elk_celery.store.connection import redis_from_url
from elk_celery.store.namespace import NamespaceStore
from elk_celery.worker.completion import complete_now


def test_completion_survives_a_redis_restart(tmp_path):
    from elk_celery._redis_server import RedisServer
    try:
        server = RedisServer(appendonly=True, extra_args=["--appendfsync", "always"]).start()
    except RuntimeError as exc:
        pytest.skip(f"cannot start a private redis-server: {exc}")
    try:
        client = redis_from_url(server.url, socket_timeout=2)
        s = HashPartitionStrategy(client, "outage", ElkSettings())
        s.create_partitions_if_not_exist([{"partition_id": 1, "min_id": 1, "max_id": 10}])
        c = s.claim(1, "n1")
        server.kill()
        restarter = threading.Timer(0.5, server.start)
        restarter.start()
        # the first tries fail while Redis is down; a later one records it
        assert complete_now(NamespaceStore(s), Hooks(), 1, "n1", c.fence, 10) == "completed"
        restarter.join()
        p = s.get_partition(1)
        assert str(p.status) == "completed" and p.items_processed == 10
        st = s.get_partition_stats()
        assert st.retried == 0 and st.counters.get("failures", 0) == 0
    finally:
        server.stop()
