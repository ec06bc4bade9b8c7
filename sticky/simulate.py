"""A synthetic month of traffic through the engine, on a :class:`ManualClock`.

``python -m sticky simulate`` runs it and prints a report; see ``--help``. Its profiles
are its own: their ids start with a prefix unique to the run (``sim-<seed>-<random>-``),
and it reads, counts and changes nothing else in the store (``--reset`` deletes the
profiles of earlier runs, the ids starting with ``sim-``, first). A number's life is off
by default: delivery reports (with bad numbers), replies (with STOP and START) and a
drain each come with their own flags, and draw from a random stream of their own.
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import itertools
import json
import math
import random
import secrets
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from sticky.cli.args import Parser, count, nonnegative, positive, share
from sticky.clock import ManualClock
from sticky.engine import Engine
from sticky.errors import (
    NoEligibleSender,
    NumberInUse,
    OptedOut,
    PoolBusy,
    PoolExhausted,
    StickyError,
)
from sticky.numbers import NumberType, SenderNumber
from sticky.policy import budget_of, capacity_on, counts_budget, rate_of, today
from sticky.settings import PoolSettings
from sticky.values import GeoTier, Keyword, Outcome, Reason, ReplyAction, Selection

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
WINDOW = 1.0
"""The window, in seconds, of the peak load a report shows per number."""
_SLACK = 1e-5
"""Seconds of float rounding a rate check forgives: a ``send_at`` near 1.8e9 seconds
is rounded to 2.4e-7 s, far below this, and this is far below any gap ``1 / rate``."""

Segments = tuple[tuple[int, ...], tuple[float, ...]]
"""A distribution of message sizes: ``(segment counts, cumulative probabilities)``."""


def segments_value(text: str) -> Segments:
    """An argparse type: an int >= 1, or ``segments:probability,...`` summing to 1."""
    try:
        if ":" not in text:
            n = int(text)
            pairs = [(n, 1.0)]
        else:
            pairs = []
            for part in text.split(","):
                size, _, share = part.partition(":")
                pairs.append((int(size), float(share)))
    except ValueError:
        msg = f"not a segment count nor a distribution such as 1:0.8,2:0.2: {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    sizes = [n for n, _ in pairs]
    if any(n < 1 for n in sizes) or len(set(sizes)) != len(sizes):
        msg = f"segment counts must be distinct integers >= 1: {text!r}"
        raise argparse.ArgumentTypeError(msg)
    shares = [p for _, p in pairs]
    if not all(math.isfinite(p) and p > 0 for p in shares) or abs(sum(shares) - 1) > 1e-9:
        msg = f"probabilities must be > 0 and sum to 1: {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return tuple(sizes), tuple(itertools.accumulate(shares))


segments_value.__name__ = "segments"


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
        "--long-code-rate",
        type=positive,
        default=None,
        help="each long code's rate in segments per second (default: unlimited)",
    )
    p.add_argument(
        "--toll-free-rate",
        type=positive,
        default=None,
        help="each toll-free number's rate in segments per second (default: unlimited)",
    )
    p.add_argument("--burst", type=one, default=1, help="segments a number may send at once")
    p.add_argument(
        "--daily-new",
        type=one,
        default=None,
        help="each number's budget of new recipients per day (default: none)",
    )
    p.add_argument(
        "--max-wait",
        type=nonnegative,
        default=None,
        help="seconds a sticky recipient waits before it overflows (default: always waits)",
    )
    p.add_argument(
        "--choice-wait",
        type=nonnegative,
        default=0.0,
        help="seconds a fresh choice may wait to keep geomatch and weights (default 0)",
    )
    p.add_argument(
        "--max-queue",
        type=nonnegative,
        default=None,
        help="the longest wait a select accepts, else it is refused (default: any)",
    )
    p.add_argument(
        "--segments",
        type=segments_value,
        default=((1,), (1.0,)),
        help="segments per message: an int, or a distribution such as 1:0.8,2:0.15,3:0.05",
    )
    p.add_argument(
        "--store", default="memory://", help="store URL: memory://, sqlite:///f.db, redis://..."
    )
    p.add_argument(
        "--reset",
        action="store_true",
        help=f"first delete the profiles of earlier runs (ids starting with {PREFIX!r})",
    )
    _life_arguments(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress (default: when stderr is a terminal)",
    )
    return p


def _life_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of a number's life: delivery reports, replies, opt-outs, a drain."""
    g = p.add_argument_group("a number's life (all off by default)")
    g.add_argument(
        "--delivery-reports",
        type=share,
        default=0.0,
        help="share of messages that get a delivery report (default 0)",
    )
    g.add_argument(
        "--failure-rate",
        type=share,
        default=0.02,
        help="share of a good number's reports that are not delivered (default 0.02)",
    )
    g.add_argument(
        "--bad-numbers",
        type=count(0),
        default=0,
        help="numbers, of all pools, whose messages mostly fail (default 0)",
    )
    g.add_argument(
        "--bad-failure-rate",
        type=share,
        default=0.8,
        help="share of a bad number's reports that are not delivered (default 0.8)",
    )
    g.add_argument(
        "--spam-rate",
        type=share,
        default=0.25,
        help="share of the reports not delivered that are spam, not failed (default 0.25)",
    )
    g.add_argument(
        "--report-delay",
        type=nonnegative,
        default=30.0,
        help="mean seconds from send_at to its delivery report (default 30)",
    )
    g.add_argument(
        "--reply-rate",
        type=share,
        default=0.0,
        help="share of messages whose recipient replies to the number (default 0)",
    )
    g.add_argument(
        "--reply-delay",
        type=nonnegative,
        default=600.0,
        help="mean seconds from a message to its reply (default 600)",
    )
    g.add_argument(
        "--opt-out-rate",
        type=share,
        default=0.0,
        help="share of replies that are STOP (default 0)",
    )
    g.add_argument(
        "--opt-in-rate",
        type=share,
        default=0.1,
        help="share of STOPs followed, later, by a START (default 0.1)",
    )
    g.add_argument(
        "--opt-in-delay",
        type=nonnegative,
        default=3 * DAY,
        help="mean seconds from a STOP to its START (default 259200: 3 days)",
    )
    g.add_argument(
        "--drain-day",
        type=count(1),
        default=None,
        help="drain, at the start of day N (1 is the first), the first profile's number "
        "with the most recipients (default: no drain)",
    )
    g.add_argument(
        "--drain-grace",
        type=nonnegative,
        default=None,
        help="seconds the drained number's recipients may stay on it (default: no end)",
    )


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


