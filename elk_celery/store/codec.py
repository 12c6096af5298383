"""How values cross the wire to and from the scripts: reply items, the
``ids`` index's ``"id:min:max"`` members, flags. One place, so a format
changes in one place (store/lua/_lib.lua is the Lua side)."""

from __future__ import annotations

from typing import Any, Iterable


def text(value: object) -> str:
    """Decode a reply item whether or not the client decodes responses."""
    if isinstance(value, bytes):
        return value.decode()
    return "" if value is None else str(value)


def int_or_none(value: Any) -> int | None:
    """An integer reply item; None for a missing or empty one."""
    s = text(value)
    return int(s) if s else None


def ints(values: Iterable[Any]) -> list[int]:
    """A reply's list of integers (ids, as the scripts return them)."""
    return [int(text(v)) for v in values]


def flag(value: bool) -> str:
    """A boolean argument as every script reads it."""
    return "1" if value else "0"


def member(partition_id: int | str, min_id: int | str, max_id: int | str) -> str:
    """The ``ids`` index member of a partition."""
    return f"{partition_id}:{min_id}:{max_id}"


def parse_member(value: Any) -> tuple[int, int, int]:
    """(id, min_id, max_id) of an ``ids`` index member (or a dispatch reply item)."""
    pid, lo, hi = text(value).split(":")
    return int(pid), int(lo), int(hi)


def member_id(value: Any) -> str:
    """The partition id of an ``ids`` index member, as stored (a string)."""
    return text(value).split(":", 1)[0]
