"""The Redis store on loopback, beside the floor of any Redis design (GET then SET).

``run(quick)`` starts its own redis-server (127.0.0.1, a free port, no persistence),
fills a profile with mappings, and measures in one run: a plain redis-py ``GET`` +
``SET`` loop, ``Engine.select`` for a hit and for a new recipient, and ``select_many``
batches of 100 hits and of 100 new recipients. Each figure is the median of the
repeats (with min and max), per select. Needs redis-server on the PATH.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

GROUP = "redis"
BATCH = 100


def _server() -> Any:
    """A throwaway redis-server (the test kit's), started."""
    from sticky.testing.redis_server import RedisServer  # noqa: PLC0415 - the redis extra

    server = RedisServer()
    server.start()
    return server


def _recipients(start: int) -> Iterator[str]:
    i = start
    while True:
        yield f"+1{2_000_000_000 + i}"
        i += 1


def _measure(
    op: Callable[[int], None], ops: int, repeats: int, per_call: int = 1
) -> tuple[float, float, float]:
    """Median, min and max ns per select over ``repeats`` runs of ``ops`` calls."""
    op(max(1, ops // 10))  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        op(ops)
        times.append((time.perf_counter_ns() - t0) / (ops * per_call))
    return statistics.median(times), min(times), max(times)


def run(quick: bool) -> list[dict[str, Any]]:
    """Rows of ``{"group", "name", "size", "ns_per_op", "ns_min", "ns_max", "ops_per_s",
    "ratio_to_floor"}``; quick mode takes well under 20 s."""
    import redis  # noqa: PLC0415 - the optional extra

    from sticky import Engine  # noqa: PLC0415
    from sticky.store.redis import RedisStore  # noqa: PLC0415

    size = 10_000 if quick else 100_000
    repeats = 5 if quick else 9
    ops = 300 if quick else 2_000
    batches = 5 if quick else 30

    server = _server()
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        engine = Engine(seed=1, store=RedisStore.from_url(server.url, prefix="bench"))
        engine.create_profile("p")
        for i in range(20):
            engine.add_number("p", f"+1312555{i:04d}")
        fresh = _recipients(0)
        mapped = [next(fresh) for _ in range(size)]
        for i in range(0, size, 1_000):
            engine.select_many("p", mapped[i : i + 1_000])

        def floor(n: int) -> None:
            for i in range(n):
                key = f"floor:{i % size}"
                client.get(key)
                client.set(key, "+13125550001")

        hit_cursor = [0]

        def hit(n: int) -> None:
            i = hit_cursor[0]
            for _ in range(n):
                engine.select("p", mapped[i % size])
                i += 7919  # a prime stride: spread over the whole table
            hit_cursor[0] = i

        def new(n: int) -> None:
            for _ in range(n):
                engine.select("p", next(fresh))

        def many_hits(n: int) -> None:
            i = hit_cursor[0]
            for _ in range(n):
                start = i % (size - BATCH)
                engine.select_many("p", mapped[start : start + BATCH])
                i += 7919
            hit_cursor[0] = i

        def many_new(n: int) -> None:
            for _ in range(n):
                engine.select_many("p", [next(fresh) for _ in range(BATCH)])

        # size: the mappings in the store when each measurement starts
        results = []
        for name, op, n, per_call in (
            ("GET+SET floor", floor, ops, 1),
            ("select hit", hit, ops, 1),
            ("select new", new, ops, 1),
            (f"select_many hit x{BATCH}", many_hits, batches, BATCH),
            (f"select_many new x{BATCH}", many_new, batches, BATCH),
        ):
            at = engine.stats().mappings
            results.append((name, _measure(op, n, repeats, per_call), at))
        engine.close()
        client.close()
    finally:
        server.stop()
    floor_ns = results[0][1][0]
    rows = []
    for name, (median, low, high), at in results:
        rows.append(
            {
                "group": GROUP,
                "name": name,
                "size": at,
                "ns_per_op": median,
                "ns_min": low,
                "ns_max": high,
                "ops_per_s": 1e9 / median,
                "ratio_to_floor": median / floor_ns,
            }
        )
    return rows


if __name__ == "__main__":
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(
            f"{row['name']:<28} size {row['size']:>7}  {row['ns_per_op'] / 1000:9.1f} us/op"
            f"  [{row['ns_min'] / 1000:.1f}-{row['ns_max'] / 1000:.1f}]"
            f"  {row['ops_per_s']:>9.0f}/s  x{row['ratio_to_floor']:.2f} floor"
        )
