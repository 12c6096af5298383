"""Node ids: unique per worker start; the hostname is their stable part."""

from __future__ import annotations

from celery.concurrency import get_implementation

from elk_celery.worker.node import hostname_of, new_node_id, pool_name, token_of


def test_each_start_gets_its_own_id_under_the_same_hostname():
    a, b = new_node_id("w1@host"), new_node_id("w1@host")
    assert a != b  # leases never pass to a restarted worker
    assert hostname_of(a) == hostname_of(b) == "w1@host"
    assert len(token_of(a)) == 8 and a == f"w1@host:{token_of(a)}"


def test_ids_without_a_token_are_their_own_hostname():
    for odd in ("node-a", "w1@host:xyz", "w1@host:0123abc", "w1@h:0123abcg"):
        assert hostname_of(odd) == odd and token_of(odd) == ""


class _Worker:  # what pool_name reads of a WorkController: its pool class
    def __init__(self, pool: str) -> None:
        self.pool_cls = get_implementation(pool)


def test_pool_names_are_celery_worker_P_names():
    assert [pool_name(_Worker(p)) for p in ("prefork", "threads", "solo")] == \
        ["prefork", "threads", "solo"]
