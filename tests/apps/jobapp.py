"""A Celery app for integration and chaos tests, configured by environment.

ELK_TEST_NS      namespace (also the Celery queue, so tests never share one)
ELK_TEST_MAX_ID  IDs 1..max_id;  ELK_TEST_SIZE  IDs per partition
ELK_TEST_GROWING "1": the max ID is read from ``<ns>:max_id`` on the ledger's
                 Redis at each planning (a job whose data keeps arriving)
ELK_TEST_WINDOW  task window ('' = the default: the pool size)
ELK_TEST_SLEEP   seconds each partition takes (each block, with ELK_TEST_BLOCK)
ELK_TEST_BLOCK   IDs per block: the processor walks partition.blocks(n) and
                 appends "lo-hi|node|fence|start" and "...|end" per block to
                 ``<ns>:blocks``; its ledger entry ends at the range's end
                 after the walk (a split may have shortened it)
ELK_TEST_FAIL    comma-separated min_ids whose partition raises
ELK_TEST_GARBAGE comma-separated min_ids whose partition returns garbage
ELK_TEST_SETTINGS JSON of extra elk_* settings
ELK_TEST_LEDGER_URL the Redis of the ledger (default ELK_REDIS_URL): tests
                 that cut a worker from its Redis keep the ledger apart
ELK_TEST_BROKER_URL the broker (default ELK_REDIS_URL): a one-server Redis when
                 ELK_REDIS_URL names a Redis Cluster or Sentinel
Every run that got through its work appends "min-max|node|fence" to the list
``<ns>:ledger`` and keeps the node's concurrent-run count in
``<ns>:running:<node>`` and its maximum in ``<ns>:maxrun`` (the cluster's in
``<ns>:running_all`` / ``<ns>:maxrun_all``), so tests can check coverage,
duplicates, the window and how busy the pool was. Every run, however it ends, also
appends two JSON events to ``<ns>:runs`` (wall-clock times, one clock for
every process of the machine): at its start
{"ev": "start", "run", "pid", "lo", "hi", "node", "fence", "t"} and at its end
{"ev": "end", "run", "t", "done", "error"} (``done``: its work was done;
``error``: the exception that ended it, e.g. "LeaseLost"). A run SIGKILLed
has no end event.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import redis
from celery import Celery

from elk_celery import Elk, RangePlanner, partitioned_task

URL = os.environ.get("ELK_REDIS_URL", "redis://127.0.0.1:6379/0")
NS = os.environ.get("ELK_TEST_NS", "jobapp")

app = Celery("jobapp", broker=os.environ.get("ELK_TEST_BROKER_URL") or URL)
app.conf.update(
    elk_redis_url=URL,
    task_default_queue=NS,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    beat_schedule_filename=os.environ.get("ELK_TEST_BEAT_FILE", f"/tmp/{NS}-beat"),
    elk_leader_queue=f"{NS}.leader",
    elk_heartbeat_interval=0.5,
    elk_node_expiry=2,
    elk_leader_election_interval=0.5,
    elk_leader_lock_expiry=3,
    elk_partition_lock_expiry=3,
    elk_allocation_interval=3,
    elk_defer_delay=0.2,
    elk_retry_backoff=0.2,
    elk_circuit_breaker_enabled=False,
)
app.conf.update({f"elk_{k}": v for k, v in json.loads(os.environ.get("ELK_TEST_SETTINGS", "{}")).items()})
Elk(app)

ledger = redis.Redis.from_url(os.environ.get("ELK_TEST_LEDGER_URL") or URL)
_ints = lambda name: {int(x) for x in os.environ.get(name, "").split(",") if x}  # noqa: E731
FAIL, GARBAGE = _ints("ELK_TEST_FAIL"), _ints("ELK_TEST_GARBAGE")
SLEEP = float(os.environ.get("ELK_TEST_SLEEP", "0"))
BLOCK = int(os.environ.get("ELK_TEST_BLOCK", "0"))

# INCR the node's and the cluster's running counts and keep the highest values seen
_ENTER = ledger.register_script("""
local n = redis.call('INCR', KEYS[1])
if n > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], n) end
local all = redis.call('INCR', KEYS[3])
if all > tonumber(redis.call('GET', KEYS[4]) or '0') then redis.call('SET', KEYS[4], all) end
return n""")
_WINDOW = os.environ.get("ELK_TEST_WINDOW", "1")


def _growing_max_id() -> int:
    return int(ledger.get(f"{NS}:max_id") or 0)


MAX_ID = _growing_max_id if os.environ.get("ELK_TEST_GROWING") == "1" else int(
    os.environ.get("ELK_TEST_MAX_ID", "1000"))


@partitioned_task(namespace=NS, bind=True, task_window=int(_WINDOW) if _WINDOW else None,
                  planner=RangePlanner(max_id=MAX_ID, size=int(os.environ.get("ELK_TEST_SIZE", "100"))))
def job(partition, min_id: int, max_id: int, options: dict) -> object:
    run, runs = uuid.uuid4().hex[:12], f"{NS}:runs"
    ledger.rpush(runs, json.dumps({
        "ev": "start", "run": run, "pid": partition.partition_id, "lo": min_id, "hi": max_id,
        "node": partition.node_id, "fence": partition.fence, "t": time.time()}))
    done, error = False, None
    running = f"{NS}:running:{partition.node_id}"
    try:
        _ENTER(keys=[running, f"{NS}:maxrun", f"{NS}:running_all", f"{NS}:maxrun_all"])
        try:
            if BLOCK:  # walk the range in blocks, each taking SLEEP
                walked = 0
                for lo, hi in partition.blocks(BLOCK):
                    ledger.rpush(f"{NS}:blocks", f"{lo}-{hi}|{partition.node_id}|{partition.fence}|start")
                    deadline = time.monotonic() + SLEEP
                    while time.monotonic() < deadline:
                        time.sleep(0.05)
                    walked += hi - lo + 1
                    partition.progress(walked)
                    ledger.rpush(f"{NS}:blocks", f"{lo}-{hi}|{partition.node_id}|{partition.fence}|end")
                deadline = 0.0
                max_id = partition.max_id  # the range's end now: a split may have shortened it
            else:
                deadline = time.monotonic() + SLEEP
            while time.monotonic() < deadline:  # in small steps, so a lost lease stops it
                time.sleep(0.05)
            if min_id in FAIL:
                raise RuntimeError(f"planned failure of {min_id}..{max_id}")
            ledger.rpush(f"{NS}:ledger", f"{min_id}-{max_id}|{partition.node_id}|{partition.fence}")
            done = True
            if min_id in GARBAGE:
                return "not a number"
            return max_id - min_id + 1
        finally:
            ledger.decr(running)
            ledger.decr(f"{NS}:running_all")
    except BaseException as exc:
        error = type(exc).__name__
        raise
    finally:
        end = json.dumps({"ev": "end", "run": run, "t": time.time(), "done": done, "error": error})
        try:
            ledger.rpush(runs, end)
        except BaseException:  # noqa: BLE001 - a LeaseLost landed in the write: once more
            ledger.rpush(runs, end)
