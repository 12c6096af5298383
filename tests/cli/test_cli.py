"""The ``elk`` CLI against a real Redis: click's runner in-process, and real
subprocesses (``python -m elk_celery.cli``, ``celery -A app elk``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from elk_celery import ElkSettings, HashPartitionStrategy
from elk_celery._redis_server import free_port
from elk_celery.cli import elk
from elk_celery.store.namespace import NamespaceStore

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------- helpers

def populate(client, ns, **settings):
    """10 partitions over 1..1000; 0-3 completed, 4 running on node-b,
    5 failed for good, 7 deleted (a gap 701..800), node-a leads."""
    st = HashPartitionStrategy(client, ns, ElkSettings(**settings))
    store = NamespaceStore(st)
    st.create_partitions_if_not_exist(
        [{"partition_id": i, "min_id": i * 100 + 1, "max_id": i * 100 + 100} for i in range(10)])
    store.set_meta(cursor=1001, start_id=1, next_pid=10)
    store.heartbeat("node-a", {"host": "h1"})
    store.heartbeat("node-b", {"host": "h2"})
    store.leader_acquire("node-a")
    store.register()  # as a worker's bootstep or a newly elected leader does
    for pid in range(4):
        complete(st, pid, "node-a", 100)
    st.claim(4, "node-b")
    c = st.claim(5, "node-a")
    st.fail_partition(5, "node-a", c.fence, "boom", retryable=False)
    st.delete_partitions([7])
    return st, store


def complete(st, pid, node="node-a", items=1):
    c = st.claim(pid, node)
    assert c.ok, c
    st.complete_partition(pid, node, c.fence, items)


@pytest.fixture
def cli(redis_url):
    runner = CliRunner()

    def run(*args, input=None, url=None):
        return runner.invoke(elk, ["--redis-url", url or redis_url, *map(str, args)],
                             input=input, catch_exceptions=False)
    return run


@pytest.fixture
def state(redis_client, namespace):
    return populate(redis_client, namespace)


def as_json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ------------------------------------------------------------------ status

def test_status_json(cli, namespace, state):
    out = as_json(cli("status", "-n", namespace, "--json", "--sample", 0))
    (s,) = out["namespaces"]
    assert s["namespace"] == namespace and s["exists"] and s["strategy"] == "hash"
    epoch = state[1].leader()[1]
    assert s["leader"] == {"node_id": "node-a", "epoch": epoch} and s["epoch"] == epoch
    assert s["counts"] == {"total": 9, "pending": 3, "claimed": 0, "running": 1,
                           "completed": 4, "failed": 1, "remaining": 4, "compacted": 0,
                           "quarantined": 0}
    assert s["quarantined"] == []
    assert s["items_processed"] == 400 and s["done"] is False
    assert s["plan"]["cursor"] == 1001 and s["plan"]["start_id"] == 1
    nodes = {n["node_id"]: n for n in s["nodes"]}
    assert set(nodes) == {"node-a", "node-b"} and s["live_nodes"] == 2
    assert nodes["node-b"]["alive"] and nodes["node-b"]["held"] == 1
    assert [(p["partition_id"], p["min_id"], p["max_id"], p["status"])
            for p in nodes["node-b"]["partitions"]] == [(4, 401, 500, "running")]
    assert nodes["node-a"]["partitions"] == [] and nodes["node-a"]["info"] == {"host": "h1"}
    assert s["breaker"]["state"] == "closed" and s["breaker"]["enabled"] is True
    assert s["breaker"]["consecutive_failures"] == 1
    assert s["throughput"]["partitions_per_s"] is None  # no sample asked for
    assert s["per_node"] == [{"node": "node-a", "completed": 4, "items": 400,
                              "partitions_per_s": None, "items_per_s": None}]
    assert nodes["node-a"]["hostname"] == "node-a"


def test_status_throughput_and_eta(cli, namespace, state):
    st, _ = state

    def work():
        time.sleep(0.2)
        for pid in (6, 8):
            complete(st, pid, "node-a", 50)

    t = threading.Thread(target=work)
    t.start()
    out = as_json(cli("status", "-n", namespace, "--json", "--sample", 1.0))
    t.join()
    thr = out["namespaces"][0]["throughput"]
    assert 0.9 <= thr["sample_s"] < 5
    assert thr["partitions_per_s"] > 0 and thr["items_per_s"] > 0
    # 2 left (pending 9, running 4) at ~2/s
    assert 0 < thr["eta_s"] < 10
    # per worker: node-a did both
    (a,) = out["namespaces"][0]["per_node"]
    assert a["node"] == "node-a" and a["completed"] == 6 and a["items"] == 500
    assert a["partitions_per_s"] > 0 and a["items_per_s"] > 0
    assert thr["nodes"]["node-a"] == {k: a[k] for k in ("partitions_per_s", "items_per_s")}


def test_status_rates_each_worker_across_restarts(cli, redis_client, namespace):
    """Two starts of w1@h (node ids differ by their token) count as one worker."""
    st = HashPartitionStrategy(redis_client, namespace)
    store = NamespaceStore(st)
    st.create_partitions_if_not_exist(
        [{"partition_id": i, "min_id": i * 10 + 1, "max_id": i * 10 + 10} for i in range(6)])
    for node in ("w1@h:0123abcd", "w1@h:89abcdef", "w2@h:00000001"):
        store.heartbeat(node)
    complete(st, 0, "w1@h:0123abcd", 10)

    def work():
        time.sleep(0.2)
        complete(st, 1, "w1@h:89abcdef", 10)
        complete(st, 2, "w1@h:89abcdef", 10)
        complete(st, 3, "w2@h:00000001", 10)

    t = threading.Thread(target=work)
    t.start()
    out = as_json(cli("status", "-n", namespace, "--json", "--sample", 1.0))
    t.join()
    per = {p["node"]: p for p in out["namespaces"][0]["per_node"]}
    assert set(per) == {"w1@h", "w2@h"}
    assert per["w1@h"]["completed"] == 3 and per["w2@h"]["completed"] == 1
    assert per["w1@h"]["partitions_per_s"] > per["w2@h"]["partitions_per_s"] > 0
    r = cli("status", "-n", namespace, "--sample", 0)
    assert r.exit_code == 0, r.output
    rows = [x for x in r.output.splitlines() if "w1@h:" in x]
    assert len(rows) == 2 and sum(" 3 " in x for x in rows) == 1, r.output


def test_status_text(cli, namespace, state):
    r = cli("status", "-n", namespace, "--sample", 0)
    assert r.exit_code == 0, r.output
    epoch = state[1].leader()[1]
    for text in (namespace, f"leader: node-a (epoch {epoch})", "planned: IDs 1..1000",
                 "4[401..500] running", "breaker: closed", "nodes (2 live)"):
        assert text in r.output, (text, r.output)


def test_status_shows_quarantined_partitions(cli, namespace, state, redis_client):
    st, _ = state
    redis_client.hset(st.keys.bucket(6), "6", "not an elk partition")
    assert st.quarantine(6, 601, 700)
    s = as_json(cli("status", "-n", namespace, "--json", "--sample", 0))["namespaces"][0]
    assert s["counts"]["quarantined"] == 1 and s["counts"]["pending"] == 2
    assert [q["partition_id"] for q in s["quarantined"]] == [6]
    r = cli("status", "-n", namespace, "--sample", 0)
    assert "quarantined: 1 partition(s) (6)" in r.output and "delete" in r.output, r.output


def test_status_of_an_unknown_namespace(cli, namespace):
    out = as_json(cli("status", "-n", namespace, "--json", "--sample", 0))
    assert out["namespaces"][0]["exists"] is False
    # nothing planned: no ETA (not "0 s left"), sampled or not
    assert out["namespaces"][0]["throughput"]["eta_s"] is None
    out = as_json(cli("status", "-n", namespace, "--json", "--sample", 0.1))
    assert out["namespaces"][0]["throughput"]["eta_s"] is None
    assert "no state in Redis" in cli("status", "-n", namespace, "--sample", 0).output


# -------------------------------------------------------------- partitions

def test_partitions_filters(cli, namespace, state):
    def ids(*args):
        out = as_json(cli("partitions", "-n", namespace, "--json", *args))
        return [p["partition_id"] for p in out["namespaces"][0]["partitions"]]

    assert ids("--status", "failed") == [5]
    assert ids("--status", "running", "--node", "node-b") == [4]
    assert ids("--status", "running", "--node", "node-a") == []
    assert ids("--status", "pending") == [6, 8, 9]
    assert ids("--status", "pending", "--status", "failed") == [5, 6, 8, 9]
    assert ids("--limit", 2) == [0, 1]
    assert len(ids()) == 9
    r = cli("partitions", "-n", namespace, "--status", "failed")
    assert "boom" in r.output and "501..600" in r.output
    assert cli("partitions", "-n", namespace, "--status", "lost").exit_code == 2


# -------------------------------------------------------------------- gaps

def test_gaps(cli, namespace, state):
    out = as_json(cli("gaps", "-n", namespace, "--json"))
    (d,) = out["namespaces"]
    assert [(g["min_id"], g["max_id"], g["has_data"]) for g in d["gaps"]] == [(701, 800, None)]
    assert d["failed_total"] == 1 and d["failed"][0]["partition_id"] == 5
    assert d["mode"] == "full" and d["fallback_reason"]  # first check
    again = as_json(cli("gaps", "-n", namespace, "--json"))["namespaces"][0]
    assert again["mode"] == "incremental" and again["gaps"] == d["gaps"]
    full = as_json(cli("gaps", "-n", namespace, "--json", "--full"))["namespaces"][0]
    assert full["mode"] == "full" and full["gaps"] == d["gaps"]
    r = cli("gaps", "-n", namespace)
    assert "701" in r.output and "800" in r.output and "failed for good" in r.output


def test_gaps_fill_needs_a_planner(cli, namespace, state):
    r = cli("gaps", "-n", namespace, "--fill")
    assert r.exit_code == 1 and "planner" in r.output


# ------------------------------------------------------------ retry-failed

def test_retry_failed(cli, namespace, state):
    st, _ = state
    out = as_json(cli("retry-failed", "-n", namespace, "--json"))
    assert out["namespaces"][0]["requeued"] == [5]
    assert st.get_partition(5).status == "pending"
    r = cli("retry-failed", "-n", namespace)
    assert r.exit_code == 0 and "re-queued 0" in r.output


# ----------------------------------------------------------------- breaker

def test_breaker_show_and_reset(cli, redis_client, namespace):
    st = HashPartitionStrategy(redis_client, namespace,
                               ElkSettings(circuit_breaker_consecutive_failures=2))
    st.create_partitions_if_not_exist(
        [{"partition_id": i, "min_id": i * 10 + 1, "max_id": i * 10 + 10} for i in range(3)])
    for pid in (0, 1):
        c = st.claim(pid, "node-a")
        st.fail_partition(pid, "node-a", c.fence, "down")
    out = as_json(cli("breaker", "-n", namespace, "--json"))
    b = out["namespaces"][0]
    assert b["state"] == "open" and b["trips"] == 1 and "consecutive" in b["reason"]
    assert b["reopens_in"] > 0
    assert "open" in cli("breaker", "-n", namespace).output
    # while open, claims are refused
    assert st.claim(2, "node-a").code == "breaker"
    r = cli("breaker", "-n", namespace, "reset")  # namespace given to the group
    assert r.exit_code == 0 and "open -> closed" in r.output
    b = as_json(cli("breaker", "-n", namespace, "--json"))["namespaces"][0]
    assert b["state"] == "closed" and b["failures_in_window"] == 0
    assert st.claim(2, "node-a").ok
    assert cli("breaker", "reset", "-n", namespace).exit_code == 0


# ------------------------------------------------------------------- watch

def test_watch_until_done(cli, redis_client, namespace):
    st = HashPartitionStrategy(redis_client, namespace)
    st.create_partitions_if_not_exist(
        [{"partition_id": i, "min_id": i * 10 + 1, "max_id": i * 10 + 10} for i in range(3)])

    def work():
        for pid in range(3):
            time.sleep(0.3)
            complete(st, pid, items=10)

    t = threading.Thread(target=work)
    t.start()
    t0 = time.monotonic()
    r = cli("watch", "-n", namespace, "--interval", 0.1, "--timeout", 30)
    t.join()
    assert r.exit_code == 0, r.output
    assert time.monotonic() - t0 < 20
    assert f"{namespace}: 3/3 completed, 0 failed, 0 remaining" in r.output


def test_watch_exit_codes(cli, namespace, state):
    st, _ = state
    r = cli("watch", "-n", namespace, "--interval", 0.1, "--timeout", 0.3)
    assert r.exit_code == 3 and "timed out" in r.output
    # finish everything except the failed partition: done, with failures
    c = st.get_partition(4)
    st.complete_partition(4, "node-b", c.fence, 1)
    for pid in (6, 8, 9):
        complete(st, pid)
    r = cli("watch", "-n", namespace, "--interval", 0.1, "--timeout", 10)
    assert r.exit_code == 1 and "1 partition(s) failed" in r.output


def test_watch_prints_plain_lines_without_a_terminal(cli, namespace, state):
    # click's runner is not a terminal: periodic plain lines, failures in each
    r = cli("watch", "-n", namespace, "--interval", 0.05, "--every", 0.1, "--timeout", 0.6)
    assert r.exit_code == 3, r.output
    lines = [x for x in r.output.splitlines() if f" {namespace}: 4/9 completed (44.4%)" in x]
    assert len(lines) >= 2, r.output
    assert all("1 failed, 1 running, 3 pending" in x for x in lines), lines


def test_watch_bar_shows_failed_partitions_on_a_terminal(redis_url, namespace, state):
    import pty
    import re
    import select
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "elk_celery.cli", "--redis-url", redis_url, "watch", "-n",
         namespace, "--interval", "0.1", "--timeout", "1.5"],
        stdin=child, stdout=child, stderr=child, cwd=ROOT, env={**os.environ, "COLUMNS": "160"})
    os.close(child)
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(main)
    assert proc.wait(10) == 3
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode(errors="replace"))
    # while it runs, the live bar counts completed ones only and shows the failed one
    bar = [x for x in screen.splitlines() if x.startswith(namespace) and "4/9" in x]
    assert bar and all("1 failed" in x for x in bar), screen
    assert "\x1b[31m" in out.decode(errors="replace")  # red: failures


def test_watch_waits_for_a_plan(cli, namespace):
    r = cli("watch", "-n", namespace, "--interval", 0.1, "--timeout", 0.3)
    assert r.exit_code == 3


# ------------------------------------------------------------------- reset

def test_reset_asks_first(cli, redis_client, namespace, state):
    st, _ = state
    r = cli("reset", "-n", namespace, input="n\n")
    assert r.exit_code == 1 and "Delete ALL elk state" in r.output
    assert redis_client.exists(st.keys.stats)
    r = cli("reset", "-n", namespace, input="y\n")
    assert r.exit_code == 0 and "reset" in r.output
    assert not redis_client.exists(st.keys.stats, st.keys.partitions, st.keys.bucket(0), st.keys.ids)


def test_reset_yes_and_namespace_required(cli, redis_client, namespace, state):
    st, _ = state
    assert cli("reset").exit_code == 2  # --namespace is required
    r = cli("reset", "-n", namespace, "--yes")
    assert r.exit_code == 0
    assert not redis_client.exists(st.keys.meta, st.keys.leader, st.keys.nodes)


# ----------------------------------------------------------------- compact

def test_compact(cli, namespace, state):
    st, _ = state
    out = as_json(cli("compact", "-n", namespace, "--json"))
    assert out["namespaces"][0] == {"namespace": namespace, "compacted": 4, "watermark": 401}
    s = as_json(cli("status", "-n", namespace, "--json", "--sample", 0))["namespaces"][0]
    assert s["counts"]["completed"] == 4 and s["counts"]["compacted"] == 4
    assert s["plan"]["watermark"] == 401


# ------------------------------------------------------------------ errors

def test_unreachable_redis_names_the_url(cli):
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    r = cli("status", "-n", "x", url=url)
    assert r.exit_code == 1
    assert f"cannot reach Redis at redis://:***@127.0.0.1:{url.rsplit(':', 1)[1]}" in r.output
    assert "s3cret" not in r.output


def test_bad_app_module(cli):
    r = cli("-A", "no_such_module_xyz", "status", "-n", "x")
    assert r.exit_code == 1 and "no_such_module_xyz" in r.output


# -------------------------------------------------- namespaces from the app

def test_namespaces_from_app_conf(redis_url, namespace, state, monkeypatch):
    from tests.cli import elk_cli_plain_app
    monkeypatch.setitem(elk_cli_plain_app.app.conf, "elk_namespaces", [namespace])
    monkeypatch.setitem(elk_cli_plain_app.app.conf, "elk_redis_url", redis_url)
    r = CliRunner().invoke(elk, ["-A", "tests.cli.elk_cli_plain_app", "status", "--json",
                                 "--sample", "0"])
    out = as_json(r)
    assert [s["namespace"] for s in out["namespaces"]] == [namespace]
    assert out["namespaces"][0]["counts"]["total"] == 9


def test_namespaces_listed_from_the_registry(cli, namespace, state):
    out = as_json(cli("status", "--json", "--sample", 0))
    assert namespace in [s["namespace"] for s in out["namespaces"]]


def test_as_a_celery_subcommand_in_process(redis_url, namespace, state, monkeypatch):
    from celery.bin.celery import celery

    from tests.cli import elk_cli_plain_app
    monkeypatch.setitem(elk_cli_plain_app.app.conf, "elk_redis_url", redis_url)
    if "elk" not in celery.commands:
        celery.add_command(elk)  # what the celery.commands entry point does
    r = CliRunner().invoke(celery, ["-A", "tests.cli.elk_cli_plain_app", "elk", "status",
                                    "-n", namespace, "--json", "--sample", "0"])
    assert as_json(r)["namespaces"][0]["leader"]["node_id"] == "node-a"


# ------------------------------------------------------------- subprocesses

def _env(redis_url, namespace):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["ELK_REDIS_URL"] = redis_url
    env["ELK_CLI_TEST_NAMESPACE"] = namespace
    env.pop("COLUMNS", None)
    return env


def _run(cmd, env, timeout=60):
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


CELERY_SHIM = ("import sys; from celery.bin.celery import celery, main; "
               "from elk_celery.cli import elk; celery.add_command(elk); "
               "sys.argv[0] = 'celery'; sys.exit(main())")


def _entry_point_installed(env) -> bool:
    probe = _run([sys.executable, "-c",
                  "import importlib.metadata as m; "
                  "print(any(e.name == 'elk' for e in m.entry_points(group='celery.commands')))"],
                 env)
    return probe.stdout.strip() == "True"


def _check_status(proc, namespace):
    assert proc.returncode == 0, proc.stderr
    (s,) = json.loads(proc.stdout)["namespaces"]
    assert s["namespace"] == namespace
    assert s["task"] == "tests.cli.elk_cli_app.process"  # the app's job was found
    assert s["leader"]["node_id"] == "node-a" and s["leader"]["epoch"] == s["epoch"] > 1
    assert s["counts"]["total"] == 9
    return s


def test_subprocess_python_m(redis_url, namespace, state):
    env = _env(redis_url, namespace)
    proc = _run([sys.executable, "-m", "elk_celery.cli", "-A", "tests.cli.elk_cli_app",
                 "status", "--json", "--sample", "0"], env)
    _check_status(proc, namespace)


def test_subprocess_celery_elk_status(redis_url, namespace, state):
    """`celery -A app elk status --json`: Celery loads the app, elk reads it."""
    env = _env(redis_url, namespace)
    proc = _run([sys.executable, "-c", CELERY_SHIM, "-A", "tests.cli.elk_cli_app", "elk",
                 "status", "--json", "--sample", "0"], env)
    _check_status(proc, namespace)


def test_subprocess_celery_console_script(redis_url, namespace, state):
    """The real `celery` command, through the installed entry point."""
    env = _env(redis_url, namespace)
    if not _entry_point_installed(env):
        pytest.skip("the celery.commands entry point 'elk' is not installed in this environment "
                    "(pip install -e .)")
    exe = Path(sys.executable).with_name("celery")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "celery"]
    proc = _run([*cmd, "-A", "tests.cli.elk_cli_app", "elk", "status", "--json",
                 "--sample", "0"], env)
    _check_status(proc, namespace)
    help_ = _run([*cmd, "--help"], env)
    assert "elk" in help_.stdout


def test_subprocess_gaps_fill_with_the_jobs_planner(redis_url, redis_client, namespace, state):
    st, _ = state
    env = _env(redis_url, namespace)
    env["ELK_CLI_TEST_MAX_ID"] = "1000"
    proc = _run([sys.executable, "-c", CELERY_SHIM, "-A", "tests.cli.elk_cli_app", "elk",
                 "gaps", "--full", "--fill", "--json"], env)
    assert proc.returncode == 0, proc.stderr
    (d,) = json.loads(proc.stdout)["namespaces"]
    assert [(g["min_id"], g["max_id"], g["has_data"]) for g in d["gaps"]] == [(701, 800, True)]
    assert [(p["min_id"], p["max_id"], p["status"]) for p in d["filled"]] == [
        (701, 800, "pending")]
    new = st.get_partition(d["filled"][0]["partition_id"])
    assert (new.min_id, new.max_id) == (701, 800)
    proc = _run([sys.executable, "-m", "elk_celery.cli", "-A", "tests.cli.elk_cli_app",
                 "gaps"], env)
    assert proc.returncode == 0 and "no gaps" in proc.stdout, proc.stdout + proc.stderr


def test_subprocess_gaps_fill_names_what_the_app_lacks(redis_url, namespace, state):
    env = _env(redis_url, namespace)
    proc = _run([sys.executable, "-m", "elk_celery.cli", "-A", "tests.cli.elk_cli_app",
                 "gaps", "--fill", "-n", "not-this-apps"], env)
    assert proc.returncode == 1
    assert ("not-this-apps: --fill needs the job's planner: the Celery app 'elk_cli_test' has "
            f"no partitioned job with that namespace (its jobs: {namespace})") in proc.stderr
    assert "autodiscover_tasks()" in proc.stderr


def test_subprocess_unreachable_redis(namespace):
    port = free_port()
    env = _env(f"redis://127.0.0.1:{port}/0", namespace)
    proc = _run([sys.executable, "-c", CELERY_SHIM, "-A", "tests.cli.elk_cli_app", "elk",
                 "status", "--sample", "0"], env)
    assert proc.returncode == 1
    assert f"cannot reach Redis at redis://127.0.0.1:{port}/0" in proc.stderr
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------- job control

def test_pause_resume_cancel(cli, namespace, state):
    r = cli("pause", namespace, "--stop-running")
    assert r.exit_code == 0 and "paused; running partitions stop at their next block" in r.output
    s = as_json(cli("status", "-n", namespace, "--json", "--sample", 0))["namespaces"][0]
    assert s["control"] == {"state": "paused", "stop_running": True}
    assert s["eta"]["state"] == "paused"
    assert "state: paused" in cli("status", "-n", namespace, "--sample", 0).output
    r = cli("watch", "-n", namespace, "--interval", 0.05, "--every", 0.1, "--timeout", 0.3)
    assert ", PAUSED" in r.output, r.output
    assert "running" in cli("resume", namespace).output
    assert as_json(cli("resume", namespace, "--json"))["state"] == "running"
    assert "cancelled" in cli("cancel", namespace).output
    r = cli("resume", namespace)
    assert r.exit_code == 1 and "cancelled for good" in r.output and "reset" in r.output
    s = as_json(cli("status", "-n", namespace, "--json", "--sample", 0))["namespaces"][0]
    assert s["control"]["state"] == "cancelled" and s["counts"]["total"] == 9


def test_set_shows_stores_and_refuses_settings(cli, namespace, state):
    r = cli("set", namespace)
    assert r.exit_code == 0 and f"{namespace}: task_window = none  (default)" in r.output
    r = cli("set", namespace, "max_retries=-2")
    assert r.exit_code == 1 and "max_retries" in r.output and "must be an integer >= 0" in r.output
    r = cli("set", namespace, "leader_queue=x")
    assert r.exit_code == 1 and "read at start only" in r.output
    out = as_json(cli("set", namespace, "max_retries=7", "max_partitions_per_second=2.5", "--json"))
    assert out["settings"]["max_retries"] == {"value": 7, "source": "runtime"}
    assert out["settings"]["max_partitions_per_second"] == {"value": 2.5, "source": "runtime"}
    s = as_json(cli("status", "-n", namespace, "--json", "--sample", 0))["namespaces"][0]
    assert s["settings"]["max_retries"] == {"value": 7, "source": "runtime"}
    assert "max_retries=7 (runtime)" in cli("status", "-n", namespace, "--sample", 0).output
    out = as_json(cli("set", namespace, "max_retries=", "--json"))
    assert out["settings"]["max_retries"] == {"value": 3, "source": "default"}


def test_partitions_show_in_partition_progress(cli, namespace, state):
    st, _ = state
    c = st.get_partition(4)  # running on node-b: it walked 40 of its 100 IDs
    st.record_block(4, "node-b", c.fence, done_through=440, size=20, items=37)
    out = as_json(cli("partitions", "-n", namespace, "--status", "running", "--json"))
    (p,) = out["namespaces"][0]["partitions"]
    assert (p["checkpoint"], p["block_end"], p["progress_items"], p["done_fraction"]) == (
        440, 460, 37, 0.4)
    r = cli("partitions", "-n", namespace, "--status", "running")
    assert "37 so far" in r.output and "40% (to 440)" in r.output, r.output
    r = cli("watch", "-n", namespace, "--interval", 0.05, "--every", 0.1, "--timeout", 0.3)
    assert "1 running (40% through)" in r.output, r.output


def test_partitions_show_a_split_and_its_parent(cli, namespace, state):
    st, store = state
    c = st.get_partition(4)  # running on node-b, 401..500
    st.record_block(4, "node-b", c.fence, done_through=420, size=20)
    split = store.split_partition(store.leader()[1], 4, c.fence, at=460)
    assert split.ok
    out = as_json(cli("partitions", "-n", namespace, "--json"))
    by_id = {p["partition_id"]: p for p in out["namespaces"][0]["partitions"]}
    assert (by_id[4]["max_id"], by_id[4]["splits"], by_id[4]["parent_id"]) == (460, 1, None)
    tail = by_id[split.tail_id]
    assert (tail["min_id"], tail["max_id"], tail["parent_id"]) == (461, 500, 4)
    r = cli("partitions", "-n", namespace, "--status", "pending")
    assert "from 4" in r.output, r.output
