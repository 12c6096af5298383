"""Private Redis Cluster and Sentinel deployments on free loopback ports.

:class:`RedisClusterTopology` starts six ``redis-server --cluster-enabled yes``
processes and joins them with ``redis-cli --cluster create --cluster-replicas
1`` (3 masters, 3 replicas). :class:`SentinelTopology` starts one master,
one replica and three ``redis-server --sentinel`` processes. Both can SIGKILL
the master holding a key and wait (polled, with a deadline) until its
replica has taken over.

Node timeouts are short (1 s) so a failover takes a few seconds, and
``cluster-require-full-coverage no`` keeps the other masters' slots
answering while one of them fails over.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any, Callable

import redis
from redis.cluster import RedisCluster

from elk_celery._redis_server import RedisServer, free_port

#: ms without an answer before a cluster node or Sentinel calls a master down
NODE_TIMEOUT_MS = 1000


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0,
             every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy (returned), ignoring
    Redis errors meanwhile; AssertionError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            got = check()
            if got:
                return got
            last = got
        except (redis.RedisError, OSError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s (last: {last!r})")
        time.sleep(every)


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=1,
                       decode_responses=True)


class _Topology:
    """Servers started together, SIGKILLed together; a context manager."""

    dir: str

    def start(self, timeout: float = 60.0) -> Any:
        raise NotImplementedError

    def processes(self) -> list[RedisServer]:
        raise NotImplementedError

    def stop(self) -> None:
        for s in self.processes():
            s.stop(signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Any:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisClusterTopology(_Topology):
    """Six cluster nodes (3 masters with a replica each) on loopback ports."""

    def __init__(self, masters: int = 3) -> None:
        self.dir = tempfile.mkdtemp(prefix="elk-cluster-")
        self.servers: list[RedisServer] = []
        self.masters = masters
        for _ in range(masters * 2):
            port = free_port()
            args = ["--cluster-enabled", "yes",
                    "--cluster-config-file", f"nodes-{port}.conf",
                    "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                    "--cluster-port", str(free_port()),  # not port + 10000 (may be taken or > 65535)
                    "--cluster-require-full-coverage", "no",
                    # a replica that lost its master long ago still takes over
                    "--cluster-replica-validity-factor", "0",
                    "--protected-mode", "no"]
            self.servers.append(RedisServer(port, dir=self.dir, extra_args=args))

    # -- lifecycle ---------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> RedisClusterTopology:
        for s in self.servers:
            s.start()
        addrs = [f"127.0.0.1:{s.port}" for s in self.servers]
        out = subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "--cluster", "create", *addrs,
             "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{out.stdout}\n{out.stderr}")
        wait_for("every node sees a complete cluster", self.settled, timeout)
        return self

    def settled(self) -> bool:
        for s in self.alive():
            c = _client(s.port)
            try:
                info = c.cluster("info")
                if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) < len(self.servers):
                    return False
                if int(info.get("cluster_slots_ok", 0)) != 16384:
                    return False
            finally:
                c.close()
        # every master serves its slots with a replica attached (a failover needs one)
        slots = self._slots()
        return (len({int(r[2][1]) for r in slots}) == self.masters
                and all(len(r) > 3 for r in slots))

    def processes(self) -> list[RedisServer]:
        return list(self.servers)

    # -- what the cluster looks like -----------------------------------------------
    @property
    def url(self) -> str:
        """The elk URL naming every node as a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers) + "/"

    def seed_url(self, n: int = 1) -> str:
        """An elk URL naming only the first ``n`` live nodes as seeds."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in self.alive()[:n]) + "/"

    def alive(self) -> list[RedisServer]:
        return [s for s in self.servers if s.pid is not None and s._proc is not None
                and s._proc.poll() is None]

    def server(self, port: int) -> RedisServer:
        return next(s for s in self.servers if s.port == port)

    @staticmethod
    def _role(port: int) -> str:
        c = _client(port)
        try:
            return str(c.info("replication")["role"])
        finally:
            c.close()

    def _slots(self) -> list[Any]:
        """CLUSTER SLOTS as seen by a live node: [start, end, [host, port, id], replicas...]."""
        for s in self.alive():
            c = _client(s.port)
            try:
                return c.execute_command("CLUSTER SLOTS")
            except redis.RedisError:
                continue
            finally:
                c.close()
        raise RuntimeError("no live cluster node answers CLUSTER SLOTS")

    def master_ports(self) -> list[int]:
        return sorted({int(r[2][1]) for r in self._slots()})

    @staticmethod
    def slot_of(key: str) -> int:
        from redis.crc import key_slot
        return int(key_slot(key.encode()))

    def master_of_slot(self, slot: int) -> int:
        """The port of the master serving ``slot`` (as a live node sees it)."""
        for r in self._slots():
            if int(r[0]) <= slot <= int(r[1]):
                return int(r[2][1])
        raise LookupError(f"slot {slot} is not served")

    def master_of(self, key: str) -> int:
        return self.master_of_slot(self.slot_of(key))

    def replica_of(self, master_port: int) -> int:
        for r in self._slots():
            if int(r[2][1]) == master_port and len(r) > 3:
                return int(r[3][1])
        raise LookupError(f"master {master_port} has no replica")

    # -- failures ------------------------------------------------------------------
    def kill_master_of(self, key: str, timeout: float = 30.0) -> tuple[int, int]:
        """SIGKILL the master holding ``key``; wait until its replica serves the
        slot as master. Returns (killed port, new master port)."""
        slot = self.slot_of(key)
        old = self.master_of_slot(slot)
        self.server(old).kill()
        return old, self.wait_promoted(slot, old, timeout)

    def wait_promoted(self, slot: int, old: int, timeout: float = 30.0) -> int:
        def promoted() -> int | None:
            new = self.master_of_slot(slot)
            if new == old or self._role(new) != "master":
                return None
            c = _client(new)
            try:
                return new if c.cluster("info").get("cluster_state") == "ok" else None
            finally:
                c.close()
        return int(wait_for(f"a replica takes over slot {slot} from {old}", promoted, timeout))

    def restart(self, port: int, timeout: float = 30.0) -> None:
        """Start a killed node again (it rejoins as a replica of its successor)."""
        self.server(port).start()
        wait_for(f"node {port} rejoins", lambda: self._role(port) == "slave"
                 and _client(port).info("replication").get("master_link_status") == "up", timeout)

    def client(self, **kwargs: Any) -> RedisCluster:
        """A redis-py cluster client on this cluster."""
        from redis.cluster import ClusterNode
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", s.port) for s in self.alive()],
                            **kwargs)

    def key_on_other_master(self, taken: list[str], make: Callable[[int], str]) -> str:
        """The first ``make(i)`` whose master holds none of ``taken``'s keys."""
        used = {self.master_of(k) for k in taken}
        for i in range(10_000):
            k = make(i)
            if self.master_of(k) not in used:
                return k
        raise LookupError("no key found on another master")


