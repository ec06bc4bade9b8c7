"""The harness: workloads, the timing helper, the scenarios, and the command line.

One process, one run: at each size every design is built in turn (floor first), measured
on the same recipients, and freed before the next is built, so that no design's objects
burden another's garbage collections. Ratios are taken within the run. The engine's
ratio to the minimal complete design is also taken side by side (the ``paired`` group):
a minimal design is built beside the engine and their repeats alternate, so that the
machine's drift between two designs' turns does not land in the ratio.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.designs import (
    TTL,
    VICTIM,
    Design,
    EngineDesign,
    Floor,
    Minimal,
    available_designs,
)

Row = dict[str, Any]

GROUPS = report.GROUPS
"""The groups this harness measures itself; the floor's select rows always run with them."""

BACKENDS = ("redis", "sqlite", "clients", "capacity", "life", "cluster")
"""Groups measured by plug-in modules ``benchmarks/bench_<name>.py`` (``run(quick)``)."""

NPAS = (
    *("212", "646", "718", "917", "312", "773", "872", "415", "628", "510"),
    *("617", "857", "713", "281", "832", "305", "786", "404", "678", "206"),
    *("303", "720", "702", "725", "512", "214", "469", "602", "480", "216"),
)
"""Recipients' area codes: the pool's ten, their overlays, and others of the same states."""

FLOOR_OF = {
    "select hit": "select hit",
    "select miss": "select miss",
    "select mix": "select mix",
    "select sticky off": "select hit",
    "select miss, geomatch=off": "select miss",
    "select miss, geomatch=area_code": "select miss",
    "select miss, geomatch=full": "select miss",
    "select miss, none dead": "select miss",
    "select miss, table dead": "select miss",
    "evict_expired": "evict_expired",
    "remove_number cascade": "remove_number cascade",
    "memory": "memory",
}
"""Each operation's reference row of the floor (sticky off and geomatch: a plain select)."""

MINIMAL_OF = {op: op for op in ("select hit", "select miss", "select mix", "memory")}
"""The operations the minimal complete design measures: its rows are the second reference."""
PAIRED = {f"{op}, paired": op for op in ("select hit", "select miss", "select mix")}
"""The paired rows (the minimal design and the engine side by side), by what they repeat."""
PAIRED_REPEATS = 4
"""A paired row's repeats, as a multiple of the mode's."""
MINIMAL_OF |= {op: op for op in PAIRED}
FLOOR_OF |= PAIRED

MINIMAL_GROUPS = {"select", "memory"}
"""The groups the minimal complete design runs (it has no eviction, cascade or geomatch)."""


@dataclass(frozen=True)
class Config:
    """What one mode measures."""

    mode: str
    sizes: tuple[int, ...]
    cascade_sizes: tuple[int, ...]
    memory_size: int
    repeats: int
    warmup: int
    batch: int
    """Selects per timed repeat, at most (hits; a fifth of it for misses)."""
    cascade_k: int
    """Mappings a cascade removes, the same at every size, so that only the table grows."""


MODES = {
    "smoke": Config("smoke", (2_000,), (2_000,), 2_000, 1, 1, 1_000, 200),
    "quick": Config("quick", (10**4, 10**5), (10**4, 10**5), 10**5, 5, 1, 50_000, 2_000),
    "full": Config("full", (10**4, 10**5, 10**6), (10**5, 10**6), 10**6, 5, 1, 100_000, 10_000),
}
HUGE = 10**7


# -- workloads ------------------------------------------------------------------------
def recipients(n: int, seed: int) -> list[str]:
    """``n`` distinct NANP recipients in random order, spread over :data:`NPAS`."""
    span = 8_000_000  # subscriber numbers 2000000-9999999 in each area code
    return [
        f"+1{NPAS[i // span]}{2_000_000 + i % span}"
        for i in random.Random(seed).sample(range(len(NPAS) * span), n)
    ]


