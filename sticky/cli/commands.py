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
from sticky.numbers import SenderNumber
from sticky.policy import is_eligible

__all__ = [
    "drain",
    "duration",
    "evict",
    "iso",
    "lookup",
    "opt",
    "opt_outs",
    "profiles",
    "show",
    "stats",
    "undrain",
]


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
            "delivery_healthy": n.delivery_healthy,
            "draining_since": n.draining_since,
            "drain_grace": n.drain_grace,
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
    for n, number in zip(numbers, pool, strict=True):
        print(
            f"  {n['number']:<16}  {n['type']:<9}  {_health(number):<20}"
            f"  {'eligible' if n['eligible'] else 'not eligible':<12}"
            f"  {n['live_mappings']:>9,} live mappings{_drain(number, now)}"
        )
    print(f"live mappings: {total:,} at {iso(now)}")
    return 0


def _health(n: SenderNumber) -> str:
    if n.is_healthy:
        return "healthy"
    if not n.healthy:
        return "unhealthy"
    return "unhealthy (reports)"


def _drain(n: SenderNumber, now: float) -> str:
    """How a draining number stands: since when, and when its grace ends."""
    if n.draining_since is None:
        return ""
    text = f"  draining since {iso(n.draining_since)}"
    if n.drain_grace is not None:
        end = n.draining_since + n.drain_grace
        text += f", grace ends {iso(end)}" if end > now else ", grace over"
    return text


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


def drain(engine: Engine, args: argparse.Namespace) -> int:
    """Drain a number; print its state and who is still on it."""
    now = time.time() if args.now is None else args.now
    n = engine.drain(args.profile, args.number, grace=args.grace, now=now)
    left = len(engine.recipients_of(args.profile, n.number, now=now))
    if args.json:
        _print_json(
            {
                "number": n.number,
                "draining_since": n.draining_since,
                "drain_grace": n.drain_grace,
                "live_mappings": left,
            }
        )
    else:
        print(f"{n.number} of profile {args.profile}:{_drain(n, now)}")
        print(f"  {left:,} recipients still on it (remove it once none is left)")
    return 0


def undrain(engine: Engine, args: argparse.Namespace) -> int:
    """End a number's drain."""
    n = engine.undrain(args.profile, args.number)
    if args.json:
        _print_json({"number": n.number, "draining_since": None})
    else:
        print(f"{n.number} of profile {args.profile} takes new recipients again")
    return 0


def opt(engine: Engine, args: argparse.Namespace) -> int:
    """``opt-out`` or ``opt-in`` one recipient."""
    if args.opt == "opt-out":
        changed = engine.opt_out(args.profile, args.recipient)
        state = "opted out" if changed else "was already opted out"
    else:
        changed = engine.opt_in(args.profile, args.recipient)
        state = "opted in" if changed else "was not opted out"
    if args.json:
        _print_json({"recipient": args.recipient, "changed": changed, "command": args.opt})
    else:
        print(f"{args.recipient} {state} (profile {args.profile})")
    return 0


def opt_outs(engine: Engine, args: argparse.Namespace) -> int:
    """Every opted-out recipient of a profile, one a line."""
    found = engine.opt_outs(args.profile)
    if args.json:
        _print_json(found)
    else:
        for to in found:
            print(to)
        print(f"{len(found):,} opted out of profile {args.profile}")
    return 0
