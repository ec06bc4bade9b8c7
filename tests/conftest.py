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
import pytest  # noqa: E402 - the fixtures below were added after the profiles above


@pytest.fixture(scope="session")
def redis_server() -> object:
    """A redis-server on 127.0.0.1 and a free port, no persistence, stopped at the end.

    If redis-server (or the redis package) is missing or will not start, the Redis tests
    skip, saying why; with STICKY_REQUIRE_REDIS=1 (as CI sets) they fail instead.
    """
    required = os.environ.get("STICKY_REQUIRE_REDIS", "") == "1"
    try:
        from sticky.testing.redis_server import RedisServer  # noqa: PLC0415 - the redis extra

        server = RedisServer()
        server.start()
    except Exception as exc:  # any failure to start is reported the same way
        reason = f"no Redis server for the tests: {type(exc).__name__}: {exc}"
        if required:
            pytest.fail(f"{reason} (STICKY_REQUIRE_REDIS=1)")
        pytest.skip(reason)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> object:
    """A 6-node Redis Cluster (3 primaries, 3 replicas) on free loopback ports, no persistence.

    Skips as ``redis_server`` does when it cannot start; fails with STICKY_REQUIRE_REDIS=1.
    """
    required = os.environ.get("STICKY_REQUIRE_REDIS", "") == "1"
    try:
        from sticky.testing.redis_cluster import RedisCluster  # noqa: PLC0415 - the redis extra

        cluster = RedisCluster()
        cluster.start()
    except Exception as exc:  # any failure to start is reported the same way
        reason = f"no Redis Cluster for the tests: {type(exc).__name__}: {exc}"
        if required:
            pytest.fail(f"{reason} (STICKY_REQUIRE_REDIS=1)")
        pytest.skip(reason)
    yield cluster
    cluster.stop()
