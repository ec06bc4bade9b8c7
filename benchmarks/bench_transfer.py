"""Export and import: a SQLite store's mappings into Redis, through the operating commands.

For each size (10^5 and 10^6 live mappings; ``--quick``: 10^4 and 10^5), a SQLite file
is filled with one profile of twenty long codes and that many mappings (written with
``import_mappings``, untimed), then two commands run, each in a child process of its
own (``python -m sticky``, as an operator runs them):

- ``export --store sqlite:///... -o export.jsonl``;
- ``import export.jsonl --store redis://...`` into an empty database of a throwaway
  redis-server on loopback (the file is checked line by line first, then written in
  batches of 1,000 through :meth:`sticky.Engine.import_mappings`).

A row is the command's wall time, its mappings per second, and the child's peak
resident memory (``VmHWM``, the peak since exec; ``ru_maxrss`` where there is no
``/proc``), beside the peak of a child that only opens the same store (the
interpreter and sticky loaded, and redis-py for Redis): the difference is what the
command adds.
The import is then checked: the Redis store holds every mapping, with its indexes whole
(``check_invariants``) at 10^5 and below.

Before and after, in this process on a sample of 20,000 of the export's mappings: the
way the import wrote each mapping before batches (one ``mapping`` look-up and one
``pin`` per mapping: two round trips) against ``import_mappings`` in batches of 1,000
(one round trip a batch), both into an empty Redis database, in mappings per second.

Run: ``python -m benchmarks.bench_transfer [--quick] [--sizes N ...] [--out DIR]``
(writes ``transfer.json`` and ``transfer.md``, default ``benchmarks/results/``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import report
from sticky import Engine, PoolSettings
from sticky.store.redis import RedisStore
from sticky.store.sqlite import SQLiteStore
from sticky.testing.redis_server import RedisServer

Row = dict[str, Any]

T0 = 1_800_000_000.0
PROFILE = "acme"
NUMBERS = [f"+1312555{i:04d}" for i in range(20)]
SAMPLE = 20_000
BATCH = 1_000
ROOT = Path(__file__).resolve().parent.parent

# The child: run one command of the CLI, then write its own time and peak memory.
_CHILD = """
import json, resource, sys, time
started = time.perf_counter()
if sys.argv[2] == "baseline":
    from sticky import Engine
    Engine(store=sys.argv[3]).close()
    status = 0
else:
    from sticky.cli import main
    status = main(sys.argv[2:])
seconds = time.perf_counter() - started
# VmHWM: this process's peak resident set since exec (ru_maxrss would carry the
# parent's peak over the fork that started it).
with open("/proc/self/status") as status_file:
    hwm = [line for line in status_file if line.startswith("VmHWM:")]
