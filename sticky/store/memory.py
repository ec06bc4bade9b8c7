"""The in-memory store: one process, every operation atomic under one lock.

Layout, per profile: ``table`` maps a recipient to a tuple ``(sender, last_used,
tag)``; ``by_sender`` maps a sender to the set of its recipients, so a cascade is O(k);
the expiry index is two deques side by side, keys and recipients in key order, plus a
sorted list of ``(key, to, tag)`` for the keys that arrive out of order. The tag (0 to
255) tells a mapping's own index entry from the stale ones of the mappings it replaced:
the deques' entries take the tags in turn, so their tags are implicit (``head_tag``, the
first entry's, then one more each), and the sorted list's take theirs from a counter of
their own. A tag is a small int, which CPython shares, rather than the entry's key: a
hit builds a new tuple and frees the old, which touches each object in them, and at
10^6 mappings each cold object touched is a likely cache miss (a key float per mapping
made a hit about a tenth slower). A stale entry whose tag happens to match is
harmless: it re-indexes a live mapping (which then drops its previous entry as stale)
or evicts a dead one, as the right entry would.

Why the index is cheap: within a profile every mapping shares one ttl, so while the
clock moves forward, creation order is expiry order and a new mapping is appended to
the deque in O(1). A hit does not touch the index at all: an index key is a lower
bound of its mapping's ``last_used``. When eviction pops a key whose mapping was used
since, it re-indexes the mapping under its current ``last_used`` (into the sorted list,
O(log n)); each mapping is re-indexed at most once per ttl, which its hits pay for.
Keys that arrive out of order (a clock that went back, a re-index) go to the sorted
list. An index entry whose mapping was replaced or deleted is dropped when popped.

Why tuples: a tuple of strings and floats is untracked by the garbage collector after
its first collection, so a million mappings cost the collector nothing; an object per
mapping made every full collection walk them all (measured: 2.2 us against 0.8 us per
new mapping at 10^6). The table is a dict subclass because CPython untracks a plain
dict whose values are all untracked, and re-tracks it on the next insert, which made
young collections walk the whole table.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, NoReturn

import attrs
from sortedcontainers import SortedList

from sticky.errors import (
    NumberInUse,
    ProfileExists,
    StoreUnavailable,
    UnknownNumber,
    UnknownProfile,
    opted_out,
    shown,
)
from sticky.numbers import NumberType, SenderNumber, check_e164, is_e164, match_e164
from sticky.policy import (
    COUNTED,
    HEALTH_BUCKETS,
    IDLE,
    STEP_EVICTIONS,
    STEP_LOOKS,
    Chooser,
    Load,
    Window,
    after_report,
    budget_of,
    busy_until,
    clears_mappings,
    clears_windows,
    count_new,
    dies_at,
    drain_deadlines,
    is_live,
    judge,
    judged_at,
    keeps,
    kept_numbers,
    plan,
    rate_of,
    refreshed,
    reply_action,
    reserve,
    room_wait,
    step_limit,
    sticky_step,
    today,
)
from sticky.settings import PoolSettings
from sticky.store.base import SLOT, Decide, LiveMapping, Miss, count, new_counts, sorted_pool
from sticky.values import Keyword, Outcome, Reason, ReplyAction, Selection

__all__ = ["MemoryStore"]

_STICKY = Reason.STICKY
_POOL = Reason.POOL
_REASSIGNED = Reason.REASSIGNED
_NEW = Reason.NEW
_HIT_SLOT, _WAITED = SLOT[_STICKY], SLOT["waited"]
_new = tuple.__new__

_Entry = tuple[str, float, int]
"""``(sender, last_used, tag)``."""


class _Stopped(Exception):
    def __init__(self, miss: Miss) -> None:
        self.miss = miss


def _stop(_profile_id: str, _to: str, miss: Miss) -> Selection:
    """A decision that stops the select before anything is written."""
    raise _Stopped(miss)


class _Closed(dict[str, Any]):
    """What a closed store's profile and owner dicts become: every use raises.

    Swapping the dicts at close costs the open store's hot path nothing: no flag to test.
    A select's plain ``profiles[profile_id]`` lands in the ``__getitem__`` below.
    """

    __slots__ = ()

    def _closed(self, *_args: object, **_kwargs: object) -> NoReturn:
        msg = "memory store is closed"
        raise StoreUnavailable(msg)

    __missing__ = __getitem__ = get = __contains__ = __iter__ = __len__ = _closed
    values = items = keys = pop = __setitem__ = __delitem__ = _closed


_CLOSED = _Closed()


class _Table(dict[str, _Entry]):
    """The mapping table: a dict the garbage collector never untracks (see above)."""

    __slots__ = ()


class _Profile:
    __slots__ = (
        "budgets",
        "burst",
        "busy",
        "by_sender",
        "capacity",
        "chooser",
        "deadlines",
        "evict_at",
        "full",
        "head_tag",
        "horizon",
        "id",
        "kept",
        "keys",
        "late",
        "late_min",
        "late_tag",
        "limit",
        "loads",
        "optouts",
        "pool",
        "pool_tuple",
        "queued",
        "rates",
        "room",
        "settings",
        "sticky",
        "table",
        "tag",
        "ttl",
        "version",
        "windows",
    )

    def __init__(self, profile_id: str, settings: PoolSettings, version: int) -> None:
        self.id = profile_id
        self.pool: dict[str, SenderNumber] = {}
        self.table = _Table()
        self.by_sender: dict[str, set[str]] = {}
        self.clear_index()
        self.horizon = -math.inf
        self.loads: dict[str, Load] = {}
        self.optouts: set[str] = set()
        self.windows: dict[str, Window] = {}
        self.apply(settings, version)

    def apply(self, settings: PoolSettings, version: int) -> None:
        """Adopt new settings or a changed pool: recompute what selects read. O(p log p)."""
        self.settings = settings
        self.ttl = settings.ttl
        self.rehead()
        self.sticky = settings.sticky_sender
        self.version = version
        self.pool_tuple = sorted_pool(list(self.pool.values()))
        # What a sticky hit reads (policy.keeps): the numbers that keep their mappings,
        # and the ends of the drains' graces (empty while no number drains with one).
        self.kept = kept_numbers(self.pool_tuple, settings)
        self.deadlines = drain_deadlines(self.pool_tuple)
        self.chooser = Chooser(self.pool_tuple, settings, version)
        self.capacity = self.chooser.capacity
        # What the capacity path reads per select, once per version: each number's rate
        # and budget, the room a choice allows, and the summary that makes a choice
        # O(1) while every number has room: the pool's latest busy_until, and the
        # numbers at their budget (with the day of it).
        self.rates = {n: rate_of(x, settings) for n, x in self.pool.items()}
        self.budgets = {n: budget_of(x, settings) for n, x in self.pool.items()}
        self.room = room_wait(settings)
        self.limit = step_limit(settings)
        self.burst = burst = settings.burst
        self.busy = max(
            (busy_until(load, self.rates[n], burst) for n, load in self.loads.items()),
            default=-math.inf,
        )
        self.full: dict[str, int] = {}
        for n, load in self.loads.items():
            self.note_budget(n, load)

    def note_budget(self, number: str, load: Load) -> None:
        """Remember a number at its budget, with the day it reached it."""
        budget = self.budgets[number]
        if budget is not None and load[3] >= budget:
            self.full[number] = load[2]

    def clear_index(self) -> None:
        """Empty the expiry index. O(1)."""
        # Two deques side by side, not one of (key, to) tuples: a tuple per mapping
        # would cost 56 bytes, two deque slots cost 16.
        self.keys: deque[float] = deque()
        self.queued: deque[str] = deque()
        self.tag = self.head_tag = self.late_tag = 0  # the deques' last and first tags
        self.late: SortedList = SortedList()
        self.late_min = math.inf  # the smallest key in ``late``: no SortedList call to peek
        self.evict_at = math.inf

    def rehead(self) -> None:
        """Recompute ``evict_at`` after the index's oldest key or the ttl changed. O(1).

        ``evict_at`` is :func:`~sticky.policy.dies_at` of the oldest key: the time from
        which a write's eviction step has something to look at.
        """
        first = self.keys[0] if self.keys else math.inf
        self.evict_at = dies_at(first if first < self.late_min else self.late_min, self.ttl)  # noqa: FURB136

    def index(self, key: float, to: str) -> int:
        """Index ``to`` under ``key`` (in order: the deques; else ``late``); its tag. O(log n)."""
        keys = self.keys
        if keys and keys[-1] > key:
            tag = self.add_late(key, to)
        else:
            self.tag = tag = (self.tag + 1) & 255
            keys.append(key)
            self.queued.append(to)
            if len(keys) > 1:  # the common case: the oldest key stays
                return tag
            self.head_tag = tag
        self.rehead()
        return tag

    def add_late(self, key: float, to: str) -> int:
        """Index ``to`` under ``key`` out of order; its tag. O(log n). Leaves ``evict_at``."""
        self.late_tag = tag = (self.late_tag + 1) & 255
        self.late.add((key, to, tag))
        self.late_min = min(self.late_min, key)
        return tag

    def at(self, now: float) -> float:
        """The time liveness is judged at: never before the horizon."""
        return judged_at(now, self.horizon)

    def advance(self, now: float) -> float:
        """Move the horizon to ``now`` if later (a write that can evict); return it."""
        self.horizon = judged_at(now, self.horizon)
        return self.horizon


class MemoryStore:
    """Everything in this process's memory; thread-safe, every method atomic.

    Costs (n mappings in the profile, k affected, p numbers in the pool): a select
    (``select_atomic``, ``begin_select``, ``commit_select``) O(1) expected, plus an
    O(log n) index insert only when the clock went back; ``remove_number`` O(k) for
    its k mappings; ``forget``/``pin`` O(1); ``recipients_of`` O(k log k);
    ``evict_expired`` O(k log n) for k dead mappings (plus re-indexing mappings used
    since they were indexed, paid for by their hits); pool and settings changes
    O(p log p). Every write that stores a mapping also removes up to two dead mappings
    of its profile, so under steady traffic storage stays near the live mappings; a
    profile that falls quiet keeps its dead mappings until ``evict_expired``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._decide: object = None
        self._draws: Any = None  # the draws of the last _decide seen: no getattr per miss
        self._profiles: dict[str, _Profile] = {}
        self._owner: dict[str, str] = {}
        self._version = 0
        self._evicted = 0

    def __repr__(self) -> str:
        if self._profiles is _CLOSED:
            return "MemoryStore(closed)"
        return f"MemoryStore(profiles={len(self._profiles)})"

    # -- helpers (lock held) --------------------------------------------------------
    def _get(self, profile_id: str) -> _Profile:
        p = self._profiles.get(profile_id)
        if p is None:
            msg = f"unknown profile {shown(profile_id)}"
            raise UnknownProfile(msg)
        return p

    def _next_version(self) -> int:
        self._version += 1
        return self._version

    def _store_choice(
        self, p: _Profile, to: str, sender: str, now: float, old: _Entry | None
    ) -> None:
        """Store ``(sender, now)`` for ``to`` in place of ``old``, and index it.

        Also moves the horizon and takes an amortised eviction step.
        """
        at = p.horizon = judged_at(now, p.horizon)
        table = p.table
        if old is not None:
            self._unlink(p, to, old[0])
        recipients = p.by_sender.get(sender)
        if recipients is None:
            p.by_sender[sender] = {to}
        else:
            recipients.add(to)
        keys = p.keys
        if keys and keys[-1] <= now:  # p.index, its common case written out
            p.tag = tag = (p.tag + 1) & 255
            keys.append(now)
            p.queued.append(to)
        else:
            tag = p.index(now, to)
        table[to] = (sender, now, tag)
        if at >= p.evict_at:  # the oldest key is dead: a step has something to evict
            self._evict(p, at, STEP_EVICTIONS, STEP_LOOKS)

    @staticmethod
    def _unlink(p: _Profile, to: str, sender: str) -> None:
        recipients = p.by_sender[sender]
        recipients.discard(to)
        if not recipients:
            del p.by_sender[sender]

    def _evict(self, p: _Profile, now: float, limit: float, max_pops: float) -> int:
        """Remove up to ``limit`` dead mappings of ``p``, looking at up to ``max_pops`` keys."""
        ttl, keys, queued, late, table = p.ttl, p.keys, p.queued, p.late, p.table
        by_sender = p.by_sender
        inf = math.inf
        removed = pops = 0
        while removed < limit and pops < max_pops:
            first = keys[0] if keys else inf
            if first <= p.late_min:
                if is_live(first, ttl, now):  # also stops when both are empty: inf + ttl
                    break
                keys.popleft()
                to, tag = queued.popleft(), p.head_tag
                p.head_tag = (tag + 1) & 255
            else:
                if is_live(p.late_min, ttl, now):
                    break
                _, to, tag = late.pop(0)
                p.late_min = late[0][0] if late else inf
            pops += 1
            entry = table.get(to)
            if entry is None or entry[2] != tag:
                continue  # the mapping it indexed was replaced or deleted
            sender, last_used, _ = entry
            if is_live(last_used, ttl, now):  # used since it was indexed: index it again
                table[to] = (sender, last_used, p.add_late(last_used, to))
                late = p.late
            else:
                del table[to]
                recipients = by_sender[sender]
                recipients.discard(to)
                if not recipients:
                    del by_sender[sender]
                removed += 1
        if pops:
            p.rehead()
        self._evicted += removed
        return removed

    # -- profiles -------------------------------------------------------------------
    def create_profile(self, profile_id: str, settings: PoolSettings) -> None:
        """Create an empty profile. O(1)."""
        with self._lock:
            if profile_id in self._profiles:
                msg = f"profile {shown(profile_id)} already exists"
                raise ProfileExists(msg)
            self._profiles[profile_id] = _Profile(profile_id, settings, self._next_version())

    def delete_profile(self, profile_id: str, now: float) -> int:
        """Delete a profile with its pool and mappings; return the live ones. O(n + p)."""
        with self._lock:
            p = self._get(profile_id)
            ttl, at = p.ttl, p.at(now)
            live = sum(1 for _, last_used, _ in p.table.values() if is_live(last_used, ttl, at))
            for number in p.pool:
                del self._owner[number]
            del self._profiles[profile_id]
            return live

    def settings(self, profile_id: str) -> PoolSettings:
        """A profile's settings. O(1)."""
        with self._lock:
            return self._get(profile_id).settings

    def replace_settings(self, profile_id: str, old: PoolSettings, new: PoolSettings) -> bool:
        """Compare-and-set the settings. O(p log p), plus the evictions a longer ttl needs.

        O(1) more to drop every mapping when :func:`~sticky.policy.clears_mappings`, and
        every delivery window when :func:`~sticky.policy.clears_windows`.
        """
        with self._lock:
            p = self._get(profile_id)
            if p.settings != old:
                return False
            if clears_mappings(p.settings, new):
                p.table = _Table()
                p.by_sender = {}
                p.clear_index()
            elif new.ttl > p.ttl:  # so that no dead mapping comes back to life
                self._evict(p, p.horizon, math.inf, math.inf)
            if clears_windows(p.settings, new):
                p.windows = {}
            p.apply(new, self._next_version())
            return True

    def profiles(self) -> list[str]:
        """Every profile id, sorted. O(P log P)."""
        with self._lock:
            return sorted(self._profiles)

    # -- pools ----------------------------------------------------------------------
    def add_number(
        self,
        profile_id: str,
        number: str,
        number_type: NumberType,
        *,
        healthy: bool,
        rate: float | None = None,
        daily_new_recipients: int | None = None,
    ) -> None:
        """Add a number to a pool. O(p log p)."""
        with self._lock:
            p = self._get(profile_id)
            owner = self._owner.get(number)
            if owner is not None:
                msg = f"number {shown(number)} is already in profile {shown(owner)}"
                raise NumberInUse(msg)
            self._owner[number] = profile_id
            p.pool[number] = SenderNumber(number, number_type, healthy, rate, daily_new_recipients)
            p.apply(p.settings, self._next_version())

    def remove_number(self, profile_id: str, number: str, now: float) -> int:
        """Remove a number and its mappings; return the live ones. O(k + p log p)."""
        with self._lock:
            p = self._get(profile_id)
            if number not in p.pool:
                msg = f"number {shown(number)} is not in profile {shown(profile_id)}"
                raise UnknownNumber(msg)
            ttl, table, at = p.ttl, p.table, p.advance(now)
            live = 0
            for to in p.by_sender.pop(number, ()):
                live += is_live(table.pop(to)[1], ttl, at)
            del p.pool[number]
            p.loads.pop(number, None)
            p.windows.pop(number, None)
            del self._owner[number]
            p.apply(p.settings, self._next_version())
            return live

    def _owner_of(self, number: str) -> _Profile:
        owner = self._owner.get(number)
        if owner is None:
            msg = f"number {shown(number)} is in no profile"
            raise UnknownNumber(msg)
        return self._profiles[owner]

    def _change(self, p: _Profile, number: str, **changes: object) -> SenderNumber:
        """Change a pooled number; a changed one is a new pool version. O(p log p)."""
        current = p.pool[number]
        updated = attrs.evolve(current, **changes)  # type: ignore[arg-type]
        if updated != current:
            p.pool[number] = updated
            p.apply(p.settings, self._next_version())
        return updated

    def set_health(self, number: str, *, healthy: bool) -> None:
        """Set a pooled number's health; True also clears its delivery verdict. O(p log p)."""
        with self._lock:
            p = self._owner_of(number)
            if healthy:
                p.windows.pop(number, None)
                self._change(p, number, healthy=True, delivery_healthy=True)
            else:
                self._change(p, number, healthy=False)

    def set_drain(
        self, profile_id: str, number: str, since: float | None, grace: float | None
    ) -> SenderNumber:
        """Start or end a number's drain; return it. O(p log p)."""
        with self._lock:
            p = self._get(profile_id)
            if number not in p.pool:
                msg = f"number {shown(number)} is not in profile {shown(profile_id)}"
                raise UnknownNumber(msg)
            return self._change(p, number, draining_since=since, drain_grace=grace)

    def record_delivery(self, number: str, outcome: Outcome, now: float) -> SenderNumber:
        """Add a delivery report and judge the number. O(1), O(p log p) when it flips."""
        with self._lock:
            p = self._owner_of(number)
            current = p.pool[number]
            window, verdict = after_report(
                p.windows.get(number, ()), current.delivery_healthy, outcome, now, p.settings
            )
            p.windows[number] = window
            if verdict == current.delivery_healthy:
                return current
            return self._change(p, number, delivery_healthy=verdict)

    def health(self, profile_id: str) -> tuple[tuple[SenderNumber, ...], dict[str, Window]]:
        """The pool and each number's delivery window. O(p)."""
        with self._lock:
            p = self._get(profile_id)
            return p.pool_tuple, dict(p.windows)

    def set_limits(self, number: str, changes: Mapping[str, float | int | None]) -> SenderNumber:
        """Set a pooled number's own limits; return it. O(p log p)."""
        with self._lock:
            return self._change(self._owner_of(number), number, **changes)

    def capacity_state(
        self, profile_id: str
    ) -> tuple[PoolSettings, tuple[SenderNumber, ...], dict[str, Load]]:
        """The settings, pool and capacity state of a profile. O(p)."""
        with self._lock:
            p = self._get(profile_id)
            return p.settings, p.pool_tuple, dict(p.loads)

    def numbers(self, profile_id: str) -> tuple[SenderNumber, ...]:
        """A profile's pool, sorted by number. O(1)."""
        with self._lock:
            return self._get(profile_id).pool_tuple

    # -- selection ------------------------------------------------------------------
    def select_in_one_step(  # noqa: C901, PLR0912 - the hot path, written out
        self,
        profile_id: str,
        to: str,
        now: float,
        decide: Decide,
        counts: list[int],
        segments: int = 1,
    ) -> Selection:
        """A whole select under the lock: a hit, or ``decide`` and store. O(1) expected.

        The answer is counted in ``counts`` under the lock.

        The engine's hot path, written out in one function (each call saved is
        measurable); the rules it applies are :mod:`sticky.policy`'s.
        """
        lock = self._lock
        lock.acquire()
        try:
            try:
                p = self._profiles[profile_id]
            except KeyError:
                msg = f"unknown profile {shown(profile_id)}"
                raise UnknownProfile(msg) from None
            if p.optouts and to in p.optouts:
                raise opted_out(profile_id, to)
            if p.capacity:
                return self._select_with_capacity(p, to, now, decide, counts, segments)
            table = p.table
            entry = table.get(to) if p.sticky else None
            if entry is None:
                reason = _NEW if p.sticky else _POOL
            else:
                sender, last_used, tag = entry
                kept = sender in p.kept
                if kept and p.deadlines:
                    kept = keeps(sender, p.kept, p.deadlines, now)
                reason = judge(last_used, p.ttl, now, p.horizon, kept)
                if reason is _STICKY:  # a hit evicts nothing: the horizon stays
                    if now > last_used:
                        table[to] = (sender, now, tag)
                    counts[_HIT_SLOT] += 1
                    return _new(Selection, (profile_id, to, sender, _STICKY, None, now))
            if decide is not self._decide:  # the engine passes one decide: no getattr a miss
                self._decide, self._draws = decide, getattr(decide, "draws", None)
            draws = self._draws
            if draws is None:  # a decide of its own (begin_select's): the generic path
                sel = decide(profile_id, to, self._miss(p, entry, reason, now))
                if sel.reason is not _POOL:
                    self._store_choice(p, to, sel.from_number, now, entry)
                count(counts, sel, now)
                return sel
            # A fresh choice with this pool version's chooser: what the engine's decide
            # would do, without the call back and the Miss it reads.
            if match_e164(to) is None:  # a str: the engine checked its type
                check_e164(to, "recipient")
            chooser = p.chooser
            plain = chooser.plain
            if plain is not None:
                sender, tier = plain(draws.take()), None
            else:  # an empty pool raises before a draw is used, as the engine's does
                sender, tier = chooser.choose(
                    profile_id, to, 0.0 if chooser.empty else draws.take()
                )
            if reason is not _POOL:
                self._store_choice(p, to, sender, now, entry)
            # count(), written out: without capacity an answer never waits
            counts[SLOT[reason]] += 1
            if tier is not None:
                counts[SLOT[tier]] += 1
            return _new(Selection, (profile_id, to, sender, reason, tier, now))
        finally:
            lock.release()

    def _select_with_capacity(  # noqa: C901, PLR0912, PLR0915 - written out: the capacity hot path
        self, p: _Profile, to: str, now: float, decide: Decide, counts: list[int], segments: int
    ) -> Selection:
        """A select of a profile with capacity on (lock held): :func:`sticky.policy.plan`.

        A sticky hit that keeps its number costs O(1) (:func:`~sticky.policy.stays`),
        and so does a fresh choice while every number has room and budget (the pool's
        ``busy``, the numbers at their budget in ``full``); else O(p). Then the answer
        is stored and its slots reserved.
        """
        table = p.table
        entry = table.get(to) if p.sticky else None
        sticky = None
        if entry is None:
            reason = _NEW if p.sticky else _POOL
        else:
            sender, last_used, tag = entry
            kept = sender in p.kept
            if kept and p.deadlines:
                kept = keeps(sender, p.kept, p.deadlines, now)
            reason = judge(last_used, p.ttl, now, p.horizon, kept)
            if reason is _STICKY:
                loads = p.loads
                step = sticky_step(
                    loads.get(sender, IDLE), now, p.rates[sender], p.burst, segments, p.limit
                )
                if step is not None:  # keeps its number: no draw, no choice
                    if now > last_used:
                        table[to] = (sender, now, tag)
                    slot, loads[sender], busy = step
                    counts[_HIT_SLOT] += 1
                    if slot > now:
                        counts[_WAITED] += 1
                    if busy > p.busy:  # noqa: PLR1730 - max() costs a call
                        p.busy = busy
                    return _new(Selection, (p.id, to, sender, _STICKY, None, slot))
                sticky = sender
        draws = getattr(decide, "draws", None)
        day = today(now, p.settings.timezone)
        if draws is None:  # a decide of its own: it plans from what a Miss shows
            previous = None if entry is None else entry[:2]
            miss = Miss(
                p.settings, p.version, p.pool_tuple, previous, reason is _REASSIGNED, now,
                p.loads, sticky,
            )  # fmt: skip
            sel = decide(p.id, to, miss)
            sender, why = sel.from_number, sel.reason
        else:  # the engine's draws: plan here, as the engine's decide would
            if not is_e164(to):
                check_e164(to, "recipient")
            hint = sticky is None and self._all_room(p, now, day[0])
            r = draws.take()
            try:
                sender, tier, why, send_at = plan(
                    p.chooser, p.loads, to, r, now, day, sticky, reason, p.id, all_room=hint
                )
            except BaseException:
                draws.put_back(r)  # refused: the draw is the next select's
                raise
            if why is _STICKY:  # no overflow after all: the draw was not used
                draws.put_back(r)
            sel = _new(Selection, (p.id, to, sender, why, tier, send_at))
        if why is _STICKY:
            if now > entry[1]:  # type: ignore[index]  # a sticky answer has an entry
                table[to] = (sender, now, entry[2])  # type: ignore[index]
        elif why is not _POOL:
            self._store_choice(p, to, sender, now, entry)
        self._reserve(p, sender, now, segments, day[0] if why in COUNTED else None)
        count(counts, sel, now)
        return sel

    @staticmethod
    def _all_room(p: _Profile, now: float, day: int) -> bool:
        """Whether every number has room and budget left: the O(1) word for plan."""
        if p.busy - now > p.room:
            return False
        full = p.full
        if full and p.sticky:
            for number in [n for n, d in full.items() if d < day]:  # a day gone by
                del full[number]
            return not full
        return True

    @staticmethod
    def _reserve(p: _Profile, number: str, now: float, segments: int, day: int | None) -> None:
        """Reserve ``segments`` slots on ``number``; count a new recipient on ``day`` if set.

        O(1).
        """
        rate = p.rates[number]
        load = reserve(
            p.loads.get(number, IDLE), now, rate, p.burst, segments, day or 0, new=day is not None
        )[1]
        p.loads[number] = load
        busy = busy_until(load, rate, p.burst)
        if busy > p.busy:  # noqa: PLR1730 - max() costs a call
            p.busy = busy
        if day is not None:
            p.note_budget(number, load)

    @staticmethod
    def _miss(p: _Profile, entry: _Entry | None, reason: Reason, now: float) -> Miss:
        """What a fresh choice reads, for a decide of the caller's."""
        previous = None if entry is None else entry[:2]
        return Miss(p.settings, p.version, p.pool_tuple, previous, reason is _REASSIGNED, now)

    def begin_select(
        self,
        profile_id: str,
        to: str,
        now: float,
        known_version: int,  # noqa: ARG002 - the pool is always given: it costs nothing here
    ) -> Selection | Miss:
        """A sticky hit (refreshed) or what a fresh choice needs. O(1) expected.

        It is :meth:`select_in_one_step` stopped before the choice, which then writes
        nothing.
        """
        try:
            return self.select_in_one_step(profile_id, to, now, _stop, new_counts())
        except _Stopped as stop:
            return stop.miss

    def commit_select(
        self,
        profile_id: str,
        to: str,
        chosen: str,
        miss: Miss,
        now: float,
    ) -> Selection | Literal[True] | None:
        """Compare-and-set of a fresh choice. O(1) expected (see the class docstring)."""
        with self._lock:
            p = self._get(profile_id)
            if to in p.optouts:
                raise opted_out(profile_id, to)
            entry = p.table.get(to)
            at = p.at(now)
            current_live = entry is not None and is_live(entry[1], p.ttl, at)
            current = None if entry is None else (entry[0], entry[1])
            # A dead previous mapping that was evicted since the read is no change.
            unchanged = current == miss.previous or (current is None and not miss.live)
            if unchanged and current_live == miss.live and p.version == miss.version:
                self._store_choice(p, to, chosen, now, entry)
                return True
            if entry is not None and p.sticky:
                sender, last_used, tag = entry
                kept = keeps(sender, p.kept, p.deadlines, now)
                if judge(last_used, p.ttl, now, p.horizon, kept) is _STICKY:
                    # Another select stored a live mapping first: this one is a hit on it.
                    p.table[to] = (sender, refreshed(last_used, now), tag)
                    return _new(Selection, (profile_id, to, sender, _STICKY, None, now))
            return None

    # -- inspection and override ----------------------------------------------------
    def mapping(self, profile_id: str, to: str, now: float) -> tuple[str, float, float] | None:
        """The live mapping of ``to`` as ``(from_number, last_used, ttl)``. O(1)."""
        with self._lock:
            p = self._get(profile_id)
            entry = p.table.get(to)
            if entry is None or not is_live(entry[1], p.ttl, p.at(now)):
                return None
            return entry[0], entry[1], p.ttl

    def recipients_of(self, profile_id: str, number: str, now: float) -> list[str]:
        """Recipients with a live mapping to ``number``, sorted. O(k log k)."""
        with self._lock:
            p = self._get(profile_id)
            ttl, table, at = p.ttl, p.table, p.at(now)
            return sorted(
                to for to in p.by_sender.get(number, ()) if is_live(table[to][1], ttl, at)
            )

    def iter_mappings(
        self, profile_id: str, now: float, batch: int
    ) -> Iterator[list[LiveMapping]]:
        """The live mappings in batches, each under the lock. O(n) in all, O(batch) a step.

        The recipients are listed once up front (a dict cannot be iterated while other
        threads change it), then read ``batch`` at a time.
        """
        with self._lock:
            recipients = list(self._get(profile_id).table)
        return self._scan(profile_id, recipients, now, batch)

    def _scan(
        self, profile_id: str, recipients: list[str], now: float, batch: int
    ) -> Iterator[list[LiveMapping]]:
        for start in range(0, len(recipients), batch):
            with self._lock:
                p = self._get(profile_id)
                ttl, table, at = p.ttl, p.table, p.at(now)
                found = [(to, table.get(to)) for to in recipients[start : start + batch]]
                out = [(to, e[0], e[1], ttl) for to, e in found if e and is_live(e[1], ttl, at)]
            if out:
                yield out

    def pin(self, profile_id: str, to: str, number: str, now: float) -> PoolSettings:
        """Map ``to`` to ``number`` as used at ``now``, replacing any mapping. O(1)."""
        with self._lock:
            p = self._get(profile_id)
            if number not in p.pool:
                msg = f"number {shown(number)} is not in profile {shown(profile_id)}"
                raise UnknownNumber(msg)
            self._store_choice(p, to, number, now, p.table.get(to))
            self._count_new(p, number, now)
            return p.settings

    @staticmethod
    def _count_new(p: _Profile, number: str, now: float) -> None:
        """With capacity on, count a new recipient of ``number`` today (no slot). O(1)."""
        if p.capacity:
            day = today(now, p.settings.timezone)[0]
            load = p.loads[number] = count_new(p.loads.get(number, IDLE), day)
            p.note_budget(number, load)

    def forget(self, profile_id: str, to: str, now: float) -> bool:
        """Delete the mapping of ``to``; return whether it was live. O(1)."""
        with self._lock:
            return self._forget(self._get(profile_id), to, now)

    def _forget(self, p: _Profile, to: str, now: float) -> bool:
        at = p.advance(now)
        entry = p.table.pop(to, None)
        if entry is None:
            return False
        self._unlink(p, to, entry[0])
        return is_live(entry[1], p.ttl, at)

    # -- opt-outs and replies -------------------------------------------------------
    def opt_out(self, profile_id: str, to: str, now: float) -> bool:
        """Opt ``to`` out and delete its mapping; return whether it was in. O(1)."""
        with self._lock:
            return self._opt_out(self._get(profile_id), to, now)

    def _opt_out(self, p: _Profile, to: str, now: float) -> bool:
        self._forget(p, to, now)
        if to in p.optouts:
            return False
        p.optouts.add(to)
        return True

    def opt_in(self, profile_id: str, to: str) -> bool:
        """End ``to``'s opt-out; return whether it was opted out. O(1)."""
        with self._lock:
            optouts = self._get(profile_id).optouts
            if to not in optouts:
                return False
            optouts.discard(to)
            return True

    def is_opted_out(self, profile_id: str, to: str) -> bool:
        """Whether ``to`` is opted out. O(1)."""
        with self._lock:
            return to in self._get(profile_id).optouts

    def opt_outs(self, profile_id: str) -> list[str]:
        """The opted-out recipients, sorted. O(k log k)."""
        with self._lock:
            return sorted(self._get(profile_id).optouts)

    def record_reply(
        self, profile_id: str, to: str, number: str, now: float, keyword: Keyword | None
    ) -> ReplyAction:
        """A reply from ``to`` to ``number``: its keyword, then its mapping. O(1)."""
        with self._lock:
            p = self._get(profile_id)
            if keyword is Keyword.OPT_OUT:
                self._opt_out(p, to, now)
                return ReplyAction.OPTED_OUT
            if keyword is Keyword.OPT_IN:
                p.optouts.discard(to)
            elif to in p.optouts:
                return ReplyAction.OPTED_OUT
            entry = p.table.get(to)
            current = None
            if entry is not None and is_live(entry[1], p.ttl, p.at(now)):
                current = entry[0]
            action = reply_action(p.pool.get(number), p.settings, current, now)
            if action is ReplyAction.REFRESHED:
                assert entry is not None
                p.table[to] = (entry[0], refreshed(entry[1], now), entry[2])
            elif action is ReplyAction.MOVED or action is ReplyAction.MAPPED:
                self._store_choice(p, to, number, now, entry)
                self._count_new(p, number, now)
            return action

    # -- housekeeping ---------------------------------------------------------------
    def evict_expired(self, now: float) -> int:
        """Remove every dead mapping; return how many. O(k log n) for k dead."""
        inf = math.inf
        with self._lock:
            return sum(self._evict(p, p.advance(now), inf, inf) for p in self._profiles.values())

    def counts(self) -> tuple[int, int]:
        """Stored mappings (live or dead), and dead ones evicted so far. O(P)."""
        with self._lock:
            return sum(len(p.table) for p in self._profiles.values()), self._evicted

    def check_invariants(self) -> None:
        """Assert the table, reverse index, expiry index and owners agree. O(n log n)."""
        with self._lock:
            owners = {n: pid for pid, p in self._profiles.items() for n in p.pool}
            assert owners == self._owner, "owner index disagrees with the pools"
            for pid, p in self._profiles.items():
                assert p.pool_tuple == sorted_pool(list(p.pool.values())), f"{pid}: pool"
                assert p.kept == kept_numbers(p.pool_tuple, p.settings), f"{pid}: kept is stale"
                assert p.deadlines == drain_deadlines(p.pool_tuple), f"{pid}: drains are stale"
                assert set(p.windows) <= set(p.pool), f"{pid}: window of a number not in pool"
                assert all(len(w) <= HEALTH_BUCKETS for w in p.windows.values()), f"{pid}: window"
                assert (p.ttl, p.sticky) == (p.settings.ttl, p.settings.sticky_sender)
                assert type(p.table) is _Table, f"{pid}: the table lost its type"
                by_sender: dict[str, set[str]] = {}
                first_key: dict[tuple[str, int], float] = {}
                tags = [(p.head_tag + i) & 255 for i in range(len(p.keys))]
                assert not tags or tags[-1] == p.tag, f"{pid}: the deques' tags"
                for key, to, tag in [*zip(p.keys, p.queued, tags, strict=True), *p.late]:
                    first_key[to, tag] = min(key, first_key.get((to, tag), math.inf))
                assert p.late_min == (p.late[0][0] if p.late else math.inf), f"{pid}: late_min"
                for to, (sender, last_used, tag) in p.table.items():
                    assert sender in p.pool, f"{pid}: {to} maps to {sender}, not in pool"
                    key = first_key.get((to, tag), math.inf)
                    assert key <= last_used, f"{pid}: {to} not indexed by its last use"
                    by_sender.setdefault(sender, set()).add(to)
                assert by_sender == p.by_sender, f"{pid}: reverse index disagrees"
                assert set(p.loads) <= set(p.pool), f"{pid}: capacity of a number not in pool"
                assert p.capacity == p.chooser.capacity, f"{pid}: capacity flag is stale"
                assert all(a <= b for a, b in itertools.pairwise(p.keys)), f"{pid}: key order"
                first = p.keys[0] if p.keys else math.inf
                assert p.evict_at == dies_at(min(first, p.late_min), p.ttl), f"{pid}: evict_at"

    def close(self) -> None:
        """Drop every profile and mapping; every later call raises StoreUnavailable. Idempotent."""
        with self._lock:
            self._profiles = self._owner = _CLOSED

    # -- bulk import ----------------------------------------------------------------
    def import_mappings(
        self, profile_id: str, entries: Sequence[tuple[str, str, float]], now: float
    ) -> int:
        """Store imported mappings under the lock; return how many were written.

        See :meth:`sticky.store.base.BulkImportStore.import_mappings`. O(k) for k
        entries, plus O(log n) for each whose index key arrives out of order.
        """
        with self._lock:
            p = self._get(profile_id)
            pool = p.pool
            for _, sender, _ in entries:
                if sender not in pool:
                    msg = f"number {shown(sender)} is not in profile {shown(profile_id)}"
                    raise UnknownNumber(msg)
            at = p.advance(now)
            ttl, table, by_sender = p.ttl, p.table, p.by_sender
            written = 0
            for to, sender, last_used in entries:
                if not is_live(last_used, ttl, at):
                    continue
                old = table.get(to)
                if old is not None:
                    if old[1] >= last_used and is_live(old[1], ttl, at):
                        continue
                    self._unlink(p, to, old[0])
                # A key no later than the horizon, and at most its last use.
                idx = min(at, last_used)
                table[to] = (sender, last_used, p.index(idx, to))
                recipients = by_sender.get(sender)
                if recipients is None:
                    by_sender[sender] = {to}
                else:
                    recipients.add(to)
                written += 1
            return written
