"""A synthetic month of traffic through the engine, on a :class:`ManualClock`.

``python -m sticky simulate`` runs it and prints a report; see ``--help``. Its profiles
are its own: their ids start with a prefix unique to the run (``sim-<seed>-<random>-``),
and it reads, counts and changes nothing else in the store (``--reset`` deletes the
profiles of earlier runs, the ids starting with ``sim-``, first).
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import random
import secrets
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sticky.cli.args import Parser, count, positive
from sticky.clock import ManualClock
from sticky.engine import Engine
from sticky.errors import NoEligibleSender, NumberInUse, StickyError
from sticky.numbers import NumberType
from sticky.settings import PoolSettings
from sticky.values import GeoTier, Reason

__all__ = ["main", "run"]

DAY = 86_400.0
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z

# Real NANP area codes (with overlays side by side) and a few other countries, for
# the geographic mix; senders and recipients are spread over them.
_NANP_AREAS = [
    "212", "646", "332", "917", "312", "872", "773", "415", "628", "213", "323", "310",
    "305", "786", "617", "857", "713", "832", "214", "469", "416", "647", "437", "514",
    "604", "217", "309", "512", "206", "404",
]  # fmt: skip
_WORLD = ["+4420", "+4930", "+3314", "+6128", "+8190"]
PREFIX = "sim-"
"""Every simulated profile's id starts with it; ``--reset`` deletes those."""


def _parser(prog: str) -> argparse.ArgumentParser:
    p = Parser(
        prog=prog,
        description="Run synthetic traffic through the engine and report what it chose.",
    )
    one, none = count(1), count(0)
    p.add_argument("--profiles", type=one, default=3, help="messaging profiles (default 3)")
    p.add_argument("--numbers", type=one, default=20, help="numbers per pool (default 20)")
    p.add_argument("--toll-free", type=none, default=4, help="of which toll-free (default 4)")
    p.add_argument(
        "--recipients", type=one, default=50_000, help="recipients in all (default 50000)"
    )
    p.add_argument(
        "--messages-per-day", type=one, default=20_000, help="messages a day (default 20000)"
    )
    p.add_argument("--days", type=one, default=30, help="days to simulate (default 30)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument(
        "--sticky",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="sticky sender on or off (default on)",
    )
    p.add_argument(
        "--ttl-days", type=positive, default=8.0, help="mapping ttl in days (default 8)"
    )
    p.add_argument("--long-code-weight", type=float, default=1.0)
    p.add_argument("--toll-free-weight", type=float, default=1.0)
    p.add_argument("--skip-unhealthy", action="store_true", help="skip unhealthy numbers")
    p.add_argument(
        "--unhealthy-per-day",
        type=none,
        default=1,
        help="numbers that turn unhealthy each day, recovering the next (default 1)",
    )
    p.add_argument(
        "--geomatch",
        choices=["off", "auto", "area_code", "full"],
        default="off",
        help="geomatch setting (default off)",
    )
    p.add_argument(
        "--geo",
        action="store_true",
        help="a geographic mix: numbers and recipients over real area codes and countries",
    )
    p.add_argument("--sweep-daily", action="store_true", help="call evict_expired once a day")
    p.add_argument(
        "--store", default="memory://", help="store URL: memory://, sqlite:///f.db, redis://..."
    )
    p.add_argument(
        "--reset",
        action="store_true",
        help=f"first delete the profiles of earlier runs (ids starting with {PREFIX!r})",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress (default: when stderr is a terminal)",
    )
    return p


def _number(rng: random.Random, used: set[str], *, geo: bool) -> str:
    while True:
        if geo and rng.random() < 0.15:
            n = f"{rng.choice(_WORLD)}{rng.randrange(10**7, 10**8)}"
        elif geo:
            n = f"+1{rng.choice(_NANP_AREAS)}{rng.randrange(200, 1000)}{rng.randrange(10**4):04d}"
        else:
            n = f"+1{rng.randrange(201, 990)}{rng.randrange(200, 1000)}{rng.randrange(10**4):04d}"
        if n not in used:
            used.add(n)
            return n


