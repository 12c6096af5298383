"""What the CLI shows, as plain JSON-ready dicts (``--json`` prints them as is)."""

from __future__ import annotations

import time
from typing import Any

from .. import runtime
from ..breaker import CircuitBreaker
from ..eta import Eta, describe
from ..eta import eta_of as job_eta
from ..models import Partition
from ..worker.node import hostname_of
from ._context import Target

#: In-flight partitions listed per node in ``status``.
INFLIGHT_LIMIT = 50


def partition_dict(p: Partition) -> dict[str, Any]:
    return {
        "partition_id": p.partition_id, "min_id": p.min_id, "max_id": p.max_id,
        "status": str(p.status), "node_id": p.node_id, "fence": p.fence,
        "attempts": p.attempts, "items_processed": p.items_processed, "error": p.error,
        "updated_at": p.updated_at.isoformat() if p.updated_at else None,
        "lease_expires_at": p.lease_expires_at.isoformat() if p.lease_expires_at else None,
        # resumable partitions: the last ID recorded done, the block running,
        # the items the current run reported, the share of IDs checkpointed
        "checkpoint": p.checkpoint, "block_end": p.block_end,
        "progress_items": p.progress_items, "done_fraction": round(p.done_fraction, 4),
        # dynamic rebalancing: the partition it was split from, its own splits
        "parent_id": p.parent_id, "splits": p.splits,
    }


def counts(t: Target) -> dict[str, Any]:
    """Stats of one namespace at one instant (Redis server time)."""
    c, at_ms = t.store.stats_now()
    per_node: dict[str, dict[str, int]] = {}
    for key, value in c.items():  # complete.lua's per-host counters
        for prefix, name in (("node_partitions:", "completed"), ("node_items:", "items")):
            if key.startswith(prefix):
                per_node.setdefault(key[len(prefix):], {"completed": 0, "items": 0})[name] = value
    total = c.get("total", 0)
    done = c.get("completed", 0)
    failed = c.get("failed", 0)
    return {
        "at_ms": at_ms,
        "total": total, "pending": c.get("pending", 0), "claimed": c.get("claimed", 0),
        "running": c.get("running", 0), "completed": done, "failed": failed,
        "items_processed": c.get("items", 0), "compacted": c.get("compacted", 0),
        "quarantined": c.get("corrupt", 0),
        "remaining": max(0, total - done - failed),
        "per_node": per_node,
    }


