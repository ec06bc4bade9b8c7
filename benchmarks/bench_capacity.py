"""Capacity: a select with capacity on against the same select with it off, on each store.

On every store (memory, SQLite, Redis on loopback: those installed here), one engine on
a :class:`~sticky.ManualClock` holds two profiles with pools of the same size and kind
(ten long codes, two toll-free numbers) and tables of the same size: ``off``, with no
limit, and ``on``, where every number has a rate, a burst and a daily budget of new
recipients. The limits are so large (:data:`LIMITS`) that no select in the run waits or
is refused, so the difference is the capacity bookkeeping alone: reading each number's
state, planning the choice against it, reserving the slot and counting the budget, in
the select's own atomic step. The run checks that no select waited.

Hits (mapped recipients in random order; the clock moves one second before each repeat,
so that every hit refreshes) and misses (new recipients, forgotten after each repeat,
untimed), off and on, interleaved within each repeat; a row is the median of the
repeats, and each ``on`` row's ``ratio_to_floor`` is its ratio to the ``off`` row of the
same store and work. On Redis each row also has the server's CPU per select
(``INFO commandstats`` ``usec`` after ``CONFIG RESETSTAT``) and its commands per select
(each an ``EVALSHA``: a round trip), and their ratios ``on / off``.

A store that cannot keep capacity yet (its engine refuses the limits, or a probe finds
that it does not schedule) gets its rows marked missing with the reason.

Run alone: ``python -m benchmarks.bench_capacity [--quick] [--out DIR]`` (writes
``capacity.json`` and ``capacity.md`` there, default ``benchmarks/results/``); or with
the harness, ``python -m benchmarks --group capacity``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.stores import (
    FILL,
    RedisStats,
    Row,
    open_engine,
    pool,
    recipients,
    row,
)
from sticky import Engine, ManualClock, PoolSettings
from sticky.errors import StickyError

GROUP = "capacity"
STORES = ("memory", "sqlite", "redis")
LIMITS = PoolSettings(
    long_code_rate=1e6,
    toll_free_rate=1e6,
    burst=1_000_000,
    daily_new_recipients=1_000_000_000,
)
"""Every kind of limit on, none ever reached in the run: no select waits or is refused."""


def _keeps_capacity(engine: Engine) -> str | None:
    """None if the engine's store schedules by rate; else why not (the probe is removed)."""
    try:
        engine.create_profile("probe", PoolSettings(long_code_rate=1.0))
        engine.add_number("probe", "+13125559999")
        at = engine.clock.now()
        first = engine.select("probe", "+16465559990", now=at)
        second = engine.select("probe", "+16465559991", now=at)
    except StickyError as exc:  # its message may name the store's file: the kind says enough
        return f"{type(engine.store).__name__} refuses limits ({type(exc).__name__})"
    finally:
        with contextlib.suppress(StickyError):
            engine.delete_profile("probe")
    if (first.send_at, second.send_at) != (at, at + 1.0):
        return f"the store does not schedule: send_at {first.send_at - at}, {second.send_at - at}"
    return None


def bench_store(store: str, size: int, ops: int, repeats: int, workdir: Path) -> list[Row]:
    """The four rows of one store: hit and miss, capacity off and on, interleaved."""
    ops_list = [
        f"select {kind}, capacity {state}" for kind in ("hit", "miss") for state in ("off", "on")
    ]
    redis = RedisStats() if store == "redis" else None
    engine = None
    try:
        engine = open_engine(store, workdir / "capacity.db", redis)
        why = _keeps_capacity(engine)
        if why is not None:
            return [row(GROUP, store, op, size, [], note=f"missing: {why}") for op in ops_list]
        clock = engine.clock
        assert isinstance(clock, ManualClock)
        everyone = recipients(size + ops, seed=size)
        base, new = everyone[:size], everyone[size:]
        hits = random.Random(size + 1).sample(base, min(ops, size))
        for tag, (pid, settings) in enumerate((("off", PoolSettings()), ("on", LIMITS))):
            engine.create_profile(pid, settings)
            for number, kind in pool(tag):
                engine.add_number(pid, number, kind)
            for i in range(0, size, FILL):
                engine.select_many(pid, base[i : i + FILL])
        select, forget = engine.select, engine.forget

        def run(pid: str, batch: Sequence[str]) -> Callable[[], int]:
            def timed() -> int:
                for to in batch:
                    select(pid, to)
                return len(batch)

            return timed

        def undo(pid: str) -> None:
            for to in new:
                forget(pid, to)

        cases: list[tuple[str, Callable[[], int], Callable[[], object] | None]] = [
            ("select hit, capacity off", run("off", hits), None),
            ("select hit, capacity on", run("on", hits), None),
            ("select miss, capacity off", run("off", new), lambda: undo("off")),
            ("select miss, capacity on", run("on", new), lambda: undo("on")),
        ]
        samples: dict[str, list[float]] = {op: [] for op, _, _ in cases}
        usage: dict[str, list[tuple[float, int, int]]] = {op: [] for op, _, _ in cases}
        waited = engine.stats().waited
        for i in range(1 + repeats):  # the first is the warm-up
            clock.advance(1.0)
            for op, timed, after in cases:
                gc.collect()
                if redis is not None:
                    redis.reset()
                start = time.perf_counter_ns()
                n = timed()
                elapsed = time.perf_counter_ns() - start
                if redis is not None:
                    usec, calls = redis.usage()
                    usage[op].append((usec, calls, n))
                if after is not None:
                    after()
                if i:
                    samples[op].append(elapsed / n)
        # Limits reached would measure waiting, not the bookkeeping: say so on every row.
        spoilt = engine.stats().waited != waited
        rows = []
        for op, s in samples.items():
            extra: dict[str, Any] = {}
            if redis is not None:
                timed_usage = usage[op][1:]
                extra["server_us_per_op"] = statistics.median(u / n for u, _, n in timed_usage)
                extra["commands_per_op"] = statistics.median(c / n for _, c, n in timed_usage)
            if spoilt:
                extra["note"] = "invalid: a select waited, so the limits were reached"
            rows.append(row(GROUP, store, op, size, s, **extra))
        return _ratios(rows)
    except Exception as exc:  # a store that cannot run here: no extra, no server, too old
        # The kind of error, not its message, which may name a file or a server.
        note = f"missing: the {store} store cannot run with capacity here ({type(exc).__name__})"
        return [row(GROUP, store, op, size, [], note=note) for op in ops_list]
    finally:
        if engine is not None:
            engine.close()
        if redis is not None:
            redis.close()


