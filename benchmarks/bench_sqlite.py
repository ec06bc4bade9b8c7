"""SQLite: the store against the least any SQLite design can do, side by side.

The floor is raw :mod:`sqlite3` on a file with the store's pragmas (WAL,
``synchronous=NORMAL``, the same busy timeout): per message, ``BEGIN IMMEDIATE``, one
SELECT by primary key ``(profile, recipient)``, one UPSERT of ``(sender, now)``,
``COMMIT``. It chooses no sender, checks no pool and keeps no index beyond its key.

Against it, ``Engine(store=SQLiteStore(path)).select`` with the system clock: hits
(recipients already mapped), misses (new recipients) and the 80% mix, on tables of the
same size, the same recipients in the same order. Each timed repeat is preceded by one
untimed warm-up; the new recipients are removed between repeats (untimed), so every
repeat sees the same table. Two diagnostic rows: ``floor+writes: miss``, the floor
making the writes of a new mapping in sticky 0.1's design (its row, the cascade index
``(profile, sender)``, the tail of an expiry queue table: three pages; the store now
writes its row, one index entry that is both the cascade and the expiry index, and
the profile's horizon once a second), and ``select_many`` of 100 hits per call (one
transaction per batch). And the file's bytes per mapping, floor and store, after
loading the same recipients (pages in use, times the page size, over the mappings: op
``memory``, as the other groups' memory rows).

Run alone: ``python -m benchmarks.bench_sqlite [--quick]``; or with the harness,
``python -m benchmarks --quick --group sqlite``.
"""

from __future__ import annotations

import contextlib
import gc
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sticky import Engine, NumberType, PoolSettings
from sticky.store.sqlite import SQLiteStore

Row = dict[str, Any]

POOL = [f"+1312555{i:04d}" for i in range(8)] + ["+18005550100", "+18885550101"]
PROFILE = "bench"
REPEATS = 5
WARMUP = 1
BATCH = 100


def _recipients(n: int, seed: int) -> list[str]:
    return [f"+1646{i:07d}" for i in random.Random(seed).sample(range(10**7), n)]


class Floor:
    """Raw sqlite3: one SELECT and one UPSERT per message, in one transaction."""

    def __init__(self, path: Path, base: Sequence[str], *, indexes: bool = False) -> None:
        self.conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute(
            "CREATE TABLE m (profile TEXT NOT NULL, recipient TEXT NOT NULL,"
            " sender TEXT NOT NULL, last_used REAL NOT NULL,"
            " PRIMARY KEY (profile, recipient)) WITHOUT ROWID"
        )
        self.indexes = indexes
        if indexes:  # 0.1's other writes: the cascade index, the expiry queue
            self.conn.execute("CREATE INDEX m_sender ON m (profile, sender)")
            self.conn.execute(
                "CREATE TABLE q (profile TEXT NOT NULL, pos INTEGER NOT NULL,"
                " key REAL NOT NULL, recipient TEXT NOT NULL,"
                " PRIMARY KEY (profile, pos)) WITHOUT ROWID"
            )
            self.pos = 0
        now = time.time()
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany(
                "INSERT INTO m VALUES (?, ?, ?, ?)",
                ((PROFILE, to, POOL[i % len(POOL)], now) for i, to in enumerate(base)),
            )

    def run(self, batch: Sequence[str]) -> int:
        execute = self.conn.execute
        clock = time.time
        sender = POOL[0]
        for to in batch:
            execute("BEGIN IMMEDIATE")
            row = execute(
                "SELECT sender, last_used FROM m WHERE profile = ? AND recipient = ?",
                (PROFILE, to),
            ).fetchone()
            execute(
                "INSERT INTO m (profile, recipient, sender, last_used) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (profile, recipient)"
                " DO UPDATE SET sender = excluded.sender, last_used = excluded.last_used",
                (PROFILE, to, sender if row is None else row[0], now := clock()),
            )
            if row is None and self.indexes:
                self.pos += 1
                execute("INSERT INTO q VALUES (?, ?, ?, ?)", (PROFILE, self.pos, now, to))
            execute("COMMIT")
        return len(batch)

    def forget(self, batch: Sequence[str]) -> None:
        with self.conn:
            self.conn.execute("BEGIN")
            self.conn.executemany(
                "DELETE FROM m WHERE profile = ? AND recipient = ?",
                ((PROFILE, to) for to in batch),
            )

    def close(self) -> None:
        self.conn.close()


class Store:
    """``Engine(store=SQLiteStore(path)).select`` with the system clock."""

    def __init__(self, path: Path, base: Sequence[str]) -> None:
        self.engine = Engine(seed=1, store=SQLiteStore(path))
        self.engine.create_profile(PROFILE, PoolSettings())
        for number in POOL:
            kind = NumberType.TOLL_FREE if number.startswith("+18") else NumberType.LONG_CODE
            self.engine.add_number(PROFILE, number, kind)
        for i in range(0, len(base), 1000):  # one transaction per thousand
            self.engine.select_many(PROFILE, base[i : i + 1000])

    def run(self, batch: Sequence[str]) -> int:
        select = self.engine.select
        for to in batch:
            select(PROFILE, to)
        return len(batch)

    def run_many(self, batch: Sequence[str]) -> int:
        select_many = self.engine.select_many
        for i in range(0, len(batch), BATCH):
            select_many(PROFILE, batch[i : i + BATCH])
        return len(batch)

    def forget(self, batch: Sequence[str]) -> None:
        forget = self.engine.forget
        for to in batch:
            forget(PROFILE, to)

    def close(self) -> None:
        self.engine.close()


