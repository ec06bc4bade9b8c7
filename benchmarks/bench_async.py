"""The asyncio engine against the synchronous one on Redis: selects per second.

One redis-server on loopback (the test kit's, no persistence), one profile of 12
numbers; for each engine, in one run and interleaved within each repeat:

- ``sync``: :class:`~sticky.Engine` on :class:`~sticky.store.redis.RedisStore`, one
  select after another (each waits for its round trip);
- ``async, 1 task``: :class:`~sticky.aio.AsyncEngine` on
  :class:`~sticky.aio.AsyncRedisStore`, one select awaited after another: the cost of
  the event loop per call;
- ``async, 64 tasks``: the same engine, 64 tasks selecting at once: what a service on
  one event loop gets, the round trips overlapping;
- ``sync, 8 threads``: the synchronous engine from 8 threads, the obvious alternative;
- the floor: ``PING`` in the same three shapes (sync client, asyncio client, 64 tasks).

Hits (recipients mapped before the run) and new recipients (forgotten after each
repeat, untimed). A row is the median of the repeats' rates; ``ratio`` is each async
row's rate over the sync row of the same work. Run: ``python -m benchmarks.bench_async
[--quick] [--out DIR]`` (writes ``async.json`` and ``async.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from sticky import Engine, ManualClock, NumberType
from sticky.aio import AsyncEngine, AsyncRedisStore
from sticky.store.redis import RedisStore

Row = dict[str, Any]
T0 = 1_800_000_000.0
TASKS = 64
THREADS = 8


def _numbers() -> list[tuple[str, NumberType]]:
    out = [(f"+1312555{i:04d}", NumberType.LONG_CODE) for i in range(10)]
    return [*out, ("+18005550001", NumberType.TOLL_FREE), ("+18885550002", NumberType.TOLL_FREE)]


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


async def _gather(n: int, tasks: int, one: Callable[[int], Awaitable[Any]]) -> float:
    """``n`` calls of ``one`` from ``tasks`` tasks at once; the seconds it took."""
    chunks = [range(k, n, tasks) for k in range(tasks)]

    async def worker(indices: range) -> None:
        for i in indices:
            await one(i)

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in chunks))
    return time.perf_counter() - start


def _threads(n: int, threads: int, one: Callable[[int], Any]) -> float:
    chunks = [range(k, n, threads) for k in range(threads)]

    def worker(indices: range) -> None:
        for i in indices:
            one(i)

    pool = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return time.perf_counter() - start


def run(ops: int, repeats: int) -> list[Row]:
    """Every row, interleaved in each repeat; medians of the rates."""
    import redis  # noqa: PLC0415 - the redis extra
    import redis.asyncio as aredis  # noqa: PLC0415

    from sticky.testing.redis_server import RedisServer  # noqa: PLC0415

    server = RedisServer()
    server.start()
    try:
        return _run(server.url, redis, aredis, ops, repeats)
    finally:
        server.stop()


def _run(url: str, redis: Any, aredis: Any, ops: int, repeats: int) -> list[Row]:
    clock = ManualClock(T0)
    sync = Engine(clock=clock, seed=1, store=RedisStore.from_url(url, prefix="bench"))
    sync.create_profile("p")
    for number, kind in _numbers():
        sync.add_number("p", number, kind)
    hits = [f"+1212{i:07d}" for i in range(ops)]
    for start in range(0, ops, 500):
        sync.select_many("p", hits[start : start + 500])
    sync_client = redis.Redis.from_url(url)
    loop = asyncio.new_event_loop()
    engine = AsyncEngine(clock=clock, seed=1, store=AsyncRedisStore.from_url(url, prefix="bench"))
    async_client = aredis.Redis.from_url(url)
    rates: dict[tuple[str, str], list[float]] = {}
    fresh = iter(range(10**9))

    def add(shape: str, work: str, seconds: float) -> None:
        rates.setdefault((shape, work), []).append(_rate(ops, seconds))

    def new_batch() -> list[str]:
        return [f"+1646{next(fresh):07d}" for _ in range(ops)]

    def forget(recipients: Sequence[str]) -> None:
        for to in recipients:
            sync.forget("p", to)

    def timed(fn: Callable[[], Any]) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    for _ in range(repeats):
        clock.advance(1.0)  # every hit refreshes
        add("sync", "ping", timed(lambda: [sync_client.ping() for _ in range(ops)]))
        add("sync", "hit", timed(lambda: [sync.select("p", to) for to in hits]))
        fresh_sync = new_batch()
        add("sync", "new", timed(lambda b=fresh_sync: [sync.select("p", to) for to in b]))
        add(
            f"sync, {THREADS} threads",
            "hit",
            _threads(ops, THREADS, lambda i: sync.select("p", hits[i])),
        )
        fresh_threads = new_batch()
        add(
            f"sync, {THREADS} threads",
            "new",
            _threads(ops, THREADS, lambda i, b=fresh_threads: sync.select("p", b[i])),
        )

        async def one_by_one(work: list[str]) -> float:
            start = time.perf_counter()
            for to in work:
                await engine.select("p", to)
            return time.perf_counter() - start

        async def pings() -> float:
            start = time.perf_counter()
            for _ in range(ops):
                await async_client.ping()
            return time.perf_counter() - start

        add("async, 1 task", "ping", loop.run_until_complete(pings()))
        add("async, 1 task", "hit", loop.run_until_complete(one_by_one(hits)))
        fresh_async = new_batch()
        add("async, 1 task", "new", loop.run_until_complete(one_by_one(fresh_async)))
        add(
            f"async, {TASKS} tasks",
            "ping",
            loop.run_until_complete(_gather(ops, TASKS, lambda _: async_client.ping())),
        )
        add(
            f"async, {TASKS} tasks",
            "hit",
            loop.run_until_complete(_gather(ops, TASKS, lambda i: engine.select("p", hits[i]))),
        )
        fresh_tasks = new_batch()
        add(
            f"async, {TASKS} tasks",
            "new",
            loop.run_until_complete(
                _gather(ops, TASKS, lambda i, b=fresh_tasks: engine.select("p", b[i]))
            ),
        )
        forget(fresh_sync + fresh_threads + fresh_async + fresh_tasks)
    loop.run_until_complete(engine.close())
    loop.run_until_complete(async_client.aclose())
    loop.close()
    sync.close()
    sync_client.close()
    rows = []
    for (shape, work), samples in rates.items():
        base = statistics.median(rates["sync", work])
        median = statistics.median(samples)
        rows.append(
            {
                "shape": shape,
                "work": work,
                "ops": ops,
                "repeats": len(samples),
                "per_second": round(median),
                "ratio_to_sync": round(median / base, 2),
            }
        )
    return rows


def table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table."""
    order = ["ping", "hit", "new"]
    lines = [
        "| engine | work | selects/s (median) | / sync, one at a time |",
        "|---|---|---:|---:|",
    ]
    lines += [
        f"| {r['shape']} | {r['work']} | {r['per_second']:,} | {r['ratio_to_sync']:.2f} |"
        for r in sorted(rows, key=lambda r: (order.index(r["work"]), r["shape"]))
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the table, write ``async.json`` and ``async.md``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_async")
    parser.add_argument("--quick", action="store_true", help="fewer selects and repeats")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    ops, repeats = (500, 3) if args.quick else (3_000, 7)
    rows = run(ops, repeats)
    text = (
        "# The asyncio engine against the synchronous one, on Redis\n\n"
        f"`python -m benchmarks.bench_async{' --quick' if args.quick else ''}`: {ops:,} selects"
        f" per row and repeat, {repeats} repeats, interleaved; medians.\n\n" + table(rows)
    )
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "async.json").write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    (args.out / "async.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
