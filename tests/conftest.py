"""Shared test settings: Hypothesis profiles (``HYPOTHESIS_PROFILE=ci|dev|soak``)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, max_examples=30)
settings.register_profile(
    "soak", deadline=None, max_examples=2000, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# -- Redis: one throwaway server for the session (tests/redis_server.py) --------------
from collections.abc import Callable, Iterator  # noqa: E402 - below the profiles
from typing import Any  # noqa: E402

import pytest  # noqa: E402 - the fixtures below were added after the profiles above


def _started(kind: str, make: Callable[[], Any]) -> Any:
    """``make()``, started; else skip saying why, or fail with STICKY_REQUIRE_REDIS=1."""
    try:
        server = make()
        server.start()
    except Exception as exc:  # any failure to start is reported the same way
        reason = f"no {kind} for the tests: {type(exc).__name__}: {exc}"
        if os.environ.get("STICKY_REQUIRE_REDIS", "") == "1":
            pytest.fail(f"{reason} (STICKY_REQUIRE_REDIS=1)")
        pytest.skip(reason)
    return server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    """A redis-server on 127.0.0.1 and a free port, no persistence, stopped at the end.

    If redis-server (or the redis package) is missing or will not start, the Redis tests
    skip, saying why; with STICKY_REQUIRE_REDIS=1 (as CI sets) they fail instead.
    """

    def make() -> Any:
        from sticky.testing.redis_server import RedisServer  # noqa: PLC0415

        return RedisServer()

    server = _started("Redis server", make)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Any]:
    """A 6-node Redis Cluster (3 primaries, 3 replicas) on free loopback ports, no persistence.

    Skips as ``redis_server`` does when it cannot start; fails with STICKY_REQUIRE_REDIS=1.
    """

    def make() -> Any:
        from sticky.testing.redis_cluster import RedisCluster  # noqa: PLC0415

        return RedisCluster()

    cluster = _started("Redis Cluster", make)
    yield cluster
    cluster.stop()
