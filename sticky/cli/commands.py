"""The inspection and housekeeping commands: profiles, show, lookup, evict, stats.

Each takes an open :class:`~sticky.Engine` and the parsed arguments, prints its result
(text, or JSON with ``--json``) and returns the exit status.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import time
from collections import Counter
from typing import Any

from sticky.cli.progress import Progress, wanted
from sticky.engine import Engine
from sticky.policy import is_eligible

__all__ = ["duration", "evict", "iso", "lookup", "profiles", "show", "stats"]


def iso(t: float) -> str:
    """A time as ISO 8601 in UTC, to the second (or the raw number when out of range)."""
    try:
        moment = datetime.datetime.fromtimestamp(t, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return repr(t)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(seconds: float) -> str:
    """``7d 21h 03m``, ``5m 02s``, ``0s``: a length of time a person reads at a glance."""
    if not math.isfinite(seconds):
        return repr(seconds)
    s = round(abs(seconds))
    days, s = divmod(s, 86_400)
    hours, s = divmod(s, 3_600)
    minutes, s = divmod(s, 60)
    if days:
        text = f"{days}d {hours:02d}h {minutes:02d}m"
    elif hours:
        text = f"{hours}h {minutes:02d}m"
    elif minutes:
        text = f"{minutes}m {s:02d}s"
    else:
        text = f"{s}s"
    return f"-{text}" if seconds < 0 and text != "0s" else text


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2))


def profiles(engine: Engine, args: argparse.Namespace) -> int:
    """Every profile id with the size of its pool. 1 + P store calls."""
    rows = [(pid, len(engine.numbers(pid))) for pid in engine.profiles()]
    if args.json:
        _print_json([{"id": pid, "numbers": n} for pid, n in rows])
    elif not rows:
        print("no profiles")
    else:
        width = max(len(pid) for pid, _ in rows)
        for pid, n in rows:
            print(f"{pid:<{width}}  {n:,} numbers")
    return 0


def show(engine: Engine, args: argparse.Namespace) -> int:
    """A profile's settings, its pool with type, health and eligibility, its live counts.

    The counts come from one pass over the profile's live mappings (streamed).
    """
    pid = args.profile
    settings = engine.settings(pid)
    pool = engine.numbers(pid)
    now = time.time() if args.now is None else args.now
    live: Counter[str] = Counter()
    for page in engine.iter_mappings(pid, now=now, batch=args.batch):
        live.update(m.from_number for m in page)
    numbers = [
        {
            "number": n.number,
            "type": n.type.value,
            "healthy": n.healthy,
            "eligible": is_eligible(n, settings),
            "live_mappings": live[n.number],
        }
        for n in pool
    ]
    total = sum(live.values())
    if args.json:
        _print_json(
            {
                "id": pid,
                "settings": settings.to_dict(),
                "numbers": numbers,
                "live_mappings": total,
                "at": now,
            }
        )
        return 0
    print(f"profile {pid}")
    print("settings:")
    for name, value in settings.to_dict().items():
        extra = f" ({duration(value)})" if name == "ttl" else ""
        print(f"  {name:<17} {value}{extra}")
    eligible = sum(1 for n in numbers if n["eligible"])
    print(f"pool: {len(numbers):,} numbers, {eligible:,} eligible")
    for n in numbers:
        print(
            f"  {n['number']:<16}  {n['type']:<9}  {'healthy' if n['healthy'] else 'unhealthy':<9}"
            f"  {'eligible' if n['eligible'] else 'not eligible':<12}"
            f"  {n['live_mappings']:>9,} live mappings"
        )
    print(f"live mappings: {total:,} at {iso(now)}")
    return 0


def lookup(engine: Engine, args: argparse.Namespace) -> int:
    """The live mapping of a recipient and its expiry; status 1 when there is none."""
    now = time.time() if args.now is None else args.now
    found = engine.mapping(args.profile, args.recipient, now=now)
    if args.json:
        value: dict[str, Any] | None = None
        if found is not None:
            value = {
                "profile_id": found.profile_id,
                "to": found.to,
                "from_number": found.from_number,
                "last_used": found.last_used,
                "expires_at": found.expires_at,
                "age": now - found.last_used,
            }
        _print_json(value)
    elif found is None:
        print(f"{args.recipient}: no live mapping in profile {args.profile}")
    else:
        print(f"{found.to} -> {found.from_number} (profile {found.profile_id})")
        print(f"  last used {iso(found.last_used)} ({duration(now - found.last_used)} ago)")
        print(f"  expires   {iso(found.expires_at)} (in {duration(found.expires_at - now)})")
    return 1 if found is None else 0


def evict(engine: Engine, args: argparse.Namespace) -> int:
    """Remove every dead mapping, for a periodic job; print how many."""
    bar = Progress("evict", enabled=wanted(args.progress))
    bar.message("removing dead mappings...")
    started = time.perf_counter()
    removed = engine.evict_expired(now=args.now)
    seconds = time.perf_counter() - started
    bar.message(f"{removed:,} removed")
    bar.close()
    if args.json:
        _print_json({"evicted": removed, "seconds": round(seconds, 6)})
    else:
        print(f"evicted {removed:,} dead mappings in {seconds:.2f} s")
    return 0


def stats(engine: Engine, args: argparse.Namespace) -> int:
    """What the store holds: profiles, numbers, stored mappings, evictions so far."""
    ids = engine.profiles()
    numbers = sum(len(engine.numbers(pid)) for pid in ids)
    s = engine.stats()
    value = {
        "store": args.store,
        "profiles": len(ids),
        "numbers": numbers,
        "mappings": s.mappings,
        "evicted": s.evicted,
    }
    if args.json:
        _print_json(value)
    else:
        print(f"store:    {args.store}")
        print(f"profiles: {len(ids):,}")
        print(f"numbers:  {numbers:,}")
        print(f"mappings: {s.mappings:,} stored (live, or dead and not yet evicted)")
        print(f"evicted:  {s.evicted:,} dead mappings so far")
    return 0
