"""A number's life: what draining, delivery reports, replies and opt-outs cost, on each store.

On every store (memory, SQLite on a temporary file, Redis on a redis-server of its own:
those installed here), one engine on a :class:`~sticky.ManualClock` holds four profiles of
twelve numbers each (ten long codes, two toll-free), all with default settings but where
said:

- ``plain``: a table of ``size`` mappings, no drain, no opt-out;
- ``life``: the same table, then one number draining (with a grace of 30 days, so that
  its recipients stay sticky: the drain deadlines are read on every hit) and 1% of the
  recipients (at least 100) opted out, which deletes their mappings;
- ``reports``: ``skip_unhealthy`` on, no table; one number's delivery window holds a
  report in each of its 24 buckets (24 outcomes, enough to be judged);
- ``flip``: ``skip_unhealthy`` on, ``min_samples=1`` and ``health_window=24`` (s), no
  table: each report is made one window after the one before, so the window holds it
  alone, and failed and delivered reports in turn change the verdict every time.

The cases, each a batch of distinct recipients (or reports) at the round's ``now``, and
the floor each is divided by (the same store's row):

- ``select, sticky hit``: a select of a mapped recipient (it refreshes): the floor of all;
- ``select, new recipient``: a select of a recipient never mapped;
- ``select, sticky hit, life pool`` / ``new recipient, life pool``: the same selects in
  ``life``, each against the same select in ``plain`` (run just before it);
- ``set_health, alternating``: False, True, ... on a number of ``flip``, a pool change
  every call (what a changed verdict also is);
- ``record_delivery, verdict unchanged``: a delivered report of the ``reports`` number;
- ``record_delivery, verdict changes``: failed, delivered, ... in ``flip``;
- ``record_reply, REFRESHED``: a reply to the recipient's own sender;
- ``record_reply, MAPPED``: a reply from a recipient never mapped (the pool's numbers in
  turn);
- ``record_reply, STOP (opt-out)``: ``body="STOP"`` from a mapped recipient, to its sender.

Every case's calls are in ``plain`` unless named; what a case changes is undone after
it, untimed (new mappings forgotten; an opt-out ended and its mapping pinned back), so
that every round sees the same tables. A round runs every case in turn, the clock one
second later each round; many short rounds (a round's cases run within a second or so
of each other), so that the machine's drift touches a case and its floor alike. A row is
the median of the rounds after one warm-up, and ``ratio_to_floor`` the median of its
rounds' ratios to its floor (``ratio_of_medians`` beside it). On Redis each row also has
the server's CPU per call (``INFO commandstats`` ``usec`` after ``CONFIG RESETSTAT``),
its commands per call (those its scripts call included) and its round trips per call
(requests redis-py sent, counted in the warm-up round, which is not timed). The run
checks, untimed, that each case does what it says (a reply's action, the verdict's
changes, a refusal for an opted-out recipient, a hit on the draining number that stays,
no fresh choice of it).

Run alone: ``python -m benchmarks.bench_life [--quick] [--out DIR]`` (writes ``life.json``
and ``life.md`` there, default ``benchmarks/results/``); or with the harness,
``python -m benchmarks --group life``.
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.stores import (
    FILL,
    T0,
    RedisStats,
    Row,
    open_engine,
    pool,
    recipients,
    row,
)
from sticky import (
    Engine,
    ManualClock,
    OptedOut,
    Outcome,
    PoolSettings,
    ReplyAction,
)

GROUP = "life"
STORES = ("memory", "sqlite", "redis")
GRACE = 30 * 86_400.0
"""The drain's grace: far beyond the run, so every hit of the drained number stays sticky."""
FLIP_WINDOW = 24.0
"""``health_window`` of ``flip`` (s); each of its reports is this much after the one before."""
REPORTS = PoolSettings(skip_unhealthy=True)
FLIP = PoolSettings(skip_unhealthy=True, min_samples=1, health_window=FLIP_WINDOW)
HIT = "select, sticky hit"
NEW = "select, new recipient"


