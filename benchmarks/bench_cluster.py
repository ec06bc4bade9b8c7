"""The Redis store on a live 6-node Redis Cluster on loopback, and one primary's ceiling.

``run(quick)`` starts the test kit's cluster (:mod:`sticky.testing.redis_cluster`: 3
primaries, 3 replicas, no persistence), fills one profile with ``select_many`` batches,
and measures, on the primary that owns the profile's slot:

- **latency, interleaved**: each repeat times a batch of every operation in turn, so
  that drift on a shared machine hits them all alike; a row is the median (min, max)
  per select over the repeats, and its ratio to ``PING`` sent to that primary by a
  plain client. Operations: ``select`` of a mapped recipient (a hit) and of a new one,
  ``select_many`` of 100 hits and of 100 new recipients, and ``select`` of a new
  recipient on a store opened with ``min_replicas=1`` (the cost of ``WAIT``);
- **memory per mapping**: ``INFO memory`` ``used_memory`` of that primary before the
  profile is filled and after, divided by the mappings (the profile is the only data);
- **selects per second of one Redis core**: 2 (quick) or 4 client processes select new
  recipients, then hits, then ``select_many`` of 100 new recipients, for a fixed time
  each; ``INFO cpu`` of that primary (``used_cpu_sys`` + ``used_cpu_user``) before and
  after each phase, less its idle rate, divided by the selects done, is the server CPU
  time of one select (networking and replication to its replica included), and its
  inverse the rate of one fully busy core (``INFO commandstats`` gives the scripts'
  share). The clients
  share the machine with the server, so the server is not saturated; the CPU time per
  select is what extrapolates.

Run alone: ``python -m benchmarks.bench_cluster [--quick|--smoke] [--out DIR]``, which
writes ``cluster.json`` and ``cluster.md`` into ``benchmarks/results/`` (or ``DIR``).
Needs redis-server and redis-cli on the PATH.
"""

from __future__ import annotations

import datetime
import json
import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Row = dict[str, Any]

GROUP = "cluster"
PROFILE = "bench"
PREFIX = "bench"
POOL = [f"+1312555{i:04d}" for i in range(20)]
BATCH = 100
"""Selects per ``select_many`` call."""
FILL = 1_000
"""Recipients per ``select_many`` call while filling."""
GIB = 1 << 30


@dataclass(frozen=True)
class Mode:
    """What one mode measures."""

    name: str
    size: int
    """Mappings of the profile (the memory figure and the hits' table)."""
    ops: int
    """Calls per timed batch of one-by-one selects (and of PING)."""
    batches: int
    """``select_many`` calls per timed batch."""
    repeats: int
    processes: int
    """Client processes of the one-core phases."""
    seconds: float
    """Length of each one-core phase (and of the idle reading before them)."""


MODES = {
    "smoke": Mode("smoke", 2_000, 50, 2, 1, 2, 0.3),
    "quick": Mode("quick", 10**5, 1_000, 10, 7, 2, 3.0),
    "full": Mode("full", 10**5, 2_000, 20, 11, 4, 5.0),
}


def _recipients(tag: int) -> Iterator[str]:
    """Distinct recipients, never those of another ``tag`` (0-99)."""
    i = 0
    while True:
        yield f"+1{2_000_000_000 + tag * 10_000_000 + i}"
        i += 1


def _row(name: str, size: int, **fields: Any) -> Row:
    return {
        "group": GROUP,
        "name": name,
        "design": "cluster",
        "op": name,
        "size": size,
        "ns_per_op": None,
        "ns_min": None,
        "ns_max": None,
        "ops_per_s": None,
        "ratio_to_floor": None,
        **fields,
    }