@dataclass
class Workload:
    """The recipients of one size: the table's, and batches drawn from them."""

    base: list[str]
    """The table's recipients, mapped in this (random) order."""
    hits: list[str]
    """Distinct recipients of the table, in random order."""
    new: list[str]
    """Recipients never mapped (misses)."""
    mix: list[str]
    """80% of ``hits`` and all of ``new``, shuffled."""
    amortised: list[str]
    """New recipients for the amortised-eviction rows (each evicts up to two)."""
    victims: list[str]
    """Recipients of the table that a cascade removes."""


def workload(size: int, cfg: Config) -> Workload:
    n_ops = min(size, cfg.batch)
    n_new = n_ops // 5
    everyone = recipients(size + n_new, seed=size)
    base, new = everyone[:size], everyone[size:]
    rng = random.Random(size + 1)
    hits = rng.sample(base, n_ops)
    mix = hits[n_new:] + new
    rng.shuffle(mix)
    # Each timed repeat evicts two dead mappings per select: keep well within the table.
    n_amortised = min(n_new, size // (4 * (cfg.warmup + cfg.repeats)))
    k = min(cfg.cascade_k, size // 2)
    return Workload(base, hits, new, mix, new[:n_amortised], rng.sample(base, k))


# -- timing ---------------------------------------------------------------------------
def measure(
    run: Callable[[], int],
    cfg: Config,
    before: Callable[[], object] | None = None,
    after: Callable[[], object] | None = None,
) -> list[float]:
    """Nanoseconds per operation of each timed repeat, after ``cfg.warmup`` untimed ones.

    ``run`` does the timed work and returns how many operations it did; ``before`` and
    ``after`` (untimed) prepare and undo each repeat. The collector stays on.
    """
    samples = []
    for i in range(cfg.warmup + cfg.repeats):
        if before is not None:
            before()
        start = time.perf_counter_ns()
        ops = run()
        elapsed = time.perf_counter_ns() - start
        if after is not None:
            after()
        if i >= cfg.warmup and ops:
            samples.append(elapsed / ops)
    return samples


def row(group: str, design: str, op: str, size: int, samples: Sequence[float]) -> Row:
    """A result row; the ratios to the references are filled in once the run is over."""
    median = statistics.median(samples) if samples else None
    return {
        "group": group,
        "name": f"{op} [{design}]",
        "design": design,
        "op": op,
        "size": size,
        "ns_per_op": median,
        "ns_min": min(samples) if samples else None,
        "ns_max": max(samples) if samples else None,
        "ops_per_s": 1e9 / median if median else None,
        "ratio_to_floor": None,
        "ratio_to_minimal": None,
        "repeats": len(samples),
    }


# -- scenarios ------------------------------------------------------------------------
def bench_select(d: Design, w: Workload, cfg: Config, size: int) -> list[Row]:
    """Hit, miss and the 80% mix; every batch at a later time, so that hits refresh."""

    def tick() -> None:
        d.clock.advance(1.0)

    rows = [row("select", d.name, "select hit", size, measure(partial(d.run, w.hits), cfg, tick))]
    for op, batch in (("select miss", w.new), ("select mix", w.mix)):
        samples = measure(partial(d.run, batch), cfg, tick, partial(d.forget, w.new))
        rows.append(row("select", d.name, op, size, samples))
    if isinstance(d, EngineDesign):
        d.configure(sticky_sender=False)
        samples = measure(partial(d.run, w.hits), cfg, tick)
        d.configure(sticky_sender=True)
        rows.append(row("select", d.name, "select sticky off", size, samples))
    return rows


Turn = tuple[str, Callable[[], int], Callable[[], object], Callable[[], object] | None]
"""One side of an interleaved measurement: name, the timed run, untimed before and after."""


def alternate(
    turns: Sequence[Turn], cfg: Config, rounds: int
) -> tuple[dict[str, list[float]], dict[str, Exception]]:
    """Each turn's ns per operation, the turns alternated repeat by repeat.

    ``cfg.warmup`` untimed rounds, then ``rounds`` timed ones; every turn runs once a
    round, the order reversed each round (ABBA), so that a slow spell of the machine
    lands on all of them. A turn that raises is dropped from later rounds, its
    exception returned by name; the others go on.
    """
    one = replace(cfg, warmup=0, repeats=1)
    samples: dict[str, list[float]] = {name: [] for name, *_ in turns}
    failed: dict[str, Exception] = {}
    for i in range(cfg.warmup + rounds):
        for name, run, before, after in turns if i % 2 else turns[::-1]:
            if name in failed:
                continue
            try:
                (ns,) = measure(run, one, before, after)
            except Exception as exc:  # a tier under construction must not stop the run
                failed[name] = exc
                if after is not None:
                    after()  # undo what the batch did before it raised
                continue
            if i >= cfg.warmup:
                samples[name].append(ns)
    return samples, failed


def bench_paired(
    minimal: Design, engine: Design, w: Workload, cfg: Config, size: int
) -> list[Row]:
    """Hit, miss and mix of both designs, alive together, their repeats alternated.

    ``PAIRED_REPEATS`` times the repeats (a ratio of two medians needs tighter medians
    than one row); the ratios of these rows are the ones the issue 10 targets read.
    """
    rows = []
    designs = (minimal, engine)
    for op, batch in (("select hit", w.hits), ("select miss", w.new), ("select mix", w.mix)):
        turns = [
            (
                d.name,
                partial(d.run, batch),
                partial(d.clock.advance, 1.0),
                None if op == "select hit" else partial(d.forget, w.new),
            )
            for d in designs
        ]
        samples, failed = alternate(turns, cfg, PAIRED_REPEATS * cfg.repeats)
        if failed:
            raise next(iter(failed.values()))
        rows += [row("paired", d.name, f"{op}, paired", size, samples[d.name]) for d in designs]
    return rows


def bench_geomatch(d: EngineDesign, w: Workload, cfg: Config, size: int) -> list[Row]:
    """Misses with geomatch off, area_code and full: the same pool, table and recipients.

    The modes take turns repeat by repeat (the order reversed each time), the setting
    changed and one select made between turns, untimed: their ratios are the issue 5
    targets, and turns of a whole mode each lay seconds apart.
    """
    rows = []
    modes = []
    for mode in ("off", "area_code", "full"):
        try:
            if mode == "full":
                import phonenumbers  # noqa: F401, PLC0415 - the geo extra

                from sticky.geo import keys_function  # noqa: PLC0415
                from sticky.settings import GeoMatch  # noqa: PLC0415

                keys_function(GeoMatch.FULL)  # builds the tables once, before timing
            d.configure(geomatch=mode)
            modes.append(mode)
        except Exception as exc:  # a tier under construction must not stop the run
            missing = row("geomatch", d.name, f"select miss, geomatch={mode}", size, [])
            missing["note"] = f"missing: {type(exc).__name__}: {exc}"
            rows.append(missing)
        finally:
            d.configure(geomatch="off")

    def turn(mode: str) -> None:
        d.configure(geomatch=mode)
        d.run(w.new[:1])  # the pool version's chooser, built outside the timed batch
        d.forget(w.new[:1])
        d.clock.advance(1.0)

    undo = partial(d.forget, w.new)  # the engine's forget: a batch cut short undoes too
    turns = [(mode, partial(d.run, w.new), partial(turn, mode), undo) for mode in modes]
    samples, failed = alternate(turns, cfg, cfg.repeats)
    d.configure(geomatch="off")
    for mode in modes:
        r = row("geomatch", d.name, f"select miss, geomatch={mode}", size, samples[mode])
        if mode in failed:
            r["note"] = f"missing: {type(failed[mode]).__name__}: {failed[mode]}"
        rows.append(r)
    return rows


def bench_cascade(d: Design, w: Workload, cfg: Config, size: int) -> list[Row]:
    """Remove a number mapped by ``len(w.victims)`` recipients (the same k at every size)."""

    def pin() -> None:
        d.clock.advance(1.0)
        d.pin(w.victims, VICTIM)

    samples = measure(partial(d.cascade, VICTIM, w.victims), cfg, pin, partial(d.run, w.victims))
    return [row("cascade", d.name, "remove_number cascade", size, samples)]


def bench_evict(d: Design, w: Workload, cfg: Config, size: int) -> list[Row]:
    """Eviction, last: it empties the table (each repeat refills it, untimed).

    For designs that evict inside writes, first the misses' cost while no mapping is
    dead, then while every mapping of the table is dead (each miss removes up to two).
    """
    rows = []

    def tick() -> None:
        d.clock.advance(1.0)

    def kill_all() -> None:
        d.clock.advance(TTL + size * 1e-3 + 1.0)

    if d.amortised:
        run, undo = partial(d.run, w.amortised), partial(d.forget, w.amortised)
        rows.append(
            row("evict", d.name, "select miss, none dead", size, measure(run, cfg, tick, undo))
        )
        kill_all()
        rows.append(
            row("evict", d.name, "select miss, table dead", size, measure(run, cfg, tick, undo))
        )

    def refill_and_kill() -> None:
        if d.stored() == 0:  # the first repeat evicts what the amortised rows left
            d.fill(w.base)
        kill_all()

    rows.append(
        row("evict", d.name, "evict_expired", size, measure(d.evict, cfg, refill_and_kill))
    )
    return rows


def build(cls: type[Design], base: Sequence[str], traced: bool) -> tuple[Design, float | None]:
    """A design with ``base`` mapped; with ``traced``, its bytes per mapping too."""
    gc.collect()
    if traced:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    design = cls()
    design.fill(base)
    gc.collect()
    if not traced:
        return design, None
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return design, used / len(base)


# -- the run --------------------------------------------------------------------------
def run_designs(cfg: Config, groups: set[str], notes: list[str]) -> list[Row]:
    """Every size, every design: build, measure the selected groups, free."""
    designs, skipped = available_designs()
    notes.extend(skipped)
    rows: list[Row] = []
    for size in cfg.sizes:
        here = {g for g in groups if g in {"select", "geomatch", "evict"}}
        if size in cfg.cascade_sizes and "cascade" in groups:
            here.add("cascade")
        if size in (cfg.memory_size, HUGE) and "memory" in groups:  # 10^7 with --huge
            here.add("memory")
        if not here:
            continue
        w = workload(size, cfg)
        for cls in designs:
            if cls is EngineDesign:
                wanted = here
            elif cls is Minimal:
                wanted = here & MINIMAL_GROUPS
            else:
                wanted = here - {"geomatch"}
            if cls is not Floor and not wanted:
                continue
            started = time.perf_counter()
            print(f"  {size:>10,} {cls.name:<12}", end="", flush=True)
            design, per_mapping = build(cls, w.base, traced="memory" in wanted)
            if per_mapping is not None:
                memory = row("memory", cls.name, "memory", size, [])
                memory["bytes_per_mapping"] = per_mapping
                rows.append(memory)
            if cls is Floor or "select" in wanted:
                rows += bench_select(design, w, cfg, size)
            if cls is EngineDesign and "select" in wanted and Minimal in designs and size < HUGE:
                partner, _ = build(Minimal, w.base, traced=False)
                rows += bench_paired(partner, design, w, cfg, size)
                del partner
            if isinstance(design, EngineDesign) and "geomatch" in wanted:
                rows += bench_geomatch(design, w, cfg, size)
            if "cascade" in wanted:
                rows += bench_cascade(design, w, cfg, size)
            if "evict" in wanted:
                rows += bench_evict(design, w, cfg, size)
            del design
            gc.collect()
            print(f" {time.perf_counter() - started:6.1f} s", flush=True)
    return rows


def run_backend(name: str, quick: bool, notes: list[str], *, huge: bool = False) -> list[Row]:
    """The rows of ``benchmarks/bench_<name>.py``, or a note saying why there are none.

    ``huge`` is passed on (``run(quick, huge=True)``) only when set.
    """
    try:
        module = importlib.import_module(f"benchmarks.bench_{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"benchmarks.bench_{name}":
            notes.append(f"{name}: no benchmarks/bench_{name}.py yet")
        else:
            notes.append(f"{name} skipped: {exc}")
        return []
    except Exception as exc:
        notes.append(f"{name} skipped: import failed: {type(exc).__name__}: {exc}")
        return []
    try:
        rows: list[Row] = list(module.run(quick, huge=True) if huge else module.run(quick))
    except Exception as exc:
        notes.append(f"{name} skipped: {type(exc).__name__}: {exc}")
        return []
    for r in rows:
        r.setdefault("group", name)
        r.setdefault("design", name)
        r.setdefault("op", r.get("name", "?"))
    return rows


def fill_ratios(rows: list[Row]) -> None:
    """Each of this harness's rows as a multiple of the floor's row for the same work,
    and (hit, miss, mix, memory) of the minimal complete design's."""
    mine = report.own(rows)
    for field, design, reference in (
        ("ratio_to_floor", Floor.name, FLOOR_OF),
        ("ratio_to_minimal", Minimal.name, MINIMAL_OF),
    ):
        refs = {(r["op"], r["size"]): r for r in mine if r["design"] == design}
        for r in mine:
            ref = refs.get((reference.get(r["op"], ""), r["size"]))
            if ref is None or r.get(field) is not None:
                continue
            key = "bytes_per_mapping" if r["op"] == "memory" else "ns_per_op"
            if r.get(key) is not None and ref.get(key):
                r[field] = r[key] / ref[key]


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Per-operation cost and memory of sticky against the floor and the alternatives.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="sizes 10^4 and 10^5 (under a minute)")
    mode.add_argument("--smoke", action="store_true", help="one tiny size, one repeat (tests)")
    parser.add_argument("--huge", action="store_true", help=f"add {HUGE:,} mappings (full mode)")
    parser.add_argument(
        "--only",
        "--group",
        action="append",
        dest="only",
        metavar="GROUP",
        help=f"run these groups only (repeatable or comma-separated): {', '.join(GROUPS + BACKENDS)}",
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results", help="results directory"
    )
    args = parser.parse_args(argv)
    chosen = {g for item in args.only or [] for g in item.split(",") if g}
    unknown = chosen - set(GROUPS + BACKENDS)
    if unknown:
        parser.error(f"unknown group(s): {', '.join(sorted(unknown))}")
    args.groups = chosen or set(GROUPS + BACKENDS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    cfg = MODES["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.huge and cfg.mode == "full":
        cfg = replace(cfg, sizes=(*cfg.sizes, HUGE))
        print(report.huge_note([], HUGE, included=True))
    command = "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"{command.strip()}: {cfg.mode} mode, sizes {', '.join(f'{s:,}' for s in cfg.sizes)}")
    print(report.machine_line())
    notes: list[str] = []
    rows = run_designs(cfg, args.groups & set(GROUPS), notes)
    if cfg.mode == "smoke":
        notes.append("backends skipped in smoke mode")
    else:
        for name in BACKENDS:
            if name in args.groups:
                print(f"  backend {name}", flush=True)
                rows += run_backend(name, cfg.mode == "quick", notes, huge=HUGE in cfg.sizes)
    fill_ratios(rows)
    notes += [f"{r['name']} at {r['size']:,}: {r['note']}" for r in rows if r.get("note")]
    notes.append(report.huge_note(rows, HUGE, included=HUGE in cfg.sizes))
    at = max(s for s in cfg.sizes if s < HUGE)
    checks = report.targets(rows, at, cfg.cascade_sizes)
    if at < 10**6:
        notes.append(
            f"the targets are set at 1,000,000 mappings; {cfg.mode} mode checks them at {at:,}"
        )
    out = report.write(
        args.out, command.strip(), cfg.mode, rows, checks, notes, cfg.repeats, cfg.warmup
    )
    print(report.summary(rows, checks, notes))
    print("wrote " + ", ".join(str(p) for p in out))
    return 0
