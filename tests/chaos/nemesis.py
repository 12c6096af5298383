"""A job under faults, for the checker (tests/chaos/checker.py): a private
``redis-server`` with AOF (state and broker), 3 workers each reaching it
through a loopback proxy of its own (tests/netproxy.py), a beat, the run
ledger on another Redis, and a nemesis that at random intervals (seeded)
SIGKILLs a worker's process group (and starts a replacement), SIGSTOPs one
past its node expiry, kills the leader's worker, cuts or stalls one
worker's network, restarts Redis (SIGKILL; AOF with fsync always) and
purges the broker queue. Faults come one at a time, each healed before
the next.

The job grows while the nemesis runs (``<ns>:max_id`` on the ledger's
Redis, read by the planner), so there is work to break until the end:
``ChaosJob.run()`` feeds IDs linearly up to ``max_id`` over the fault
period, then heals everything and waits for the job to finish.

Used by tests/chaos/test_checker.py (short) and benchmarks/bench_chaos.py
(long).
"""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import redis

from elk_celery import HashPartitionStrategy
from elk_celery._redis_server import RedisServer
from elk_celery.store.namespace import NamespaceStore
from tests.chaos.checker import Fault, Verdict, check, read_runs
from tests.conftest import CeleryProc, Cluster, unique_namespace, wait_for
from tests.netproxy import TcpProxy
from tests.invariants import check_invariants

#: the chaos job's settings (besides tests/apps/jobapp.py's short defaults:
#: heartbeat 0.5 s, node expiry 2 s, leader lease 3 s): a lease much longer
#: than the node expiry (so only the node's expiry fences a cut worker, as
#: with the defaults), retries enough that no partition fails for good
#: from lost owners alone, no compaction (the checker reads every partition)
SETTINGS: dict[str, Any] = dict(partition_lock_expiry=20, max_retries=1000,
                                keep_completed=10_000_000)
HEARTBEAT, NODE_EXPIRY = 0.5, 2.0

#: relative weights of the faults
WEIGHTS = {"kill": 3, "pause": 3, "kill-leader": 2, "cut": 4, "stall": 3,
           "redis-restart": 2, "purge": 1}


