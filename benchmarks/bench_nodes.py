"""Hundreds of nodes on one Redis: does coordination stay correct and cheap?

    python benchmarks/bench_nodes.py [--nodes 10,50,200] [--seconds 10]

Two private ``redis-server``s: one holds elk's state (its ``INFO cpu`` is
what the figures charge), the other is the Celery broker. A real leader (the
worker's :class:`~elk_celery.leader.loop.LeaderLoop`, in this process) plans
and dispatches an endless job. ``--processes`` child processes host the
simulated nodes, one thread each; every node is a worker of one pool slot:

* it registers and heartbeats with the bootstep's own ``Heartbeat``;
* it pops the partition task messages the leader sent from the broker
  (BRPOP on the queue, as kombu's Redis transport stores them) and runs each
  through ``run_partition`` -- the worker's task body: the claim on the
  process line, the lease keeper, the processor, the completion sent on the
  line and settled later;
* its leases are renewed by the process's lease keeper; each process also
  calls ``keeper.renew_now()`` every ``--renew-every`` seconds (default: the
  heartbeat interval, the keeper's own pace), so renewals happen at all
  with partitions shorter than that.

A node is a thread, not a process: the worker module's ``node_id()`` is
pointed at a thread-local (the only change to the worker's code path), and
each node has a store of its own (its own line, as a pool process has).

Printed per node count: completed partitions/s, claim p50/p99 (the claim
hook's duration), leader round p50/p99/max (rounds that led), Redis CPU
(user + sys of the state server) per partition, and a ledger check: every
processor run is logged with its fence and times, and two runs of one
partition that overlap in time are a double owner; the stats' completed
count must equal the recount (completed partitions stored + compacted) and
the completions the nodes saw accepted. Last, the rate at the largest node
count as a share of the rate at the smallest, per unit of Redis CPU.

Targets (issue 14): 0 double owners; leader round <= 20 ms (p50; p99 is
printed beside it) at 200 nodes; that share >= 0.8. The round is what the
leader's loop thread does; the messages it picked are published by its
outbox thread after it (leader/outbox.py), timed from the pick.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from celery import Celery  # noqa: E402

from elk_celery import Elk, Hooks, RangePlanner, get_elk, partitioned_task  # noqa: E402

NS = "bench-nodes"
QUEUE = "bench-nodes"
SIZE = 100
TARGET_ROUND_MS, TARGET_SHARE = 20.0, 0.8
STATE_URL = os.environ.get("ELK_BENCH_STATE_URL", "redis://127.0.0.1:6379/14")
BROKER_URL = os.environ.get("ELK_BENCH_BROKER_URL", "redis://127.0.0.1:6379/13")
#: the processor's sleep: set per node count by the parent (see --load)
WORK_MS = 0.0
HEARTBEAT = float(os.environ.get("ELK_BENCH_HEARTBEAT", "10"))

#: processor runs of this process: (partition id, fence, node, start, end)
RUNS: list[tuple[int, int, str, float, float]] = []
_runs_lock = threading.Lock()


class Recorder(Hooks):
    """Claim durations (node processes) and leader round times (the leader)."""

    def __init__(self) -> None:
        self.claims: list[float] = []
        self.rounds: list[float] = []
        self.round_cpu: list[float] = []
        #: seconds from a round's pick to its messages published (the leader's outbox)
        self.publish_lag: list[float] = []
        self._cpu_at = 0.0
        #: min ID of each partition whose completion Redis accepted (as reported)
        self.accepted: list[int] = []
        #: operation -> [calls, seconds] (--profile)
        self.calls: dict[str, list[Any]] = {}

    def on_claim(self, namespace: str, node: str, task: str, code: str, *,
                 duration: float, queued: float | None = None) -> None:
        self.claims.append(duration)

    def on_leader_tick(self, namespace: str, node: str, *, role: str, epoch: int,
                       duration: float) -> None:
        cpu = time.thread_time()  # the leader thread's CPU since its last tick
        if role in ("elected", "renewed"):
            self.rounds.append(duration)
            self.round_cpu.append(cpu - self._cpu_at)
        self._cpu_at = cpu

    def on_redis_call(self, operation: str, duration: float, error: BaseException | None) -> None:
        t = self.calls.setdefault(operation, [0, 0.0])
        t[0] += 1
        t[1] += duration

    def on_dispatched(self, namespace: str, *, sent: int, duration: float) -> None:
        t = self.calls.setdefault("dispatch+send", [0, 0.0])
        t[0] += sent
        t[1] += duration
        self.publish_lag.append(duration)

    def on_partition_done(self, namespace: str, node: str, task: str, *, outcome: str,
                          items: int, duration: float, min_id: int, max_id: int) -> None:
        if outcome == "completed":
            self.accepted.append(min_id)


recorder = Recorder()
app = Celery("bench_nodes", broker=BROKER_URL)
app.conf.update(task_default_queue=QUEUE, broker_connection_retry_on_startup=True,
                elk_redis_url=STATE_URL, elk_heartbeat_interval=HEARTBEAT, elk_task_window=1)
Elk(app, hooks=[recorder])


@partitioned_task(namespace=NS, name="bench.nodes", bind=True,
                  planner=RangePlanner(max_id=10**15, size=SIZE))
def nodes_job(ctx: Any, min_id: int, max_id: int, options: dict) -> int:
    t0 = time.monotonic()
    if WORK_MS:
        time.sleep(WORK_MS / 1000)
    with _runs_lock:
        RUNS.append((ctx.partition_id, ctx.fence, ctx.node_id, t0, time.monotonic()))
    return max_id - min_id + 1


# ------------------------------------------------------------ node processes

def node_process(names: list[str], stop: Any, ready: Any, out_path: str,
                 renew_every: float, work_ms: float) -> None:
    """Run the nodes ``names`` (threads) until ``stop`` is set; write what they saw."""
    global WORK_MS
    WORK_MS = work_ms
    from elk_celery.job import Job
    from elk_celery.worker import runner
    from elk_celery.worker.bootstep import Heartbeat
    from elk_celery.worker.lease import keeper

    elk = get_elk(app)
    spec = elk.job(NS).spec
    task = app.tasks[spec.name]
    local = threading.local()
    runner.node_id = lambda: local.node          # one node per thread
    runner.is_registered = lambda: True           # each heartbeats (below)
    broker = redis.Redis.from_url(BROKER_URL)
    beats: list[Heartbeat] = []

    def node(name: str) -> None:
        local.node = name
        job = Job(spec, elk)  # its own store, so its own line (a pool process's)
        while not stop.is_set():
            got = broker.brpop([QUEUE], timeout=0.5)
            if got is None:
                continue
            msg = json.loads(got[1])
            kw = json.loads(base64.b64decode(msg["body"]))[1]
            task.push_request(id=msg["headers"]["id"], called_directly=False, is_eager=False)
            try:
                runner.run_partition(task, job, kw["partition_id"], kw["min_id"],
                                     kw["max_id"], kw.get("dispatched_at"))
            finally:
                task.pop_request()

    for name in names:
        hb = Heartbeat(elk, name, {"host": name, "pid": os.getpid(), "pool": "bench"})
        hb.register()
        hb.start()
        beats.append(hb)
    threads = [threading.Thread(target=node, args=(n,), daemon=True) for n in names]
    for t in threads:
        t.start()
    ready.release()
    while not stop.wait(renew_every):
        keeper.renew_now()
    for t in threads:
        t.join(10)
    from elk_celery.worker import completion
    completion.settle_all()
    for hb in beats:
        hb.stop()
    with open(out_path, "w") as f:
        json.dump({"runs": RUNS, "claims": recorder.claims, "accepted": recorder.accepted}, f)


# ------------------------------------------------------------------ the run

def redis_cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def double_owners(runs: list[list[Any]]) -> int:
    """Pairs of runs of one partition under different fences that overlap in time."""
    by: dict[int, list[tuple[float, float, int]]] = {}
    for pid, fence, _node, t0, t1 in runs:
        by.setdefault(pid, []).append((t0, t1, fence))
    bad = 0
    for rs in by.values():
        rs.sort()
        for a, b in zip(rs, rs[1:]):
            if b[0] < a[1] and b[2] != a[2]:
                bad += 1
    return bad


def run_once(n_nodes: int, args: argparse.Namespace) -> dict[str, Any]:
    from elk_celery.leader.loop import LeaderLoop
    state, broker = redis.Redis.from_url(STATE_URL), redis.Redis.from_url(BROKER_URL)
    state.flushdb()
    broker.flushdb()
    recorder.rounds.clear()
    recorder.round_cpu.clear()
    recorder.publish_lag.clear()
    recorder.calls.clear()
    state.config_resetstat()
    elk = get_elk(app)
    job = elk.job(NS)
    job.leader_state = None
    ctx = mp.get_context("spawn")
    stop, ready = ctx.Event(), ctx.Semaphore(0)
    procs_n = max(1, min(args.processes, n_nodes))
    work_ms = args.work_ms if args.work_ms is not None else 1000 * n_nodes / args.load
    tmp = Path(tempfile.mkdtemp(prefix="elk-nodes-"))
    procs = []
    for k in range(procs_n):
        names = [f"node{i}@bench:{i:08x}" for i in range(k, n_nodes, procs_n)]
        p = ctx.Process(target=node_process, args=(names, stop, ready, str(tmp / f"{k}.json"),
                                                   args.renew_every, work_ms), daemon=True)
        p.start()
        procs.append(p)
    for _ in procs:
        if not ready.acquire(timeout=120):
            raise RuntimeError("a node process did not start within 120 s")
    leader = LeaderLoop(elk, "leader@bench:0000ffff")
    leader.start()
    try:
        time.sleep(args.warmup)
        s0 = job.store.strategy.get_partition_stats().completed_count
        c0, t0 = redis_cpu(state), time.monotonic()
        rounds_from = len(recorder.rounds)
        cpu_from = len(recorder.round_cpu)
        lag_start = len(recorder.publish_lag)
        time.sleep(args.seconds)
        s1 = job.store.strategy.get_partition_stats().completed_count
        c1, t1 = redis_cpu(state), time.monotonic()
        rounds = recorder.rounds[rounds_from:]
        round_cpu = recorder.round_cpu[cpu_from:]
        lags = recorder.publish_lag[lag_start:]
    finally:
        stop.set()
        for p in procs:
            p.join(60)
        leader.stop()
    runs: list[list[Any]] = []
    claims: list[float] = []
    accepted: list[int] = []
    for k in range(procs_n):
        d = json.loads((tmp / f"{k}.json").read_text())
        runs += d["runs"]
        claims += d["claims"]
        accepted += d["accepted"]
    st = job.store.strategy.get_partition_stats()
    stored_done = len(job.store.strategy.get_filtered_partitions("completed"))
    done = s1 - s0
    cpu = c1 - c0
    res = {
        "nodes": n_nodes, "rate": done / (t1 - t0), "cpu_per_part_us": cpu / done * 1e6 if done else float("nan"),
        "rate_per_cpu": done / cpu if cpu else float("nan"),
        "claim_p50": pct(claims, 0.5) * 1e3, "claim_p99": pct(claims, 0.99) * 1e3,
        "round_p50": pct(rounds, 0.5) * 1e3, "round_p99": pct(rounds, 0.99) * 1e3,
        "round_max": max(rounds) * 1e3 if rounds else float("nan"), "rounds": len(rounds),
        "round_cpu_p50": pct(round_cpu, 0.5) * 1e3, "round_cpu_p99": pct(round_cpu, 0.99) * 1e3,
        "work_ms": work_ms, "lag_p50": pct(lags, 0.5) * 1e3, "lag_p99": pct(lags, 0.99) * 1e3,
        "double": double_owners(runs),
        "dup_accepted": len(accepted) - len(set(accepted)),
        "completed": st.completed_count, "recount": stored_done + st.counters.get("compacted", 0),
        "accepted": len(set(accepted)), "stale": st.stale_writes,
        "redis_cpu_share": cpu / (t1 - t0),
    }
    print(f"  {n_nodes:>4} nodes, {work_ms:g} ms partitions: {res['rate']:7.0f} partitions/s | claim p50 "
          f"{res['claim_p50']:.2f} ms, p99 {res['claim_p99']:.2f} ms | leader round p50 {res['round_p50']:.1f} ms, "
          f"p99 {res['round_p99']:.1f} ms, max {res['round_max']:.1f} ms ({res['rounds']} rounds; its CPU "
          f"p50 {res['round_cpu_p50']:.1f} ms, p99 {res['round_cpu_p99']:.1f} ms; messages published "
          f"p50 {res['lag_p50']:.1f} ms, p99 {res['lag_p99']:.1f} ms after their pick) | "
          f"Redis CPU {res['cpu_per_part_us']:.0f} us/partition ({100 * res['redis_cpu_share']:.0f} % "
          f"of a core), {res['rate_per_cpu']:.0f} partitions per Redis CPU-second", flush=True)
    print(f"        double owners {res['double']}, completions accepted twice {res['dup_accepted']} | "
          f"stats completed {res['completed']} = recount {res['recount']} = accepted "
          f"{res['accepted']}: {'yes' if res['completed'] == res['recount'] == res['accepted'] else 'NO'} "
          f"| stale writes {res['stale']}", flush=True)
    if args.profile:
        print("        leader, per operation: " + ", ".join(
            f"{op} {n} x {1e3 * t / max(1, n):.2f} ms" for op, (n, t) in sorted(recorder.calls.items())))
        stats = state.info("commandstats")
        top = sorted(stats.items(), key=lambda kv: -kv[1]["usec"])[:6]
        print("        state Redis, by command: " + ", ".join(
            f"{k[len('cmdstat_'):]} {v['calls']} x {v['usec_per_call']:.0f} us" for k, v in top))
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", default="10,50,200", help="node counts (default 10,50,200)")
    p.add_argument("--seconds", type=float, default=10, help="measured seconds per node count")
    p.add_argument("--warmup", type=float, default=3, help="seconds before measuring")
    p.add_argument("--processes", type=int, default=4, help="processes hosting the nodes")
    p.add_argument("--load", type=float, default=400,
                   help="partitions/s the nodes would run together (each one's processor sleeps "
                        "nodes / load seconds, so every node count asks the same; default 400: "
                        "well within what this machine's 2 cores do)")
    p.add_argument("--work-ms", type=float, default=None,
                   help="processor sleep, ms, for every node count (instead of --load)")
    p.add_argument("--heartbeat", type=float, default=HEARTBEAT,
                   help="elk_heartbeat_interval, s (default 10, the setting's default)")
    p.add_argument("--renew-every", type=float, default=None,
                   help="each process renews its leases this often, s (default: the heartbeat "
                        "interval)")
    p.add_argument("--profile", action="store_true",
                   help="also print the leader's time per operation and Redis's per command")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args(argv)
    if "ELK_BENCH_STATE_URL" not in os.environ:
        # two private servers; the child sees their URLs before it builds its app
        from elk_celery._redis_server import RedisServer
        import subprocess
        with RedisServer() as state, RedisServer() as broker:
            env = {**os.environ, "ELK_BENCH_STATE_URL": state.url, "ELK_BENCH_BROKER_URL": broker.url,
                   "ELK_BENCH_HEARTBEAT": str(args.heartbeat)}
            return subprocess.call([sys.executable, str(Path(__file__).resolve()),
                                    *(sys.argv[1:] if argv is None else argv)], env=env)
    counts = [int(x) for x in args.nodes.split(",")]
    if args.renew_every is None:
        args.renew_every = HEARTBEAT
    print(f"bench_nodes: simulated nodes (threads in {args.processes} processes, task window 1 each), "
          f"a real leader, partitions of {SIZE} IDs, "
          f"heartbeat {HEARTBEAT:g} s; state Redis {STATE_URL}, broker {BROKER_URL}", flush=True)
    results = [run_once(n, args) for n in counts]
    ok = all(r["double"] == 0 and r["dup_accepted"] == 0 and r["completed"] == r["recount"]
             == r["accepted"] for r in results)
    lo, hi = results[0], results[-1]
    share = hi["rate_per_cpu"] / lo["rate_per_cpu"] if lo["rate_per_cpu"] else float("nan")
    print("VERDICT:")
    print(f"    double owners {sum(r['double'] for r in results)} (target 0), stats = recount: "
          f"{'PASS' if ok else 'FAIL'}")
    round_ok = hi["round_p50"] <= TARGET_ROUND_MS
    print(f"    leader round at {hi['nodes']} nodes: p50 {hi['round_p50']:.1f} ms (target <= "
          f"{TARGET_ROUND_MS:g} ms): {'PASS' if round_ok else 'BELOW TARGET'}; p99 "
          f"{hi['round_p99']:.1f} ms (its CPU p99 {hi['round_cpu_p99']:.1f} ms)")
    share_ok = share >= TARGET_SHARE
    print(f"    partitions per Redis CPU-second at {hi['nodes']} nodes = {share:.2f} x at "
          f"{lo['nodes']} nodes (target >= {TARGET_SHARE}): {'PASS' if share_ok else 'BELOW TARGET'}")
    all_ok = ok and round_ok and share_ok
    print(f"VERDICT: {'PASS' if all_ok else 'BELOW TARGET'}")
    return 1 if (args.strict and not all_ok) or not ok else 0


if __name__ == "__main__":
    sys.exit(main())
