"""Throughput of 1, 2 and 4 client processes against one Redis server or one SQLite file.

``run(quick)`` fills one profile (Redis: its own redis-server on loopback; SQLite: a
file in a temporary directory), then for each process count spawns that many workers
(``multiprocessing``, "spawn"). Every worker connects, builds its engine, and waits at a
barrier; then all run each phase together for a fixed time (2 s quick, 5 s full),
meeting at the barrier again between phases:

- Redis: ``PING`` (the floor), the store's ``select`` hits (recipients of the filled profile, each
  worker its own stride), ``select`` of new recipients (each worker its own);
- SQLite: the floor on a file of the same rows (raw :mod:`sqlite3`, the store's pragmas:
  ``BEGIN IMMEDIATE``; SELECT by key; UPSERT; ``COMMIT``) for hits and for new
  recipients, then the store's ``select`` hits and new recipients.

A row is a total: ``ops_per_s`` summed over the processes, ``ns_per_op`` its inverse
(wall time per operation of the whole), ``ns_min`` / ``ns_max`` the same as if every
process ran at the fastest / slowest one's rate, and ``ratio_to_floor`` the floor's
total over this one (how many times the floor's work each select costs) at the same
process count. Run alone: ``python -m benchmarks.bench_clients [--quick]``.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Row = dict[str, Any]

GROUP = "clients"
PROCESSES = (1, 2, 4)
PROFILE = "bench"
POOL = [f"+1312555{i:04d}" for i in range(10)]
FILLED = 20_000
"""Recipients mapped before the run: what the hit phases select."""
FILL = 1_000


def _mapped(n: int) -> list[str]:
    return [f"+1646{i:07d}" for i in range(n)]


def _fresh(run: int, worker: int) -> Callable[[], str]:
    """A source of recipients no other run, worker or fill has used."""
    state = [0]
    base = 2_000_000_000 + (run * 8 + worker) * 10_000_000

    def next_recipient() -> str:
        state[0] += 1
        return f"+1{base + state[0]}"

    return next_recipient


# -- what a worker runs ---------------------------------------------------------------
class _Floor:
    """Raw sqlite3 on the floor's file: one SELECT and one UPSERT, one transaction."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")

    def __call__(self, to: str) -> None:
        execute = self.conn.execute
        execute("BEGIN IMMEDIATE")
        row = execute(
            "SELECT sender, last_used FROM m WHERE profile = ? AND recipient = ?", (PROFILE, to)
        ).fetchone()
        execute(
            "INSERT INTO m (profile, recipient, sender, last_used) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (profile, recipient)"
            " DO UPDATE SET sender = excluded.sender, last_used = excluded.last_used",
            (PROFILE, to, POOL[0] if row is None else row[0], time.time()),
        )
        execute("COMMIT")


def _phases(backend: str, target: str, floor_path: str, run: int, worker: int) -> list[Any]:
    """The worker's phases, in order: (name, one operation), and what to close after."""
    from sticky import Engine  # noqa: PLC0415

    mapped = _mapped(FILLED)
    cursor = [worker * 997]

    def next_hit() -> str:
        cursor[0] += 7919  # a prime stride over the filled recipients
        return mapped[cursor[0] % FILLED]

    fresh = _fresh(run, worker)
    if backend == "redis":
        import redis  # noqa: PLC0415 - the optional extra

        from sticky.store.redis import RedisStore  # noqa: PLC0415

        client = redis.Redis.from_url(target)
        engine = Engine(seed=worker, store=RedisStore.from_url(target, prefix="bench"))
        select = engine.select
        phases = [
            ("floor: PING", client.ping),
            ("store: hit", lambda: select(PROFILE, next_hit())),
            ("store: new", lambda: select(PROFILE, fresh())),
        ]
        return [phases, [engine.close, client.close]]
    from sticky.store.sqlite import SQLiteStore  # noqa: PLC0415

    floor = _Floor(floor_path)
    floor_fresh = _fresh(run + 50, worker)
    engine = Engine(seed=worker, store=SQLiteStore(target, timeout=30.0))
    select = engine.select
    phases = [
        ("floor: hit", lambda: floor(next_hit())),
        ("floor: new", lambda: floor(floor_fresh())),
        ("store: hit", lambda: select(PROFILE, next_hit())),
        ("store: new", lambda: select(PROFILE, fresh())),
    ]
    return [phases, [engine.close, floor.conn.close]]


def _worker(
    backend: str,
    target: str,
    floor_path: str,
    run: int,
    worker: int,
    seconds: float,
    barrier: Any,
    results: Any,
) -> None:
    """Run every phase for ``seconds``, in step with the other workers; report counts."""
    phases, closers = _phases(backend, target, floor_path, run, worker)
    try:
        for name, op in phases:
            for _ in range(20):  # warm: connections, caches, the chooser
                op()
            barrier.wait()
            done = 0
            start = time.perf_counter()
            stop = start + seconds
            while True:
                for _ in range(20):
                    op()
                done += 20
                if time.perf_counter() >= stop:
                    break
            results.put((name, worker, done, time.perf_counter() - start))
    finally:
        for close in closers:
            close()


