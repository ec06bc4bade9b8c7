"""The SQLite store's operations: each public method one transaction on the file.

The rules each transaction applies are :mod:`sticky.policy`'s, called here, never
spelled out in SQL: liveness (:func:`~sticky.policy.is_live`, or an index range up to
:func:`~sticky.policy.dead_up_to`), the horizon (:func:`~sticky.policy.judged_at`),
the sticky side (:func:`~sticky.policy.may_keep` and the drain's deadline, stored as the
``kept`` and ``deadline`` columns at every pool, settings or health change, and judged
at the select's ``now`` by :func:`~sticky.policy.keeps`), the sticky hit
(:func:`~sticky.policy.judge`, :func:`~sticky.policy.refreshed`), a reply's action
(:func:`~sticky.policy.reply_action`) and the eviction step's sizes. The schema is in
:mod:`sticky.store.sqlite.schema`, the connection and transactions in
:mod:`sticky.store.sqlite.connection`; ``docs/sqlite.md`` has the measured costs.

Pages a select changes: a sticky hit one (its row's ``last_used``, when ``now`` is
later; ``last_used`` is in no index and the horizon does not move). A new mapping its
row and its entry of ``mappings_by_sender`` (which moves the horizon: it is
``max(column, newest idx)``), the profile's row once a second, and at most two
amortised evictions. The eviction step after storing a mapping to sender ``s`` looks
at up to :data:`~sticky.policy.STEP_LOOKS` entries of ``s``'s range that are due
(``idx <= dead_up_to(ttl, at)``, in ``idx`` order): it deletes the dead (at most
:data:`~sticky.policy.STEP_EVICTIONS`) and re-indexes the ones used since they were
indexed; the look is skipped while the connection knows every key of ``s`` is after
the due range. Recipients and senders are stored as integers
(:func:`~sticky.store.sqlite.schema.recipient_key`, the sender's ``sid``).

Capacity: for a profile with capacity on (:func:`~sticky.policy.capacity_on`, cached
per pool version) every select, a live mapping's too, reads the pool's loads in the
same ``BEGIN IMMEDIATE`` transaction and asks its ``decide``
(:func:`~sticky.policy.plan`); it then stores the answer (a sticky one refreshes the
mapping as a hit does) and writes the answer's sender's new load
(:func:`~sticky.policy.reserve`): one more row write than without capacity. Two
processes are serialised by the write lock, so the schedule and the budgets hold
across them. ``begin_select`` never answers a hit for such a profile: it returns a
:class:`~sticky.store.base.Miss` with the loads and writes nothing.

Opt-outs: a select's one statement also looks its recipient up in ``optouts`` (an
``EXISTS`` on that table's primary key, one seek in a B-tree that is mostly empty), so
every select path refuses an opted-out recipient inside its own transaction, before it
writes or asks ``decide``, at no extra statement.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from sticky.errors import (
    OptedOut,
    UnknownNumber,
    UnknownProfile,
    opted_out,
    shown,
)
from sticky.policy import (
    IDLE,
    Load,
    count_new,
    counts_budget,
    is_live,
    judge,
    judged_at,
    keeps,
    rate_of,
    refreshed,
    reply_action,
    reserve,
    step_limit,
    sticky_step,
    today,
)
from sticky.settings import PoolSettings
from sticky.store.base import SLOT, Decide, LiveMapping, Miss, count
from sticky.store.sqlite.connection import parse_url
from sticky.store.sqlite.expiry import (
    HORIZON_SLACK,
    evict_all,
    horizon,
    is_live_at_horizon,
    settle,
    store_mapping,
)
from sticky.store.sqlite.invariants import check_rows
from sticky.store.sqlite.pools import COLUMNS, HORIZON, SENDER, SQLitePools, number_of
from sticky.store.sqlite.schema import recipient_key, recipient_of
from sticky.values import Keyword, Reason, ReplyAction, Selection

__all__ = ["SQLiteStore"]

# What a select reads, in one statement: the profile, the mapping, its sender (the
# number, from its id), the sender's sticky side, and whether the recipient opted out.
_SELECT = (
    "SELECT p.key, p.version, p.sticky, p.ttl, ifnull(p.horizon, -1e999), p.settings,"
    " n.number, m.last_used, n.kept, m.idx, n.deadline,"
    " EXISTS (SELECT 1 FROM optouts AS o WHERE o.profile = p.key AND o.recipient = ?1)"
    " FROM profiles AS p"
    " LEFT JOIN mappings AS m ON m.profile = p.key AND m.recipient = ?1"
    " LEFT JOIN numbers AS n ON n.profile = p.key AND n.sid = m.sender"
    " WHERE p.id = ?2"
)
_OPTED = "SELECT 1 FROM optouts WHERE profile = ? AND recipient = ?"
_OPT_OUT = "INSERT OR IGNORE INTO optouts (profile, recipient) VALUES (?, ?)"
_OPT_IN = "DELETE FROM optouts WHERE profile = ? AND recipient = ?"
_REPLIED = f"SELECT {COLUMNS}, sid FROM numbers WHERE number = ? AND profile = ?"  # noqa: S608
_REFRESH = "UPDATE mappings SET last_used = ? WHERE profile = ? AND recipient = ?"
_RECORD = "UPDATE profiles SET horizon = ? WHERE key = ?"
_RECORD_EVICTED = "UPDATE profiles SET horizon = ?, evicted = evicted + ? WHERE key = ?"
_MAPPED = (
    "SELECT n.number, m.last_used FROM mappings AS m"
    " JOIN numbers AS n ON n.profile = m.profile AND n.sid = m.sender"
    " WHERE m.profile = ? AND m.recipient = ?"
)
_INDEX_KEY = "SELECT idx FROM mappings WHERE profile = ? AND recipient = ?"
_DELETE = "DELETE FROM mappings WHERE profile = ? AND recipient = ?"
_SENDER_USED = f"SELECT recipient, last_used {SENDER}"
# A page of a scan, keyset-paginated on the primary key: each page one index seek.
_LOAD = (
    "INSERT OR REPLACE INTO loads (profile, number, tat, floor, day, count)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_LOAD_OF = "SELECT tat, floor, day, count FROM loads WHERE profile = ? AND number = ?"
_PAGE = (
    "SELECT m.recipient, n.number, m.last_used FROM mappings AS m"
    " JOIN numbers AS n ON n.profile = m.profile AND n.sid = m.sender"
    " WHERE m.profile = ? AND m.recipient > ? ORDER BY m.recipient LIMIT ?"
)

_IMPORT = (
    "INSERT OR REPLACE INTO mappings (profile, recipient, sender, last_used, idx)"
    " VALUES (?, ?, ?, ?, ?)"
)

_NONE = -math.inf
_OLDEST_MAX = 4096
# What a connection knows of a sender's oldest index key (SQLiteStore._oldest). Within
# one connection the bound is exact: every write it makes to a sender's range lowers it
# or drops it (a select keeps what its step learnt, pin and commit_select drop it),
# steps and sweeps only delete keys or raise them, and a pool change (a new version)
# voids it. Another connection's write is not seen: one that stores a key older than
# the bound (its clock behind) is met by this connection's steps once the due range
# passes the bound, by the writer's own steps, or by evict_expired. So the bound can
# only delay an eviction, never change what is live.
_STICKY = Reason.STICKY
_HIT_SLOT = SLOT[_STICKY]
_EXPIRED = Reason.EXPIRED
_REASSIGNED = Reason.REASSIGNED
_REASON_POOL = Reason.POOL
_new = tuple.__new__  # builds a Selection (a named tuple) without its __new__ wrapper
_REFRESHED = ReplyAction.REFRESHED
_PINNED = frozenset({ReplyAction.MOVED, ReplyAction.MAPPED})


def _kept(sender: str | None, kept: int | None, deadline: float | None, now: float) -> bool:
    """:func:`~sticky.policy.keeps` of one select's row: its sender's columns at ``now``.

    Without a deadline (the common case) ``keeps`` is the ``kept`` flag itself, so
    that one comparison is all a hit pays. O(1).
    """
    if deadline is None:
        return kept == 1
    assert sender is not None
    return keeps(sender, (sender,) if kept else (), {sender: deadline}, now)


class _Capacity(tuple[Any, ...]):
    """A select's row (as :meth:`SQLiteStore._hit` reads it) of a profile with capacity on."""

    __slots__ = ()


