"""Make docs/img/flower.png, flower_task.png and dashboard.png from a real run.

Starts, all on 127.0.0.1 and in a temporary folder:

* a private ``redis-server`` (elk_celery._redis_server.RedisServer);
* ``celery flower`` (without PROMETHEUS_MULTIPROC_DIR, as the README says);
* two prefork ``celery worker -E`` of tests/apps/jobapp.py, job ``orders``
  (IDs 1..80000 in partitions of 1000), each serving /metrics on its own port
  with its own PROMETHEUS_MULTIPROC_DIR;
* ``celery beat`` (the leader tick);
* ``prometheus`` scraping the two workers and Flower every second.

With headless Chromium it takes Flower's /tasks page when about two thirds of
the job is done, and, a few seconds after the job ends, the dashboard page
that monitoring/render_dashboard.py writes from that Prometheus. Every wait has a deadline; everything
started is stopped at the end, also on errors or Ctrl-C.

Needs: redis-server, prometheus, chromium (Debian: ``apt-get install
redis-server prometheus chromium``) and Flower (``pip install
'elk-celery[flower]'``). Takes about a minute:

    .venv/bin/python docs/make_screenshots.py [--keep-html]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "docs" / "img"
sys.path[:0] = [str(ROOT), str(ROOT / "monitoring")]

from elk_celery._redis_server import RedisServer  # noqa: E402
import render_dashboard  # noqa: E402

NS = "orders"
MAX_ID, SIZE = 80_000, 1000           # 80 partitions of 1000 IDs: kwargs min_id=1, max_id=1000, ...
SLEEP, WINDOW, CONCURRENCY = 2.0, 2, 2  # two workers: about 40 s of work
FLOWER_AT = 0.65                      # fraction of partitions completed at the Flower screenshot


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 5) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode()
    except OSError:
        return None


def wait_for(cond: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.25)


class Procs:
    """The processes started here, each in its own session (so its children can be
    signalled as a group), logging to a file in the work folder."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "wb")
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.started.append((name, p))
        return p

    def log(self, name: str, tail: int = 3000) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def check_alive(self) -> None:
        for name, p in self.started:
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with {p.returncode}:\n{self.log(name)}")

    def stop_all(self) -> None:
        """SIGTERM to each (workers drain their partitions), then SIGKILL to the group."""
        for _, p in reversed(self.started):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for _, p in reversed(self.started):
            try:
                p.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass
            try:  # the process and whatever it left in its session (pool children)
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    raise SystemExit("chromium is not installed (Debian: apt-get install chromium)")