def _run_clients(
    backend: str, target: str, floor_path: str, n: int, run: int, seconds: float
) -> dict[str, list[float]]:
    """Ops/s of each of ``n`` spawned workers, by phase."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(n)
    results = ctx.Queue()
    workers = [
        ctx.Process(
            target=_worker,
            args=(backend, target, floor_path, run, i, seconds, barrier, results),
        )
        for i in range(n)
    ]
    for w in workers:
        w.start()
    phases = 3 if backend == "redis" else 4
    rates: dict[str, list[float]] = {}
    for _ in range(n * phases):
        name, _worker_id, done, elapsed = results.get(timeout=120 + 4 * seconds)
        rates.setdefault(name, []).append(done / elapsed)
    for w in workers:
        w.join(timeout=60)
        if w.exitcode != 0:
            msg = f"a {backend} client process exited with {w.exitcode}"
            raise RuntimeError(msg)
    return rates


def _rows(backend: str, n: int, rates: dict[str, list[float]]) -> list[Row]:
    floors = {name.split(": ")[1]: sum(r) for name, r in rates.items() if name.startswith("floor")}
    rows = []
    for name, per_process in rates.items():
        design, op = name.split(": ", 1)
        total = sum(per_process)
        floor = floors.get(op, floors.get("PING"))
        clients = f"{n} process" if n == 1 else f"{n} processes"
        rows.append(
            {
                "group": GROUP,
                "name": f"{backend} {name}, {clients}",
                "design": f"{backend} {design}",
                "op": f"{op}, {clients}",
                "size": FILLED,
                "processes": n,
                "ns_per_op": 1e9 / total,
                "ns_min": 1e9 / (n * max(per_process)),
                "ns_max": 1e9 / (n * min(per_process)),
                "ops_per_s": total,
                "per_process_ops_per_s": per_process,
                "ratio_to_floor": None if not floor else floor / total,
            }
        )
    return rows


def _fill_redis(url: str) -> None:
    from sticky import Engine  # noqa: PLC0415
    from sticky.store.redis import RedisStore  # noqa: PLC0415

    engine = Engine(seed=0, store=RedisStore.from_url(url, prefix="bench"))
    try:
        engine.create_profile(PROFILE)
        for number in POOL:
            engine.add_number(PROFILE, number)
        mapped = _mapped(FILLED)
        for i in range(0, FILLED, FILL):
            engine.select_many(PROFILE, mapped[i : i + FILL])
    finally:
        engine.close()


def _fill_sqlite(path: Path, floor_path: Path) -> None:
    from sticky import Engine  # noqa: PLC0415
    from sticky.store.sqlite import SQLiteStore  # noqa: PLC0415

    engine = Engine(seed=0, store=SQLiteStore(path))
    try:
        engine.create_profile(PROFILE)
        for number in POOL:
            engine.add_number(PROFILE, number)
        mapped = _mapped(FILLED)
        for i in range(0, FILLED, FILL):
            engine.select_many(PROFILE, mapped[i : i + FILL])
    finally:
        engine.close()
    conn = sqlite3.connect(floor_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(
        "CREATE TABLE m (profile TEXT NOT NULL, recipient TEXT NOT NULL,"
        " sender TEXT NOT NULL, last_used REAL NOT NULL,"
        " PRIMARY KEY (profile, recipient)) WITHOUT ROWID"
    )
    now = time.time()
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO m VALUES (?, ?, ?, ?)",
        ((PROFILE, to, POOL[i % len(POOL)], now) for i, to in enumerate(mapped)),
    )
    conn.execute("COMMIT")
    conn.close()


def run(quick: bool) -> list[Row]:
    """Rows for Redis and SQLite at 1, 2 and 4 processes (2 s per phase quick, 5 s full)."""
    from sticky.testing.redis_server import RedisServer  # noqa: PLC0415 - the redis extra

    seconds = 2.0 if quick else 5.0
    rows: list[Row] = []
    server = RedisServer()
    server.start()
    try:
        _fill_redis(server.url)
        for run_id, n in enumerate(PROCESSES):
            rows += _rows("redis", n, _run_clients("redis", server.url, "", n, run_id, seconds))
    finally:
        server.stop()
    workdir = Path(tempfile.mkdtemp(prefix="sticky-bench-clients-"))
    try:
        path, floor_path = workdir / "store.db", workdir / "floor.db"
        _fill_sqlite(path, floor_path)
        for run_id, n in enumerate(PROCESSES):
            rates = _run_clients("sqlite", str(path), str(floor_path), n, run_id, seconds)
            rows += _rows("sqlite", n, rates)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def main(argv: Sequence[str]) -> int:
    started = time.perf_counter()
    rows = run("--quick" in argv)
    print(f"{'name':34} {'total ops/s':>12} {'per process':>24} {'x floor':>7}")
    for r in rows:
        each = " ".join(f"{v:,.0f}" for v in r["per_process_ops_per_s"])
        print(f"{r['name']:34} {r['ops_per_s']:>12,.0f} {each:>24} {r['ratio_to_floor']:>7.2f}")
    print(f"{time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
