"""A throwaway Redis Cluster for tests and benchmarks: 6 nodes on 127.0.0.1, free ports.

Three primaries and three replicas (``redis-cli --cluster create ... --cluster-replicas
1``), cluster-enabled, no persistence, each node in its own directory under one temp
dir. :meth:`RedisCluster.start` returns once every node reports ``cluster_state:ok``
and every slot is served; :meth:`stop` kills them all and removes the directory. The
nodes are :class:`~sticky.testing.redis_server.RedisServer`-like handles a test may
pause, kill or start again (a failover test kills a primary).
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis  # the optional extra: this module needs sticky-sender[redis]
from redis.cluster import ClusterNode

from sticky.testing.redis_server import RedisUnavailableError, server_args

__all__ = ["ClusterNodeProcess", "RedisCluster", "free_cluster_port"]


def free_cluster_port() -> int:
    """A port whose cluster bus port (+10000) is free too, both below 65536."""
    rng = random.SystemRandom()
    while True:
        port = rng.randrange(20_000, 45_000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10_000))
        except OSError:
            continue
        return port


def _until(done: Callable[[], bool], timeout: float, failure: str) -> None:
    """Poll ``done`` every 50 ms; RedisUnavailableError(``failure``) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RedisUnavailableError(failure)
        time.sleep(0.05)


class ClusterNodeProcess:
    """One cluster-enabled redis-server: its port, directory and process."""

    def __init__(self, binary: str, root: str) -> None:
        self.binary = binary
        self.port = free_cluster_port()
        self.dir = str(Path(root) / str(self.port))
        Path(self.dir).mkdir()
        self.process: subprocess.Popen[bytes] | None = None

    def client(self, **options: object) -> Any:
        """A plain client to this node alone (CLUSTER commands, DEBUG, INFO)."""
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, **options)  # type: ignore[arg-type]

    def start(self) -> None:
        """Start (or start again: same port, directory and node id)."""
        args = server_args(
            self.binary,
            self.port,
            self.dir,
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            # short enough that a failover test fails over in about a second
            "--cluster-node-timeout",
            "1000",
            # DEBUG SLEEP, for a slow-node test (loopback clients only)
            "--enable-debug-command",
            "local",
            "--appendonly",
            "no",
        )
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """Stop it at once (SIGKILL), as a crash would."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (Path(self.dir) / "redis.log").read_text()
        return ""


class RedisCluster:
    """Six cluster-enabled redis-servers made one cluster: :meth:`start`, :meth:`stop`."""

    def __init__(self, *, nodes: int = 6, binary: str | None = None) -> None:
        found = binary or shutil.which("redis-server") or "/usr/bin/redis-server"
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        if not Path(found).exists() or not Path(cli).exists():
            msg = "redis-server or redis-cli is not installed (apt-get install redis-server)"
            raise RedisUnavailableError(msg)
        self.binary, self.cli = found, cli
        self.root = tempfile.mkdtemp(prefix="sticky-cluster-")
        self.nodes = [ClusterNodeProcess(found, self.root) for _ in range(nodes)]

    @property
    def url(self) -> str:
        """The store URL naming every node (``redis+cluster://h:p,h:p,...``)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def startup_nodes(self) -> list[ClusterNode]:
        node: Any = ClusterNode  # untyped in redis-py
        return [node("127.0.0.1", n.port) for n in self.nodes]

    def client(self, **options: object) -> redis.RedisCluster:
        """A cluster client to every node (decoded replies)."""
        return redis.RedisCluster(
            startup_nodes=self.startup_nodes(),
            decode_responses=True,
            **options,  # type: ignore[arg-type]
        )

    def start(self, timeout: float = 30.0) -> None:
        """Start the nodes, create the cluster, wait until every node says it is ok."""
        for node in self.nodes:
            node.start()
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            self._wait_ping(node, deadline)
        create = [
            self.cli,
            "--cluster",
            "create",
            *(f"127.0.0.1:{n.port}" for n in self.nodes),
            "--cluster-replicas",
            "1",
            "--cluster-yes",
        ]
        done = subprocess.run(create, capture_output=True, timeout=timeout, check=False)
        if done.returncode != 0:
            self.stop()
            msg = (
                f"redis-cli --cluster create failed: {done.stdout.decode()}{done.stderr.decode()}"
            )
            raise RedisUnavailableError(msg)
        self.wait_ok(timeout)
        self.wait_replicas(timeout)

    def wait_replicas(self, timeout: float = 30.0) -> None:
        """Wait until every live primary has a replica whose link is up (WAIT needs one)."""
        _until(
            lambda: all(self._replicated(n) for n in self.primaries()),
            timeout,
            "the replicas did not connect",
        )

    @staticmethod
    def _replicated(node: ClusterNodeProcess) -> bool:
        probe = node.client(socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            info = probe.info("replication")
            return int(info.get("connected_slaves", 0)) >= 1 and "online" in str(
                info.get("slave0", "")
            )
        except (redis.ConnectionError, redis.TimeoutError):
            return False
        finally:
            probe.close()

    def _wait_ping(self, node: ClusterNodeProcess, deadline: float) -> None:
        probe = node.client(socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            while True:
                if not node.alive():
                    self.stop()
                    msg = f"redis-server on port {node.port} exited: {node.log()}"
                    raise RedisUnavailableError(msg)
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                    if probe.ping():
                        return
                if time.monotonic() > deadline:
                    self.stop()
                    msg = f"redis-server on port {node.port} did not answer: {node.log()}"
                    raise RedisUnavailableError(msg)
                time.sleep(0.02)
        finally:
            probe.close()

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every live node reports ``cluster_state:ok`` and the same epoch view."""
        _until(
            lambda: all(self._ok(n) for n in self.nodes if n.alive()),
            timeout,
            "the cluster did not reach cluster_state:ok",
        )

    @staticmethod
    def _ok(node: ClusterNodeProcess) -> bool:
        probe = node.client(socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            info = probe.execute_command("CLUSTER", "INFO")
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return False
        finally:
            probe.close()
        text = info if isinstance(info, str) else info.decode()
        return "cluster_state:ok" in text and "cluster_slots_ok:16384" in text

    def primaries(self) -> list[ClusterNodeProcess]:
        """The live nodes that are primaries now (``ROLE``)."""
        out = []
        for node in self.nodes:
            if not node.alive():
                continue
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                c = node.client(socket_timeout=1.0)
                try:
                    if c.execute_command("ROLE")[0] == "master":
                        out.append(node)
                finally:
                    c.close()
        return out

    def node_of_slot(self, slot: int) -> ClusterNodeProcess:
        """The primary serving ``slot`` now, as the first live node sees it."""
        for node in self.nodes:
            if not node.alive():
                continue
            c = node.client(socket_timeout=1.0)
            try:
                for start, end, primary, *_ in c.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        port = int(primary[1])
                        return next(n for n in self.nodes if n.port == port)
            finally:
                c.close()
        msg = f"no node serves slot {slot}"
        raise RedisUnavailableError(msg)

    def flush(self) -> None:
        """Empty every primary (replicas follow)."""
        for node in self.primaries():
            c = node.client()
            try:
                c.flushall()
            finally:
                c.close()

    def stop(self) -> None:
        """Kill every node and remove the directory."""
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.root, ignore_errors=True)
