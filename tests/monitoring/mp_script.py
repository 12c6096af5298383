"""A process tree like a prefork worker's, for test_multiprocess.py.

    PROMETHEUS_MULTIPROC_DIR=<dir> python -m tests.monitoring.mp_script NS N METHOD [KILLED [ALIVE]]

The main process prepares multiprocess mode (wipes the folder), heartbeats
once, then runs N real child processes (``multiprocessing`` with METHOD
'fork' or 'spawn'), each completing one partition through PrometheusHooks
and marking itself dead on exit as Celery's ``worker_process_shutdown``
does. KILLED more children claim a partition and are SIGKILLed mid-way (no
exit handler); ALIVE more claim one and are still running during the scrape.
It then serves /metrics, prints ``URL <url>`` and waits for stdin to close.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys

from prometheus_client.multiprocess import mark_process_dead

from elk_celery import ElkSettings
from elk_celery.metrics import PrometheusHooks, setup_multiprocess, start_metrics_server

NODE, TASK = "node-1", "tests.mp_task"


def complete_one(ns: str, i: int) -> None:
    h = PrometheusHooks()
    h.on_claim(ns, NODE, TASK, "ok", duration=0.001, queued=0.25)
    h.on_partition_done(ns, NODE, TASK, outcome="completed", items=10, duration=0.05,
                        min_id=i * 10, max_id=i * 10 + 9)
    h.on_redis_call("complete", 0.0002, None)
    mark_process_dead(os.getpid())  # what worker_process_shutdown does


def claim_then_hang(ns: str, ready) -> None:  # noqa: ANN001
    PrometheusHooks().on_claim(ns, NODE, TASK, "ok", duration=0.001)
    ready.set()
    signal.pause()


def main() -> None:
    ns, n, method = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    killed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    alive = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    setup_multiprocess(wipe=True)
    PrometheusHooks().on_heartbeat(ns, NODE, ok=True, duration=0.001, held=0, window=2)
    ctx = mp.get_context(method)
    procs = [ctx.Process(target=complete_one, args=(ns, i)) for i in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0, p.exitcode
    hanging = []
    for i in range(killed + alive):
        ready = ctx.Event()
        p = ctx.Process(target=claim_then_hang, args=(ns, ready))
        p.start()
        assert ready.wait(30)
        if i < killed:
            os.kill(p.pid, signal.SIGKILL)
            p.join(10)
        else:
            hanging.append(p)
    server = start_metrics_server(ElkSettings(metrics_port=0), [])
    print("URL", server.url, flush=True)
    sys.stdin.read()
    server.stop()
    for p in hanging:
        p.kill()
        p.join(10)


if __name__ == "__main__":
    main()
