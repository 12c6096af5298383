"""Key names: one module, every key of a namespace carries the ``{namespace}`` hash tag."""

from __future__ import annotations

import pytest

from elk_celery import ConfigError, Keys
from elk_celery.keys import COMMON, check_namespace


def test_every_key_carries_the_namespace_hash_tag():
    k = Keys("orders")
    names = [*k.all_fixed(), k.partition(7), k.lock(7), *k.simple_storage([1, 2])]
    assert names, "no keys?"
    for name in names:
        assert name.startswith("elk:{orders}:"), name
        # exactly one hash tag, so Redis Cluster hashes only the namespace
        assert name.count("{") == 1 and name.count("}") == 1, name


def test_common_keys_are_in_the_documented_order():
    k = Keys("ns1")
    assert k.common == [f"elk:{{ns1}}:{n}" for n in COMMON]
    assert k.stats == "elk:{ns1}:stats" and k.breaker_fails == "elk:{ns1}:breaker_fails"
    # the order _lib.lua relies on
    assert COMMON[0] == "stats" and COMMON[1] == "ids" and len(COMMON) == 15


def test_fixed_keys_are_distinct_and_include_the_partition_hash():
    k = Keys("a")
    fixed = k.all_fixed()
    assert len(fixed) == len(set(fixed))
    assert k.partitions in fixed


def test_simple_storage_pairs_partition_and_lock_keys():
    k = Keys("a")
    assert k.simple_storage([3, "4"]) == [
        "elk:{a}:p:3", "elk:{a}:lock:3", "elk:{a}:p:4", "elk:{a}:lock:4"]


def test_custom_prefix():
    k = Keys("a", prefix="myapp")
    assert all(n.startswith("myapp:{a}:") for n in k.all_fixed())


def test_namespaces_do_not_share_keys():
    a, b = Keys("a"), Keys("ab")
    assert not set(a.all_fixed()) & set(b.all_fixed())
    assert a.partition(1) != b.partition(1)


@pytest.mark.parametrize("bad", ["", "has space", "with{brace", "with}brace", "x" * 101,
                                 "colon:sep", None, 5])
def test_invalid_namespace_is_refused_with_a_clear_error(bad):
    with pytest.raises(ConfigError, match="namespace .* is invalid"):
        Keys(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("good", ["orders", "a", "A.b-c_9", "x" * 100])
def test_valid_namespaces(good):
    assert check_namespace(good) == good
