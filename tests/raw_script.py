"""The tests' one way past the store's named methods: a script called with
arguments of the test's own making (bad input, exact numbers, a half-done
state) and a partition's stored value as Redis holds it. Package code never
does this (tests/test_architecture.py checks)."""

from __future__ import annotations

from typing import Any, Sequence

from elk_celery.store.partitions import ClaimOptions, PartitionStrategy


def run_script(strategy: PartitionStrategy, op: str, ids: Sequence[int | str],
               args: Sequence[Any]) -> Any:
    """Run the ``op`` script on the storage of ``ids`` with ``args`` as ARGV."""
    return strategy._run(op, ids, args)


def stored_values(strategy: PartitionStrategy, ids: Sequence[int | str]) -> list[Any]:
    """The stored value of each id (None where missing)."""
    return strategy._raw_many(ids)


def claim_argv(strategy: PartitionStrategy, node: str = "n1") -> list[Any]:
    """claim.lua's ARGV[1..12] for a worker's claim with default settings."""
    return ClaimOptions.of(strategy.settings).args(node)