def _time(run: Callable[[], int], after: Callable[[], object] | None) -> float:
    start = time.perf_counter_ns()
    ops = run()
    elapsed = time.perf_counter_ns() - start
    if after is not None:
        after()
    return elapsed / ops


def _row(name: str, size: int, samples: list[float], floor: float | None) -> Row:
    median = statistics.median(samples)
    return {
        "group": "sqlite",
        "name": name,
        "design": name.split(": ", 1)[0],  # floor, floor+writes or sqlite
        "op": name.split(": ", 1)[-1],
        "size": size,
        "ns_per_op": median,
        "ns_min": min(samples),
        "ns_max": max(samples),
        "ops_per_s": 1e9 / median,
        "ratio_to_floor": None if floor is None else median / floor,
        "repeats": len(samples),
    }


def _file_bytes(path: Path) -> int:
    """Bytes of the database's pages in use, the WAL's latest pages included."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        page = conn.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * page)


def _bytes_row(name: str, size: int, per: float, floor: float) -> Row:
    return {
        "group": "sqlite",
        "name": name,
        "design": name.split(": ", 1)[0],
        "op": "memory",
        "size": size,
        "ns_per_op": None,
        "ns_min": None,
        "ns_max": None,
        "ops_per_s": None,
        "ratio_to_floor": per / floor,
        "bytes_per_mapping": per,
        "repeats": 1,
    }


def bench_size(size: int, n_ops: int, workdir: Path) -> list[Row]:
    """Floor and store at one table size; every kind of work interleaved per repeat."""
    everyone = _recipients(size + n_ops, seed=size)
    base, new = everyone[:size], everyone[size:]
    rng = random.Random(size + 1)
    hits = rng.sample(base, n_ops)
    n_new = n_ops // 5
    mix = hits[n_new:] + new[:n_new]
    rng.shuffle(mix)
    floor = Floor(workdir / f"floor-{size}.db", base)
    indexed = Floor(workdir / f"indexed-{size}.db", base, indexes=True)
    store = Store(workdir / f"store-{size}.db", base)
    floor_bytes = _file_bytes(workdir / f"floor-{size}.db") / size
    store_bytes = _file_bytes(workdir / f"store-{size}.db") / size
    cases: list[tuple[str, Callable[[], int], Callable[[], object] | None]] = [
        ("floor: hit", lambda: floor.run(hits), None),
        ("sqlite: hit", lambda: store.run(hits), None),
        ("floor: miss", lambda: floor.run(new), lambda: floor.forget(new)),
        ("sqlite: miss", lambda: store.run(new), lambda: store.forget(new)),
        ("floor: mix", lambda: floor.run(mix), lambda: floor.forget(new[:n_new])),
        ("sqlite: mix", lambda: store.run(mix), lambda: store.forget(new[:n_new])),
        ("floor+writes: miss", lambda: indexed.run(new), lambda: indexed.forget(new)),
        ("sqlite: select_many hit", lambda: store.run_many(hits), None),
    ]
    samples: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    try:
        for i in range(WARMUP + REPEATS):
            for name, run, after in cases:
                gc.collect()
                ns = _time(run, after)
                if i >= WARMUP:
                    samples[name].append(ns)
    finally:
        floor.close()
        indexed.close()
        store.close()
    medians = {name: statistics.median(s) for name, s in samples.items()}
    rows = [
        _bytes_row("floor: file bytes", size, floor_bytes, floor_bytes),
        _bytes_row("sqlite: file bytes", size, store_bytes, floor_bytes),
    ]
    for name, s in samples.items():
        op = name.split(": ", 1)[1]
        ref = "floor: hit" if op == "select_many hit" else f"floor: {op}"
        rows.append(_row(name, size, s, medians[ref]))
    return rows


def run(quick: bool) -> list[Row]:
    """Rows for the harness: floor and store, hit/miss/mix, at each size."""
    sizes = (10_000, 100_000) if quick else (10_000, 100_000, 1_000_000)
    n_ops = 1_000 if quick else 4_000
    workdir = Path(tempfile.mkdtemp(prefix="sticky-bench-sqlite-"))
    try:
        rows: list[Row] = []
        for size in sizes:
            rows += bench_size(size, n_ops, workdir)
        return rows
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str]) -> int:
    started = time.perf_counter()
    rows = run("--quick" in argv)
    print(
        f"{'name':26} {'size':>9} {'ns/op':>9} {'min':>9} {'max':>9} {'ops/s':>8} {'x floor':>7}"
    )
    for r in rows:
        if r["ns_per_op"] is None:  # a file-bytes row
            print(
                f"{r['name']:26} {r['size']:>9,} {r['bytes_per_mapping']:>7,.1f} B"
                f" {'':>9} {'':>9} {'':>8} {r['ratio_to_floor']:>7.2f}"
            )
            continue
        print(
            f"{r['name']:26} {r['size']:>9,} {r['ns_per_op']:>9,.0f} {r['ns_min']:>9,.0f}"
            f" {r['ns_max']:>9,.0f} {r['ops_per_s']:>8,.0f} {r['ratio_to_floor']:>7.2f}"
        )
    print(f"{time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