class ChaosJob:
    """The cluster, the feeder of IDs and the nemesis of one run."""

    def __init__(self, tmp: Path, ledger_url: str, *, max_id: int = 200_000, size: int = 1000,
                 sleep: float = 1.0, workers: int = 3, concurrency: int = 2, window: int = 2,
                 seed: int | None = None, gap: tuple[float, float] = (1.0, 4.0),
                 log: Callable[[str], None] = print) -> None:
        self.tmp, self.ledger_url = tmp, ledger_url
        self.max_id, self.size, self.sleep = max_id, size, sleep
        self.n_workers, self.concurrency, self.window = workers, concurrency, window
        self.seed = seed if seed is not None else random.SystemRandom().randrange(1 << 32)
        self.rng = random.Random(self.seed)
        self.gap = gap
        self.log = log
        self.ns = unique_namespace("chaos")
        self.faults: list[Fault] = []
        self.origin = time.time()
        self._named = 0
        self.slots: list[CeleryProc | None] = [None] * workers
        self.names: list[str] = [""] * workers

    # -- setup -----------------------------------------------------------------
    def start(self) -> ChaosJob:
        self.server = RedisServer(appendonly=True, extra_args=["--appendfsync", "always"]).start()
        self.client = redis.Redis.from_url(self.server.url, socket_timeout=5,
                                           socket_connect_timeout=2)
        self.ledger = redis.Redis.from_url(self.ledger_url)
        self.ledger.set(f"{self.ns}:max_id", self._target(0.0))  # the first 5 %
        self.strategy = HashPartitionStrategy(self.client, self.ns)
        self.store = NamespaceStore(self.strategy)
        self.proxies = [TcpProxy(self.server.port).start() for _ in range(self.n_workers)]
        self.cluster = Cluster(self.server.url, self.ns, self.tmp, max_id=0, size=self.size,
                               window=self.window, sleep=self.sleep, **SETTINGS)
        self.cluster.env.update({"ELK_TEST_LEDGER_URL": self.ledger_url, "ELK_TEST_GROWING": "1"})
        self.cluster.beat()
        for i in range(self.n_workers):
            self._start_worker(i)
        return self

    def _start_worker(self, slot: int) -> None:
        self._named += 1
        name = f"w{self._named}"
        self.slots[slot] = self.cluster.worker(name, concurrency=self.concurrency,
                                               redis_url=self.proxies[slot].url())
        self.names[slot] = name

    def stop(self) -> None:
        """Stop whatever start() got to start; delete the ledger's keys."""
        proxies = getattr(self, "proxies", [])
        for p in proxies:
            p.heal()
        if hasattr(self, "cluster"):
            self.cluster.stop()
        for p in proxies:
            p.close()
        if hasattr(self, "server"):
            self.server.__exit__(None, None, None)
        if not hasattr(self, "ledger"):
            return
        nodes = {r.node for r in read_runs(self.ledger, self.ns)}
        self.ledger.delete(*[f"{self.ns}:{k}" for k in ("runs", "ledger", "maxrun", "max_id")],
                           *[f"{self.ns}:running:{n}" for n in nodes])

    # -- reading ---------------------------------------------------------------
    def stats(self) -> Any:
        return self.strategy.get_partition_stats()

    def finished(self) -> bool:
        try:
            s = self.stats()
        except redis.RedisError:
            return False
        return s.items_processed >= self.max_id and s.completed_count == s.total_count

    def _t(self) -> str:
        return f"{time.time() - self.origin:8.2f}s"

    # -- the feeder ------------------------------------------------------------
    def _target(self, elapsed: float) -> int:
        """The max ID at ``elapsed`` (a fraction of the fault period): 5 % at
        the start, then linearly to all of it, in whole partitions."""
        if elapsed >= 1.0:
            return self.max_id
        n = int(self.max_id * (0.05 + 0.95 * elapsed)) // self.size * self.size
        return max(self.size, min(n, self.max_id))

    def _feed(self, period: float, stop: threading.Event) -> None:
        t0 = time.monotonic()
        while not stop.is_set():
            target = self._target((time.monotonic() - t0) / period)
            self.ledger.set(f"{self.ns}:max_id", target)
            if target >= self.max_id:
                return
            stop.wait(0.5)

    # -- faults ----------------------------------------------------------------
    def _record(self, kind: str, worker: str | None, t0: float, t1: float, note: str = "") -> None:
        f = Fault(kind, worker, t0, t1, note)
        self.faults.append(f)
        self.log(f.line(self.origin))

    def _kill(self, slot: int, kind: str = "kill", note: str = "") -> None:
        proc, name = self.slots[slot], self.names[slot]
        assert proc is not None
        t = time.time()
        proc.signal(signal.SIGKILL, group=True)
        proc.wait(10)
        self._record(kind, name, t, t, note)
        self._start_worker(slot)

    def fault_kill(self) -> None:
        self._kill(self.rng.randrange(self.n_workers), note="SIGKILL of its process group")

    def fault_kill_leader(self) -> None:
        try:
            holder = self.store.leader()
        except redis.RedisError:
            holder = None
        slot = next((i for i, n in enumerate(self.names)
                     if holder and holder[0].split("@", 1)[0] == n), None)
        if slot is None:
            self.log(f"{self._t()}  (no worker leads right now: a plain kill instead)")
            return self.fault_kill()
        self._kill(slot, "kill-leader", f"SIGKILL of the leader (epoch {holder[1]})")

    def fault_pause(self) -> None:
        slot = self.rng.randrange(self.n_workers)
        proc, name = self.slots[slot], self.names[slot]
        assert proc is not None
        length = NODE_EXPIRY + self.rng.uniform(0.5, 2.5)
        t0 = time.time()
        proc.signal(signal.SIGSTOP, group=True)
        time.sleep(length)
        proc.signal(signal.SIGCONT, group=True)
        self._record("pause", name, t0, time.time(), f"SIGSTOP for {length:.1f}s")

    def _network(self, kind: str) -> None:
        slot = self.rng.randrange(self.n_workers)
        proxy, name = self.proxies[slot], self.names[slot]
        length = NODE_EXPIRY + self.rng.uniform(1.0, 4.0)
        t0 = time.time()
        proxy.cut() if kind == "cut" else proxy.stall()
        time.sleep(length)
        proxy.heal()
        self._record(kind, name, t0, time.time(), f"{length:.1f}s")

    def fault_cut(self) -> None:
        self._network("cut")

    def fault_stall(self) -> None:
        self._network("stall")

    def fault_redis_restart(self) -> None:
        down = self.rng.uniform(0.2, 1.5)
        t0 = time.time()
        self.server.kill()
        time.sleep(down)
        self.server.start(timeout=30)
        self._record("redis-restart", None, t0, time.time(), f"SIGKILL, {down:.1f}s down, AOF")

    def fault_purge(self) -> None:
        from kombu import Connection
        t = time.time()
        with Connection(self.server.url, connect_timeout=2) as conn:
            n = sum(conn.default_channel.queue_purge(q) or 0
                    for q in (self.ns, f"{self.ns}.leader"))
        self._record("purge", None, t, t, f"{n} message(s) purged")

    def one_fault(self) -> None:
        kinds = list(WEIGHTS)
        kind = self.rng.choices(kinds, weights=[WEIGHTS[k] for k in kinds])[0]
        getattr(self, "fault_" + kind.replace("-", "_"))()

    # -- the run -----------------------------------------------------------------
    def run(self, fault_period: float, finish_timeout: float = 300) -> Verdict:
        """Feed IDs and inject faults for ``fault_period`` seconds, heal, wait
        for the job to finish, check."""
        self.log(f"nemesis seed {self.seed}; namespace {self.ns}; {self.max_id:,} IDs in "
                 f"partitions of {self.size}, {self.sleep}s each, {self.n_workers} workers x "
                 f"{self.concurrency} processes, task window {self.window}")
        wait_for(lambda: self.ledger.llen(f"{self.ns}:runs") > 0 or None, 90,
                 lambda: "the first run\n" + self.cluster.logs())
        self.origin = time.time()
        stop = threading.Event()
        feeder = threading.Thread(target=self._feed, args=(fault_period, stop), daemon=True)
        feeder.start()
        deadline = time.monotonic() + fault_period
        try:
            while time.monotonic() < deadline:
                time.sleep(self.rng.uniform(*self.gap))
                if time.monotonic() >= deadline:
                    break
                self.one_fault()
        finally:
            stop.set()
            feeder.join(5)
            self.ledger.set(f"{self.ns}:max_id", self.max_id)
            for p in self.proxies:
                p.heal()
        self.log(f"{self._t()}  nemesis done ({len(self.faults)} faults); waiting for the job")
        wait_for(self.finished, finish_timeout,
                 lambda: f"the job to finish: {self.stats()}\n" + self.cluster.logs())
        # the runs still stopping (a fenced one reports its end) settle
        wait_for(lambda: self._settled(), 30, "every live run to end")
        return self.verdict()

    def _settled(self) -> bool:
        killed = {f.worker for f in self.faults if f.kind in ("kill", "kill-leader")}
        return all(r.end is not None or r.worker in killed
                   for r in read_runs(self.ledger, self.ns))

    def verdict(self) -> Verdict:
        self.log(f"{self._t()}  checking")
        return check(read_runs(self.ledger, self.ns), self.faults,
                     self.strategy.get_all_partitions(), self.stats(), self.max_id,
                     heartbeat=HEARTBEAT, now=time.time(),
                     recount=lambda: check_invariants(self.strategy), origin=self.origin)