def _settings(args: argparse.Namespace) -> PoolSettings:
    """The settings of every profile of the run."""
    return PoolSettings(
        sticky_sender=args.sticky,
        ttl=args.ttl_days * DAY,
        long_code_weight=args.long_code_weight,
        toll_free_weight=args.toll_free_weight,
        skip_unhealthy=args.skip_unhealthy,
        geomatch=args.geomatch,
        long_code_rate=args.long_code_rate,
        toll_free_rate=args.toll_free_rate,
        burst=args.burst,
        daily_new_recipients=args.daily_new,
        max_wait=args.max_wait,
        choice_wait=args.choice_wait,
        max_queue=args.max_queue,
    )


def _setup(
    engine: Engine, args: argparse.Namespace, rng: random.Random, prefix: str
) -> tuple[list[str], list[str]]:
    """Create the run's profiles and pools; return the profile ids and every sender."""
    used: set[str] = set()
    settings = _settings(args)
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


def _simulate(  # noqa: PLR0912 - the hot loop, written out
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
    repeats = kept = failed = exhausted = refused_busy = waited = 0
    per_day = args.messages_per_day
    select = engine.select
    busy = 0.0
    settings = _settings(args)
    limited = capacity_on((), settings)  # the run's numbers have no limits of their own
    sizes, shares = args.segments
    size = sizes[0] if len(sizes) == 1 else 0
    # A stream of its own: message sizes never change which recipients are drawn.
    sizer = random.Random(f"segments-{args.seed}")
    waits: list[float] = []
    sends: defaultdict[str, list[tuple[float, int]]] = defaultdict(list)
    new_per_day: Counter[tuple[str, int]] = Counter()
    # Each number as the pool holds it, to tell why a recipient was reassigned.
    state = {n.number: n for pid in profiles for n in engine.numbers(pid)}
    causes: Counter[str] = Counter()
    life = _Life(engine, args, profiles, senders, state) if _life_on(args) else None
    refused_opted_out = 0
    life_busy = 0.0
    down: list[str] = []
    reassigned = Reason.REASSIGNED
    for day in range(args.days):
        down = _flip_health(engine, senders, rng, args.unhealthy_per_day, down)
        state.update((n.number, n) for pid in profiles for n in engine.numbers(pid))
        day_start = START + day * DAY
        t0 = time.perf_counter()
        if life is not None:
            life.start_day(day, day_start)
        for i in range(per_day):
            pid, to = recipients[bisect.bisect(cumulative, rng.random() * total)]
            now = day_start + i * DAY / per_day
            clock.set(now)
            segments = size or sizer.choices(sizes, cum_weights=shares)[0]
            if life is not None:
                t1 = time.perf_counter()
                life.until(now)
                life_busy += time.perf_counter() - t1
            try:
                sel = select(pid, to, segments=segments)
            except PoolExhausted:
                exhausted += 1
                continue
            except PoolBusy:
                refused_busy += 1
                continue
            except NoEligibleSender:
                failed += 1
                continue
            except OptedOut:
                refused_opted_out += 1
                if life is not None:
                    life.refused_select((pid, to))
                continue
            if sel.send_at > now:
                waited += 1
            if limited:
                waits.append(sel.send_at - now)
                # Relative to the start, so that rate checks keep their float precision.
                sends[sel.from_number].append((sel.send_at - START, segments))
                if counts_budget(sel.reason):  # the day in the profile's zone, as budgets
                    new_per_day[sel.from_number, today(now, settings.timezone)[0]] += 1
            reason = sel.reason
            reasons[reason] += 1
            tiers[sel.tier] += 1
            load[sel.from_number] += 1
            key = (pid, to)
            before = last_sender.get(key)
            if reason is reassigned:  # its previous sender, as the pool held it
                previous = before if life is None else life.mapped.get(key)
                causes[_cause(state.get(previous or ""), settings, now)] += 1
            if before is not None:
                repeats += 1
                kept += before == sel.from_number
            last_sender[key] = sel.from_number
            if life is not None:
                t1 = time.perf_counter()
                life.sent(key, sel)
                life_busy += time.perf_counter() - t1
        if life is not None:
            t1 = time.perf_counter()
            life.until(day_start + DAY)
            life.end_day(day_start + DAY)
            life_busy += time.perf_counter() - t1
        busy += time.perf_counter() - t0 - life_busy
        life_busy = 0.0
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
    attempts = messages + failed + exhausted + refused_busy + refused_opted_out
    limits = {
        n.number: (rate_of(n, settings), budget_of(n, settings))
        for pid in profiles
        for n in engine.numbers(pid)
    }
    capacity = _capacity_report(settings, limits, sends, new_per_day, waits, args.segments)
    capacity.update(
        on=limited,
        selects=attempts,
        waited=waited / attempts if attempts else 0.0,
        overflowed=reasons[Reason.OVERFLOW] / attempts if attempts else 0.0,
        refused={
            "exhausted": exhausted / attempts if attempts else 0.0,
            "busy": refused_busy / attempts if attempts else 0.0,
        },
    )
    return {
        "messages": messages,
        "failed_no_eligible_sender": failed,
        "failed_pool_exhausted": exhausted,
        "failed_pool_busy": refused_busy,
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
        "capacity": capacity,
        "failed_opted_out": refused_opted_out,
        "reassigned_by_cause": {c: causes[c] for c in CAUSES},
        **_life_report(life, messages, len(senders)),
    }


def _spread(values: Sequence[float]) -> dict[str, float]:
    """``{"min", "median", "max"}`` of ``values`` (zeros when there are none). O(n log n)."""
    if not values:
        return {"min": 0, "median": 0, "max": 0}
    ordered = sorted(values)
    return {"min": ordered[0], "median": statistics.median(ordered), "max": ordered[-1]}


def _rate_load(sends: Sequence[tuple[float, int]], rate: float, burst: int) -> tuple[int, bool]:
    """A number's peak segments in a :data:`WINDOW`, and whether its schedule kept its rate.

    The rate holds when, for every pair of sends ``i`` before ``j`` (by ``send_at``),
    the segments of the sends from ``i`` up to ``j`` (not included) are at most
    ``rate * (send_at_j - send_at_i) + burst - 1``: what the schedule promises on a
    clock that never goes back (one better than the bound ``+ burst``, which holds
    on any clock), so that with one segment per message no closed window of length
    ``w`` holds more than ``rate * w + burst`` sends. Every pair is checked in one
    pass: with ``P_k`` the segments before send ``k``, the condition is
    ``(P_j - rate * t_j) - (P_i - rate * t_i) <= burst - 1``, so a running minimum
    does. The peak counts a message of ``k`` segments as its sender sends them, one
    each ``1 / rate`` from ``send_at`` (the slots it reserved), so it is at most
    ``rate * WINDOW + burst``. O(n log n) for the sort, then O(segments).
    """
    ordered = sorted(sends, key=lambda s: s[0])
    kept, low, before = True, math.inf, 0
    for t, segments in ordered:
        x = before - rate * t
        if x - low > burst - 1 + rate * _SLACK:
            kept = False
        low = min(low, x)
        before += segments
    times = sorted(t + k / rate for t, segments in ordered for k in range(segments))
    peak = start = 0
    for end, t in enumerate(times):  # the segments in [t - WINDOW, t], closed as the bound is
        while times[start] < t - WINDOW - _SLACK:
            start += 1
        peak = max(peak, end - start + 1)
    return peak, kept


def _capacity_report(
    settings: PoolSettings,
    limits: dict[str, tuple[float | None, int | None]],
    sends: dict[str, list[tuple[float, int]]],
    new_per_day: Counter[tuple[str, int]],
    waits: list[float],
    segments: Segments,
) -> dict[str, Any]:
    """The schedule's load on each number against its limits, checked from ``send_at``."""
    peaks, shares_of_limit, broken_rates = [], [], 0
    for number, (rate, _) in limits.items():
        if rate is None:
            continue
        peak, kept = _rate_load(sends.get(number, []), rate, settings.burst)
        peaks.append(peak)
        shares_of_limit.append(peak / (rate * WINDOW + settings.burst))
        broken_rates += not kept
    busiest: Counter[str] = Counter()
    for (number, _), n in new_per_day.items():
        busiest[number] = max(busiest[number], n)
    days, shares_of_budget = [], []
    for number, (_, budget) in limits.items():
        if budget is not None:
            days.append(busiest[number])
            shares_of_budget.append(busiest[number] / budget)
    broken_budgets = sum(
        1
        for (number, _), n in new_per_day.items()
        if (budget := limits[number][1]) is not None and n > budget
    )
    ordered = sorted(waits)
    sizes, cumulative = segments
    return {
        "limits": {
            "long_code_rate": settings.long_code_rate,
            "toll_free_rate": settings.toll_free_rate,
            "burst": settings.burst,
            "daily_new_recipients": settings.daily_new_recipients,
            "max_wait": settings.max_wait,
            "choice_wait": settings.choice_wait,
            "max_queue": settings.max_queue,
            "timezone": settings.timezone,
        },
        "segments": {
            str(n): round(p - q, 12)
            for n, p, q in zip(sizes, cumulative, (0.0, *cumulative), strict=False)
        },
        "wait": {
            "median": statistics.median(ordered) if ordered else 0.0,
            "p99": ordered[math.ceil(0.99 * len(ordered)) - 1] if ordered else 0.0,
            "max": ordered[-1] if ordered else 0.0,
        },
        "window_seconds": WINDOW,
        "peak_segments": _spread(peaks),
        "peak_share_of_limit": _spread(shares_of_limit),
        "new_recipients_busiest_day": _spread(days),
        "busiest_day_share_of_budget": _spread(shares_of_budget),
        "numbers_over_rate": broken_rates,
        "number_days_over_budget": broken_budgets,
        "limits_broken": bool(broken_rates or broken_budgets),
    }


def _flip_health(
    engine: Engine, senders: Sequence[str], rng: random.Random, count: int, down: Sequence[str]
) -> list[str]:
    """The numbers ``down`` since yesterday recover; ``count`` others go down today.

    Returns today's. Only those recover: marking a number healthy also clears its
    delivery reports' verdict, which the others keep.
    """
    for n in down:
        engine.set_health(n, healthy=True)
    today = rng.sample(list(senders), min(count, len(senders)))
    for n in today:
        engine.set_health(n, healthy=False)
    return today


def _delay(rng: random.Random, mean: float) -> float:
    """An exponential delay of mean ``mean`` seconds (0 for a mean of 0)."""
    return rng.expovariate(1 / mean) if mean else 0.0


def _cause(number: SenderNumber | None, settings: PoolSettings, now: float) -> str:
    """Why a live mapping to ``number`` (as the pool held it) was reassigned at ``now``."""
    if number is None:
        return "other"
    if settings.skip_unhealthy and not number.healthy:
        return "unhealthy_caller"
    if settings.skip_unhealthy and not number.delivery_healthy:
        return "unhealthy_reports"
    since, grace = number.draining_since, number.drain_grace
    if since is not None and grace is not None and now >= since + grace:
        return "drain_grace_ended"
    return "other"


_REPORT, _REPLY = 0, 1
"""The kinds of :class:`_Life`'s events: a delivery report, a reply."""
CAUSES = ("unhealthy_caller", "unhealthy_reports", "drain_grace_ended", "other")
"""Why a recipient was reassigned, inferred from its previous sender's state."""


def _life_on(args: argparse.Namespace) -> bool:
    """Whether the run has delivery reports, replies or a drain (else no :class:`_Life`)."""
    return bool(args.delivery_reports or args.reply_rate or args.drain_day is not None)


class _Life:
    """A number's life during a run: delivery reports, replies, opt-outs and a drain.

    Reports and replies are events due after the message that caused them; the run
    calls :meth:`until` before each select, so that the engine sees them in time order.
    It draws from a stream of its own: the run's recipients and sizes stay the same.
    It keeps its own word of who is opted out and mapped to whom, to check the engine's.
    """

    def __init__(
        self,
        engine: Engine,
        args: argparse.Namespace,
        profiles: Sequence[str],
        senders: Sequence[str],
        state: dict[str, SenderNumber],
    ) -> None:
        self.engine, self.args, self.profiles, self.state = engine, args, profiles, state
        self.rng = random.Random(f"life-{args.seed}")
        self.bad = frozenset(self.rng.sample(list(senders), min(args.bad_numbers, len(senders))))
        self.events: list[tuple[float, int, int, str, str, str, str]] = []
        self.seq = itertools.count()
        self.mapped: dict[tuple[str, str], str] = {}
        self.opted: set[tuple[str, str]] = set()
        self.outcomes: Counter[Outcome] = Counter()
        self.actions: Counter[ReplyAction] = Counter()
        self.keywords: Counter[Keyword] = Counter()
        self.measured: set[str] = set()  # numbers the reports ever judged unhealthy
        self.first_measured: dict[str, int] = {}
        self.unhealthy_by_day: list[int] = []
        self.sent_opted_out = self.refused = self.refused_not_opted_out = 0
        self.drained: tuple[str, str] | None = None
        self.drain_report: dict[str, Any] | None = None
        self.fresh_onto_drained = 0
        self.day = 0

    def until(self, now: float) -> None:
        """Apply, in time order, every report and reply due by ``now``. O(k log n)."""
        events = self.events
        while events and events[0][0] <= now:
            at, _, kind, pid, to, number, what = heapq.heappop(events)
            if kind == _REPORT:
                self._report(number, Outcome(what), at)
            else:
                self._reply(pid, to, number, what, at)

    def _report(self, number: str, outcome: Outcome, at: float) -> None:
        updated = self.engine.record_delivery(number, outcome, now=at)
        self.state[number] = updated
        self.outcomes[outcome] += 1
        if not updated.delivery_healthy and number not in self.measured:
            self.measured.add(number)
            self.first_measured[number] = self.day + 1

    def _reply(self, pid: str, to: str, number: str, body: str, at: float) -> None:
        reply = self.engine.record_reply(pid, to, number, body=body, now=at)
        key = (pid, to)
        self.actions[reply.action] += 1
        if reply.keyword is not None:
            self.keywords[reply.keyword] += 1
        if reply.keyword is Keyword.OPT_OUT:
            self.opted.add(key)
            self.mapped.pop(key, None)
            if self.rng.random() < self.args.opt_in_rate:
                later = at + _delay(self.rng, self.args.opt_in_delay)
                self._at(later, _REPLY, pid, to, number, "START")
        elif reply.keyword is Keyword.OPT_IN:
            self.opted.discard(key)
        if reply.action is ReplyAction.MOVED or reply.action is ReplyAction.MAPPED:
            self.mapped[key] = number
            if self.drained == (pid, number):
                self.fresh_onto_drained += 1

    def _at(self, at: float, kind: int, pid: str, to: str, number: str, what: str) -> None:
        heapq.heappush(self.events, (at, next(self.seq), kind, pid, to, number, what))

    def sent(self, key: tuple[str, str], sel: Selection) -> None:
        """Check a select's answer and schedule its report and reply, if it gets them."""
        args, rng, number = self.args, self.rng, sel.from_number
        if key in self.opted:
            self.sent_opted_out += 1
        if args.sticky:
            self.mapped[key] = number
        if (
            self.drained is not None
            and sel.reason is not Reason.STICKY
            and self.drained == (key[0], number)
        ):
            self.fresh_onto_drained += 1
        if args.delivery_reports and rng.random() < args.delivery_reports:
            fails = args.bad_failure_rate if number in self.bad else args.failure_rate
            if rng.random() >= fails:
                outcome = Outcome.DELIVERED
            else:
                outcome = Outcome.SPAM if rng.random() < args.spam_rate else Outcome.FAILED
            at = sel.send_at + _delay(rng, args.report_delay)
            self._at(at, _REPORT, key[0], key[1], number, outcome.value)
        if args.reply_rate and rng.random() < args.reply_rate:
            body = "STOP" if rng.random() < args.opt_out_rate else "thanks"
            self._at(sel.send_at + _delay(rng, args.reply_delay), _REPLY, *key, number, body)

    def refused_select(self, key: tuple[str, str]) -> None:
        """Count a select refused for an opt-out, and whether this run knew of it."""
        self.refused += 1
        self.refused_not_opted_out += key not in self.opted

    def start_day(self, day: int, now: float) -> None:
        """At the drain's day, drain the first profile's number with the most recipients."""
        self.day = day
        if self.args.drain_day is None or day != self.args.drain_day - 1:
            return
        pid, engine = self.profiles[0], self.engine
        counts = [
            (len(engine.recipients_of(pid, n.number, now=now)), n.number)
            for n in engine.numbers(pid)
        ]
        most, number = max(counts, key=lambda c: c[0])
        self.state[number] = engine.drain(pid, number, grace=self.args.drain_grace, now=now)
        self.drained = (pid, number)
        self.drain_report = {
            "profile": pid,
            "number": number,
            "day": day + 1,
            "grace": self.args.drain_grace,
            "recipients_at_drain": most,
            "recipients_after_day": [],
            "fresh_choices_onto_it": 0,
        }

    def end_day(self, now: float) -> None:
        """Note the day's end: the drained number's recipients, the numbers measured down."""
        engine = self.engine
        self.unhealthy_by_day.append(
            sum(not n.delivery_healthy for pid in self.profiles for n in engine.numbers(pid))
        )
        if self.drained is not None and self.drain_report is not None:
            pid, number = self.drained
            left = len(engine.recipients_of(pid, number, now=now))
            self.drain_report["recipients_after_day"].append(left)


def _life_report(life: _Life | None, messages: int, numbers: int) -> dict[str, Any]:
    """The report's parts of a number's life: zeros (and no drain) without one."""
    outcomes = life.outcomes if life else Counter[Outcome]()
    reports = sum(outcomes.values())
    actions = life.actions if life else Counter[ReplyAction]()
    keywords = life.keywords if life else Counter[Keyword]()
    bad = life.bad if life else frozenset()
    measured = life.measured if life else set()
    first = life.first_measured if life else {}
    drain = None
    if life is not None and life.drain_report is not None:
        drain = {**life.drain_report, "fresh_choices_onto_it": life.fresh_onto_drained}
    sent = life.sent_opted_out if life else 0
    unknown = life.refused_not_opted_out if life else 0
    return {
        "delivery": {
            "reports": reports,
            "share_of_messages": reports / messages if messages else 0.0,
            "outcomes": {o.value: outcomes[o] / reports if reports else 0.0 for o in Outcome},
            "bad_numbers": sorted(bad),
            "bad_measured_unhealthy": len(measured & bad),
            "good_measured_unhealthy": len(measured - bad),
            "good_numbers": numbers - len(bad),
            "first_day_measured_unhealthy": {n: first[n] for n in sorted(first)},
            "measured_unhealthy_by_day": life.unhealthy_by_day if life else [],
        },
        "replies": {
            "replies": sum(actions.values()),
            "actions": {a.value: actions[a] for a in ReplyAction},
            "keywords": {k.value: keywords[k] for k in Keyword},
        },
        "opt_outs": {
            "opted_out_at_end": len(life.opted) if life else 0,
            "refused_selects": life.refused if life else 0,
            # The check: no select returned a sender to a recipient opted out then, and
            # none was refused to one who was not.
            "sent_while_opted_out": sent,
            "refused_not_opted_out": unknown,
            "honoured": not (sent or unknown),
        },
        "drain": drain,
    }


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
    return "\n".join(lines + _life_lines(result) + _capacity_lines(result["capacity"]))


_CAUSE_NAMES = {
    "unhealthy_caller": "unhealthy (the caller's word)",
    "unhealthy_reports": "unhealthy (delivery reports)",
    "drain_grace_ended": "drain grace ended",
    "other": "other",
}


def _life_lines(result: dict[str, Any]) -> list[str]:
    """The report's lines of a number's life; a part that did not happen has none."""
    lines = []
    causes = result["reassigned_by_cause"]
    if sum(causes.values()):
        parts = ", ".join(f"{_CAUSE_NAMES[c]} {n:,}" for c, n in causes.items())
        lines.append(f"reassigned:  {sum(causes.values()):,} by cause: {parts}")
    d = result["delivery"]
    if d["reports"]:
        shares = ", ".join(f"{p:.2%} {o}" for o, p in d["outcomes"].items())
        bad, first = len(d["bad_numbers"]), d["first_day_measured_unhealthy"]
        days = sorted(first[n] for n in d["bad_numbers"] if n in first)
        lines += [
            (
                f"delivery:    {d['reports']:,} reports ({d['share_of_messages']:.2%} of "
                f"messages): {shares}"
            ),
            (
                f"health:      {d['bad_measured_unhealthy']} of {bad} bad numbers measured "
                f"unhealthy{f' (first on day {days[0]})' if days else ''}, "
                f"{d['good_measured_unhealthy']} of {d['good_numbers']} good ones"
            ),
            "             measured unhealthy at each day's end: "
            + " ".join(str(n) for n in d["measured_unhealthy_by_day"]),
        ]
    r, o = result["replies"], result["opt_outs"]
    if r["replies"]:
        actions = ", ".join(f"{a} {n:,}" for a, n in r["actions"].items() if n)
        k = r["keywords"]
        lines.append(
            f"replies:     {r['replies']:,}: {actions}; "
            f"{k['opt_out']:,} STOP, {k['opt_in']:,} START"
        )
    if r["replies"] or o["refused_selects"]:
        if o["honoured"]:
            verdict = "never a sender for a recipient opted out at the time"
        else:
            verdict = (
                f"BROKEN: {o['sent_while_opted_out']:,} senders for opted-out recipients, "
                f"{o['refused_not_opted_out']:,} refusals of recipients not opted out"
            )
        lines.append(
            f"opt-outs:    {verdict} ({o['refused_selects']:,} selects refused, "
            f"{o['opted_out_at_end']:,} recipients opted out at the end)"
        )
    drain = result["drain"]
    if drain is not None:
        grace = "no grace" if drain["grace"] is None else f"grace {drain['grace']:g}s"
        lines += [
            (
                f"drain:       {drain['number']} of {drain['profile']} from day {drain['day']}, "
                f"{grace}: {drain['recipients_at_drain']:,} recipients then, "
                f"{drain['fresh_choices_onto_it']:,} fresh choices onto it since"
            ),
            "             its recipients at each day's end since: "
            + " ".join(f"{n:,}" for n in drain["recipients_after_day"]),
        ]
    return lines


def _n(value: float) -> str:
    """A count, or a median of counts, as a person reads it."""
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def _per_second(rate: float | None) -> str:
    return "unlimited" if rate is None else f"{rate:g}/s"


def _capacity_lines(c: dict[str, Any]) -> list[str]:
    """The report's capacity lines: ``capacity: off`` without limits."""
    if not c["on"]:
        return ["capacity:    off (no rate nor daily budget)"]
    lim, wait, peak, share = c["limits"], c["wait"], c["peak_segments"], c["peak_share_of_limit"]
    days, budget = c["new_recipients_busiest_day"], c["busiest_day_share_of_budget"]
    sizes = ", ".join(f"{n}: {p:.0%}" for n, p in c["segments"].items())
    daily = lim["daily_new_recipients"]
    lines = [
        (
            f"capacity:    long codes {_per_second(lim['long_code_rate'])}, toll-free "
            f"{_per_second(lim['toll_free_rate'])}, burst {lim['burst']}, "
            f"{'no budget' if daily is None else f'{daily:,} new recipients a day'}, "
            f"segments {sizes}"
        ),
        (
            f"wait:        median {wait['median']:.3g}s  p99 {wait['p99']:.3g}s  "
            f"max {wait['max']:.3g}s before send_at"
        ),
        (
            f"selects:     {c['waited']:.2%} waited, {c['overflowed']:.2%} overflowed, "
            f"refused {c['refused']['exhausted']:.2%} exhausted, "
            f"{c['refused']['busy']:.2%} busy (of {c['selects']:,})"
        ),
    ]
    if lim["long_code_rate"] is not None or lim["toll_free_rate"] is not None:
        lines.append(
            f"peak rate:   min {_n(peak['min'])}  median {_n(peak['median'])}  "
            f"max {_n(peak['max'])}"
            f" segments in {c['window_seconds']:g}s per number; of rate*"
            f"{c['window_seconds']:g}s+burst: min {share['min']:.0%}  "
            f"median {share['median']:.0%}  max {share['max']:.0%}"
        )
    if daily is not None:
        lines.append(
            f"new/day:     min {_n(days['min'])}  median {_n(days['median'])}  "
            f"max {_n(days['max'])}"
            f" on a number's busiest day; of its budget: min {budget['min']:.0%}  "
            f"median {budget['median']:.0%}  max {budget['max']:.0%}"
        )
    if c["limits_broken"]:
        lines.append(
            f"limits:      BROKEN: {c['numbers_over_rate']:,} numbers over their rate, "
            f"{c['number_days_over_budget']:,} number-days over budget"
        )
    else:
        lines.append("limits:      never broken (every pair of sends on a number, every day)")
    return lines


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