@contextlib.contextmanager
def _round_trips() -> Iterator[list[int]]:
    """Count every request redis-py sends meanwhile (a pipeline is one): round trips.

    The server's statistics cannot tell them apart, since they also count the commands
    a script calls. Used in the warm-up round only, so that no timed call pays for it.
    """
    from redis.connection import AbstractConnection  # noqa: PLC0415 - the redis extra

    sent = [0]
    original: Callable[..., None] = AbstractConnection.send_packed_command

    def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        sent[0] += 1
        original(self, command, check_health)

    AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


@dataclass(frozen=True)
class Case:
    """One timed operation: its batch at ``now`` (returns the calls made), and its undo."""

    op: str
    floor: str
    timed: Callable[[float], int]
    undo: Callable[[float], object] | None = None


def _profile(engine: Engine, pid: str, tag: int, settings: PoolSettings) -> list[str]:
    engine.create_profile(pid, settings)
    for number, kind in pool(tag):
        engine.add_number(pid, number, kind)
    return [number for number, _ in pool(tag)]


def _fill(engine: Engine, pid: str, base: Sequence[str]) -> None:
    for i in range(0, len(base), FILL):
        engine.select_many(pid, base[i : i + FILL])


def cases(engine: Engine, size: int, ops: int) -> list[Case]:
    """Set up the four profiles on ``engine`` and return the cases, checked once."""
    everyone = recipients(size + 2 * ops, seed=size)
    base, new, strangers = everyone[:size], everyone[size : size + ops], everyone[size + ops :]
    rng = random.Random(size + 1)
    n_opt = max(100, size // 100)
    # Disjoint draws from the table: hits, replies that refresh, STOPs, and the opt-outs.
    drawn = rng.sample(base, 3 * ops + n_opt)
    hits, refresh, stops = drawn[:ops], drawn[ops : 2 * ops], drawn[2 * ops : 3 * ops]
    opted = drawn[3 * ops :]

    pool = _profile(engine, "plain", 0, PoolSettings())
    _profile(engine, "life", 1, PoolSettings())
    reports = _profile(engine, "reports", 2, REPORTS)
    flips = _profile(engine, "flip", 3, FLIP)
    _fill(engine, "plain", base)
    _fill(engine, "life", base)
    at = engine.clock.now()
    first = engine.mapping("life", hits[0], now=at)
    assert first is not None
    drained = first.from_number  # so that at least one hit of the batch is on it
    engine.drain("life", drained, grace=GRACE, now=at)
    for to in opted:
        engine.opt_out("life", to, now=at)
    steady = reports[0]
    for k in range(24):  # one report in each bucket of the window, the last one now
        engine.record_delivery(steady, Outcome.DELIVERED, now=at - (23 - k) * 3_600.0)
    sender = {}
    for to in refresh + stops:
        mapped = engine.mapping("plain", to, now=at)
        assert mapped is not None
        sender[to] = mapped.from_number
    replied = [pool[i % len(pool)] for i in range(ops)]

    select, record_reply, forget = engine.select, engine.record_reply, engine.forget
    record_delivery, set_health = engine.record_delivery, engine.set_health

    def selects(pid: str, batch: Sequence[str]) -> Callable[[float], int]:
        def timed(now: float) -> int:
            for to in batch:
                select(pid, to, now=now)
            return len(batch)

        return timed

    def forgets(pid: str, batch: Sequence[str]) -> Callable[[float], object]:
        def undo(now: float) -> None:
            for to in batch:
                forget(pid, to, now=now)

        return undo

    def steady_reports(now: float) -> int:
        for _ in range(ops):
            record_delivery(steady, Outcome.DELIVERED, now=now)
        return ops

    flip_clock = [T0]  # the flip profile's own time: a window later at every report
    flipper, toggled = flips[0], flips[1]
    outcomes = [Outcome.FAILED, Outcome.DELIVERED] * (ops // 2) or [Outcome.FAILED]
    health = [False, True] * (ops // 2) or [False]

    def flip_reports(_now: float) -> int:
        t = flip_clock[0]
        for outcome in outcomes:
            t += FLIP_WINDOW
            record_delivery(flipper, outcome, now=t)
        flip_clock[0] = t
        return len(outcomes)

    def set_healths(_now: float) -> int:
        for healthy in health:
            set_health(toggled, healthy)
        return len(health)

    def refreshes(now: float) -> int:
        for to in refresh:
            record_reply("plain", to, sender[to], now=now)
        return len(refresh)

    def maps(now: float) -> int:
        for to, number in zip(strangers, replied, strict=True):
            record_reply("plain", to, number, now=now)
        return len(strangers)

    def stop(now: float) -> int:
        for to in stops:
            record_reply("plain", to, sender[to], body="STOP", now=now)
        return len(stops)

    def restore(now: float) -> None:
        for to in stops:
            engine.opt_in("plain", to)
            engine.pin("plain", to, sender[to], now=now)

    _check(engine, drained, opted, hits, new, steady, flipper, outcomes, at)
    at = engine.clock.now()
    probes = [
        (refresh[0], sender[refresh[0]], None, ReplyAction.REFRESHED),
        (strangers[0], replied[0], None, ReplyAction.MAPPED),
        (stops[0], sender[stops[0]], "STOP", ReplyAction.OPTED_OUT),
    ]
    for to, number, body, action in probes:
        got = engine.record_reply("plain", to, number, body=body, now=at).action
        assert got is action, (to, got, action)
    forget("plain", strangers[0], now=at)
    engine.opt_in("plain", stops[0])
    engine.pin("plain", stops[0], sender[stops[0]], now=at)
    return [
        # Each life pool's select right after the same select in plain: their ratio is
        # taken round by round, and the machine drifts least between neighbours.
        Case(HIT, HIT, selects("plain", hits)),
        Case(f"{HIT}, life pool", HIT, selects("life", hits)),
        Case(NEW, HIT, selects("plain", new), forgets("plain", new)),
        Case(f"{NEW}, life pool", NEW, selects("life", new), forgets("life", new)),
        Case("set_health, alternating", HIT, set_healths),
        Case("record_delivery, verdict unchanged", HIT, steady_reports),
        Case("record_delivery, verdict changes", HIT, flip_reports),
        Case("record_reply, REFRESHED", HIT, refreshes),
        Case("record_reply, MAPPED", HIT, maps, forgets("plain", strangers)),
        Case("record_reply, STOP (opt-out)", HIT, stop, restore),
    ]


def _check(
    engine: Engine,
    drained: str,
    opted: Sequence[str],
    hits: Sequence[str],
    new: Sequence[str],
    steady: str,
    flipper: str,
    outcomes: Sequence[Outcome],
    at: float,
) -> None:
    """What the cases rely on, untimed: a wrong setup would measure something else."""
    try:
        engine.select("life", opted[0], now=at)
    except OptedOut:
        pass
    else:
        raise AssertionError("an opted-out recipient was selected")
    mapped = [engine.mapping("life", to, now=at) for to in hits]
    on_drained = [m.to for m in mapped if m is not None and m.from_number == drained]
    assert on_drained, "no hit of the life pool maps to the draining number"
    assert engine.select("life", on_drained[0], now=at).from_number == drained
    for to in new[:50]:
        assert engine.select("life", to, now=at).from_number != drained
        engine.forget("life", to, now=at)
    verdict = engine.record_delivery(steady, Outcome.DELIVERED, now=at).delivery_healthy
    assert verdict, "the steady number should be healthy"
    if len(outcomes) > 1:
        t = T0 - 10 * FLIP_WINDOW  # before the cases' own flip time
        seen = []
        for outcome in outcomes[:4]:
            t += FLIP_WINDOW
            seen.append(engine.record_delivery(flipper, outcome, now=t).delivery_healthy)
        assert seen == [False, True] * (len(seen) // 2), seen


OPS = (
    HIT,
    NEW,
    f"{HIT}, life pool",
    f"{NEW}, life pool",
    "set_health, alternating",
    "record_delivery, verdict unchanged",
    "record_delivery, verdict changes",
    "record_reply, REFRESHED",
    "record_reply, MAPPED",
    "record_reply, STOP (opt-out)",
)


def bench_store(store: str, size: int, ops: int, repeats: int, workdir: Path) -> list[Row]:
    """The rows of one store: every case, interleaved in each of ``1 + repeats`` rounds."""
    redis = RedisStats() if store == "redis" else None
    engine = None
    try:
        engine = open_engine(store, workdir / "life.db", redis)
        clock = engine.clock
        assert isinstance(clock, ManualClock)
        todo = cases(engine, size, ops)
        samples: dict[str, list[float]] = {c.op: [] for c in todo}
        usage: dict[str, list[tuple[float, int, int]]] = {c.op: [] for c in todo}
        trips: dict[str, float] = {}
        for i in range(1 + repeats):  # the first is the warm-up
            clock.advance(1.0)
            at = clock.now()
            for case in todo:
                gc.collect()
                if redis is not None:
                    redis.reset()
                if redis is not None and not i:
                    with _round_trips() as sent:
                        n = case.timed(at)
                    trips[case.op] = sent[0] / n
                    elapsed = 0
                else:
                    start = time.perf_counter_ns()
                    n = case.timed(at)
                    elapsed = time.perf_counter_ns() - start
                if redis is not None:
                    usec, calls = redis.usage()
                    usage[case.op].append((usec, calls, n))
                if case.undo is not None:
                    case.undo(at)
                if i:
                    samples[case.op].append(elapsed / n)
        return _rows(store, size, todo, samples, usage if redis is not None else None, trips)
    except Exception as exc:  # a store that cannot run here: no extra, no server, too old
        print(f"life: {store}: {type(exc).__name__}: {exc}", file=sys.stderr)
        # The kind of error, not its message, which may name a file or a server.
        note = f"missing: the {store} store cannot run here ({type(exc).__name__})"
        return [row(GROUP, store, op, size, [], note=note) for op in OPS]
    finally:
        if engine is not None:
            engine.close()
        if redis is not None:
            redis.close()


def _rows(
    store: str,
    size: int,
    todo: Sequence[Case],
    samples: dict[str, list[float]],
    usage: dict[str, list[tuple[float, int, int]]] | None,
    trips: dict[str, float],
) -> list[Row]:
    """The rows of one store's rounds: times, ratios, and on Redis the server's share."""
    rows = []
    for case in todo:
        extra: dict[str, Any] = {
            "floor": case.floor,
            "ratio_to_floor": _ratio(samples[case.op], samples[case.floor]),
            "ratio_of_medians": _ratio(samples[case.op], samples[case.floor], by_round=False),
        }
        if usage is not None:  # the warm-up round's usage is left out, as its time is
            server = [u / n for u, _, n in usage[case.op][1:]]
            floor = [u / n for u, _, n in usage[case.floor][1:]]
            extra["server_us_per_op"] = statistics.median(server)
            extra["server_us_ratio"] = _ratio(server, floor)
            extra["commands_per_op"] = statistics.median(c / n for _, c, n in usage[case.op][1:])
            extra["round_trips_per_op"] = trips[case.op]
        rows.append(row(GROUP, store, case.op, size, samples[case.op], **extra))
    return rows


def _ratio(mine: Sequence[float], floor: Sequence[float], *, by_round: bool = True) -> float:
    """The median of the rounds' ratios ``mine / floor`` (each round's two batches ran
    back to back, so that the machine's drift between rounds cancels); or, without
    ``by_round``, the ratio of the medians."""
    if not by_round:
        return statistics.median(mine) / statistics.median(floor)
    return statistics.median(a / b for a, b in zip(mine, floor, strict=True))


def run(
    quick: bool,
    huge: bool = False,  # noqa: ARG001 - the harness's plug-in signature
    *,
    stores: Sequence[str] = STORES,
    size: int | None = None,
    ops: int | None = None,
    repeats: int | None = None,
) -> list[Row]:
    """The rows of every store in ``stores``: 10^4 mappings (quick) or 10^5 in each of
    ``plain`` and ``life``, each store in turn. A store that cannot run has its rows marked.

    Many short rounds rather than a few long ones: a round's cases run within about a
    second of each other, so that their ratios see the same machine.
    """
    size = size or (10_000 if quick else 100_000)
    ops = ops or (400 if quick else 1_000)
    repeats = repeats or (11 if quick else 41)
    workdir = Path(tempfile.mkdtemp(prefix="sticky-bench-life-"))
    try:
        rows: list[Row] = []
        for store in stores:
            # SQLite and Redis are far slower per call: fewer of them, the same tables.
            n = ops if store == "memory" else max(2, ops // 10)
            rows += bench_store(store, size, n, repeats, workdir)
        return rows
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _n(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def table(rows: Sequence[Row]) -> str:
    """Every row as Markdown: us per call, its floor and the ratio, on Redis the server's."""
    lines = [
        (
            "| store | operation | size | us/op (median) | min | max | floor | x floor "
            "| server us/op | server x floor | round trips/op | commands/op |"
        ),
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["ns_per_op"] is None:
            lines.append(f"| {r['design']} | {r['op']} | {r['size']:,} | {r.get('note', '')} |")
            continue
        lines.append(
            f"| {r['design']} | {r['op']} | {r['size']:,} | {_n(r['ns_per_op'] / 1e3, 1)} "
            f"| {_n(r['ns_min'] / 1e3, 1)} | {_n(r['ns_max'] / 1e3, 1)} | {r['floor']} "
            f"| {_n(r.get('ratio_to_floor'), 2)} | {_n(r.get('server_us_per_op'), 1)} "
            f"| {_n(r.get('server_us_ratio'), 2)} | {_n(r.get('round_trips_per_op'), 2)} "
            f"| {_n(r.get('commands_per_op'), 2)} |"
        )
    return "\n".join(lines)


def side_by_side(rows: Sequence[Row]) -> str:
    """One line per operation, one column per store: us per call (x its floor)."""
    stores = list(dict.fromkeys(r["design"] for r in rows))
    by = {(r["design"], r["op"]): r for r in rows}
    lines = [
        "| operation | floor | " + " | ".join(stores) + " |",
        "|---|---|" + "---:|" * len(stores),
    ]
    for op in OPS:
        cells = []
        floor = ""
        for store in stores:
            r = by.get((store, op))
            if r is None or r["ns_per_op"] is None:
                cells.append("missing")
                continue
            floor = r["floor"]
            ratio = r.get("ratio_to_floor")
            shown = "" if op == r["floor"] else f" ({_n(ratio, 2)}x)"
            cells.append(f"{_n(r['ns_per_op'] / 1e3, 1)} us{shown}")
        lines.append(f"| {op} | {'-' if floor == op else floor} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_life")
    parser.add_argument("--quick", action="store_true", help="10^4 mappings, fewer calls")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results", help="results directory"
    )
    args = parser.parse_args(argv)
    command = "python -m benchmarks.bench_life" + (" --quick" if args.quick else "")
    print(f"{command}: {report.machine_line()}", flush=True)
    started = time.perf_counter()
    rows = run(args.quick)
    took = time.perf_counter() - started
    repeats = max((r["repeats"] for r in rows), default=0)
    text = "\n".join(
        [
            "# sticky benchmarks: a number's life",
            "",
            f"- command: `{command}`, " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            f"- machine: {report.machine_line()}",
            (
                f"- method: medians of {repeats} interleaved rounds after one warm-up, "
                f"garbage collector on ({took:.0f} s in all); see the docstring of "
                "benchmarks/bench_life.py"
            ),
            "",
            "## Side by side",
            "",
            "us per call (median), in brackets the ratio to the floor of the same store:",
            "",
            side_by_side(rows),
            "",
            "## Rows",
            "",
            table(rows),
            "",
        ]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    data = {"meta": {"command": command, "machine": report.machine()}, "rows": rows}
    (args.out / "life.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    (args.out / "life.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
