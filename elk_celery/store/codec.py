"""How values cross the wire to and from the scripts: reply items, the
``ids`` index's ``"id:min:max"`` members, flags, and the errors a reply
stands for. One place, so a format changes in one place (store/lua/_lib.lua
is the Lua side)."""

from __future__ import annotations

from typing import Any, Iterable

import redis

from ..errors import CorruptPartition, InvalidPartition, PartitionConflict, StaleLeaderError


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


def expect_leader(reply: Any, namespace: str, epoch: int | str) -> Any:
    """``reply`` of a leader-fenced script, or :class:`StaleLeaderError` when
    it answered ``stale_leader`` (the one translation, the one message)."""
    if text(reply[0]) == "stale_leader":
        raise StaleLeaderError(
            f"{namespace}: epoch {epoch} is no longer the leader's: the write was refused")
    return reply


def script_error(exc: redis.ResponseError) -> Exception:
    """The elk error a script raised (``ELK_CONFLICT`` / ``ELK_CORRUPT`` /
    ``ELK_INVALID`` tags, _lib.lua), or ``exc`` itself."""
    msg = str(exc)
    for tag, cls in (("ELK_CONFLICT", PartitionConflict), ("ELK_CORRUPT", CorruptPartition),
                     ("ELK_INVALID", InvalidPartition)):
        if tag in msg:
            return cls(msg[msg.index(tag) + len(tag):].split(" script:")[0].strip())
    return exc
