"""Prefork-style process trees: counts of child processes add up on the scrape."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.monitoring.conftest import ROOT, run_promtool

pytestmark = pytest.mark.slow


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def run_tree(mpdir, ns: str, n: int, method: str, killed: int = 0, alive: int = 0) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mpdir), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.monitoring.mp_script", ns, str(n), method, str(killed),
         str(alive)],
        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("URL "), line + proc.stderr.read()
        return urllib.request.urlopen(line.split()[1], timeout=10).read().decode()
    finally:
        proc.stdin.close()
        proc.wait(30)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_child_process_counts_add_up(tmp_path, method):
    n, ns = 6, f"mp-{method}"
    s = samples(run_tree(tmp_path / "mp", ns, n, method))
    node = ("namespace", ns), ("node", "node-1")
    task = ("namespace", ns), ("task", "tests.mp_task")
    assert s[("elk_partitions_completed_total", (*node, task[1]))] == n
    assert s[("elk_items_processed_total", (*node, task[1]))] == 10 * n
    assert s[("elk_partition_queue_wait_seconds_count", task)] == n
    assert s[("elk_redis_call_duration_seconds_count", (("operation", "complete"),))] == n
    # livesum gauge: each child went +1 then -1, and exited children are dropped
    assert s.get(("elk_partitions_in_progress", node), 0) == 0
    # the main process's own values are served too
    assert s[("elk_node_heartbeats_total", node)] == 1
    assert s[("elk_node_task_window", node)] == 2


def test_folder_is_wiped_at_start(tmp_path):
    mpdir = tmp_path / "mp"
    run_tree(mpdir, "mp-wipe", 3, "fork")
    s = samples(run_tree(mpdir, "mp-wipe", 2, "fork"))  # same folder, a new "worker start"
    key = ("elk_partitions_completed_total",
           (("namespace", "mp-wipe"), ("node", "node-1"), ("task", "tests.mp_task")))
    assert s[key] == 2


def test_killed_children_leave_no_live_gauges(tmp_path):
    s = samples(run_tree(tmp_path / "mp", "mp-kill", 2, "fork", killed=2, alive=1))
    node = ("namespace", "mp-kill"), ("node", "node-1")
    # two children claimed (+1 each) and were SIGKILLed before finishing, with
    # no exit handler: the scrape reaps their files; the live one still counts
    assert s[("elk_partitions_in_progress", node)] == 1
    assert s[("elk_partition_claims_total", (("code", "ok"), *node,
                                             ("task", "tests.mp_task")))] == 5


def test_multiprocess_scrape_passes_promtool(tmp_path, promtool):
    text = run_tree(tmp_path / "mp", "mp-lint", 2, "fork")
    r = run_promtool(promtool, "check", "metrics", stdin=text)
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr
