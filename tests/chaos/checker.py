"""Reading the run ledger of tests/apps/jobapp.py (``<ns>:runs``)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis


@dataclass
class Run:
    """One processor run: from its start to its end event (None: it has
    none, e.g. SIGKILLed). Times are wall-clock seconds."""

    run: str
    pid: int
    lo: int
    hi: int
    node: str
    fence: int
    start: float
    end: float | None = None
    done: bool = False
    error: str | None = None

    @property
    def worker(self) -> str:
        """The worker's name (the node id is ``<name>@<host>:<token>``)."""
        return self.node.split("@", 1)[0]


def read_runs(client: redis.Redis, namespace: str) -> list[Run]:
    runs: dict[str, Run] = {}
    ends: dict[str, dict] = {}
    for raw in client.lrange(f"{namespace}:runs", 0, -1):
        ev = json.loads(raw)
        if ev["ev"] == "start":
            runs[ev["run"]] = Run(ev["run"], int(ev["pid"]), int(ev["lo"]), int(ev["hi"]),
                                  ev["node"], int(ev["fence"]), float(ev["t"]))
        else:
            ends.setdefault(ev["run"], ev)  # a repeated end event (see jobapp) is the same end
    for rid, ev in ends.items():
        r = runs.get(rid)
        if r is not None:
            r.end, r.done, r.error = float(ev["t"]), bool(ev["done"]), ev["error"]
    return sorted(runs.values(), key=lambda r: r.start)