class SQLiteStore(SQLitePools):
    """Profiles, pools and mappings in one SQLite file; every method one transaction.

    ``path`` is a file (created with its schema on first open, migrated in place from
    schema 1 to 4) or ``":memory:"``; ``timeout`` is how long, in seconds, a call waits
    for another process's lock before raising :class:`~sticky.StoreUnavailable`. A
    path that cannot be opened raises :class:`~sticky.StoreUnavailable`; a file that is
    not a sticky database, or one from a newer schema, :class:`~sticky.IncompatibleStore`;
    each names the path.

    Durability: WAL with ``synchronous=NORMAL``. A call that returned is committed and
    survives the process being killed at any point; a power cut or an OS crash may lose
    the last commits (never part of one: the file stays consistent). Checkpoints sync.

    Threads: one connection per store, behind a lock. Every select writes (a hit
    refreshes ``last_used``) and SQLite admits one writer at a time, so connections per
    thread would add no parallelism, only lock contention between them; a Python lock
    hands over in microseconds. Processes are the unit of parallelism; lock waits
    between them back off from 50 us to 1 ms (SQLite's own handler sleeps 1 ms and
    more). After ``fork()`` the child opens its own connection on first use.

    Costs (n mappings in the profile, k affected, p numbers in the pool):
    ``select_in_one_step`` O(log n) in one ``BEGIN IMMEDIATE`` transaction, changing one
    page on a hit and, for a new mapping, two B-trees (its row and its index entry)
    plus, once a second, the profile's horizon and at most two amortised evictions
    (O(p log n) more for a mapping within a second of its expiry at the horizon, whose
    liveness needs the exact horizon); ``remove_number``, ``recipients_of`` O(p log n +
    k log n); ``forget`` O(p log n); ``evict_expired`` O(P + p log n + k log n) for k due
    mappings; ``delete_profile``, ``counts`` and ``check_invariants`` O(n); pool and
    settings changes O(p log n).
    """

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        """Open ``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``sqlite://:memory:``.

        ``?timeout=seconds`` sets the lock timeout. Raises InvalidSettings for a URL of
        another shape, and what the constructor raises.
        """
        path, timeout = parse_url(url)
        return cls(path, timeout=timeout)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # -- selection ------------------------------------------------------------------
    def _hit(
        self, cur: sqlite3.Cursor, profile_id: str, to: str, rk: int, now: float
    ) -> Selection | tuple[Any, ...]:
        """Read a select's row; refresh and return a sticky hit, else return the row.

        The row is ``(key, version, sticky, ttl, stored, settings, sender, last_used,
        live, idx)``, ``stored`` the ``horizon`` column. A hit changes one page, and only
        when ``now`` is past its last use. For a profile with capacity on it writes
        nothing and returns the row with whether its sender :func:`keeps` it at ``now``
        in place of ``live``, as a :class:`_Capacity`. Raises OptedOut (``to`` opted
        out) before anything else. O(log n).
        """
        row = cur.execute(_SELECT, (rk, profile_id)).fetchone()
        if row is None:
            msg = f"unknown profile {shown(profile_id)}"
            raise UnknownProfile(msg)
        key, version, sticky, ttl, stored, text, sender, last_used, kept, idx, end, out = row
        if out:
            raise opted_out(profile_id, to)
        eligible = kept == 1 if end is None else _kept(sender, kept, end, now)
        # The one test a select without capacity pays: its version is known plain.
        if version not in self._plain and self._capacity_on(cur, key, version, text):
            return _Capacity(
                (key, version, sticky, ttl, stored, text, sender, last_used, eligible, idx)
            )
        live = False
        if sticky and sender is not None:
            # Judged at the horizon's upper bound first: live there is live.
            verdict = judge(last_used, ttl, now, stored + HORIZON_SLACK, eligible)
            if verdict is _EXPIRED:
                verdict = settle(cur, key, last_used, ttl, now, stored, eligible)
            if verdict is _STICKY:  # a hit evicts nothing: the horizon stays
                used = refreshed(last_used, now)
                if used != last_used:
                    cur.execute(_REFRESH, (used, key, rk))
                return _new(Selection, (profile_id, to, sender, _STICKY, None, now))
            live = verdict is _REASSIGNED
        return key, version, sticky, ttl, stored, text, sender, last_used, live, idx

    def _miss(
        self, cur: sqlite3.Cursor, row: tuple[Any, ...], known_version: int, now: float
    ) -> Miss:
        """The Miss of a select that was not a hit; the pool unless ``known_version``."""
        key, version, sticky, _, _, text, sender, last_used, live, _ = row
        previous = (sender, last_used) if sticky and sender is not None else None
        pool = None if known_version == version else self._cached(cur, key, version)[1]
        return Miss(self._decode(text), version, pool, previous, live, now)

    def _capacity_miss(
        self, cur: sqlite3.Cursor, row: tuple[Any, ...], known_version: int, now: float
    ) -> Miss:
        """The Miss of a select with capacity on: the loads, and the live kept sender.

        The pool is given unless ``known_version`` is current. O(p).
        """
        key, version, sticky, ttl, stored, text, sender, last_used, eligible, _ = row
        stays = None
        live = False
        if sticky and sender is not None:
            verdict = judge(last_used, ttl, now, stored + HORIZON_SLACK, eligible)
            if verdict is _EXPIRED:
                verdict = settle(cur, key, last_used, ttl, now, stored, eligible)
            if verdict is _STICKY:
                stays = sender
            live = verdict is _REASSIGNED
        previous = (sender, last_used) if sticky and sender is not None else None
        pool = None if known_version == version else self._cached(cur, key, version)[1]
        return Miss(
            self._decode(text), version, pool, previous, live, now, self._loads(cur, key), stays
        )

    def _select_with_capacity(
        self,
        cur: sqlite3.Cursor,
        profile_id: str,
        to: str,
        rk: int,
        row: tuple[Any, ...],
        now: float,
        decide: Decide,
        segments: int,
    ) -> tuple[Selection, tuple[int, int, int, float] | None]:
        """A select with capacity on, in the caller's transaction: decide, store, reserve.

        Returns the selection and, when it stored a mapping, ``(key, sid, version,
        oldest)`` for :attr:`_oldest` once committed. Writes nothing before ``decide``
        returns. O(p + log n): one read of the loads, at most one load row written.
        """
        key, version, sticky, ttl, stored, text, held, last_used, eligible, idx = row
        if (
            sticky
            and held is not None
            and judge(last_used, ttl, now, stored + HORIZON_SLACK, eligible) is _STICKY
        ):  # a hit that keeps its number: its own load only, O(log n)
            settings = self._decode(text)
            number = next(n for n in self._cached(cur, key, version)[1] if n.number == held)
            found = cur.execute(_LOAD_OF, (key, held)).fetchone()
            load: Load = IDLE if found is None else tuple(found)
            step = sticky_step(
                load, now, rate_of(number, settings), settings.burst, segments,
                step_limit(settings),
            )  # fmt: skip
            if step is not None:
                used = refreshed(last_used, now)
                if used != last_used:
                    cur.execute(_REFRESH, (used, key, rk))
                if step[1] != load:
                    cur.execute(_LOAD, (key, held, *step[1]))
                return _new(Selection, (profile_id, to, held, _STICKY, None, step[0])), None
        miss = self._capacity_miss(cur, row, -1, now)
        sel = decide(profile_id, to, miss)
        reason, sender = sel.reason, sel.from_number
        pool, sids = self._pools[key][1:]  # _capacity_miss cached this version
        oldest = None
        if reason is _STICKY:  # the stored mapping stays: refreshed as a hit is
            used = refreshed(last_used, now)
            if used != last_used:
                cur.execute(_REFRESH, (used, key, rk))
        elif reason is not _REASON_POOL:
            sid = sids[sender]
            known = self._oldest.get((key, sid))
            bound = store_mapping(
                cur,
                key,
                rk,
                sid,
                now,
                ttl,
                stored,
                idx,
                known[1] if known is not None and known[0] == version else _NONE,
            )
            oldest = (key, sid, version, bound)
        settings = miss.settings
        assert miss.loads is not None
        load = miss.loads.get(sender, IDLE)
        number = next(n for n in pool if n.number == sender)
        day = today(now, settings.timezone)[0]
        reserved = reserve(
            load,
            now,
            rate_of(number, settings),
            settings.burst,
            segments,
            day,
            new=counts_budget(reason),
        )[1]
        if reserved != load:
            cur.execute(_LOAD, (key, sender, *reserved))
        return sel, oldest

    def select_in_one_step(
        self,
        profile_id: str,
        to: str,
        now: float,
        decide: Decide,
        counts: list[int],
        segments: int = 1,
    ) -> Selection:
        """A whole select in one ``BEGIN IMMEDIATE`` transaction. O(log n).

        The answer counts in ``counts`` once committed (under the store's lock, so the
        count is exact whichever thread selects). A hit changes one page. Otherwise
        ``decide`` chooses inside the transaction (the pool comes from a per-version
        cache) and its choice is stored, with at most two amortised evictions; if
        ``decide`` raises, nothing is written. With capacity on, ``decide`` answers
        every select (a sticky answer counts as a hit) and the answer's slots are
        reserved in the same transaction: O(p + log n). The engine's
        hot path: the transaction is written out here rather than taken from
        :meth:`_write`, whose context manager costs a measurable share of a hit.
        """
        rk = recipient_key(to)
        with self._lock:
            cur = self._cur or self._cursor()
            try:
                self._begin(cur, "BEGIN IMMEDIATE")
                row = self._hit(cur, profile_id, to, rk, now)
                if row.__class__ is Selection:
                    cur.execute("COMMIT")
                    counts[_HIT_SLOT] += 1
                    return row
                if row.__class__ is _Capacity:
                    sel, stored = self._select_with_capacity(
                        cur, profile_id, to, rk, row, now, decide, segments
                    )
                    cur.execute("COMMIT")
                    count(counts, sel, now)
                    if stored is not None:
                        if len(self._oldest) > _OLDEST_MAX:
                            self._oldest.clear()
                        self._oldest[stored[0], stored[1]] = stored[2:]  # committed: it holds
                    return sel
                sel = decide(profile_id, to, self._miss(cur, row, -1, now))
                if sel.reason is not _REASON_POOL:
                    key, version = row[0], row[1]
                    sid = self._pools[key][2][sel.from_number]  # _miss cached this version
                    known = self._oldest.get((key, sid))
                    oldest = store_mapping(
                        cur,
                        key,
                        rk,
                        sid,
                        now,
                        row[3],
                        row[4],
                        row[9],
                        known[1] if known is not None and known[0] == version else _NONE,
                    )
                    cur.execute("COMMIT")
                    count(counts, sel, now)
                    if len(self._oldest) > _OLDEST_MAX:
                        self._oldest.clear()
                    self._oldest[key, sid] = (version, oldest)  # committed: it holds
                    return sel
                cur.execute("COMMIT")
            except BaseException as exc:
                error = self._abort(cur, exc)
                if error is exc:
                    raise
                raise error from exc
            count(counts, sel, now)
            return sel

    def begin_select(
        self, profile_id: str, to: str, now: float, known_version: int
    ) -> Selection | Miss:
        """A sticky hit (refreshed) or what a fresh choice needs. O(log n).

        One ``BEGIN IMMEDIATE`` transaction; only a hit writes (one page). For a
        profile with capacity on, never a hit: a Miss with the loads (O(p)), and
        nothing is written.
        """
        rk = recipient_key(to)
        with self._write() as cur:
            row = self._hit(cur, profile_id, to, rk, now)
            if row.__class__ is Selection:
                return row
            if row.__class__ is _Capacity:
                return self._capacity_miss(cur, row, known_version, now)
            return self._miss(cur, row, known_version, now)

    def commit_select(
        self, profile_id: str, to: str, chosen: str, miss: Miss, now: float
    ) -> Selection | Literal[True] | None:
        """Compare-and-set of a fresh choice in one ``BEGIN IMMEDIATE`` transaction.

        O(log n), plus at most two amortised evictions.
        """
        with self._write() as cur:
            return self._commit_one(cur, profile_id, to, chosen, miss, now)

    def _commit_one(
        self,
        cur: sqlite3.Cursor,
        profile_id: str,
        to: str,
        chosen: str,
        miss: Miss,
        now: float,
        *,
        many: bool = False,
    ) -> Selection | Literal[True] | None:
        """:meth:`commit_select` in the caller's transaction; ``many``: None if opted out."""
        rk = recipient_key(to)
        row = cur.execute(_SELECT, (rk, profile_id)).fetchone()
        if row is None:
            msg = f"unknown profile {shown(profile_id)}"
            raise UnknownProfile(msg)
        key, version, sticky, ttl, stored, _, sender, last_used, kept, idx, end, out = row
        if out:  # opted out since the read: nothing is stored
            if many:
                return None
            raise opted_out(profile_id, to)
        eligible = _kept(sender, kept, end, now)
        verdict = _EXPIRED
        if sender is None:
            current = None
        else:
            verdict = judge(last_used, ttl, now, stored + HORIZON_SLACK, eligible)
            if verdict is _EXPIRED:
                verdict = settle(cur, key, last_used, ttl, now, stored, eligible)
            current = (sender, last_used)
        current_live = verdict is not _EXPIRED
        # A dead previous mapping that was evicted since the read is no change.
        unchanged = current == miss.previous or (current is None and not miss.live)
        if unchanged and current_live == miss.live and version == miss.version:
            sid = self._cached(cur, key, version)[2][chosen]
            self._oldest.pop((key, sid), None)  # this write may store an older key
            store_mapping(cur, key, rk, sid, now, ttl, stored, idx)
            return True
        if sticky and verdict is _STICKY:
            # Another select stored a live mapping first: this one is a hit on it.
            used = refreshed(last_used, now)
            if used != last_used:
                cur.execute(_REFRESH, (used, key, rk))
            return _new(Selection, (profile_id, to, sender, _STICKY, None, now))
        return None

    def begin_select_many(
        self, profile_id: str, recipients: Sequence[str], now: float, known_version: int
    ) -> list[Selection | Miss | None]:
        """:meth:`begin_select` for each recipient, all in one write transaction.

        None for an opted-out recipient (nothing of it is written). Ends after a miss
        that no fresh choice can answer (no eligible number), as the batch stops there.
        """
        out: list[Selection | Miss | None] = []
        keys = [recipient_key(to) for to in recipients]
        with self._write() as cur:
            for to, rk in zip(recipients, keys, strict=True):
                try:
                    row = self._hit(cur, profile_id, to, rk, now)
                except OptedOut:  # raised before its row wrote anything
                    out.append(None)
                    continue
                if row.__class__ is Selection:
                    out.append(row)
                    continue
                if row.__class__ is _Capacity:
                    miss = self._capacity_miss(cur, row, known_version, now)
                else:
                    miss = self._miss(cur, row, known_version, now)
                if miss.pool is not None:  # one transaction, one version: send it once
                    known_version = miss.version
                out.append(miss)
                if not self._can_choose(cur, row[0], miss.version, row[5]):
                    break  # its choice raises: the hits after it must not be refreshed
        return out

    def commit_select_many(
        self, profile_id: str, entries: Sequence[tuple[str, str, Miss]], now: float
    ) -> list[Selection | Literal[True] | None]:
        """:meth:`commit_select` for each ``(to, chosen, miss)``, in one write transaction.

        None for a recipient opted out since the read.
        """
        with self._write() as cur:
            return [
                self._commit_one(cur, profile_id, to, chosen, miss, now, many=True)
                for to, chosen, miss in entries
            ]

    # -- inspection and override ----------------------------------------------------
    def mapping(self, profile_id: str, to: str, now: float) -> tuple[str, float, float] | None:
        """The live mapping of ``to`` as ``(from_number, last_used, ttl)``. One read, O(log n)."""
        rk = recipient_key(to)
        with self._read() as cur:
            key, _, ttl, stored = self._profile(cur, profile_id)
            row = cur.execute(_MAPPED, (key, rk)).fetchone()
            if row is None or not is_live_at_horizon(cur, key, row[1], ttl, now, stored):
                return None
            return row[0], row[1], ttl

    def recipients_of(self, profile_id: str, number: str, now: float) -> list[str]:
        """Recipients with a live mapping to ``number``, sorted. One read, O(k log n)."""
        with self._read() as cur:
            key, _, ttl, exact = self._exact(cur, profile_id)
            found = cur.execute(
                "SELECT sid FROM numbers WHERE number = ? AND profile = ?", (number, key)
            ).fetchone()
            if found is None:
                return []
            at = judged_at(now, exact)
            rows = cur.execute(_SENDER_USED, (key, found[0])).fetchall()
            return sorted(
                recipient_of(rk) for rk, last_used in rows if is_live(last_used, ttl, at)
            )

    def iter_mappings(
        self, profile_id: str, now: float, batch: int
    ) -> Iterator[list[LiveMapping]]:
        """The live mappings by recipient, one read transaction per page of ``batch`` rows.

        O(p log n + batch log n) a page; the file is not held between pages.
        """
        with self._read() as cur:
            self._profile(cur, profile_id)  # an unknown profile raises now, not at next()
        return self._pages(profile_id, now, batch)

    def _pages(self, profile_id: str, now: float, batch: int) -> Iterator[list[LiveMapping]]:
        after = -1  # below every recipient key (the digits of a number, as an integer)
        while True:
            with self._read() as cur:
                key, _, ttl, exact = self._exact(cur, profile_id)
                rows = cur.execute(_PAGE, (key, after, batch)).fetchall()
            if not rows:
                return
            after = rows[-1][0]
            at = judged_at(now, exact)
            out = [(recipient_of(rk), n, lu, ttl) for rk, n, lu in rows if is_live(lu, ttl, at)]
            if out:
                yield out

    def pin(self, profile_id: str, to: str, number: str, now: float) -> PoolSettings:
        """Map ``to`` to ``number`` as used at ``now``. One write transaction, O(log n).

        With capacity on, the pin counts as a new recipient of ``number`` today (no
        slot is reserved).
        """
        rk = recipient_key(to)
        with self._write() as cur:
            key, text, ttl, stored = self._profile(cur, profile_id)
            sid = self._in_pool(cur, key, profile_id, number)
            self._pin(cur, key, text, ttl, stored, rk, sid, number, now)
            return self._decode(text)

    def _pin(
        self,
        cur: sqlite3.Cursor,
        key: int,
        text: str,
        ttl: float,
        stored: float,
        rk: int,
        sid: int,
        number: str,
        now: float,
    ) -> None:
        """:meth:`pin` in the caller's transaction: store, and count it with capacity on."""
        replaced = cur.execute(_INDEX_KEY, (key, rk)).fetchone()
        self._oldest.pop((key, sid), None)  # this write may store an older key
        store_mapping(
            cur, key, rk, sid, now, ttl, stored, None if replaced is None else replaced[0]
        )
        version = cur.execute("SELECT version FROM profiles WHERE key = ?", (key,)).fetchone()
        if self._capacity_on(cur, key, version[0], text):
            found = cur.execute(_LOAD_OF, (key, number)).fetchone()
            load = IDLE if found is None else found
            counted = count_new(load, today(now, self._decode(text).timezone)[0])
            cur.execute(_LOAD, (key, number, *counted))

    def forget(self, profile_id: str, to: str, now: float) -> bool:
        """Delete the mapping of ``to``; return whether it was live. O(p log n)."""
        rk = recipient_key(to)
        with self._write() as cur:
            key, _, ttl, stored = self._profile(cur, profile_id)
            return self._forget(cur, key, rk, ttl, stored, now)

    @staticmethod
    def _forget(
        cur: sqlite3.Cursor, key: int, rk: int, ttl: float, stored: float, now: float
    ) -> bool:
        """:meth:`forget` in the caller's transaction: the horizon moves to the exact one."""
        at = judged_at(now, horizon(cur, key, stored))
        if at != stored:
            cur.execute(_RECORD, (at, key))
        row = cur.execute(_MAPPED, (key, rk)).fetchone()
        if row is None:
            return False
        cur.execute(_DELETE, (key, rk))
        return is_live(row[1], ttl, at)

    # -- opt-outs and replies -------------------------------------------------------
    def opt_out(self, profile_id: str, to: str, now: float) -> bool:
        """Opt ``to`` out and forget its mapping; return whether it was in. O(p log n).

        One write transaction: a select of ``to`` that commits after it refuses, one
        that committed before lost its mapping here.
        """
        rk = recipient_key(to)
        with self._write() as cur:
            key, _, ttl, stored = self._profile(cur, profile_id)
            return self._opt_out(cur, key, rk, ttl, stored, now)

    def _opt_out(
        self, cur: sqlite3.Cursor, key: int, rk: int, ttl: float, stored: float, now: float
    ) -> bool:
        added = cur.execute(_OPT_OUT, (key, rk)).rowcount == 1
        self._forget(cur, key, rk, ttl, stored, now)
        return added

    def opt_in(self, profile_id: str, to: str) -> bool:
        """End ``to``'s opt-out; return whether it was opted out. One write, O(log n)."""
        rk = recipient_key(to)
        with self._write() as cur:
            key = self._profile(cur, profile_id)[0]
            return bool(cur.execute(_OPT_IN, (key, rk)).rowcount == 1)

    def is_opted_out(self, profile_id: str, to: str) -> bool:
        """Whether ``to`` is opted out. One read, O(log n)."""
        rk = recipient_key(to)
        with self._read() as cur:
            key = self._profile(cur, profile_id)[0]
            return cur.execute(_OPTED, (key, rk)).fetchone() is not None

    def opt_outs(self, profile_id: str) -> list[str]:
        """Every opted-out recipient, sorted. One read, O(k log k) for k of them."""
        with self._read() as cur:
            key = self._profile(cur, profile_id)[0]
            rows = cur.execute("SELECT recipient FROM optouts WHERE profile = ?", (key,))
            return sorted(recipient_of(rk) for (rk,) in rows)

    def record_reply(
        self, profile_id: str, to: str, number: str, now: float, keyword: Keyword | None
    ) -> ReplyAction:
        """A reply from ``to`` to ``number``, in one write transaction; return what it did.

        See :meth:`sticky.store.base.Store.record_reply`: the keyword first, then
        :func:`~sticky.policy.reply_action` on the number as the pool holds it and
        ``to``'s live mapping. O(log n), or O(p log n) for an opt-out or a mapping that
        expires within a second of the horizon.
        """
        rk = recipient_key(to)
        with self._write() as cur:
            key, text, ttl, stored = self._profile(cur, profile_id)
            if keyword is Keyword.OPT_OUT:
                self._opt_out(cur, key, rk, ttl, stored, now)
                return ReplyAction.OPTED_OUT
            if keyword is Keyword.OPT_IN:
                cur.execute(_OPT_IN, (key, rk))
            elif cur.execute(_OPTED, (key, rk)).fetchone() is not None:
                return ReplyAction.OPTED_OUT
            row = cur.execute(_REPLIED, (number, key)).fetchone()
            mapped = cur.execute(_MAPPED, (key, rk)).fetchone()
            live = mapped is not None and is_live_at_horizon(cur, key, mapped[1], ttl, now, stored)
            action = reply_action(
                None if row is None else number_of(row),
                self._decode(text),
                mapped[0] if live else None,
                now,
            )
            if action is _REFRESHED:
                used = refreshed(mapped[1], now)
                if used != mapped[1]:
                    cur.execute(_REFRESH, (used, key, rk))
            elif action in _PINNED:
                self._pin(cur, key, text, ttl, stored, rk, row[8], number, now)
            return action

    # -- housekeeping ---------------------------------------------------------------
    def evict_expired(self, now: float) -> int:
        """Remove every dead mapping; return how many. One write transaction.

        O(P + p log n + k log n) for k due mappings (every sender's due range).
        """
        total = 0
        with self._write() as cur:
            for key, ttl, stored in cur.execute(
                f"SELECT key, ttl, {HORIZON} FROM profiles"  # noqa: S608
            ).fetchall():
                at = judged_at(now, horizon(cur, key, stored))
                removed = evict_all(cur, key, ttl, at)
                if removed or at != stored:
                    cur.execute(_RECORD_EVICTED, (at, removed, key))
                total += removed
        return total

    def counts(self) -> tuple[int, int]:
        """Stored mappings (live or dead), and dead ones evicted so far. One read, O(n)."""
        with self._read() as cur:
            stored, evicted = cur.execute(
                "SELECT (SELECT count(*) FROM mappings),"
                " (SELECT value FROM meta WHERE name = 'evicted')"
                " + (SELECT total(evicted) FROM profiles)"
            ).fetchone()
            return int(stored), int(evicted)

    def check_invariants(self) -> None:
        """Assert the file's integrity and every rule the schema cannot. One read, O(N).

        See :func:`sticky.store.sqlite.invariants.check_rows`.
        """
        with self._read() as cur:
            check_rows(cur, self._decode)

    # -- bulk import ----------------------------------------------------------------
    def import_mappings(
        self, profile_id: str, entries: Sequence[tuple[str, str, float]], now: float
    ) -> int:
        """Store imported mappings in one write transaction; return how many were written.

        See :meth:`sticky.store.base.BulkImportStore.import_mappings`. The stored
        mappings are read 500 keys a statement and the rows written with one
        ``executemany``: O(p log n + k log n) for k entries.
        """
        keys = [recipient_key(to) for to, _, _ in entries]
        with self._write() as cur:
            key, _, ttl, stored = self._profile(cur, profile_id)
            version = cur.execute("SELECT version FROM profiles WHERE key = ?", (key,))
            sids = self._cached(cur, key, version.fetchone()[0])[2]
            for _, sender, _ in entries:
                if sender not in sids:
                    msg = f"number {shown(sender)} is not in profile {shown(profile_id)}"
                    raise UnknownNumber(msg)
            # The exact horizon, so that every key written is at most the column below.
            at = judged_at(now, horizon(cur, key, stored))
            if at != stored:
                cur.execute(_RECORD, (at, key))
            for sid in set(sids.values()):  # this write may store older keys
                self._oldest.pop((key, sid), None)
            there: dict[int, float] = {}
            for start in range(0, len(keys), 500):
                part = keys[start : start + 500]
                marks = ",".join("?" * len(part))
                there.update(
                    cur.execute(
                        "SELECT recipient, last_used FROM mappings"  # noqa: S608 - marks only
                        f" WHERE profile = ? AND recipient IN ({marks})",
                        (key, *part),
                    ).fetchall()
                )
            rows: dict[int, tuple[int, int, int, float, float]] = {}
            written = 0
            for rk, (_, sender, last_used) in zip(keys, entries, strict=True):
                if not is_live(last_used, ttl, at):
                    continue
                old = there.get(rk)
                if old is not None and old >= last_used and is_live(old, ttl, at):
                    continue
                there[rk] = last_used  # a later entry of the same recipient meets this one
                rows[rk] = (key, rk, sids[sender], last_used, min(last_used, at))
                written += 1
            cur.executemany(_IMPORT, list(rows.values()))
            return written