class SentinelProcess(RedisServer):
    """A ``redis-server <conf> --sentinel`` process (Sentinel rewrites its config file)."""

    def __init__(self, master_port: int, service: str, quorum: int, dir: str) -> None:
        super().__init__(dir=dir)
        self.conf = os.path.join(dir, f"sentinel-{self.port}.conf")
        with open(self.conf, "w") as f:
            f.write(f"port {self.port}\nbind 127.0.0.1\ndir {dir}\n"
                    f"sentinel monitor {service} 127.0.0.1 {master_port} {quorum}\n"
                    f"sentinel down-after-milliseconds {service} {NODE_TIMEOUT_MS}\n"
                    f"sentinel failover-timeout {service} 10000\n"
                    f"sentinel parallel-syncs {service} 1\n")

    def _spawn(self) -> subprocess.Popen[bytes]:
        from elk_celery._redis_server import find_redis_server
        with open(self.log_path, "ab") as log:
            return subprocess.Popen([find_redis_server(), self.conf, "--sentinel"],
                                    stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, cwd=self.dir)


class SentinelTopology(_Topology):
    """One master, one replica and three sentinels (quorum 2) on loopback ports."""

    service = "elkmaster"

    def __init__(self, sentinels: int = 3) -> None:
        self.dir = tempfile.mkdtemp(prefix="elk-sentinel-")
        self.master = RedisServer(dir=self.dir)
        self.replica: RedisServer | None = None
        self.n_sentinels = sentinels
        self.sentinels: list[SentinelProcess] = []

    def start(self, timeout: float = 60.0) -> SentinelTopology:
        self.master.start()
        self.replica = RedisServer(dir=self.dir, extra_args=[
            "--replicaof", "127.0.0.1", str(self.master.port)])
        self.replica.start()
        wait_for("the replica syncs", lambda: _client(self.replica.port).info(  # type: ignore[union-attr]
            "replication").get("master_link_status") == "up", timeout)
        for _ in range(self.n_sentinels):
            s = SentinelProcess(self.master.port, self.service, 2, self.dir)
            s.start()
            self.sentinels.append(s)
        wait_for("every sentinel knows the replica and the other sentinels", self.settled, timeout)
        return self

    def settled(self) -> bool:
        for s in self.sentinels:
            c = _client(s.port)
            try:
                m = c.execute_command("SENTINEL", "MASTER", self.service)
                info = dict(zip(m[::2], m[1::2])) if isinstance(m, list) else m
                if int(info["num-slaves"]) < 1 or int(info["num-other-sentinels"]) < self.n_sentinels - 1:
                    return False
            finally:
                c.close()
        return True

    def processes(self) -> list[RedisServer]:
        return [*self.sentinels, self.master, *([self.replica] if self.replica else [])]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def master_port(self) -> int:
        """The master's port as the sentinels agree on it (a majority)."""
        seen: dict[int, int] = {}
        for s in self.sentinels:
            if s._proc is None or s._proc.poll() is not None:
                continue
            c = _client(s.port)
            try:
                _, port = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
                seen[int(port)] = seen.get(int(port), 0) + 1
            except redis.RedisError:
                pass
            finally:
                c.close()
        port, votes = max(seen.items(), key=lambda kv: kv[1])
        if votes * 2 <= len(self.sentinels):
            raise LookupError(f"the sentinels disagree on the master: {seen}")
        return port

    def server(self, port: int) -> RedisServer:
        for s in (self.master, self.replica):
            if s is not None and s.port == port:
                return s
        raise LookupError(port)

    def kill_master(self, timeout: float = 30.0) -> tuple[int, int]:
        """SIGKILL the master; wait until the sentinels name the replica and it
        runs as master. Returns (killed port, new master port)."""
        old = self.master_port()
        self.server(old).kill()
        return old, self.wait_promoted(old, timeout)

    def wait_promoted(self, old: int, timeout: float = 30.0) -> int:
        def promoted() -> int | None:
            new = self.master_port()
            return new if new != old and _client(new).info("replication")["role"] == "master" else None
        return int(wait_for(f"the sentinels promote a replica of {old}", promoted, timeout))

    def restart(self, port: int, timeout: float = 30.0) -> None:
        """Start a killed server again; the sentinels make it a replica."""
        self.server(port).start()
        wait_for(f"server {port} rejoins as a replica", lambda: _client(port).info(
            "replication").get("master_link_status") == "up", timeout)

    def master_client(self, **kwargs: Any) -> redis.Redis:
        from redis.sentinel import Sentinel
        return Sentinel([("127.0.0.1", s.port) for s in self.sentinels],
                        socket_timeout=2).master_for(self.service, **kwargs)
