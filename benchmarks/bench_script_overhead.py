"""What a Lua script call costs Redis before it does any work.

    python benchmarks/bench_script_overhead.py [--calls 3000] [--redis-url URL]

Every elk script is ``_lib.lua`` + a storage adapter (``_io_hash.lua`` or
``_io_simple.lua``) + the operation, and Redis runs the whole top level on
every call (defining the library's functions and tables) before the
operation starts. This prints Redis's own time per call (``INFO
commandstats``, ``usec_per_call`` of EVALSHA) for: an empty script (the
baseline: what any EVALSHA costs), the library alone, the library with each
adapter, and then the real claim and completion of the hash strategy
(``acquire_partition`` / ``complete_partition`` on fresh partitions, every
setting at its default). The difference between the adapter rows and the
empty one is the fixed cost each claim and completion pays.

Uses ``--redis-url``, else a private redis-server on a free port (the
figures must not mix with other clients' commands), else
redis://127.0.0.1:6379/0.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from elk_celery import HashPartitionStrategy  # noqa: E402
from elk_celery.store.namespace import NamespaceStore  # noqa: E402

KEYS = 17  # the common keys every script gets (store/lua/_lib.lua K_*)


def lua(name: str) -> str:
    return resources.files("elk_celery.store").joinpath("lua", name).read_text()


def per_call(r: redis.Redis) -> float:
    return float(r.info("commandstats").get("cmdstat_evalsha", {}).get("usec_per_call", 0.0))


def fixed_cost(r: redis.Redis, body: str, calls: int) -> float:
    sha = r.script_load(body + "\nreturn 1")
    keys = [f"elk:{{bench-overhead}}:k{i}" for i in range(KEYS)]
    r.config_resetstat()
    for _ in range(calls):
        r.evalsha(sha, len(keys), *keys, "a", "b")
    return per_call(r)


def claim_and_complete(r: redis.Redis, calls: int) -> tuple[float, float]:
    ns = f"bench-overhead-{uuid.uuid4().hex[:8]}"
    strategy = HashPartitionStrategy(r, ns)
    try:
        ids = list(range(1, calls + 1))
        strategy.create_partitions_if_not_exist(
            [{"partition_id": k, "min_id": 10 * k + 1, "max_id": 10 * k + 10} for k in ids])
        fences = []
        r.config_resetstat()
        for pid in ids:
            fences.append(strategy.acquire_partition(pid, "bench-node").fence)
        claim = per_call(r)
        r.config_resetstat()
        for pid, fence in zip(ids, fences):
            strategy.complete_partition(pid, "bench-node", fence, 10)
        return claim, per_call(r)
    finally:
        NamespaceStore(strategy).reset()


def run(url: str, calls: int) -> None:
    r = redis.Redis.from_url(url)
    lib = lua("_lib.lua")
    rows = [("empty script (any EVALSHA)", fixed_cost(r, "", calls)),
            ("_lib.lua only", fixed_cost(r, lib, calls)),
            ("_lib.lua + _io_hash.lua", fixed_cost(r, lib + "\n" + lua("_io_hash.lua"), calls)),
            ("_lib.lua + _io_simple.lua", fixed_cost(r, lib + "\n" + lua("_io_simple.lua"), calls))]
    claim, complete = claim_and_complete(r, calls)
    rows += [("claim (hash: acquire_partition)", claim),
             ("completion (hash: complete_partition)", complete)]
    print(f"bench_script_overhead: Redis time per EVALSHA, {calls} calls each, {url}")
    for name, us in rows:
        print(f"  {name:<40} {us:7.1f} us")
    print(f"  fixed cost of a hash-strategy script call beyond an empty one: "
          f"{rows[2][1] - rows[0][1]:.1f} us (claim and completion: "
          f"{100 * (rows[2][1] - rows[0][1]) / max(claim, 1e-9):.0f} % / "
          f"{100 * (rows[2][1] - rows[0][1]) / max(complete, 1e-9):.0f} % of their time)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=3000, help="calls per row (default 3000)")
    p.add_argument("--redis-url", help="a Redis of your own (default: a private redis-server)")
    args = p.parse_args(argv)
    if args.redis_url:
        run(args.redis_url, args.calls)
        return 0
    try:
        from elk_celery._redis_server import RedisServer
        with RedisServer() as server:
            run(server.url, args.calls)
    except RuntimeError:  # no redis-server binary here
        run("redis://127.0.0.1:6379/0", args.calls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
