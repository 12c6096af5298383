"""Writes dashboards/elk_celery.json, the Grafana dashboard of elk_celery.

The JSON is committed; edit this file and run ``python monitoring/grafana/build_dashboard.py``
to change it (tests/monitoring/test_dashboard.py checks the two agree and
that every query names only metrics elk_celery exports).

elk_cluster_* series are read from Redis by every worker and are the same on
each: queries reduce them with ``max by (namespace, ...)`` before summing
over namespaces.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards" / "elk_celery.json"
DS = {"type": "prometheus", "uid": "elk-prometheus"}
NS = 'namespace=~"$namespace"'
RATE = "$__rate_interval"


def cluster(metric: str, by: str = "", match: str = "") -> str:
    """A cluster gauge, deduplicated over the workers that export it (every
    worker reports the same Redis state: drop only the scrape's own labels,
    so e.g. each status stays its own series), then summed."""
    sel = f"{metric}{{{NS}{',' + match if match else ''}}}"
    inner = f"max without (instance, job) ({sel})"
    return f"sum{' by (' + by + ')' if by else ''} ({inner})"


def rate(metric: str, by: str = "", match: str = "", window: str = RATE) -> str:
    sel = f"{metric}{{{NS}{',' + match if match else ''}}}"
    return f"sum{' by (' + by + ')' if by else ''} (rate({sel}[{window}]))"


def quantile(q: float, metric: str, by: str = "", match: str = "", ns: bool = True) -> str:
    labels = ",".join(x for x in (NS if ns else "", match) if x)
    sel = f"{metric}_bucket{{{labels}}}" if labels else f"{metric}_bucket"
    return f"histogram_quantile({q}, sum by (le{', ' + by if by else ''}) (rate({sel}[{RATE}])))"


class Board:
    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.y = 0
        self.x = 0
        self.row_h = 0
        self.next_id = 1

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append({"type": "row", "title": title, "id": self._id(), "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def panel(self, kind: str, title: str, targets: list[tuple[str, str]], *, w: int = 8,
              h: int = 8, unit: str = "short", description: str = "",
              options: dict[str, Any] | None = None, **field: Any) -> None:
        if self.x + w > 24:
            self._newline()
        p: dict[str, Any] = {
            "type": kind, "title": title, "id": self._id(), "datasource": DS,
            "description": description,
            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
            "targets": [{"refId": chr(65 + i), "datasource": DS, "expr": expr,
                         "legendFormat": legend, "range": True}
                        for i, (expr, legend) in enumerate(targets)],
            "fieldConfig": {"defaults": {"unit": unit, **field}, "overrides": []},
            "options": options or {},
        }
        if kind == "timeseries":
            p["options"] = {"legend": {"displayMode": "list", "placement": "bottom"},
                            "tooltip": {"mode": "multi"}, **(options or {})}
        self.panels.append(p)
        self.x += w
        self.row_h = max(self.row_h, h)

    def _newline(self) -> None:
        self.y += self.row_h
        self.x, self.row_h = 0, 0

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


BREAKER_MAPPINGS = [{"type": "value", "options": {
    "0": {"text": "closed", "color": "green"}, "1": {"text": "half-open", "color": "orange"},
    "2": {"text": "open", "color": "red"}}}]


def build() -> dict[str, Any]:
    b = Board()

    b.row("Job")
    completed = cluster("elk_cluster_partitions", match='status="completed"')
    b.panel("stat", "Progress", [(f'{completed} / {cluster("elk_cluster_partitions")}', "")],
            w=4, h=5, unit="percentunit",
        description="Completed partitions / all planned partitions.")
    b.panel("stat", "ETA", [
        (f'max by (namespace) (elk_cluster_eta_seconds{{{NS},bound="estimate"}})', "{{namespace}}"),
        (f'max by (namespace) (elk_cluster_eta_seconds{{{NS},bound="low"}})', "low {{namespace}}"),
        (f'max by (namespace) (elk_cluster_eta_seconds{{{NS},bound="high"}})', "high {{namespace}}")],
        w=4, h=5, unit="s",
        description="Partitions left (planned, plus what the planner still reports) over the "
                    "completion rate of the last 5 minutes, with its range; empty while the "
                    "ETA is estimating, stalled or the job paused (see ETA state).")
    b.panel("stat", "Partitions", [(cluster("elk_cluster_partitions"), "")], w=4, h=5)
    b.panel("stat", "Items processed", [(cluster("elk_cluster_items_processed_total"), "")],
            w=4, h=5)
    b.panel("stat", "Planning cursor", [(
        f'max by (namespace) (elk_cluster_planning_cursor{{{NS}}})', "{{namespace}}")],
        w=4, h=5, description="Next ID the leader plans from.")
    b.panel("stat", "Failed partitions", [(
        cluster("elk_cluster_partitions", match='status="failed"'), "")], w=4, h=5,
        thresholds={"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                  {"color": "red", "value": 1}]})
    b.panel("stat", "Job state", [(
        f'max by (namespace) (elk_cluster_job_state{{{NS}}})', "{{namespace}}")], w=4, h=5,
        description="elk pause / resume / cancel.",
        mappings=[{"type": "value", "options": {
            "0": {"text": "running", "color": "green"}, "1": {"text": "paused", "color": "orange"},
            "2": {"text": "cancelled", "color": "red"}}}])
    b.panel("table", "ETA state", [(
        f'max by (namespace, state) (elk_cluster_eta_info{{{NS}}})', "")], w=4, h=5,
        description="ok, estimating, stalled, done, paused, cancelled or nothing_planned.",
        options={"showHeader": True})
    b.panel("stat", "Partitions left", [(
        f'max by (namespace) (elk_cluster_partitions_remaining{{{NS}}})', "{{namespace}}")],
        w=4, h=5, description="Planned and not finished, plus the IDs not planned yet.")
    b.panel("bargauge", "Running partitions: share done", [(
        f'max by (namespace, partition) (elk_cluster_partition_progress_ratio{{{NS}}})',
        "{{namespace}} #{{partition}}")], w=12, h=5, unit="percentunit", min=0, max=1,
        description="Each running partition's IDs up to its checkpoint (partition.blocks(), "
                    "checkpoint()).")
    b.panel("timeseries", "Partitions by status", [(
        cluster("elk_cluster_partitions", by="status"), "{{status}}")], w=8,
        custom={"stacking": {"mode": "normal"}, "fillOpacity": 30})
    b.panel("timeseries", "Throughput", [
        (rate("elk_partitions_completed_total"), "partitions/s"),
        (rate("elk_items_processed_total"), "items/s")], w=8, unit="ops")
    b.panel("timeseries", "Throughput by worker", [(
        rate("elk_partitions_completed_total", by="node"), "{{node}}")], w=8, unit="ops")

    b.row("Leader")
    b.panel("table", "Leader", [(
        f'max by (namespace, node) (elk_cluster_leader_info{{{NS}}})', "")], w=6, h=6,
        options={"showHeader": True})
    b.panel("stat", "Epoch", [(f'max by (namespace) (elk_cluster_leader_epoch{{{NS}}})',
                               "{{namespace}}")], w=3, h=6)
    b.panel("stat", "Leader present", [(
        f'min by (namespace) (elk_cluster_leader_present{{{NS}}})', "{{namespace}}")], w=3, h=6,
        mappings=[{"type": "value", "options": {"0": {"text": "none", "color": "red"},
                                                 "1": {"text": "yes", "color": "green"}}}])
    b.panel("timeseries", "Leader lease remaining", [(
        f'min by (namespace) (elk_cluster_leader_lease_remaining_seconds{{{NS}}})',
        "{{namespace}}")], w=6, h=6, unit="s")
    b.panel("timeseries", "Leader ticks by role", [
        (rate("elk_leader_ticks_total", by="role"), "{{role}}"),
        (f'sum by (node) (increase(elk_leader_elections_total{{{NS}}}[1h]))', "elections/h {{node}}")],
        w=6, h=6, unit="ops")
    b.panel("timeseries", "Planned, dispatched, recovered", [
        (rate("elk_leader_planned_partitions_total"), "planned/s"),
        (rate("elk_leader_dispatched_total"), "dispatched/s"),
        (rate("elk_leader_recovered_total", by="outcome"), "recovered/s ({{outcome}})"),
        (rate("elk_leader_planning_errors_total"), "planning errors/s"),
        (rate("elk_leader_stale_writes_total"), "stale leader writes/s")], w=12, unit="ops")
    b.panel("timeseries", "Leader step durations (p95)", [
        (quantile(0.95, "elk_leader_tick_duration_seconds"), "tick"),
        (quantile(0.95, "elk_leader_planning_duration_seconds"), "planning"),
        (quantile(0.95, "elk_leader_dispatch_duration_seconds"), "dispatch")], w=12, unit="s")

    b.row("Nodes")
    b.panel("stat", "Live nodes", [
        (cluster("elk_cluster_live_nodes"), "live"),
        (cluster("elk_cluster_registered_nodes"), "registered")], w=4)
    b.panel("timeseries", "In-flight partitions vs task window", [
        (f'max by (node) (elk_node_inflight_partitions{{{NS}}})', "in flight {{node}}"),
        (f'max by (node) (elk_node_task_window{{{NS}}})', "window {{node}}"),
        (f'sum by (node) (elk_partitions_in_progress{{{NS}}})', "processing {{node}}")], w=10)
    b.panel("timeseries", "Seconds since last heartbeat", [(
        f'time() - max by (node) (elk_node_last_heartbeat_timestamp_seconds{{{NS}}})', "{{node}}")],
        w=10, unit="s")
    b.panel("timeseries", "Heartbeats", [
        (rate("elk_node_heartbeats_total", by="node"), "ok {{node}}"),
        (rate("elk_node_heartbeat_errors_total", by="node"), "errors {{node}}")], w=8, unit="ops")
    b.panel("timeseries", "Lease renewals and losses", [
        (rate("elk_node_lease_renewals_total", by="node"), "renewed {{node}}"),
        (rate("elk_node_leases_lost_total", by="node"), "lost {{node}}")], w=8, unit="ops")
    b.panel("timeseries", "In flight per node (Redis)", [(
        f'max by (node) (elk_cluster_node_inflight_partitions{{{NS}}})', "{{node}}")], w=8)
    b.panel("timeseries", "Items per second by worker", [(
        rate("elk_items_processed_total", by="node"), "{{node}}")], w=8, unit="ops",
        description="node is the worker's hostname: a restarted worker continues its series.")
    b.panel("timeseries", "Completed per worker (Redis)", [(
        f'max by (node) (rate(elk_cluster_node_partitions_completed_total{{{NS}}}[{RATE}]))',
        "{{node}}")], w=8, unit="ops",
        description="Counted by the completion script per worker hostname, whole job.")
    b.panel("table", "Worker starts", [(
        'max by (node, node_id) (elk_node_info)', "")], w=8,
        description="node_id is unique per worker start (leases never pass to a restart).")

    b.row("Failures, retries, circuit breaker")
    b.panel("timeseries", "Partition outcomes", [
        (rate("elk_partitions_completed_total"), "completed"),
        (rate("elk_partitions_retried_total"), "retried"),
        (rate("elk_partitions_failed_total"), "failed"),
        (rate("elk_partitions_lost_total"), "lost lease"),
        (rate("elk_partitions_preempted_total"), "preempted"),
        (rate("elk_partition_stale_writes_total"), "stale writes")], w=12, unit="ops")
    b.panel("timeseries", "Claims by result", [(
        rate("elk_partition_claims_total", by="code"), "{{code}}")], w=12, unit="ops")
    b.panel("stat", "Breaker", [(
        f'max by (namespace) (elk_cluster_breaker_state{{{NS}}})', "{{namespace}}")], w=4, h=6,
        mappings=BREAKER_MAPPINGS)
    b.panel("timeseries", "Breaker trips, failures in a row", [
        (f'max by (namespace) (elk_cluster_breaker_trips_total{{{NS}}})', "trips {{namespace}}"),
        (f'max by (namespace) (elk_cluster_breaker_consecutive_failures{{{NS}}})',
         "consecutive failures {{namespace}}")], w=10, h=6)
    b.panel("timeseries", "Claims refused by the breaker", [
        (rate("elk_breaker_refused_claims_total"), "refused/s (workers)"),
        (f'sum (max by (namespace) (rate(elk_cluster_breaker_refused_claims_total{{{NS}}}[{RATE}])))',
         "refused/s (Redis)")], w=10, h=6, unit="ops")
    b.panel("timeseries", "Events recorded in Redis", [(
        f'sum by (event) (max by (namespace, event) (rate(elk_cluster_events_total{{{NS}}}[{RATE}])))',
        "{{event}}")], w=12, unit="ops")
    b.panel("timeseries", "Gaps", [
        (rate("elk_gap_scans_total", by="mode"), "scans {{mode}}"),
        (rate("elk_gaps_found_total", by="mode"), "found {{mode}}"),
        (rate("elk_gaps_filled_total", by="mode"), "filled {{mode}}")], w=12, unit="ops")

    b.row("Latency")
    b.panel("timeseries", "Partition processing time", [
        (quantile(q, "elk_partition_processing_duration_seconds", match='outcome="completed"'),
         f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)], w=8, unit="s")
    b.panel("timeseries", "Time in queue (dispatch to claim)", [
        (quantile(q, "elk_partition_queue_wait_seconds"), f"p{int(q * 100)}")
        for q in (0.5, 0.95, 0.99)], w=8, unit="s")
    b.panel("timeseries", "Claim and heartbeat latency", [
        (quantile(0.5, "elk_redis_call_duration_seconds", match='operation="claim"', ns=False),
         "claim p50"),
        (quantile(0.99, "elk_redis_call_duration_seconds", match='operation="claim"', ns=False),
         "claim p99"),
        (quantile(0.99, "elk_node_heartbeat_duration_seconds"), "heartbeat p99")], w=8, unit="s")
    b.panel("timeseries", "Waiting work", [
        (f'max by (namespace) (elk_cluster_oldest_pending_age_seconds{{{NS}}})',
         "oldest due pending {{namespace}}"),
        (f'max by (namespace) (elk_cluster_lease_overdue_seconds{{{NS}}})',
         "lease overdue {{namespace}}")], w=12, unit="s")
    b.panel("heatmap", "Processing time distribution", [(
        f'sum by (le) (increase(elk_partition_processing_duration_seconds_bucket{{{NS},outcome="completed"}}[{RATE}]))',
        "{{le}}")], w=12, options={"calculate": False, "yAxis": {"unit": "s"}})

    b.row("Redis")
    b.panel("timeseries", "Calls by operation", [(
        'sum by (operation) (rate(elk_redis_call_duration_seconds_count[$__rate_interval]))',
        "{{operation}}")], w=8, unit="ops")
    b.panel("timeseries", "Call latency p99 by operation", [(
        quantile(0.99, "elk_redis_call_duration_seconds", by="operation", ns=False),
        "{{operation}}")], w=8, unit="s")
    b.panel("timeseries", "Errors", [(
        'sum by (operation, reason) (rate(elk_redis_errors_total[$__rate_interval]))',
        "{{operation}} {{reason}}")], w=8, unit="ops")
    b.panel("timeseries", "Cluster state read", [
        (f'max by (namespace) (elk_cluster_scrape_duration_seconds{{{NS}}})', "read time {{namespace}}"),
        (f'min by (namespace) (elk_cluster_up{{{NS}}})', "up {{namespace}}")], w=12)
    b.panel("table", "Build", [('max by (version, celery, redis_py, python) (elk_build_info)', "")],
            w=12)

    b.row("Flower")
    b.panel("stat", "Workers online (Flower)", [('sum(flower_worker_online)', "")], w=6)
    b.panel("timeseries", "Task events (Flower)", [(
        'sum by (type) (rate(flower_events_total[$__rate_interval]))', "{{type}}")], w=9, unit="ops")
    b.panel("timeseries", "Tasks executing per worker (Flower)", [(
        'sum by (worker) (flower_worker_number_of_currently_executing_tasks)', "{{worker}}")], w=9)

    return {
        "uid": "elk-celery", "title": "elk_celery", "tags": ["elk_celery", "celery"],
        "timezone": "browser", "schemaVersion": 39, "version": 1, "editable": True,
        "refresh": "10s", "time": {"from": "now-1h", "to": "now"},
        "annotations": {"list": []},
        "templating": {"list": [{
            "name": "namespace", "label": "namespace", "type": "query", "datasource": DS,
            "query": {"query": "label_values(elk_cluster_partitions, namespace)", "refId": "ns"},
            "definition": "label_values(elk_cluster_partitions, namespace)",
            "refresh": 2, "multi": True, "includeAll": True,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}}]},
        "panels": b.panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
