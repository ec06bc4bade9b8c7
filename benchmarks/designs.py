"""The designs under test, behind one small interface.

Every design holds the same kind of table (a recipient's sender and last use) and
offers the same steps: ``select`` (the operation under test), ``run`` (a timed batch
of selects), and the untimed helpers the scenarios need (``fill``, ``forget``,
``pin``) plus the timed ``evict`` and ``cascade``.

- :class:`Floor`: a bare dict, ``d.get((pid, to))`` then ``d[(pid, to)] = (frm, now)``
  in an inline loop. No clock read, no draw, no expiry: the least any pure-Python
  design can do.
- :class:`Minimal`: the minimal complete design, one hand-written function per select
  that does everything a select must and nothing more (validation, weighted draw,
  table, reverse index, expiry queue, result, counter, lock): the second reference.
- :class:`EngineDesign`: :class:`sticky.Engine` on the in-memory store, called through
  its public API exactly as a user calls it.
- :class:`OrderedDictDesign`, :class:`TTLCacheDesign`: what a user would write by hand,
  with the same select semantics (refresh on a live hit, a weighted choice among the
  same pool on a miss) and a clock read per select.
"""

from __future__ import annotations

import bisect
import random
import re
import sys
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NamedTuple

from sticky import DEFAULT_TTL, Engine, ManualClock, NumberType, Reason

PID = "acme"
"""The one profile every design serves."""

T0 = 1_800_000_000.0
"""Where every design's clock starts (seconds since the epoch)."""

TTL = DEFAULT_TTL

POOL: tuple[tuple[str, NumberType], ...] = (
    *(
        (f"+1{npa}55501{i:02d}", NumberType.LONG_CODE)
        for i, npa in enumerate(
            ("212", "312", "415", "617", "713", "305", "404", "206", "303", "702")
        )
    ),
    ("+18005550111", NumberType.TOLL_FREE),
    ("+18885550112", NumberType.TOLL_FREE),
)
"""Ten long codes in ten area codes and two toll-free numbers, all of weight 1."""

VICTIM = "+18445550199"
"""The number a cascade removes: added to the pool only for the cascade."""


class Picker:
    """A weighted choice among the pool, as a user would write it: bisect on cumulative weights."""

    def __init__(self, numbers: Sequence[str], weights: Sequence[float], seed: int) -> None:
        self.numbers = tuple(numbers)
        self.cumulative: list[float] = []
        total = 0.0
        for w in weights:
            total += w
            self.cumulative.append(total)
        self.total = total
        self.random = random.Random(seed).random

    def __call__(self) -> str:
        return self.numbers[bisect.bisect(self.cumulative, self.random() * self.total)]


class Design:
    """One way of holding the mapping table; see the module docstring."""

    name: ClassVar[str]
    amortised: ClassVar[bool] = False
    """Whether ordinary writes remove dead mappings (so the amortised rows apply)."""

    select: Callable[[str, str], object]
    """``select(profile_id, to)`` at the clock's time: the operation under test."""

    def __init__(self) -> None:
        self.clock = ManualClock(T0)

    def run(self, recipients: Sequence[str]) -> int:
        """Select each recipient at the clock's time; return how many (the timed batch)."""
        select = self.select
        for to in recipients:
            select(PID, to)
        return len(recipients)

    def fill(self, recipients: Sequence[str], step: float = 1e-3) -> None:
        """Map each recipient, each at its own time ``step`` after the previous one."""
        clock, select = self.clock, self.select
        t = clock.now()
        for to in recipients:
            t += step
            clock.set(t)
            select(PID, to)

    def stored(self) -> int:
        """Stored mappings, live or dead."""
        raise NotImplementedError

    def forget(self, recipients: Sequence[str]) -> None:
        """Delete the live mappings of these recipients (undoes a batch of misses)."""
        raise NotImplementedError

    def evict(self) -> int:
        """Remove every dead mapping; return how many (timed)."""
        raise NotImplementedError

    def pin(self, recipients: Sequence[str], number: str) -> None:
        """Map these recipients to ``number``, a number outside the pool (untimed)."""
        raise NotImplementedError

    def cascade(self, number: str, recipients: Sequence[str]) -> int:
        """Remove ``number`` and every mapping to it; return how many (timed).

        ``recipients`` are those mappings; only the floor may use them.
        """
        raise NotImplementedError


class _TableDesign(Design):
    """A design whose state is one mapping keyed by ``(pid, to)``: the hand-written ones."""

    table: Any

    def stored(self) -> int:
        return len(self.table)

    def forget(self, recipients: Sequence[str]) -> None:
        for to in recipients:
            del self.table[PID, to]


