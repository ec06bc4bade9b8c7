"""A throwaway redis-server for tests and benchmarks: 127.0.0.1, a free port, a temp dir.

No persistence unless asked (``persist=True`` turns on an fsync-always append-only
file, so a server killed and started again on the same port and directory comes back
with every acknowledged write: the fault test needs that).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis  # the optional extra: this module needs sticky-sender[redis]

__all__ = ["RedisServer", "RedisUnavailableError", "free_port"]


class RedisUnavailableError(RuntimeError):
    """redis-server is missing or would not start."""


def server_args(binary: str, port: int, directory: str, *options: str) -> list[str]:
    """The command line of a throwaway redis-server: loopback, no RDB, a log file, ``options``."""
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        directory,
        "--save",
        "",
        *options,
        "--daemonize",
        "no",
        "--loglevel",
        "warning",
        "--logfile",
        str(Path(directory) / "redis.log"),
    ]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process; :meth:`start`, :meth:`kill`, :meth:`start` again, :meth:`stop`."""

    def __init__(self, *, persist: bool = False, binary: str | None = None) -> None:
        found = (
            binary
            or os.environ.get("STICKY_REDIS_SERVER")
            or shutil.which("redis-server")
            or "/usr/bin/redis-server"
        )
        if not Path(found).exists():
            msg = "redis-server is not installed (apt-get install redis-server)"
            raise RedisUnavailableError(msg)
        self.binary = found
        self.persist = persist
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="sticky-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **options: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, **options)  # type: ignore[arg-type]

    def start(self, timeout: float = 10.0) -> None:
        """Start (or start again, same port and directory) and wait until it answers PING."""
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.persist
            else ["--appendonly", "no"]
        )
        args = server_args(self.binary, self.port, self.dir, *persistence)
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        probe = self.client(socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            while True:
                if self.process.poll() is not None:
                    err = self.process.stderr.read().decode() if self.process.stderr else ""
                    msg = f"redis-server exited with {self.process.returncode}: {err}{self.log()}"
                    raise RedisUnavailableError(msg)
                try:
                    if probe.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    msg = f"redis-server did not answer on port {self.port}: {self.log()}"
                    raise RedisUnavailableError(msg)
                time.sleep(0.02)
        finally:
            probe.close()

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (Path(self.dir) / "redis.log").read_text()
        return ""

    def kill(self) -> None:
        """Stop it at once (SIGKILL), as a crash would; the directory stays."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def stop(self) -> None:
        """Stop it and remove its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def required() -> bool:
        """Whether the environment says the Redis tests must run (CI): then never skip."""
        return os.environ.get("STICKY_REQUIRE_REDIS", "") == "1"