peak = int(hwm[0].split()[1]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open(sys.argv[1], "w") as out:
    json.dump({"status": status, "seconds": seconds, "maxrss_kib": peak}, out)
"""


def fill(path: Path, n: int, seed: int) -> None:
    """A SQLite file of one profile, twenty long codes and ``n`` live mappings at T0."""
    rng = random.Random(seed)
    ttl = PoolSettings().ttl
    with Engine(store=SQLiteStore(path)) as engine:
        engine.create_profile(PROFILE, PoolSettings())
        for number in NUMBERS:
            engine.add_number(PROFILE, number)
        npas = ("212", "415", "646", "718", "917")
        chunk = 50_000
        for start in range(0, n, chunk):
            entries = [
                (
                    f"+1{npas[i % 5]}{i // 5:07d}",
                    NUMBERS[rng.randrange(20)],
                    T0 - rng.uniform(0, ttl / 2),
                )
                for i in range(start, min(n, start + chunk))
            ]
            engine.import_mappings(PROFILE, entries, now=T0)


def child(*argv: str) -> dict[str, Any]:
    """Run one CLI command (or ``baseline URL``) in a fresh interpreter; its figures."""
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as f:
        where = f.name
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, where, *argv],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        msg = f"{' '.join(argv)} failed: {done.stderr.strip()[-2000:]}"
        raise RuntimeError(msg)
    with open(where) as f:  # noqa: PTH123
        out: dict[str, Any] = json.load(f)
    os.unlink(where)  # noqa: PTH108
    out["stdout"], out["stderr"] = done.stdout, done.stderr
    if out["status"] != 0:
        msg = f"{' '.join(argv)} exited {out['status']}: {done.stderr.strip()}"
        raise RuntimeError(msg)
    return out


def mib(kib: float) -> float:
    return round(kib / 1024, 1)


def transfer(server: RedisServer, n: int, db: int, work: Path) -> list[Row]:
    """Export ``n`` mappings from SQLite and import them into Redis database ``db``."""
    src = work / f"source-{n}.db"
    export = work / f"export-{n}.jsonl"
    fill(src, n, seed=n)
    sqlite_url = f"sqlite:///{src}"
    redis_url = f"redis://127.0.0.1:{server.port}/{db}"
    server.client(db=db).flushdb()
    now = str(T0)
    bases = {url: child("baseline", url) for url in (sqlite_url, redis_url)}
    out = child("export", "--store", sqlite_url, "-o", str(export), "--now", now, "--json")
    exported = json.loads(out["stderr"].strip().splitlines()[-1])["mappings"]
    assert exported == n, (exported, n)
    into = child("import", str(export), "--store", redis_url, "--now", now, "--json")
    counts = json.loads(into["stdout"])
    assert counts["mappings_written"] == n, counts
    store = RedisStore.from_url(redis_url)
    try:
        assert store.counts()[0] == n
        if n <= 100_000:
            store.check_invariants()
    finally:
        store.close()
    rows = []
    for op, run, url in (
        ("export (SQLite)", out, sqlite_url),
        ("import (Redis)", into, redis_url),
    ):
        rows.append(
            {
                "operation": op,
                "size": n,
                "seconds": round(run["seconds"], 2),
                "per_second": round(n / run["seconds"]),
                "maxrss_mib": mib(run["maxrss_kib"]),
                "baseline_mib": mib(bases[url]["maxrss_kib"]),
                "file_mib": round(export.stat().st_size / 2**20, 1),
            }
        )
    src.unlink()
    export.unlink()
    return rows


def before_after(server: RedisServer, db: int, sample: int = SAMPLE) -> list[Row]:
    """Mappings per second into Redis: a look-up and a pin each, against batches."""
    rng = random.Random(1)
    ttl = PoolSettings().ttl
    entries = [
        (f"+1646{i:07d}", NUMBERS[rng.randrange(20)], T0 - rng.uniform(0, ttl / 2))
        for i in range(sample)
    ]
    url = f"redis://127.0.0.1:{server.port}/{db}"
    rows = []
    for how in ("mapping + pin each (before)", "import_mappings, batches of 1,000 (after)"):
        server.client(db=db).flushdb()
        with Engine(store=url) as engine:
            engine.create_profile(PROFILE, PoolSettings())
            for number in NUMBERS:
                engine.add_number(PROFILE, number)
            started = time.perf_counter()
            if how.startswith("mapping"):
                for to, sender, last_used in entries:
                    there = engine.mapping(PROFILE, to, now=T0)
                    if there is None or there.last_used < last_used:
                        engine.pin(PROFILE, to, sender, now=last_used)
            else:
                for i in range(0, sample, BATCH):
                    engine.import_mappings(PROFILE, entries[i : i + BATCH], now=T0)
            seconds = time.perf_counter() - started
            assert engine.stats().mappings == sample
        rows.append(
            {
                "operation": f"into Redis: {how}",
                "size": sample,
                "seconds": round(seconds, 2),
                "per_second": round(sample / seconds),
            }
        )
    return rows


def markdown(rows: Sequence[Row], command: str) -> str:
    lines = [
        "# sticky benchmarks: export and import, SQLite to Redis",
        "",
        f"- command: `{command}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {report.machine_line()}",
        "- method: see the docstring of benchmarks/bench_transfer.py",
        "",
        "## Export and import (each command in a child process)",
        "",
        (
            "| operation | mappings | seconds | mappings/s | peak RSS (MiB) "
            "| child baseline (MiB) | export file (MiB) |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['operation']} | {r['size']:,} | {r['seconds']:.2f} | {r['per_second']:,} "
        f"| {r['maxrss_mib']} | {r['baseline_mib']} | {r['file_mib']} |"
        for r in rows
        if "maxrss_mib" in r
    ]
    lines += [
        "",
        "## Writing mappings into Redis, before and after batches (in process)",
        "",
        "| how | mappings | seconds | mappings/s |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['operation']} | {r['size']:,} | {r['seconds']:.2f} | {r['per_second']:,} |"
        for r in rows
        if "maxrss_mib" not in r
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_transfer")
    parser.add_argument("--quick", action="store_true", help="10^4 and 10^5 mappings")
    parser.add_argument("--sizes", type=int, nargs="+", help="the sizes to run")
    parser.add_argument("--sample", type=int, default=SAMPLE, help="mappings of before/after")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    sizes = args.sizes or ([10_000, 100_000] if args.quick else [100_000, 1_000_000])
    command = "python -m benchmarks.bench_transfer " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    print(f"{command.strip()}: {report.machine_line()}", flush=True)
    server = RedisServer()
    server.start()
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i, n in enumerate(sizes):
                rows += transfer(server, n, 1 + i, Path(tmp))
                for r in rows[-2:]:
                    print(r, flush=True)
            rows += before_after(server, 15, args.sample)
            for r in rows[-2:]:
                print(r, flush=True)
    finally:
        server.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"command": command.strip(), "machine": report.machine()}
    (args.out / "transfer.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (args.out / "transfer.md").write_text(markdown(rows, command.strip()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