class Floor(_TableDesign):
    """The floor: a bare dict of ``(pid, to)`` to ``(frm, now)``, an inline loop."""

    name = "floor"

    def __init__(self) -> None:
        super().__init__()
        self.table: dict[tuple[str, str], tuple[str, float]] = {}
        self.default = POOL[0][0]
        self.select = self._select

    def _select(self, pid: str, to: str) -> None:  # only to fill the table
        key = (pid, to)
        hit = self.table.get(key)
        self.table[key] = (self.default if hit is None else hit[0], self.clock.now())

    def run(self, recipients: Sequence[str]) -> int:
        table, pid, now, default = self.table, PID, self.clock.now(), self.default
        get = table.get
        for to in recipients:
            key = (pid, to)
            hit = get(key)
            table[key] = (default if hit is None else hit[0], now)
        return len(recipients)

    def evict(self) -> int:
        # No index: one pass over the table, which costs nothing extra when all are dead.
        table, now, ttl = self.table, self.clock.now(), TTL
        dead = [key for key, (_, last_used) in table.items() if now >= last_used + ttl]
        for key in dead:
            del table[key]
        return len(dead)

    def pin(self, recipients: Sequence[str], number: str) -> None:
        now = self.clock.now()
        for to in recipients:
            self.table[PID, to] = (number, now)

    def cascade(self, number: str, recipients: Sequence[str]) -> int:  # noqa: ARG002
        # The floor is told which keys to delete: the deletes alone, no index to keep.
        table = self.table
        for to in recipients:
            del table[PID, to]
        return len(recipients)


class Result(NamedTuple):
    """The minimal design's answer: the fields of :class:`sticky.Selection`."""

    profile_id: str
    to: str
    from_number: str
    reason: Reason
    tier: None = None


_E164 = re.compile(r"\+[1-9][0-9]{6,14}").fullmatch
_NEW_TUPLE = tuple.__new__
_STICKY, _NEW, _EXPIRED, _REASSIGNED = Reason.STICKY, Reason.NEW, Reason.EXPIRED, Reason.REASSIGNED


class _MinimalProfile:
    """One profile of :class:`Minimal`: its ttl, its draw, and its four structures."""

    __slots__ = (
        "eligible",
        "longs",
        "queue",
        "reverse",
        "split",
        "table",
        "tolls",
        "total",
        "ttl",
        "w_long",
        "w_toll",
    )

    def __init__(self, pool: Sequence[tuple[str, NumberType]], ttl: float) -> None:
        self.ttl = ttl
        self.longs = tuple(n for n, kind in pool if kind is NumberType.LONG_CODE)
        self.tolls = tuple(n for n, kind in pool if kind is NumberType.TOLL_FREE)
        self.w_long = self.w_toll = 1.0
        self.split = len(self.longs) * self.w_long
        self.total = self.split + len(self.tolls) * self.w_toll
        self.eligible = frozenset(self.longs + self.tolls)
        self.table: dict[str, tuple[str, float]] = {}
        """Recipient to (sender, last use)."""
        self.reverse: dict[str, set[str]] = {n: set() for n in self.eligible}
        """Sender to its recipients (what a cascade removes)."""
        self.queue: deque[tuple[float, str]] = deque()
        """(time stored, recipient), in that order; a hit does not touch it."""


class Minimal(_TableDesign):
    """The minimal complete design: everything a select must do, in one function.

    Per select: the lock, the clock, the profile; on a hit (a live mapping whose sender
    is in the pool) the refresh and the result; on a miss the E.164 check (a compiled
    pattern), an O(1) weighted draw by type groups as sticky's chooser does it, the
    table, the reverse index (moved off the previous sender), the expiry queue (appended
    to), and the result (a named tuple of :class:`sticky.Selection`'s fields, built as
    the engine builds its own); and a per-engine counter by reason. Nothing more: no
    horizon, no amortised eviction, no geomatch, no settings beyond the ttl, one seed.
    """

    name = "minimal"

    def __init__(self) -> None:
        super().__init__()
        self.profiles = {PID: _MinimalProfile(POOL, TTL)}
        self.table = self.profiles[PID].table
        self.counts = [0, 0, 0, 0]
        """Selects by reason: sticky, new, expired, reassigned."""
        self.lock = threading.Lock()
        self.random = random.Random(1).random
        self.now = self.clock.now
        self.select = self._select

    def _select(self, pid: str, to: str) -> Result:
        with self.lock:
            now = self.now()
            p = self.profiles[pid]
            table = p.table
            entry = table.get(to)
            if entry is None:
                reason, slot = _NEW, 1
            else:
                sender, last_used = entry
                if now >= last_used + p.ttl:
                    reason, slot = _EXPIRED, 2
                elif sender not in p.eligible:
                    reason, slot = _REASSIGNED, 3
                else:
                    if now > last_used:
                        table[to] = (sender, now)
                    self.counts[0] += 1
                    return _NEW_TUPLE(Result, (pid, to, sender, _STICKY, None))
            if _E164(to) is None:
                msg = f"invalid recipient {to!r}"
                raise ValueError(msg)
            x = self.random() * p.total
            if x < p.split:
                group, i = p.longs, int(x / p.w_long)
            else:
                group, i = p.tolls, int((x - p.split) / p.w_toll)
            chosen = group[i] if i < len(group) else group[-1]
            if entry is not None:
                p.reverse[entry[0]].discard(to)
            table[to] = (chosen, now)
            p.reverse[chosen].add(to)
            p.queue.append((now, to))
            self.counts[slot] += 1
            return _NEW_TUPLE(Result, (pid, to, chosen, reason, None))

    def forget(self, recipients: Sequence[str]) -> None:
        p = self.profiles[PID]
        for to in recipients:
            sender, _ = p.table.pop(to)
            p.reverse[sender].discard(to)