def _cpu_seconds(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _interleaved(
    ops: Sequence[tuple[str, Callable[[int], None], int, int]], repeats: int
) -> dict[str, list[float]]:
    """ns per select of each ``(name, op, calls, selects per call)``, one batch of each
    per repeat, in turn; one untimed warm-up batch of each first."""
    for _, op, calls, _ in ops:
        op(max(1, calls // 10))
    times: dict[str, list[float]] = {name: [] for name, *_ in ops}
    for _ in range(repeats):
        for name, op, calls, per_call in ops:
            t0 = time.perf_counter_ns()
            op(calls)
            times[name].append((time.perf_counter_ns() - t0) / (calls * per_call))
    return times


# -- client processes: selects per second of one core -----------------------------------
PHASES = ("select new", "select hit", f"select_many new x{BATCH}")
"""What the client processes run, one phase after another, all together."""


def _worker(url: str, worker: int, seconds: float, barrier: Any, results: Any) -> None:
    """Run each of :data:`PHASES` for ``seconds``, in step with the others; report counts."""
    from sticky import Engine  # noqa: PLC0415
    from sticky.store.redis import RedisStore  # noqa: PLC0415

    engine = Engine(seed=worker, store=RedisStore.from_url(url, prefix=PREFIX))
    fresh = _recipients(50 + worker)
    mapped = _recipients(0)
    hits = [next(mapped) for _ in range(FILL)]
    select, select_many = engine.select, engine.select_many
    cursor = [worker * 97]

    def hit() -> int:
        cursor[0] += 7
        select(PROFILE, hits[cursor[0] % FILL])
        return 1

    def new() -> int:
        select(PROFILE, next(fresh))
        return 1

    def many_new() -> int:
        select_many(PROFILE, [next(fresh) for _ in range(BATCH)])
        return BATCH

    try:
        for op in (new, hit, many_new):
            for _ in range(20):  # warm: connections and the cached pool
                hit()
            barrier.wait()  # the parent reads the server's counters here
            barrier.wait()
            done = 0
            stop = time.perf_counter() + seconds
            while time.perf_counter() < stop:
                for _ in range(5):
                    done += op()
            results.put(done)
            barrier.wait()  # every worker has stopped: the parent reads them again
    finally:
        engine.close()


def _command_usec(client: Any) -> float:
    """Server usec of every command since the last CONFIG RESETSTAT (INFO's own left out)."""
    stats = client.info("commandstats")
    return sum(
        float(v["usec"]) for k, v in stats.items() if k not in {"cmdstat_info", "cmdstat_config"}
    )


def _per_core(url: str, primary: Any, mode: Mode, size: int) -> list[Row]:
    """Server CPU per select and selects/s of one fully busy core, for each phase.

    The primary's idle CPU rate (cluster bus, cron), read over ``mode.seconds`` before
    the clients start, is subtracted from each phase's.
    """
    cpu0, t0 = _cpu_seconds(primary), time.perf_counter()
    time.sleep(mode.seconds)
    idle = (_cpu_seconds(primary) - cpu0) / (time.perf_counter() - t0)
    ctx = mp.get_context("spawn")
    n = mode.processes
    barrier = ctx.Barrier(n + 1)
    results = ctx.Queue()
    workers = [
        ctx.Process(target=_worker, args=(url, i, mode.seconds, barrier, results))
        for i in range(n)
    ]
    for w in workers:
        w.start()
    timeout = 120 + 4 * mode.seconds
    rows: list[Row] = []
    try:
        for phase in PHASES:
            barrier.wait(timeout=timeout)
            primary.config_resetstat()
            cpu0 = _cpu_seconds(primary)
            t0 = time.perf_counter()
            barrier.wait(timeout=timeout)
            barrier.wait(timeout=timeout)
            wall = time.perf_counter() - t0
            cpu = _cpu_seconds(primary) - cpu0 - idle * wall
            commands = _command_usec(primary) / 1e6
            done = sum(results.get(timeout=timeout) for _ in range(n))
            rows.append(
                _row(
                    f"one core: {phase}, {n} processes",
                    size,
                    kind="one core",
                    processes=n,
                    ops_per_s=done / wall,
                    server_us_per_op=cpu / done * 1e6,
                    command_us_per_op=commands / done * 1e6,
                    idle_cpu=idle,
                    server_busy=cpu / wall,
                    selects_per_core_s=done / cpu,
                    selects_per_core_s_commands_only=done / commands,
                )
            )
    finally:
        for w in workers:
            w.join(timeout=60)
            if w.is_alive():
                w.terminate()
    if any(w.exitcode != 0 for w in workers):
        msg = "a cluster client process failed"
        raise RuntimeError(msg)
    return rows


# -- the run ------------------------------------------------------------------------------
def measure(mode: Mode) -> list[Row]:
    """Every row of one mode, on a cluster started for it and stopped after."""
    import redis  # noqa: PLC0415 - the optional extra
    from redis.crc import key_slot  # noqa: PLC0415

    from sticky import Engine  # noqa: PLC0415
    from sticky.store.redis import RedisStore  # noqa: PLC0415
    from sticky.store.redis.keys import hex_id  # noqa: PLC0415
    from sticky.testing.redis_cluster import RedisCluster  # noqa: PLC0415

    cluster = RedisCluster()
    cluster.start()
    rows: list[Row] = []
    try:
        slot = int(key_slot(hex_id(PROFILE).encode()))
        node = cluster.node_of_slot(slot)
        primary = node.client()
        # the same client library and options as the store's, to the same primary
        ping_client = redis.Redis(host="127.0.0.1", port=node.port, decode_responses=True)
        engine = Engine(seed=1, store=RedisStore.from_url(cluster.url, prefix=PREFIX))
        waiting = Engine(
            seed=2, store=RedisStore.from_url(cluster.url + "?min_replicas=1", prefix=PREFIX)
        )
        try:
            engine.create_profile(PROFILE)
            for number in POOL:
                engine.add_number(PROFILE, number)
            before = int(primary.info("memory")["used_memory"])
            mapped_source = _recipients(0)
            size = mode.size
            mapped = [next(mapped_source) for _ in range(size)]
            for i in range(0, size, FILL):
                engine.select_many(PROFILE, mapped[i : i + FILL])
            stored = engine.stats().mappings
            used = int(primary.info("memory")["used_memory"]) - before
            per = used / stored
            rows.append(
                _row(
                    "memory per mapping (primary of the slot)",
                    stored,
                    kind="memory",
                    bytes_per_mapping=per,
                    mappings_per_gib=GIB / per,
                )
            )
            fresh, fresh_waiting = _recipients(1), _recipients(2)
            cursor = [0]

            def stride(n: int) -> Iterator[str]:
                i = cursor[0]
                for _ in range(n):
                    yield mapped[i % size]
                    i += 7919  # a prime stride: spread over the whole table
                cursor[0] = i

            select, select_many, select_w = engine.select, engine.select_many, waiting.select

            def ping(n: int) -> None:
                for _ in range(n):
                    ping_client.ping()

            def hit(n: int) -> None:
                for to in stride(n):
                    select(PROFILE, to)

            def new(n: int) -> None:
                for _ in range(n):
                    select(PROFILE, next(fresh))

            def new_waiting(n: int) -> None:
                for _ in range(n):
                    select_w(PROFILE, next(fresh_waiting))

            def many_hits(n: int) -> None:
                for _ in range(n):
                    select_many(PROFILE, list(stride(BATCH)))

            def many_new(n: int) -> None:
                for _ in range(n):
                    select_many(PROFILE, [next(fresh) for _ in range(BATCH)])

            ops, batches = mode.ops, mode.batches
            times = _interleaved(
                [
                    ("PING (primary of the slot)", ping, ops, 1),
                    ("select hit", hit, ops, 1),
                    ("select new", new, ops, 1),
                    (f"select_many hit x{BATCH}", many_hits, batches, BATCH),
                    (f"select_many new x{BATCH}", many_new, batches, BATCH),
                    ("select new, min_replicas=1", new_waiting, ops, 1),
                ],
                mode.repeats,
            )
            ping_ns = statistics.median(times["PING (primary of the slot)"])
            for name, ns in times.items():
                median = statistics.median(ns)
                rows.append(
                    _row(
                        name,
                        size,
                        kind="latency",
                        ns_per_op=median,
                        ns_min=min(ns),
                        ns_max=max(ns),
                        ops_per_s=1e9 / median,
                        ratio_to_floor=median / ping_ns,
                    )
                )
            # per repeat, the ratio to that repeat's PING (the steadier comparison)
            pings = times["PING (primary of the slot)"]
            for r in rows:
                if r.get("kind") == "latency":
                    ns = times[r["name"]]
                    r["per_repeat_ratio"] = [t / p for t, p in zip(ns, pings, strict=True)]
            plain = statistics.median(times["select new"])
            waited = statistics.median(times["select new, min_replicas=1"])
            rows.append(
                _row(
                    "min_replicas=1 cost per new recipient",
                    size,
                    kind="wait cost",
                    extra_ns_per_op=waited - plain,
                    ratio_to_plain=waited / plain,
                )
            )
        finally:
            waiting.close()
            engine.close()
            ping_client.close()
        rows += _per_core(cluster.url, primary, mode, size)
        primary.close()
    finally:
        cluster.stop()
    return rows


def run(quick: bool, *, huge: bool = False) -> list[Row]:
    """The rows of quick mode or full mode (see the module docstring).

    ``huge`` changes nothing: the figures are per mapping and per select.
    """
    del huge
    return measure(MODES["quick" if quick else "full"])


def markdown(meta: dict[str, Any], rows: Sequence[Row]) -> str:
    """The results as a page: latency against PING, memory, one core."""
    lines = [
        "# sticky benchmarks: Redis Cluster",
        "",
        f"- command: `{meta['command']}` ({meta['mode']} mode), {meta['date']}",
        f"- machine: {meta['machine']}",
        (
            "- cluster: the test kit's, 3 primaries and 3 replicas on 127.0.0.1, no persistence; "
            "every figure is of the primary that owns the profile's slot"
        ),
        (
            f"- method: {meta['repeats']} repeats, each timing a batch of every operation in "
            "turn (interleaved); medians, with min and max; see benchmarks/bench_cluster.py"
        ),
        "",
        "## Latency per select",
        "",
        "| operation | us (median) | min | max | x PING | x PING per repeat |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if r["kind"] == "latency":
            per = ", ".join(f"{x:.2f}" for x in r["per_repeat_ratio"])
            lines.append(
                f"| {r['name']} | {r['ns_per_op'] / 1e3:.1f} | {r['ns_min'] / 1e3:.1f} "
                f"| {r['ns_max'] / 1e3:.1f} | {r['ratio_to_floor']:.2f} | {per} |"
            )
    for r in rows:
        if r["kind"] == "wait cost":
            lines += [
                "",
                (
                    f"`min_replicas=1` adds {r['extra_ns_per_op'] / 1e3:.1f} us per new recipient "
                    f"({r['ratio_to_plain']:.2f}x the same select without it): one `WAIT` on the "
                    "write's connection, for the replica's acknowledgement."
                ),
            ]
    lines += ["", "## One primary's ceiling", ""]
    for r in rows:
        if r["kind"] == "memory":
            lines.append(
                f"- memory: {r['bytes_per_mapping']:.0f} bytes per mapping (`used_memory` "
                f"of the primary, {r['size']:,} mappings of one profile), so "
                f"{r['mappings_per_gib'] / 1e6:.2f} million mappings per GiB of Redis memory."
            )
    lines += [
        "",
        (
            "| client processes run | selects/s in all | primary busy | server CPU us/select "
            "| commands us/select | selects/s of one busy core | commands only |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["kind"] == "one core":
            lines.append(
                f"| {r['name'].removeprefix('one core: ')} | {r['ops_per_s']:,.0f} "
                f"| {r['server_busy'] * 100:.0f}% | {r['server_us_per_op']:.1f} "
                f"| {r['command_us_per_op']:.1f} | {r['selects_per_core_s']:,.0f} "
                f"| {r['selects_per_core_s_commands_only']:,.0f} |"
            )
    lines += [
        "",
        (
            "Server CPU is `used_cpu_sys` + `used_cpu_user` of the primary over the phase, less "
            "its idle rate (cluster bus, cron); it includes reading and writing the sockets and "
            "feeding the replica. *Commands* is `INFO commandstats` (the time inside the scripts, "
            "wall time: inflated when the busy machine preempts the server, so it can exceed the "
            "CPU figure). The clients share the 2 cores with the 6 nodes, so the primary is not "
            "saturated here: the CPU per select is what extrapolates to a busy core."
        ),
    ]
    lines.append("")
    return "\n".join(lines)


def write(out: Path, mode: str, rows: list[Row], command: str) -> list[Path]:
    """Write cluster.json and cluster.md into ``out``; return their paths."""
    import platform  # noqa: PLC0415

    from benchmarks import report  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    cfg = MODES[mode]
    meta = {
        "command": command,
        "mode": mode,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": report.machine_line(),
        "python": platform.python_version(),
        "repeats": cfg.repeats,
    }
    data = {"meta": meta, "rows": rows}
    (out / "cluster.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    (out / "cluster.md").write_text(markdown(meta, rows), encoding="utf-8")
    return [out / "cluster.json", out / "cluster.md"]


def main(argv: Sequence[str]) -> int:
    started = time.perf_counter()
    mode = "smoke" if "--smoke" in argv else "quick" if "--quick" in argv else "full"
    out = Path(__file__).parent / "results"
    if "--out" in argv:
        out = Path(argv[argv.index("--out") + 1])
    rows = measure(MODES[mode])
    command = "python -m benchmarks.bench_cluster " + " ".join(argv)
    paths = write(out, mode, rows, command.strip())
    print((paths[1]).read_text(encoding="utf-8"))
    print(f"{time.perf_counter() - started:.1f} s; wrote " + ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