def _setup(
    engine: Engine, args: argparse.Namespace, rng: random.Random, prefix: str
) -> tuple[list[str], list[str]]:
    """Create the run's profiles and pools; return the profile ids and every sender."""
    used: set[str] = set()
    settings = PoolSettings(
        sticky_sender=args.sticky,
        ttl=args.ttl_days * DAY,
        long_code_weight=args.long_code_weight,
        toll_free_weight=args.toll_free_weight,
        skip_unhealthy=args.skip_unhealthy,
        geomatch=args.geomatch,
    )
    profiles, senders = [], []
    for k in range(args.profiles):
        pid = f"{prefix}profile-{k + 1}"
        engine.create_profile(pid, settings)
        profiles.append(pid)
        for i in range(args.numbers):
            while True:  # a number in a pool of an earlier run's profile: draw another
                if i < args.toll_free:
                    n = f"+18{rng.choice('03456789')}{rng.choice('03456789')}"
                    n = f"{n}{rng.randrange(10**7):07d}"
                    while n in used:
                        n = f"{n[:5]}{rng.randrange(10**7):07d}"
                    used.add(n)
                    kind = NumberType.TOLL_FREE
                else:
                    n = _number(rng, used, geo=args.geo and rng.random() > 0.1)
                    kind = NumberType.LONG_CODE
                try:
                    engine.add_number(pid, n, kind)
                    break
                except NumberInUse:
                    continue
            senders.append(n)
    return profiles, senders


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the simulation ``args`` describe; return the report as a dict."""
    rng = random.Random(args.seed)
    clock = ManualClock(START)
    engine = Engine(clock=clock, seed=args.seed, store=args.store)
    try:
        if args.reset:
            for pid in engine.profiles():
                if pid.startswith(PREFIX):
                    engine.delete_profile(pid)
        return _simulate(engine, clock, args, rng)
    finally:
        engine.close()


def _simulate(
    engine: Engine, clock: ManualClock, args: argparse.Namespace, rng: random.Random
) -> dict[str, Any]:
    # Not from ``rng``: the run's choices depend on the seed alone, not on the prefix.
    prefix = f"{PREFIX}{args.seed}-{secrets.token_hex(4)}-"
    evicted_before = engine.stats().evicted
    profiles, senders = _setup(engine, args, rng, prefix)
    used = set(senders)
    recipients = [
        (profiles[i % len(profiles)], _number(rng, used, geo=args.geo))
        for i in range(args.recipients)
    ]
    # Activity is skewed, as real traffic is: a few recipients get most messages and
    # many go quiet for longer than the ttl, so mappings expire and get evicted.
    cumulative = list(itertools.accumulate(rng.paretovariate(1.2) for _ in recipients))
    total = cumulative[-1]
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    last_sender: dict[tuple[str, str], str] = {}
    load: Counter[str] = Counter(dict.fromkeys(senders, 0))
    reasons: Counter[Reason] = Counter()
    tiers: Counter[GeoTier | None] = Counter()
    repeats = kept = failed = 0
    per_day = args.messages_per_day
    select = engine.select
    busy = 0.0
    for day in range(args.days):
        _flip_health(engine, senders, rng, args.unhealthy_per_day, day)
        day_start = START + day * DAY
        t0 = time.perf_counter()
        for i in range(per_day):
            pid, to = recipients[bisect.bisect(cumulative, rng.random() * total)]
            clock.set(day_start + i * DAY / per_day)
            try:
                sel = select(pid, to)
            except NoEligibleSender:
                failed += 1
                continue
            reasons[sel.reason] += 1
            tiers[sel.tier] += 1
            load[sel.from_number] += 1
            key = (pid, to)
            before = last_sender.get(key)
            if before is not None:
                repeats += 1
                kept += before == sel.from_number
            last_sender[key] = sel.from_number
        busy += time.perf_counter() - t0
        if args.sweep_daily:
            engine.evict_expired()
        if progress:
            print(f"\rday {day + 1}/{args.days}", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    stats = engine.stats()
    # The run's own mappings, through reads of its own profiles: never another's.
    live = sum(
        len(engine.recipients_of(pid, n.number)) for pid in profiles for n in engine.numbers(pid)
    )
    messages = sum(reasons.values())
    fresh = sum(n for t, n in tiers.items() if t is not None)
    loads = sorted(load.values())
    return {
        "messages": messages,
        "failed_no_eligible_sender": failed,
        "profiles": args.profiles,
        "profile_prefix": prefix,
        "numbers": len(senders),
        "recipients": args.recipients,
        "days": args.days,
        "sticky_sender": args.sticky,
        "store": args.store,
        "reasons": {r.value: reasons[r] / messages if messages else 0.0 for r in Reason},
        "tiers": {t.value: tiers[t] / fresh for t in GeoTier if tiers[t]} if fresh else {},
        "stickiness": kept / repeats if repeats else 1.0,
        "repeat_messages": repeats,
        "load": {
            "min": loads[0] if loads else 0,
            "median": statistics.median(loads) if loads else 0,
            "max": loads[-1] if loads else 0,
        },
        # The store's count, during the run: other users of the store may add to it.
        "evicted": stats.evicted - evicted_before,
        "live_mappings_at_end": live,
        "selects_per_second": messages / busy if busy else 0.0,
    }


def _flip_health(
    engine: Engine, senders: Sequence[str], rng: random.Random, count: int, day: int
) -> None:
    """Every number down yesterday recovers; ``count`` others go down today."""
    if day:
        for n in senders:
            engine.set_health(n, healthy=True)
    for n in rng.sample(list(senders), min(count, len(senders))):
        engine.set_health(n, healthy=False)


def report(result: dict[str, Any]) -> str:
    """The report as text a person can read."""
    lines = [
        (
            f"sticky simulate: {result['messages']:,} messages over {result['days']} days, "
            f"{result['profiles']} profiles, {result['numbers']} numbers, "
            f"{result['recipients']:,} recipients, sticky "
            f"{'on' if result['sticky_sender'] else 'off'}, store {result['store']}"
        ),
        "",
        "reasons:",
    ]
    lines += [f"  {name:<11}{share:8.2%}" for name, share in result["reasons"].items()]
    if result["tiers"]:
        lines.append("geomatch tiers (share of fresh choices):")
        lines += [f"  {name:<11}{share:8.2%}" for name, share in result["tiers"].items()]
    load = result["load"]
    lines += [
        (
            f"stickiness:  {result['stickiness']:.2%} of {result['repeat_messages']:,} repeat "
            "messages kept their sender"
        ),
        (
            f"sender load: min {load['min']:,}  median {load['median']:,}  "
            f"max {load['max']:,} messages"
        ),
        f"evicted:     {result['evicted']:,} dead mappings",
        f"live:        {result['live_mappings_at_end']:,} mappings at the end",
        f"throughput:  {result['selects_per_second']:,.0f} selects/s",
    ]
    if result["failed_no_eligible_sender"]:
        lines.append(f"no eligible sender: {result['failed_no_eligible_sender']:,} messages")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, prog: str = "python -m sticky simulate") -> int:
    """Entry point of ``python -m sticky simulate``: 0, or 2 after a one-line error."""
    parser = _parser(prog)
    args = parser.parse_args(argv)  # a bad argument: one line and exit 2, by argparse
    if args.toll_free > args.numbers:
        parser.error(f"--toll-free {args.toll_free} is more than --numbers {args.numbers}")
    try:
        result = run(args)
    except StickyError as exc:  # a bad store URL or setting, a store that is down...
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0
