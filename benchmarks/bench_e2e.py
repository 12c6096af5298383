"""End-to-end throughput: N no-op partitions through elk_celery vs N plain
Celery no-op tasks, on the same worker pool, in the same run.

    python benchmarks/bench_e2e.py [--n 3000] [--concurrency 2] [--rounds 2] [--strict]
    python3 dev.py bench                     # runs every benchmarks/*.py

One private ``redis-server`` (broker and elk state, nothing else on it) and
one ``celery worker -B -P prefork -c <concurrency>`` subprocess serve every
phase, alternated in each round:

* **plain**: the benchmark publishes N tasks ``bench.plain_noop`` with one
  producer; each task INCRs a counter; the clock runs from just before the
  first publish until the counter reads N.
* **plain-acks-late**: the same with ``acks_late=True`` (what partition tasks
  use), to tell Celery's own cost of late acks from elk's.
* **elk**: the job's planner (``RangePlanner(size=1)``, max ID read from Redis)
  is raised by N; the leader (woken by the planner's news at its next round,
  at most ``elk_leader_election_interval`` later) plans the partitions and
  keeps the broker fed as they complete; each claims, runs a no-op processor
  and completes. The clock runs from the creation of the round's first
  partition (Redis server time) until the stats read N more completed.
  **Every elk setting at its default.**
* **elk-tuned** (``--tuned``): the same with the settings earlier versions
  needed (task window = concurrency, a backlog and dispatch batch large
  enough that one round plans and sends the whole round), as a second job of
  the same app.

All times are Redis server time (``TIME``). The verdict compares elk's rate
(default settings) with plain Celery ``acks_late`` tasks (what partition
tasks are) against the target of 0.9x; the ratio to plain Celery with its
default options is printed too. Each phase
also reports CPU per task (the worker's process group from /proc, Redis'
``INFO cpu``, and the producer's publishing for the plain phases), which stays
meaningful on a busy machine where wall-clock rates do not.

``ELK_BENCH_REDIS_URL`` makes it use that Redis instead of a private one.
``--profile DIR`` writes a cProfile (CPU time) of every worker process;
``--leader-thread`` leads from a thread of the worker's main process
(``elk_leader_process = False``), to compare with the leader process.

This module is also the worker's app (``celery -A bench_e2e``), configured
from ``ELK_BENCH_*`` environment variables set by the benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from celery import Celery

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import _procs  # noqa: E402 - benchmarks/_procs.py, beside this script
from elk_celery import Elk, Hooks, RangePlanner, get_elk, partitioned_task  # noqa: E402

TARGET = 0.9  # elk (default settings) / plain acks_late
PHASES = ("plain", "elk", "plain-acks-late", "elk-tuned")
URL = os.environ.get("ELK_BENCH_REDIS_URL") or "redis://127.0.0.1:6379/15"
NS = os.environ.get("ELK_BENCH_NS") or "bench-e2e"
CONCURRENCY = int(os.environ.get("ELK_BENCH_CONCURRENCY") or 2)
BIG = int(os.environ.get("ELK_BENCH_BIG") or 100_000)
MAX_KEY = f"{NS}:max_id"        # the elk job's planner reads its max ID here
TUNED_MAX_KEY = f"{NS}:tuned_max_id"
PLAIN_KEY = f"{NS}:plain_done"  # plain tasks INCR this
LEADER_KEY = f"{NS}:leader"     # seconds the leader spent planning and sending


class LeaderTimes(Hooks):
    """Adds up the leader's planning and dispatch time (in the worker)."""

    def on_planned(self, namespace: str, *, created: int, duration: float, **_: Any) -> None:
        if created:
            client().hincrbyfloat(LEADER_KEY, "plan_s", duration)
            client().hincrby(LEADER_KEY, "planned", created)

    def on_dispatched(self, namespace: str, *, sent: int, duration: float) -> None:
        client().hincrbyfloat(LEADER_KEY, "dispatch_s", duration)
        client().hincrby(LEADER_KEY, "sent", sent)