def screenshot(browser: str, url: str, out: Path, tmp: Path, size: tuple[int, int],
               wait_ms: int = 0) -> None:
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=tmp))  # new and empty each time
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
           f"--screenshot={out}", f"--window-size={size[0]},{size[1]}"]
    if wait_ms:  # let the page's own requests (Flower's table) finish first
        cmd.append(f"--virtual-time-budget={wait_ms}")
    out.unlink(missing_ok=True)
    p = subprocess.Popen(cmd + [url], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        _, err = p.communicate(timeout=90)
    finally:  # chromium's helper processes share its session: end them all
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        p.wait()
    if not out.exists():
        raise RuntimeError(f"chromium wrote no {out} (exit {p.returncode}):\n{err[-2000:]}")


def prom_scalar(base: str, expr: str) -> float | None:
    body = get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    if not body:
        return None
    result = json.loads(body)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def run(tmp: Path, keep_html: bool) -> None:
    browser, prometheus = chromium(), shutil.which("prometheus")
    if prometheus is None:
        raise SystemExit("prometheus is not installed (Debian: apt-get install prometheus)")
    IMG.mkdir(parents=True, exist_ok=True)
    procs = Procs(tmp)
    (tmp / "redis").mkdir()
    redis_server = RedisServer(dir=str(tmp / "redis")).start()
    try:
        base_env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        base_env.update({
            "PYTHONPATH": str(ROOT), "ELK_REDIS_URL": redis_server.url, "ELK_TEST_NS": NS,
            "ELK_TEST_MAX_ID": str(MAX_ID), "ELK_TEST_SIZE": str(SIZE),
            "ELK_TEST_WINDOW": str(WINDOW), "ELK_TEST_SLEEP": str(SLEEP),
            "ELK_TEST_BEAT_FILE": str(tmp / "beat-schedule"),
            "FLOWER_UNAUTHENTICATED_API": "true"})
        celery = [sys.executable, "-m", "celery", "-A", "tests.apps.jobapp"]

        flower_port = free_port()
        procs.start("flower", celery + ["flower", f"--port={flower_port}", "--address=127.0.0.1"],
                    base_env)
        flower = f"http://127.0.0.1:{flower_port}"
        wait_for(lambda: procs.check_alive() or get(f"{flower}/healthcheck"), 60, "Flower")

        metrics_ports = []
        for name in ("w1", "w2"):
            port = free_port()
            metrics_ports.append(port)
            mpdir = tmp / f"prom-{name}"
            mpdir.mkdir()
            env = {**base_env, "PROMETHEUS_MULTIPROC_DIR": str(mpdir),
                   "ELK_TEST_SETTINGS": json.dumps({"metrics_port": port})}
            procs.start(name, celery + ["worker", "-E", "-n", f"{name}@%h", "-c", str(CONCURRENCY),
                                        "-P", "prefork", "--without-gossip", "--without-mingle",
                                        "-l", "INFO", "-Q", NS], env)

        prom_port = free_port()
        (tmp / "prometheus.yml").write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": "elk-workers",
                 "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in metrics_ports]}]},
                {"job_name": "flower", "static_configs": [{"targets": [f"127.0.0.1:{flower_port}"]}],
                 # as monitoring/prometheus/prometheus.yml: no per-partition series
                 "metric_relabel_configs": [{"source_labels": ["task"], "regex": r".+\[-?[0-9]+\.\.-?[0-9]+\]",
                                             "action": "drop"}]}]}))
        procs.start("prometheus", [prometheus, f"--config.file={tmp / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={tmp / 'tsdb'}",
                                   f"--web.listen-address=127.0.0.1:{prom_port}"], base_env)
        prom = f"http://127.0.0.1:{prom_port}"
        wait_for(lambda: procs.check_alive() or get(f"{prom}/-/ready"), 60, "Prometheus")
        for port in metrics_ports:
            wait_for(lambda: procs.check_alive() or get(f"http://127.0.0.1:{port}/metrics"), 60,
                     f"a worker's /metrics on port {port}")
        started = time.monotonic()
        procs.start("beat", celery + ["beat", "-s", str(tmp / "beat-schedule"), "-l", "INFO"],
                    base_env)

        partitions = MAX_ID // SIZE
        completed = (f'sum(max by (namespace) (elk_cluster_partitions{{namespace="{NS}",'
                     f'status="completed"}}))')

        def at_least(fraction: float) -> bool:
            procs.check_alive()
            return (prom_scalar(prom, completed) or 0) >= fraction * partitions

        # Flower mid-run: started and finished partitions; the dashboard once the job is
        # done (its Partitions/Progress/ETA stats reduce the status label away with
        # `max by (namespace)`, so they are only right when one status holds everything)
        wait_for(lambda: at_least(FLOWER_AT), 240, f"{FLOWER_AT:.0%} of {partitions} partitions")
        screenshot(browser, f"{flower}/tasks", IMG / "flower.png", tmp, (1400, 900), wait_ms=8000)
        # one partition's page: the job's task name, its range in the kwargs
        tasks = json.loads(get(f"{flower}/api/tasks?taskname=tests.apps.jobapp.job"
                               "&state=SUCCESS&limit=200") or "{}")
        done = [uid for uid, t in tasks.items() if str(t.get("result")).startswith("'done")]
        if done:  # a partition that did the work (not a duplicate message's no-op)
            screenshot(browser, f"{flower}/task/{done[0]}", IMG / "flower_task.png",
                       tmp, (1400, 900), wait_ms=4000)
        wait_for(lambda: at_least(1.0), 240, f"all {partitions} partitions")
        time.sleep(4)  # a few more scrapes after the end
        page = tmp / "dashboard.html"
        page.write_text(render_dashboard.render(
            prom, namespace=NS, rate_interval="10s",
            range_=f"{int(time.monotonic() - started) + 10}s"))
        screenshot(browser, page.as_uri(), IMG / "dashboard.png", tmp,
                   (1400, render_dashboard.page_height()))
        if keep_html:
            shutil.copy(page, IMG / "dashboard.html")
        for png in ("flower.png", "flower_task.png", "dashboard.png"):
            print(f"wrote {IMG / png} ({(IMG / png).stat().st_size // 1024} KB)")
    except BaseException:
        for name, _ in procs.started:
            print(f"--- {name}.log\n{procs.log(name)}", file=sys.stderr)
        raise
    finally:
        procs.stop_all()
        redis_server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep-html", action="store_true", help="also keep docs/img/dashboard.html")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="elk-screenshots-"))
    try:
        run(tmp, args.keep_html)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
