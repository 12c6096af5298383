"""The end-to-end demo: ``python -m example_project.demo`` (or ``python3 dev.py demo``).

1. uses the Redis at ``ELK_REDIS_URL`` (``dev.py demo`` starts a private one),
   or starts a private ``redis-server`` itself when that is unset;
2. creates a SQLite table of 200,000 records in a temp dir (``--rows``);
3. starts ``--workers`` ``celery worker`` processes of ``--concurrency`` each,
   and one ``celery beat`` (the leader tick);
4. shows a live progress bar read from the job's partition stats;
5. checks the table: every row processed, how many more than once, and the
   partitions/s and rows/s achieved.

Exit status: 0 when every row was processed, 1 when some row was missed,
2 when the job did not finish in ``--timeout`` seconds or a process failed.
Ctrl-C stops the workers (SIGTERM, then SIGKILL after a bound) and removes
the temp files.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m example_project.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=int(env("EXAMPLE_DEMO_ROWS") or 200_000),
                   help="rows in the table (default 200000, env EXAMPLE_DEMO_ROWS)")
    p.add_argument("--partition-size", type=int, default=1000, help="IDs per partition (default 1000)")
    p.add_argument("--workers", type=int, default=2, help="celery worker processes (default 2)")
    p.add_argument("--concurrency", type=int, default=2, help="pool processes per worker (default 2)")
    p.add_argument("--timeout", type=float, default=float(env("EXAMPLE_DEMO_TIMEOUT") or 100),
                   help="give up after this many seconds of processing (default 100)")
    p.add_argument("--db", help="SQLAlchemy URL of the database (default: SQLite in a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (database, logs)")
    args = p.parse_args(argv)
    if args.rows < 1 or args.partition_size < 1 or args.workers < 1 or args.concurrency < 1:
        p.error("--rows, --partition-size, --workers and --concurrency must be >= 1")
    return args


# ------------------------------------------------------------------ processes

@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _child_setup() -> None:
    # the child leads its own process group (so Ctrl-C in the terminal reaches
    # only the demo, which shuts the workers down in order; leftovers of the
    # group are SIGKILLed at the end) and gets SIGTERM if the demo dies
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: Ctrl-C/finally still clean up
        pass


class Processes:
    """The demo's child processes (celery workers and beat)."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir, self.env = workdir, env
        self.procs: list[Proc] = []

    def start(self, name: str, args: list[str]) -> Proc:
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "example_project.app", *args],
                cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_child_setup)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def dead(self) -> list[Proc]:
        return [p for p in self.procs if p.popen.poll() is not None]

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every worker and beat (a warm shutdown: running partitions
        finish or go back to pending), wait, then SIGKILL what is left."""
        for p in self.procs:
            # the main process only: a SIGTERM to its pool children would
            # kill the partitions they run instead of letting them finish
            with contextlib.suppress(ProcessLookupError):
                p.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs:
            # pool children or beat may outlive their parent: kill the group
            _signal_group(p.popen, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.popen.wait(5)


def _signal_group(popen: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, sig)  # the group we created with start_new_session


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    url = os.environ.get("ELK_REDIS_URL")
    if url:
        yield url
        return
    from elk_celery._redis_server import RedisServer
    with RedisServer() as server:
        print(f"started a private redis-server at {server.url}")
        yield server.url


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


# ----------------------------------------------------------------------- demo

def run(args: argparse.Namespace, workdir: Path, redis: str) -> int:
    db_url = args.db or f"sqlite:///{workdir / 'records.db'}"
    namespace = f"records-demo-{os.getpid()}"
    env = {**os.environ, "ELK_REDIS_URL": redis, "EXAMPLE_DB_URL": db_url,
           "EXAMPLE_NAMESPACE": namespace, "EXAMPLE_QUEUE": namespace,
           "EXAMPLE_PARTITION_SIZE": str(args.partition_size),
           "EXAMPLE_TASK_WINDOW": str(args.concurrency),
           "EXAMPLE_BEAT_SCHEDULE": str(workdir / "celerybeat-schedule"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    os.environ.update({k: env[k] for k in ("ELK_REDIS_URL", "EXAMPLE_DB_URL", "EXAMPLE_NAMESPACE",
                                           "EXAMPLE_QUEUE", "EXAMPLE_PARTITION_SIZE", "EXAMPLE_TASK_WINDOW")})
    # the app reads its configuration at import: import it only now
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn)

    from elk_celery import get_elk

    from . import seed
    from .app import app, engine

    console = Console()
    store = get_elk(app).store(namespace)
    store.reset()
    t0 = time.perf_counter()
    seed.create_table(engine, args.rows)
    console.print(f"[bold]elk_celery demo[/]: {args.rows:,} records in {db_url} "
                  f"(created in {time.perf_counter() - t0:.1f}s); Redis {redis}; "
                  f"namespace {namespace!r}")
    expected = math.ceil(args.rows / args.partition_size)

    procs = Processes(workdir, env)
    try:
        for i in range(1, args.workers + 1):
            procs.start(f"worker{i}", ["worker", "-c", str(args.concurrency), "-P", "prefork",
                                       "-n", f"demo{i}-{os.getpid()}@%h", "-l", "WARNING",
                                       "--without-mingle", "--without-gossip"])
        procs.start("beat", ["beat", "-l", "WARNING",
                             "--schedule", str(workdir / "celerybeat-schedule")])
        console.print(f"started {args.workers} workers x {args.concurrency} processes and beat; "
                      f"{expected} partitions of {args.partition_size} IDs to do")

        started = time.perf_counter()
        first_claim: float | None = None
        status = "timeout"
        columns = (TextColumn("[bold blue]partitions"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[detail]}"), TimeElapsedColumn())
        with Progress(*columns, console=console, refresh_per_second=8) as bar:
            task = bar.add_task("job", total=expected, detail="waiting for workers")
            while time.perf_counter() - started < args.timeout:
                s = store.strategy.get_partition_stats()
                if first_claim is None and s.counters.get("claims", 0):
                    first_claim = time.perf_counter()
                rate = ""
                if first_claim is not None:
                    secs = max(time.perf_counter() - first_claim, 1e-6)
                    rate = (f"{s.completed_count / secs:6.1f} partitions/s "
                            f"{s.items_processed / secs:9,.0f} rows/s")
                bar.update(task, completed=s.completed_count, detail=(
                    f"rows {s.items_processed:>9,}  running {s.in_flight}  pending {s.pending_count}"
                    f"  nodes {len(store.live_node_ids())}  {rate}"))
                if s.failed_count:
                    status = "failed"
                    break
                if s.completed_count >= expected and s.completed_count == s.total_count:
                    status = "done"
                    break
                if procs.dead():
                    status = "crashed"
                    break
                time.sleep(0.2)
        finished = time.perf_counter()
        stats = store.strategy.get_partition_stats()
    finally:
        console.print("stopping workers and beat ...")
        t_stop = time.perf_counter()
        crashed = procs.dead()
        procs.stop()
        console.print(f"stopped in {time.perf_counter() - t_stop:.1f}s")

    for p in crashed:
        console.print(f"[red]{p.name} exited early (exit {p.popen.returncode}); log tail:[/]\n{p.tail()}")
    if status == "failed":
        for part in store.strategy.get_filtered_partitions("failed", limit=3):
            console.print(f"[red]partition {part.partition_id} [{part.min_id}..{part.max_id}] "
                          f"failed:[/] {part.error}")

    # ------------------------------------------------------------- the check
    import sqlalchemy as sa
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT count(*), sum(CASE WHEN processed = 0 THEN 1 ELSE 0 END),"
            " sum(CASE WHEN processed > 1 THEN 1 ELSE 0 END), coalesce(sum(processed), 0),"
            " count(DISTINCT processed_by),"
            " sum(CASE WHEN result = length(payload) THEN 0 ELSE 1 END)"
            " FROM records")).one()
        by_node = conn.execute(sa.text(
            "SELECT processed_by, count(*) FROM records WHERE processed > 0"
            " GROUP BY processed_by ORDER BY processed_by")).all()
    rows, missed, dup_rows, writes, nodes, wrong = (int(x or 0) for x in row)
    secs = finished - (first_claim or started)
    total_secs = finished - started

    console.print()
    console.print(f"[bold]result[/] ({status}): {rows:,} rows; missed {missed:,}; "
                  f"processed more than once {dup_rows:,} ({writes - rows + missed:,} extra writes); "
                  f"wrong result {wrong:,}")
    console.print(f"partitions: {stats.completed_count}/{expected} completed, {stats.failed_count} failed, "
                  f"{stats.recovered} recovered, {stats.preempted} preempted, "
                  f"{stats.stale_writes} stale writes refused, "
                  f"{stats.counters.get('claims', 0)} claims, "
                  f"{stats.counters.get('dispatched', 0)} task messages")
    for node, n in by_node:
        console.print(f"  {node}: {n:,} rows")
    console.print(f"speed: {stats.completed_count / secs:,.1f} partitions/s, "
                  f"{stats.items_processed / secs:,.0f} rows/s over {secs:.1f}s of processing "
                  f"(first claim to last completion; {total_secs:.1f}s with worker start-up)")
    # one line for scripts and tests
    print(f"DEMO RESULT status={status} rows={rows} missed={missed} duplicates={dup_rows} "
          f"partitions={stats.completed_count}/{expected} seconds={secs:.2f} "
          f"partitions_per_s={stats.completed_count / secs:.1f} "
          f"rows_per_s={stats.items_processed / secs:.0f}",
          flush=True)
    if rows != args.rows or missed or wrong:
        console.print(f"[bold red]FAIL[/]: {missed:,} of {rows:,} rows were never processed")
        return 1
    if status != "done":
        console.print(f"[bold red]FAIL[/]: the job did not finish ({status})")
        return 2
    console.print("[bold green]OK[/]: every row was processed")
    return 0


def _remove_orphaned_workdirs() -> None:
    """Temp dirs of earlier demos that were killed before they could clean up."""
    for d in Path(tempfile.gettempdir()).glob("elk-demo-*-*"):
        pid = d.name.split("-")[2]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # run the same cleanup as Ctrl-C
    _remove_orphaned_workdirs()
    workdir = Path(tempfile.mkdtemp(prefix=f"elk-demo-{os.getpid()}-"))
    try:
        with redis_url() as url:
            return run(args, workdir, url)
    except KeyboardInterrupt:
        print("\ninterrupted: workers stopped", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