class EngineDesign(Design):
    """:class:`sticky.Engine` with the in-memory store, through its public API."""

    name = "engine"
    amortised = True

    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine(clock=self.clock, seed=1)
        self.engine.create_profile(PID)
        for number, kind in POOL:
            self.engine.add_number(PID, number, kind)
        self.select = self.engine.select

    def configure(self, **changes: Any) -> None:
        """Change the profile's settings (sticky off, geomatch), same pool and table."""
        self.engine.update_settings(PID, **changes)

    def stored(self) -> int:
        return self.engine.stats().mappings

    def forget(self, recipients: Sequence[str]) -> None:
        for to in recipients:
            self.engine.forget(PID, to)

    def evict(self) -> int:
        return self.engine.evict_expired()

    def pin(self, recipients: Sequence[str], number: str) -> None:
        self.engine.add_number(PID, number)
        for to in recipients:
            self.engine.pin(PID, to, number)

    def cascade(self, number: str, recipients: Sequence[str]) -> int:  # noqa: ARG002
        return self.engine.remove_number(PID, number)


class OrderedDictDesign(_TableDesign):
    """By hand: an ``OrderedDict`` in last-use order, ``move_to_end`` on touch.

    A miss also pops up to two dead mappings from the front (amortised eviction, as the
    engine does); a cascade must scan the whole table.
    """

    name = "ordereddict"
    amortised = True

    def __init__(self) -> None:
        super().__init__()
        self.table: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self.pick = Picker([n for n, _ in POOL], [1.0] * len(POOL), seed=1)
        self.now = self.clock.now
        self.select = self._select

    def _select(self, pid: str, to: str) -> str:
        now = self.now()
        key = (pid, to)
        table = self.table
        hit = table.get(key)
        if hit is not None and now < hit[1] + TTL:
            table[key] = (hit[0], now)
            table.move_to_end(key)
            return hit[0]
        sender = self.pick()
        table[key] = (sender, now)
        table.move_to_end(key)
        for _ in range(2):
            oldest = next(iter(table))
            if now < table[oldest][1] + TTL:
                break
            del table[oldest]
        return sender

    def evict(self) -> int:
        table, now, removed = self.table, self.now(), 0
        while table:
            oldest = next(iter(table))
            if now < table[oldest][1] + TTL:
                break
            del table[oldest]
            removed += 1
        return removed

    def pin(self, recipients: Sequence[str], number: str) -> None:
        now = self.now()
        for to in recipients:
            self.table[PID, to] = (number, now)
            self.table.move_to_end((PID, to))

    def cascade(self, number: str, recipients: Sequence[str]) -> int:  # noqa: ARG002
        table = self.table
        doomed = [key for key, (sender, _) in table.items() if sender == number]
        for key in doomed:
            del table[key]
        return len(doomed)


class TTLCacheDesign(_TableDesign):
    """By hand: a ``cachetools.TTLCache`` (unbounded) of ``(pid, to)`` to the sender.

    A hit re-sets the key (which refreshes its expiry); the cache expires dead keys on
    every set, all at once; a cascade must scan the whole cache.
    """

    name = "ttlcache"

    def __init__(self) -> None:
        from cachetools import TTLCache  # noqa: PLC0415 - the bench extra, checked by the caller

        super().__init__()
        self.table: Any = TTLCache(maxsize=sys.maxsize, ttl=TTL, timer=self.clock.now)
        self.pick = Picker([n for n, _ in POOL], [1.0] * len(POOL), seed=1)
        self.select = self._select

    def _select(self, pid: str, to: str) -> str:
        key = (pid, to)
        table = self.table
        sender = table.get(key)
        if sender is None:
            sender = self.pick()
        table[key] = sender
        return sender  # type: ignore[no-any-return]

    def evict(self) -> int:
        return len(self.table.expire())

    def pin(self, recipients: Sequence[str], number: str) -> None:
        for to in recipients:
            self.table[PID, to] = number

    def cascade(self, number: str, recipients: Sequence[str]) -> int:  # noqa: ARG002
        table = self.table
        doomed = [key for key, sender in table.items() if sender == number]
        for key in doomed:
            del table[key]
        return len(doomed)


def available_designs() -> tuple[list[type[Design]], list[str]]:
    """The designs this installation can run (floor first), and notes on the others."""
    designs: list[type[Design]] = [Floor, Minimal, EngineDesign, OrderedDictDesign]
    notes: list[str] = []
    try:
        import cachetools  # noqa: F401, PLC0415 - optional: the bench extra
    except ImportError:
        notes.append("ttlcache skipped: cachetools is not installed (pip install -e '.[bench]')")
    else:
        designs.append(TTLCacheDesign)
    return designs, notes