def throughput(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Rates and ETA from two samples of the counters."""
    dt = (second["at_ms"] - first["at_ms"]) / 1000
    if dt <= 0:
        return {"sample_s": 0.0, "partitions_per_s": None, "items_per_s": None, "eta_s": None,
                "nodes": {}}
    rate = (second["completed"] + second["failed"] - first["completed"] - first["failed"]) / dt
    items = (second["items_processed"] - first["items_processed"]) / dt
    remaining = second["remaining"]
    if second["total"] == 0:
        eta: float | None = None  # nothing planned yet: no estimate
    elif remaining == 0:
        eta = 0.0
    elif rate > 0:
        eta = remaining / rate
    else:
        eta = None  # nothing finished during the sample: unknown
    nodes = {}
    for host, now in second.get("per_node", {}).items():
        before = first.get("per_node", {}).get(host, {"completed": 0, "items": 0})
        nodes[host] = {"partitions_per_s": round((now["completed"] - before["completed"]) / dt, 3),
                       "items_per_s": round((now["items"] - before["items"]) / dt, 3)}
    return {"sample_s": round(dt, 3), "partitions_per_s": round(rate, 3),
            "items_per_s": round(items, 3), "eta_s": None if eta is None else round(eta, 1),
            "nodes": nodes}


def status(t: Target, first: dict[str, Any] | None = None,
           second: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything ``elk status`` shows for one namespace."""
    store = t.store
    now_counts = second or counts(t)
    leader = store.leader()
    meta = store.meta()
    nodes = store.nodes()
    held: dict[str, list[dict[str, Any]]] = {}
    lease_ids = store.leased_ids()
    for p in store.strategy.get_partitions(lease_ids):
        held.setdefault(p.node_id, []).append(partition_dict(p))
    node_rows = []
    for n in sorted(nodes, key=lambda n: (not n.alive, n.node_id)):
        parts = sorted(held.pop(n.node_id, []), key=lambda d: d["partition_id"])
        node_rows.append({"node_id": n.node_id, "hostname": hostname_of(n.node_id),
                          "alive": n.alive,
                          "expires_in": round(n.expires_in, 3), "held": n.held,
                          "info": n.info, "partitions": parts[:INFLIGHT_LIMIT]})
    for node, parts in sorted(held.items()):  # owners that never registered
        node_rows.append({"node_id": node, "hostname": hostname_of(node), "alive": None,
                          "expires_in": None,
                          "held": len(parts), "info": {}, "partitions": parts[:INFLIGHT_LIMIT]})
    breaker = CircuitBreaker(store).state().as_dict()
    breaker["enabled"] = bool(store.settings.circuit_breaker_enabled)
    rates = throughput(first, now_counts) if first is not None else {
        "sample_s": 0.0, "partitions_per_s": None, "items_per_s": None,
        "eta_s": 0.0 if now_counts["total"] and now_counts["remaining"] == 0 else None,
        "nodes": {}}
    # per worker host (every start of it): completions so far and, sampled, rates
    per_node = [{"node": host, "completed": c["completed"], "items": c["items"],
                 **rates["nodes"].get(host, {"partitions_per_s": None, "items_per_s": None})}
                for host, c in sorted(now_counts["per_node"].items())]
    total = now_counts["total"]
    control = store.control()
    eta = eta_of(t, now_counts, meta, control.state)
    rate = rates["partitions_per_s"]
    if rate and eta.remaining > 0:
        # the sample's own figure counts the partitions not planned yet too
        rates["eta_s"] = round(eta.remaining / rate, 1)
    return {
        "namespace": t.namespace,
        "exists": bool(meta) or total > 0 or bool(nodes),
        "strategy": store.strategy.strategy_type().value,
        "task": t.task_name,
        "leader": {"node_id": leader[0], "epoch": leader[1]} if leader else None,
        "epoch": int(meta["epoch"]) if meta.get("epoch") else None,
        "plan": {k: (int(meta[k]) if meta.get(k, "").lstrip("-").isdigit() else None)
                 for k in ("start_id", "cursor", "watermark", "next_pid", "gap_checked")},
        "planner_error": meta.get("planner_error") or None,
        "nodes": node_rows,
        "per_node": per_node,
        "live_nodes": sum(1 for n in nodes if n.alive),
        "counts": {k: now_counts[k] for k in ("total", "pending", "claimed", "running",
                                              "completed", "failed", "remaining",
                                              "compacted", "quarantined")},
        # stored values that are not elk partitions, left out of the job
        "quarantined": [{"partition_id": pid, "found_at": found}
                        for pid, found in store.strategy.quarantined(INFLIGHT_LIMIT)],
        "items_processed": now_counts["items_processed"],
        "progress": round(now_counts["completed"] / total, 6) if total else 0.0,
        "done": total > 0 and now_counts["remaining"] == 0,
        "breaker": breaker,
        "throughput": rates,
        "control": {"state": control.state, "stop_running": control.stop_running},
        "eta": eta.as_dict(),
        "settings": settings_of(t, store.settings),
    }


def eta_of(t: Target, now_counts: dict[str, Any], meta: dict[str, str] | None = None,
           state: str | None = None) -> Eta:
    """The ETA from the leader's timeline plus this reading of the counters."""
    size = None
    if t.planner is not None:
        try:
            size = int(t.planner.partition_size())
        except Exception:  # noqa: BLE001 - an estimate only
            size = None
    return job_eta(t.store, now_counts["total"], now_counts["completed"] + now_counts["failed"],
                   now_counts["at_ms"], partition_size=size, meta=meta, state=state)


def live(t: Target, now_counts: dict[str, Any]) -> dict[str, Any]:
    """What ``elk watch`` adds to the counters: the job's state, its ETA, and
    how far its running partitions are through their ranges (checkpoints)."""
    state = t.store.control().state
    eta = eta_of(t, now_counts, state=state)
    running = t.store.strategy.get_filtered_partitions(status=["claimed", "running"],
                                                       limit=INFLIGHT_LIMIT)
    size = sum(p.size for p in running)
    done = sum(p.resume_id - p.min_id for p in running)
    return {"state": state, "eta": describe(eta.as_dict()) if eta.state != "done" else "",
            "running_done": done / size if size else 0.0}


def settings_of(t: Target, fallback: Any) -> dict[str, dict[str, Any]]:
    """The runtime-settable settings' effective values and their sources."""
    job = t.job
    base = job.base_settings if job is not None else (t.settings or fallback)
    app = job.elk.settings if job is not None else fallback
    current = t.store.runtime_settings()
    return runtime.sources(app, job.spec.overrides if job is not None else {}, current,
                           runtime.effective(base, current))


def sample_all(targets: list[Target], seconds: float) -> list[tuple[dict[str, Any] | None,
                                                                     dict[str, Any]]]:
    """Two samples of every namespace's counters, ``seconds`` apart."""
    if seconds <= 0:
        return [(None, counts(t)) for t in targets]
    first = [counts(t) for t in targets]
    time.sleep(seconds)
    return list(zip(first, [counts(t) for t in targets]))
