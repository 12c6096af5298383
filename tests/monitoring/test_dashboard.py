"""The Grafana dashboard and provisioning, checked as data (Grafana can't run here)."""

from __future__ import annotations

import json
import re
import runpy

import pytest

from tests.monitoring.conftest import (DASHBOARD, GRAFANA, dashboard, queries,
                                       run_promtool)
from tests.monitoring.promql import metric_names, unknown_names


def test_dashboard_is_generated_from_its_builder():
    builder = runpy.run_path(str(GRAFANA / "build_dashboard.py"))
    assert builder["render"]() == DASHBOARD.read_text(), \
        "elk_celery.json is stale: run python monitoring/grafana/build_dashboard.py"


def test_every_panel_query_names_only_exported_metrics():
    assert len(queries()) >= 40
    bad = {f"{title}: {expr}": sorted(unknown_names(expr)) for title, expr in queries()
           if unknown_names(expr)}
    assert bad == {}
    variable = dashboard()["templating"]["list"][0]["definition"]
    assert unknown_names(re.sub(r"label_values\((\w+),.*\)", r"\1", variable)) == set()


def test_dashboard_has_the_rows_and_uses_histograms():
    rows = [p["title"] for p in dashboard()["panels"] if p["type"] == "row"]
    for wanted in ("Job", "Leader", "Nodes", "Failures, retries, circuit breaker", "Latency", "Redis"):
        assert wanted in rows
    exprs = " ".join(e for _, e in queries())
    for needle in ("histogram_quantile(0.95", "elk_partition_queue_wait_seconds_bucket",
                   "elk_node_task_window", "elk_node_inflight_partitions",
                   "elk_cluster_breaker_state", "elk_redis_call_duration_seconds_bucket"):
        assert needle in exprs
    titles = {p["title"] for p in dashboard()["panels"]}
    assert {"Progress", "ETA", "Throughput", "Partitions by status"} <= titles


def test_panel_layout_is_sane():
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for p in dashboard()["panels"]:
        pos = p["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "elk-prometheus"


def test_panel_queries_are_valid_promql(promtool, tmp_path):
    # Grafana variables replaced by values, each query wrapped as a recording rule.
    rules = [{"record": f"elk_dashboard:q{i}",
              "expr": expr.replace("$__rate_interval", "1m").replace("$namespace", ".*")}
             for i, (_, expr) in enumerate(queries())]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))  # JSON is YAML
    r = run_promtool(promtool, "check", "rules", str(path))
    assert r.returncode == 0, r.stdout + r.stderr


def test_provisioning_points_at_the_dashboard_and_the_data_source(yaml):
    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == "elk-prometheus"
    assert source["url"] == "http://prometheus:9090"
    prov = yaml.safe_load((GRAFANA / "provisioning/dashboards/elk_celery.yml").read_text())
    (provider,) = prov["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


@pytest.mark.parametrize("expr, names", [
    ('histogram_quantile(0.9, sum by (le) (rate(a_bucket{x="y"}[5m])))', {"a_bucket"}),
    ("sum(rate(b_total[$__rate_interval])) by (node) / on(ns) group_left(n) c offset 5m", {"b_total", "c"}),
    ('time() - max(d{ns=~"$namespace"}) > 1e3', {"d"}),
])
def test_promql_name_extraction(expr, names):
    assert metric_names(expr) == names
