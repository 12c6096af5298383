"""Every Redis key name elk_celery uses, in one place.

All keys of a namespace share the hash tag ``{namespace}``, so each Lua
script touches a single Redis Cluster slot while different namespaces spread
over a cluster. Scripts never build key names: they get them in ``KEYS``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import ConfigError

_NAMESPACE = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")

#: The order of the keys every script receives first (see store/lua/_lib.lua).
COMMON = (
    "stats", "ids", "pending", "leases", "failed", "nodes", "nodes_info",
    "inflight", "leader", "meta", "breaker", "breaker_fails",
    "wake", "queued", "corrupt",
)


def registry_key(prefix: str = "elk") -> str:
    """The set of namespaces ever served under ``prefix`` (operators list them
    from here instead of scanning Redis). Outside any namespace's hash tag."""
    return f"{prefix}:namespaces"


def check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise ConfigError(
            f"namespace {namespace!r} is invalid: use 1-100 characters from "
            "letters, digits, '_', '.', '-' (it becomes part of Redis key names)"
        )
    return namespace


class Keys:
    """Key names of one namespace: ``<prefix>:{<namespace>}:<name>``."""

    def __init__(self, namespace: str, prefix: str = "elk") -> None:
        self.namespace = check_namespace(namespace)
        self.prefix = prefix
        self.base = f"{prefix}:{{{namespace}}}:"
        for name in COMMON:
            setattr(self, name, self.base + name)
        self.common: list[str] = [self.base + name for name in COMMON]
        #: HashPartitionStrategy: one hash, partition id -> JSON.
        self.partitions = self.base + "partitions"
        #: list of "ms:finished" samples the leader records for the ETA (eta.py)
        self.progress = self.base + "progress"
        #: hash setting name -> value: runtime overrides (`elk set`, runtime.py)
        self.runtime = self.base + "runtime"

    # attributes set from COMMON, spelled out for type checkers
    stats: str
    ids: str
    pending: str
    leases: str
    failed: str
    nodes: str
    nodes_info: str
    inflight: str
    leader: str
    meta: str
    breaker: str
    breaker_fails: str
    wake: str
    queued: str
    corrupt: str

    def partition(self, partition_id: int | str) -> str:
        """SimpleStrategy: the string key holding one partition."""
        return f"{self.base}p:{partition_id}"

    def lock(self, partition_id: int | str) -> str:
        """SimpleStrategy: the lock (and lease) of one partition."""
        return f"{self.base}lock:{partition_id}"

    def simple_storage(self, ids: Iterable[int | str]) -> list[str]:
        out: list[str] = []
        for pid in ids:
            out.append(self.partition(pid))
            out.append(self.lock(pid))
        return out

    def all_fixed(self) -> list[str]:
        """Keys that exist once per namespace (for reset)."""
        return [*self.common, self.partitions, self.progress, self.runtime]
