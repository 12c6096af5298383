"""A real Prometheus scrapes a real prefork worker; every dashboard query and
alert expression is evaluated by it, and the job's panels show the job."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.parse

import pytest

from tests.conftest import wait_for
from tests.integration.helpers import done
from tests.monitoring.conftest import MONITORING, free_port, get, queries

pytestmark = pytest.mark.slow


@pytest.fixture
def prometheus_bin() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.skip("the prometheus server is not installed (Debian: apt-get install prometheus)")
    return path


def start_prometheus(binary: str, tmp_path, targets: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    shutil.copy(MONITORING / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [{"job_name": "elk-workers", "static_configs": [{"targets": targets}]}],
    }))
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def query(base: str, expr: str) -> list[dict]:
    body = get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert body is not None, expr
    reply = json.loads(body)
    assert reply["status"] == "success", (expr, reply)
    return reply["data"]["result"]


def scalar(base: str, expr: str) -> float | None:
    result = query(base, expr)
    return float(result[0]["value"][1]) if result else None


def test_dashboard_queries_on_a_real_prometheus(cluster, redis_client, namespace, tmp_path,
                                                 prometheus_bin):
    n = 30
    port = free_port()
    # partitions outlast a heartbeat (0.5 s): only then is a lease renewed
    c = cluster(max_id=n * 10, size=10, window=2, sleep=0.7, metrics_port=port)
    (tmp_path / "prom").mkdir()
    c.env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prom")
    c.beat()
    c.worker("p1", concurrency=2)
    prom, base = start_prometheus(prometheus_bin, tmp_path, [f"127.0.0.1:{port}"])
    try:
        wait_for(lambda: get(f"{base}/-/ready"), 60,
                 lambda: "Prometheus ready\n" + (tmp_path / "prometheus.log").read_text())
        # while the job runs: throughput, progress below 1, the ETA is finite
        wait_for(lambda: (scalar(base, f'sum(rate(elk_partitions_completed_total{{namespace="{namespace}"}}[5s]))')
                          or 0) > 0, 90, lambda: "a non-zero throughput\n" + c.logs())
        wait_for(lambda: done(redis_client, namespace, n), 120, lambda: f"{n} partitions\n" + c.logs())
        time.sleep(3)  # a few more scrapes after the end

        values = {}
        for title, expr in queries():
            e = expr.replace("$__rate_interval", "30s").replace("$namespace", namespace)
            values[(title, expr)] = query(base, e)  # every query evaluates without error

        def panel(title: str) -> float:
            (series,) = next(v for (t, _), v in values.items() if t == title)
            return float(series["value"][1])
        assert panel("Progress") == 1.0
        assert panel("Partitions") == n
        assert panel("Items processed") == n * 10
        assert panel("Failed partitions") == 0
        assert panel("Planning cursor") == n * 10 + 1
        shown = {t for (t, _), v in values.items() if v}
        # every panel about what a healthy run does shows data (gaps, errors,
        # breaker refusals, lost leases did not happen here)
        must = {"Progress", "ETA", "Partitions", "Items processed", "Planning cursor",
                "Failed partitions", "Partitions by status", "Throughput", "Throughput by worker",
                "Leader", "Epoch", "Leader present", "Leader lease remaining",
                "Leader ticks by role", "Planned, dispatched, recovered",
                "Leader step durations (p95)", "Live nodes", "In-flight partitions vs task window",
                "Seconds since last heartbeat", "Heartbeats", "Lease renewals and losses",
                "Partition outcomes", "Claims by result", "Breaker",
                "Breaker trips, failures in a row", "Events recorded in Redis",
                "Partition processing time", "Time in queue (dispatch to claim)",
                "Claim and heartbeat latency", "Waiting work", "Processing time distribution",
                "Calls by operation", "Call latency p99 by operation", "Cluster state read", "Build"}
        assert must - shown == set()
        # the alert rules load and none is pending or firing for a healthy job
        rules = json.loads(get(f"{base}/api/v1/rules"))["data"]["groups"][0]["rules"]
        assert len(rules) >= 6 and all(r["health"] == "ok" for r in rules), rules
        firing = [r["name"] for r in rules if r["state"] != "inactive"]
        assert firing == [], firing
    finally:
        prom.send_signal(signal.SIGTERM)
        prom.wait(20)