def _ratios(rows: list[Row]) -> list[Row]:
    """Each ``on`` row against the ``off`` row of the same work: time, server CPU, commands."""
    by_op = {r["op"]: r for r in rows}
    for r in rows:
        if r["ns_per_op"] is None:
            continue
        off = by_op[r["op"].replace("capacity on", "capacity off")]
        r["ratio_to_floor"] = r["ns_per_op"] / off["ns_per_op"]
        for field in ("server_us_per_op", "commands_per_op"):
            if r.get(field) is not None and off.get(field):
                r[f"{field.removesuffix('_per_op')}_ratio"] = r[field] / off[field]
    return rows


def run(
    quick: bool,
    huge: bool = False,  # noqa: ARG001 - the harness's plug-in signature
    *,
    stores: Sequence[str] = STORES,
    size: int | None = None,
    ops: int | None = None,
    repeats: int | None = None,
) -> list[Row]:
    """The rows of every store in ``stores``: 10^4 mappings (quick) or 10^5, each store
    in turn, its four rows interleaved. A store that cannot run has its rows marked."""
    size = size or (10_000 if quick else 100_000)
    ops = ops or (2_000 if quick else 5_000)
    repeats = repeats or (5 if quick else 9)
    workdir = Path(tempfile.mkdtemp(prefix="sticky-bench-capacity-"))
    try:
        rows: list[Row] = []
        for store in stores:
            # SQLite and Redis are far slower per select: fewer of them, the same table.
            n = ops if store == "memory" else max(1, ops // 5)
            rows += bench_store(store, size, n, repeats, workdir)
        return rows
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def table(rows: Sequence[Row]) -> str:
    """The rows as Markdown: ns per select, on / off, and on Redis the server's share."""
    lines = [
        (
            "| store | operation | size | ns/op (median) | min | max | on / off "
            "| server us/op | server on / off | commands/op |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def n(v: float | None, digits: int = 0) -> str:
        return "-" if v is None else f"{v:,.{digits}f}"

    for r in rows:
        if r["ns_per_op"] is None:
            lines.append(f"| {r['design']} | {r['op']} | {r['size']:,} | {r.get('note', '')} |")
            continue
        lines.append(
            f"| {r['design']} | {r['op']} | {r['size']:,} | {n(r['ns_per_op'])} "
            f"| {n(r['ns_min'])} | {n(r['ns_max'])} | {n(r.get('ratio_to_floor'), 2)} "
            f"| {n(r.get('server_us_per_op'), 1)} | {n(r.get('server_us_ratio'), 2)} "
            f"| {n(r.get('commands_per_op'), 2)} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_capacity")
    parser.add_argument("--quick", action="store_true", help="10^4 mappings, fewer selects")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results", help="results directory"
    )
    args = parser.parse_args(argv)
    command = "python -m benchmarks.bench_capacity" + (" --quick" if args.quick else "")
    print(f"{command}: {report.machine_line()}", flush=True)
    rows = run(args.quick)
    checks = report.capacity_targets(rows)
    text = "\n".join(
        [
            "# sticky benchmarks: capacity on against off",
            "",
            f"- command: `{command}`, " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            f"- machine: {report.machine_line()}",
            "- method: see the docstring of benchmarks/bench_capacity.py",
            "",
            "## Targets",
            "",
            report.targets_table(checks),
            "",
            "## Rows",
            "",
            table(rows),
            "",
        ]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    data = {
        "meta": {"command": command, "machine": report.machine()},
        "targets": checks,
        "rows": rows,
    }
    (args.out / "capacity.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    (args.out / "capacity.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
