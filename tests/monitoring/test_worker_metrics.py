"""End to end: real `celery worker` subprocesses serve /metrics; Flower lists a
job's partitions under its task name, with the range in their kwargs."""

from __future__ import annotations

import ast
import json
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import CeleryProc, wait_for
from tests.integration.helpers import done
from tests.monitoring.conftest import MONITORING, free_port, get, run_promtool
from tests.monitoring.promql import FLOWER

pytestmark = pytest.mark.slow


def total(text: str, name: str, **labels: str) -> float:
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.mark.parametrize("pool, concurrency", [("prefork", 3), ("threads", 2)])
def test_worker_metrics_count_every_partition(cluster, redis_client, namespace, tmp_path,
                                               pool, concurrency, request):
    n = 20
    port = free_port()
    c = cluster(max_id=n * 50, size=50, window=concurrency, metrics_port=port)
    if pool == "prefork":
        (tmp_path / "prom").mkdir()
        c.env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prom")
    else:
        c.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    c.beat()
    c.worker("m1", concurrency=concurrency, pool=pool)
    url = f"http://127.0.0.1:{port}/metrics"
    wait_for(lambda: done(redis_client, namespace, n), 120, lambda: f"{n} partitions\n" + c.logs())

    def counted() -> str | None:
        text = get(url)
        return text if text and total(text, "elk_partitions_completed_total",
                                      namespace=namespace) == n else None
    text = wait_for(counted, 30, lambda: f"{n} completions on {url}\n{get(url)}\n{c.logs()}")
    assert total(text, "elk_items_processed_total", namespace=namespace) == n * 50
    assert total(text, "elk_partition_processing_duration_seconds_count", namespace=namespace,
                 outcome="completed") == n
    assert total(text, "elk_partition_claims_total", namespace=namespace, code="ok") >= n
    assert total(text, "elk_node_heartbeats_total", namespace=namespace) >= 1  # main process
    assert total(text, "elk_cluster_partitions", namespace=namespace, status="completed") == n
    assert total(text, "elk_cluster_live_nodes", namespace=namespace) == 1
    assert total(text, "elk_leader_ticks_total", namespace=namespace) >= 1
    if pool == "prefork":
        assert "Traceback" not in c.logs()
    promtool = request.getfixturevalue("promtool") if _has_promtool() else None
    if promtool:
        r = run_promtool(promtool, "check", "metrics", stdin=text)
        assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr


def test_prefork_worker_wipes_old_metrics_files(cluster, redis_client, namespace, tmp_path):
    """The bootstep's prepare_worker() empties the folder before the pool forks."""
    n, port = 4, free_port()
    c = cluster(max_id=n * 10, size=10, window=2, metrics_port=port)
    mpdir = tmp_path / "prom"
    mpdir.mkdir()
    # what an earlier run (same pids in a container) leaves behind; unreadable on purpose
    (mpdir / "counter_1.db").write_bytes(b"left by an earlier run")
    c.env["PROMETHEUS_MULTIPROC_DIR"] = str(mpdir)
    c.beat()
    c.worker("w", concurrency=2)
    url = f"http://127.0.0.1:{port}/metrics"
    wait_for(lambda: done(redis_client, namespace, n), 90, lambda: f"{n} partitions\n" + c.logs())
    wait_for(lambda: (t := get(url)) and total(t, "elk_partitions_completed_total",
                                                namespace=namespace) == n,
             30, lambda: f"a scrape counting {n} completions\n{get(url)}\n{c.logs()}")
    assert not (mpdir / "counter_1.db").exists()


def _has_promtool() -> bool:
    import shutil
    return shutil.which("promtool") is not None


def test_flower_lists_one_task_type_per_job_with_the_range_in_kwargs(cluster, redis_client,
                                                                     namespace, tmp_path):
    pytest.importorskip("flower", reason="Flower is not installed (pip install flower)")
    n, size = 5, 100
    task = "tests.apps.jobapp.job"
    c = cluster(max_id=n * size, size=size, window=2)
    port = free_port()
    # Flower without PROMETHEUS_MULTIPROC_DIR (design §7), with the `=` option form
    env = {k: v for k, v in c.env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["FLOWER_UNAUTHENTICATED_API"] = "true"  # Flower 2.2 answers its API with 401 otherwise
    flower = CeleryProc(["flower", f"--port={port}", "--address=127.0.0.1"], env,
                        tmp_path / "flower.log")
    c.procs.append(flower)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: get(f"{base}/healthcheck"), 60, lambda: "Flower to start\n" + flower.log())
    # a worker with task events (-E), started once Flower listens
    args = ["worker", "-n", "ev@%h", "-c", "2", "-P", "prefork", "-E", "--without-gossip",
            "--without-mingle", "-l", "INFO", "-Q", namespace]
    c.procs.append(CeleryProc(args, c.env, tmp_path / "ev.log"))
    c.beat()
    wait_for(lambda: done(redis_client, namespace, n), 90, lambda: f"{n} partitions\n" + c.logs())

    def api(path: str) -> dict | None:
        body = get(f"{base}{path}")
        return json.loads(body) if body else None

    def succeeded() -> dict | None:
        tasks = api(f"/api/tasks?taskname={task}&state=SUCCESS&limit=1000")
        return tasks if tasks is not None and len(tasks) >= n else None
    tasks = wait_for(succeeded, 60, lambda: f"{n} tasks named {task} in Flower\n"
                     f"{get(f'{base}/api/tasks?limit=1000')}\n{c.logs()}")
    # one task type for the job (and the leader tick), not one per partition
    types = set(api("/api/task/types")["task-types"])
    assert task in types and not any("[" in t for t in types), types
    assert {t["name"] for t in tasks.values()} == {task}
    kwargs = [ast.literal_eval(t["kwargs"]) for t in tasks.values()]
    ranges = {(kw["min_id"], kw["max_id"]) for kw in kwargs}
    assert {(i * size + 1, (i + 1) * size) for i in range(n)} <= ranges
    # the range is searchable (Flower's search box: kwargs:min_id=101)
    found = api(f"/api/tasks?taskname={task}&search=kwargs:min_id={size + 1}")
    assert {ast.literal_eval(t["kwargs"])["max_id"] for t in found.values()} == {2 * size}
    found = api(f"/api/tasks?search=kwargs:max_id={3 * size}")
    assert {ast.literal_eval(t["kwargs"])["min_id"] for t in found.values()} == {2 * size + 1}

    def exposed() -> set[str]:
        text = get(f"{base}/metrics") or ""
        return {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    # worker gauges appear with the workers' heartbeat events (every 2 s)
    wait_for(lambda: FLOWER <= exposed(), 30,
             lambda: f"the Flower metrics the dashboard uses: {sorted(FLOWER - exposed())} missing")

    # Flower labels its task metrics with the task name: one series per job,
    # however many partitions it has, so prometheus.yml keeps them all
    text = get(f"{base}/metrics") or ""
    labels = {s.labels["task"] for f in text_string_to_metric_families(text)
              if f.name == "flower_events" for s in f.samples if "task" in s.labels}
    assert task in labels and labels <= {task, "elk_celery.leader_tick"}, labels
    config = (MONITORING / "prometheus" / "prometheus.yml").read_text()
    assert "action: drop" not in config


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))