app = Celery("bench_e2e", broker=URL)
app.conf.update(
    task_default_queue=NS,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
# only what a flag asks for: every other elk setting keeps its default
if os.environ.get("ELK_BENCH_METRICS_PORT"):
    app.conf.elk_metrics_port = int(os.environ["ELK_BENCH_METRICS_PORT"])
if os.environ.get("ELK_BENCH_LEADER_THREAD"):
    app.conf.elk_leader_process = False
Elk(app, hooks=[LeaderTimes()])
#: per-job settings of the elk-tuned phase (what earlier versions needed):
#: one round plans and sends a whole round
TUNED = dict(task_window=CONCURRENCY, dispatch_batch=BIG, max_pending_partitions=BIG,
             worker_partition_multiple=max(1, BIG // 200))


if os.environ.get("ELK_BENCH_PROFILE"):
    # --profile DIR: cProfile every worker process (main and pool children)
    import cProfile

    from celery import signals

    _profiler: cProfile.Profile | None = None

    def _profile_start(**_: Any) -> None:
        global _profiler
        _profiler = cProfile.Profile(time.thread_time)  # CPU time: robust to a busy machine
        _profiler.enable()

    def _profile_dump(who: str) -> None:
        if _profiler is not None:
            _profiler.disable()
            _profiler.dump_stats(os.path.join(os.environ["ELK_BENCH_PROFILE"], f"{who}-{os.getpid()}.prof"))

    signals.worker_init.connect(_profile_start, weak=False)
    signals.worker_shutdown.connect(lambda **_: _profile_dump("main"), weak=False)
    signals.worker_process_init.connect(_profile_start, weak=False)
    signals.worker_process_shutdown.connect(lambda **_: _profile_dump("child"), weak=False)


if os.environ.get("ELK_BENCH_TRACE"):
    # --trace DIR: every pool child appends "start end" (Unix time) per task
    from celery import signals as _signals

    _started: dict[str, float] = {}

    @_signals.task_prerun.connect(weak=False)
    def _trace_start(task_id: str = "", **_: Any) -> None:
        _started[task_id] = time.time()

    @_signals.task_postrun.connect(weak=False)
    def _trace_end(task_id: str = "", task: Any = None, **_: Any) -> None:
        t0 = _started.pop(task_id, None)
        if t0 is not None and task is not None and task.name.startswith("bench."):
            with open(os.path.join(os.environ["ELK_BENCH_TRACE"], f"{os.getpid()}.txt"), "a") as f:
                f.write(f"{t0:.6f} {time.time():.6f}\n")


def trace_summary(trace_dir: str, since: float) -> str:
    """Per pool child: tasks, mean busy ms per task, mean idle ms between tasks."""
    out = []
    for name in sorted(os.listdir(trace_dir)):
        rows = [tuple(map(float, line.split())) for line in open(os.path.join(trace_dir, name))]
        rows = sorted(r for r in rows if r[0] >= since)
        if len(rows) < 2:
            continue
        busy = statistics.mean(e - s for s, e in rows) * 1000
        idle = statistics.mean(rows[i + 1][0] - rows[i][1] for i in range(len(rows) - 1)) * 1000
        out.append(f"child {name[:-4]}: {len(rows)} tasks, busy {busy:.2f} ms, idle {idle:.2f} ms")
    return "; ".join(out)


def client() -> redis.Redis:
    return _procs.client(URL)


def current_max_id() -> int:
    return int(client().get(MAX_KEY) or 0)


@app.task(name="bench.plain_noop", ignore_result=True)
def plain_noop(i: int) -> None:
    client().incr(PLAIN_KEY)


@app.task(name="bench.plain_noop_acks_late", ignore_result=True, acks_late=True)
def plain_noop_acks_late(i: int) -> None:
    client().incr(PLAIN_KEY)


@partitioned_task(namespace=NS, name="bench.elk_noop",
                  planner=RangePlanner(max_id=current_max_id, size=1))
def elk_noop(min_id: int, max_id: int, options: dict) -> int:
    return max_id - min_id + 1


@partitioned_task(namespace=f"{NS}-tuned", name="bench.elk_noop_tuned",
                  planner=RangePlanner(max_id=lambda: int(client().get(TUNED_MAX_KEY) or 0), size=1),
                  **TUNED)
def elk_noop_tuned(min_id: int, max_id: int, options: dict) -> int:
    return max_id - min_id + 1


# ------------------------------------------------------------------ the run

def server_now(r: redis.Redis) -> float:
    sec, usec = r.time()
    return sec + usec / 1e6


def wait_until(pred: Any, timeout: float, what: str, poll: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)


def group_cpu_seconds(pgid: int) -> tuple[float, float]:
    """user + system CPU of every live process in process group ``pgid``
    (Linux): (the group leader, i.e. the worker's main process; the rest)."""
    tick = os.sysconf("SC_CLK_TCK")
    main = total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after "pid (comm)": state ppid pgrp ... utime(12) stime(13)
        if int(fields[2]) == pgid:
            used = int(fields[11]) + int(fields[12])
            total += used
            if int(d.name) == pgid:
                main = used
    return main / tick, (total - main) / tick


class Bench:
    def __init__(self, url: str, n: int, timeout: float, worker: subprocess.Popen, log: Path) -> None:
        self.r = redis.Redis.from_url(url)
        self.n, self.timeout, self.worker, self.log = n, timeout, worker, log
        self.stores = {"elk": get_elk(app).store(NS), "elk-tuned": get_elk(app).store(f"{NS}-tuned")}
        self.store = self.stores["elk"]
        self.publish_cpu = 0.0
        self.leader = (0.0, 0.0, 0)
        #: of the last elk round: seconds from the first creation to the first
        #: completion, and completions within its first second
        self.start: dict[str, float] = {}

    def check_worker(self) -> None:
        if self.worker.poll() is not None:
            raise RuntimeError(f"the worker exited ({self.worker.returncode}); log tail:\n"
                               + "\n".join(self.log.read_text(errors="replace").splitlines()[-30:]))

    def _wait(self, pred: Any, what: str) -> None:
        def ok() -> bool:
            self.check_worker()
            return pred()
        wait_until(ok, self.timeout, what, poll=0.02)

    def cpu(self) -> tuple[float, float, float]:
        """CPU seconds so far: (the worker's main process; its pool children
        and beat; redis-server)."""
        info = self.r.info("cpu")
        main, rest = group_cpu_seconds(self.worker.pid)
        return main, rest, float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def plain(self, n: int, task: Any = plain_noop) -> float:
        """Seconds for n plain tasks, first publish to last completion."""
        self.r.set(PLAIN_KEY, 0)
        t0 = server_now(self.r)
        c0 = time.process_time()
        with app.producer_or_acquire() as producer:
            for i in range(n):
                task.apply_async((i,), producer=producer)
        self.publish_cpu = time.process_time() - c0
        self._wait(lambda: int(self.r.get(PLAIN_KEY) or 0) >= n, f"{n} plain tasks")
        return server_now(self.r) - t0

    def elk(self, n: int, kind: str = "elk") -> float:
        """Seconds for n more partitions: creation of the first to the last completion."""
        self.publish_cpu = 0.0  # the leader publishes, inside the worker
        store = self.stores[kind]
        s = store.strategy
        done0 = s.get_partition_stats().completed_count
        first_pid = int(self.r.hget(store.keys.meta, "next_pid") or 0)
        self.r.delete(LEADER_KEY)
        self.r.incrby(MAX_KEY if kind == "elk" else TUNED_MAX_KEY, n)
        store.wake("bench")  # the planner has news: the leader's next round now
        first: list[Any] = []

        def created() -> bool:  # read it at once: compaction may drop it later
            p = s.get_partition(first_pid)
            if p is not None:
                first.append(p.created_at.timestamp() if p.created_at else server_now(self.r))
            return bool(first)
        wait_until(created, self.timeout, f"the leader to plan partition {first_pid}", poll=0.002)
        self.start = {"first_done": -1.0, "done_1s": 0}

        def finished() -> bool:
            done = s.get_partition_stats().completed_count - done0
            since = time.time() - first[0]  # Redis runs on this machine: the same clock
            if done > 0 and self.start["first_done"] < 0:
                self.start["first_done"] = since
            if since <= 1.0:
                self.start["done_1s"] = done
            return done >= n
        self._wait(finished, f"{n} elk partitions")
        secs = server_now(self.r) - first[0]
        lt = {k.decode(): float(v) for k, v in self.r.hgetall(LEADER_KEY).items()}
        self.leader = (lt.get("plan_s", 0.0), lt.get("dispatch_s", 0.0), int(lt.get("sent", 0)))
        return secs


def start_worker(url: str, concurrency: int, workdir: Path, env_extra: dict[str, str],
                 prefetch: int | None = None) -> tuple[subprocess.Popen, Path]:
    log = workdir / "worker.log"
    env = {**os.environ, "ELK_BENCH_REDIS_URL": url, "ELK_BENCH_NS": NS,
           "ELK_BENCH_CONCURRENCY": str(concurrency), **env_extra,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), str(ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    args = ["worker", "-B",
           "--schedule", str(workdir / "beat-schedule"), "-P", "prefork", "-c", str(concurrency),
           "-n", f"bench-{os.getpid()}@%h", "-l", "WARNING", "--without-mingle", "--without-gossip",
           "--without-heartbeat"]
    if prefetch is not None:  # the same for every phase: plain Celery's baseline too
        args += ["--prefetch-multiplier", str(prefetch)]
    return _procs.start_celery("bench_e2e", args, cwd=workdir, env=env, log=log), log


def stop_worker(proc: subprocess.Popen, timeout: float = 15) -> None:
    # a warm shutdown first (not the pool children: they'd die), then what is left
    _procs.stop([proc], timeout)


def run_with_private_redis(argv: list[str]) -> int:
    """Start a private redis-server, then run the benchmark in a child
    process whose app is configured for it (the app reads its URL at import)."""
    from elk_celery._redis_server import RedisServer

    with RedisServer() as server:
        env = {**os.environ, "ELK_BENCH_REDIS_URL": server.url}
        child = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *argv], env=env)
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:  # the child got it too: let it stop its worker
                continue


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=int(os.environ.get("ELK_BENCH_N") or 3000),
                   help="tasks / partitions per phase (default 3000, env ELK_BENCH_N)")
    p.add_argument("--concurrency", type=int, default=2, help="prefork pool size (default 2)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of every phase (default 2)")
    p.add_argument("--no-acks-late", action="store_true", help="skip the plain acks_late phase")
    p.add_argument("--tuned", action="store_true",
                   help="also run elk-tuned: the per-job settings earlier versions needed")
    p.add_argument("--only", action="append", choices=PHASES, help="run only this phase (repeatable)")
    p.add_argument("--profile", metavar="DIR",
                   help="cProfile the worker's processes into DIR/*.prof (slows everything down)")
    p.add_argument("--trace", action="store_true",
                   help="print each pool child's mean busy and idle time per task")
    p.add_argument("--metrics", action="store_true", help="run the worker with elk_metrics_port set")
    p.add_argument("--leader-thread", action="store_true",
                   help="lead from a thread of the worker's main process (elk_leader_process = "
                        "False), to compare with the leader process")
    p.add_argument("--prefetch-multiplier", type=int, metavar="N",
                   help="start the worker with --prefetch-multiplier N (every phase; elk's "
                        "default is 1)")
    p.add_argument("--timeout", type=float, default=120, help="per phase (default 120 s)")
    p.add_argument("--strict", action="store_true", help="exit 1 when elk is below the target")
    p.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = p.parse_args(argv)
    if args.n > BIG:
        p.error(f"--n must be <= {BIG} (ELK_BENCH_BIG)")

    if not os.environ.get("ELK_BENCH_REDIS_URL"):
        return run_with_private_redis(sys.argv[1:] if argv is None else argv)
    return run(args)



def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="elk-bench-"))
    rates: dict[str, list[float]] = {k: [] for k in PHASES}
    cpu: dict[str, list[tuple[float, float, float]]] = {k: [] for k in PHASES}
    extra = {"ELK_BENCH_METRICS_PORT": "0"} if args.metrics else {}
    if args.leader_thread:
        extra["ELK_BENCH_LEADER_THREAD"] = "1"
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
        extra["ELK_BENCH_PROFILE"] = os.path.abspath(args.profile)
    if args.trace:
        extra["ELK_BENCH_TRACE"] = str(workdir / "trace")
        os.makedirs(extra["ELK_BENCH_TRACE"])
    wanted = [ph for ph in PHASES if (ph in args.only if args.only else
                                      not (ph == "plain-acks-late" and args.no_acks_late)
                                      and not (ph == "elk-tuned" and not args.tuned))]
    worker, log = start_worker(URL, args.concurrency, workdir, extra, args.prefetch_multiplier)
    try:
        b = Bench(URL, args.n, args.timeout, worker, log)
        print(f"bench_e2e: N={args.n}, one `celery worker -B -P prefork -c {args.concurrency}`, "
              f"Redis {URL}{', metrics on' if args.metrics else ''}", flush=True)
        if args.prefetch_multiplier is not None:
            print(f"  TUNED worker: --prefetch-multiplier {args.prefetch_multiplier} for every "
                  "phase (elk's default is 1); run without it for the default figures", flush=True)
        b._wait(lambda: bool(b.store.live_node_ids()), "the worker's elk node")
        # warm up: pool children import, connect and load the scripts
        b.plain(50)
        b.plain(50, plain_noop_acks_late)
        b.elk(50)
        if "elk-tuned" in wanted:
            b.elk(50, "elk-tuned")
        runs = {"plain": lambda: b.plain(args.n), "elk": lambda: b.elk(args.n),
                "plain-acks-late": lambda: b.plain(args.n, plain_noop_acks_late),
                "elk-tuned": lambda: b.elk(args.n, "elk-tuned")}
        for rnd in range(1, args.rounds + 1):
            for name in wanted:
                c0 = b.cpu()
                began = time.time()
                secs = runs[name]()
                c1 = b.cpu()
                main, pool, red = ((c1[i] - c0[i]) * 1000 / args.n for i in range(3))
                per = (main + pool, red, b.publish_cpu * 1000 / args.n)
                rates[name].append(args.n / secs)
                cpu[name].append(per)  # type: ignore[arg-type]
                print(f"  round {rnd}: {name:<16} {args.n} in {secs:6.2f}s = {args.n / secs:7.1f}/s;"
                      f"  CPU ms/task: worker {per[0]:.2f} (main {main:.2f} + pool {pool:.2f}), "
                      f"redis {per[1]:.2f}, producer {per[2]:.2f}",
                      flush=True)
                if args.trace:
                    print(f"           {trace_summary(extra['ELK_BENCH_TRACE'], began)}", flush=True)
                if name.startswith("elk"):
                    plan_s, send_s, sent = b.leader
                    where = "a thread of the main process" if args.leader_thread else "the leader process"
                    # on_dispatched: from a round's pick to its batch published (the
                    # outbox's wait included), summed over the batches
                    print(f"           leader: planning {plan_s:.2f}s, {sent} messages picked to "
                          f"published {send_s:.2f}s summed over batches ({1000 * send_s / max(sent, 1):.2f}"
                          f" ms per message), in {where}; "
                          f"first partition done {1000 * b.start['first_done']:.0f} ms after "
                          f"its creation, {b.start['done_1s']:.0f} done in the first second",
                          flush=True)
        stats = b.store.strategy.get_partition_stats()
    finally:
        stop_worker(worker)
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)

    c = stats.counters
    print(f"elk counters: claims {c.get('claims', 0)}, dispatched {c.get('dispatched', 0)}, "
          f"deferred (window) {c.get('deferred_window', 0)}, stale writes {stats.stale_writes}, "
          f"failed {stats.failed_count}")
    med = {k: statistics.median(v) for k, v in rates.items() if v}
    cost: dict[str, float] = {}
    for name in PHASES:
        if name in med:
            w, r, prod = (statistics.median(x[i] for x in cpu[name]) for i in range(3))
            cost[name] = w + r + prod
            print(f"{name:<16} {med[name]:7.1f}/s (median of {len(rates[name])});  CPU ms/task: "
                  f"worker {w:.2f} + redis {r:.2f} + producer {prod:.2f} = {cost[name]:.2f}")
    if "elk" not in med or "plain" not in med:
        return 0
    base = "plain-acks-late" if "plain-acks-late" in med else "plain"
    ratio = med["elk"] / med[base]
    ok = ratio >= TARGET
    for other in ("plain", "plain-acks-late"):
        if other in med:
            paired = [e / p for e, p in zip(rates["elk"], rates[other])]
            print(f"elk (default settings) / {other}, round by round (the machine's speed drifts "
                  "between rounds): " + ", ".join(f"{x:.2f}" for x in paired)
                  + f"; median {statistics.median(paired):.2f}")
    if "elk-tuned" in med:
        print(f"elk-tuned / {base}: {med['elk-tuned'] / med[base]:.2f}")
    print(f"CPU cost ratio (plain / elk CPU per task; what the rate ratio tends to on a CPU-bound "
          f"machine): {cost['plain'] / cost['elk']:.2f}")
    tuned = ("" if args.prefetch_multiplier is None
             else f" (TUNED worker: --prefetch-multiplier {args.prefetch_multiplier})")
    print(f"VERDICT{tuned}: elk_celery on default settings {med['elk']:.0f} partitions/s = {ratio:.2f}x "
          f"plain Celery {base} {med[base]:.0f} tasks/s (target >= {TARGET}x): "
          f"{'PASS' if ok else 'BELOW TARGET'}; {med['elk'] / med['plain']:.2f}x plain Celery "
          "with its default options")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "n": args.n, "concurrency": args.concurrency, "rates": rates, "median": med,
            "cpu_ms_per_task": cpu, "cpu_ms_per_task_median": cost, "ratio": ratio,
            "target": TARGET}, indent=2))
    return 1 if (args.strict and not ok) else 0


if __name__ == "__main__":
    sys.exit(main())
