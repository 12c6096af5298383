"""Loads the Lua scripts of store/lua and binds them to a Redis client.

Each operation script is sent as ``_lib.lua`` + a storage adapter + the
operation, so both strategies share one implementation of every state
change and differ only in where a partition is stored. redis-py's Script
objects run them with EVALSHA and reload them after a Redis restart.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import redis

from ..models import StrategyType

OPERATIONS = (
    "claim", "complete", "fail", "release", "renew", "create", "delete", "update",
    "recover", "dispatch", "heartbeat", "leader", "retry_failed", "compact", "gaps",
    "flow", "plan", "quarantine", "block", "split", "control",
)
LAYOUTS = tuple(t.value for t in StrategyType)


@lru_cache(maxsize=None)
def _read(name: str) -> str:
    return resources.files(__package__).joinpath("lua", name).read_text()


@lru_cache(maxsize=None)
def source(operation: str, layout: str) -> str:
    """The full Lua text run for ``operation`` on a ``layout`` strategy."""
    if operation not in OPERATIONS or layout not in LAYOUTS:
        raise ValueError(f"no script {operation!r} for layout {layout!r}")
    return "\n".join((_read("_lib.lua"), _read(f"_io_{layout}.lua"), _read(f"{operation}.lua")))


class Scripts:
    """The operation scripts of one layout, registered on one client."""

    def __init__(self, client: redis.Redis, layout: str) -> None:
        self.layout = layout
        self._scripts = {op: client.register_script(source(op, layout)) for op in OPERATIONS}

    def sha(self, operation: str) -> str:
        return self._scripts[operation].sha

    def load(self, *operations: str) -> None:
        """Make sure Redis knows these scripts (for callers that send EVALSHA
        themselves: they fall back to the client after a Redis restart)."""
        for op in operations:
            script = self._scripts[op]
            script.registered_client.script_load(script.script)

    def __call__(self, operation: str, keys: list[str], args: list[Any],
                 client: Any = None) -> Any:
        return self._scripts[operation](keys=keys, args=args, client=client)
