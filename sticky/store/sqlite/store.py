"""The SQLite store's operations: each public method one transaction on the file.

The rules each transaction applies are :mod:`sticky.policy`'s, called here, never
spelled out in SQL: liveness (:func:`~sticky.policy.is_live`, or an index range up to
:func:`~sticky.policy.dead_up_to`), the horizon (:func:`~sticky.policy.judged_at`),
eligibility (:func:`~sticky.policy.is_eligible`, stored as the ``eligible`` column at
every pool, settings or health change), the sticky hit (:func:`~sticky.policy.judge`,
:func:`~sticky.policy.refreshed`) and the eviction step's sizes. The schema is in
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
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Sequence
from typing import Any, Literal

from sticky.errors import (
    NumberInUse,
    ProfileExists,
    UnknownNumber,
    UnknownProfile,
    shown,
)
from sticky.numbers import NumberType, SenderNumber
from sticky.policy import dead_up_to, is_eligible, is_live, judge, judged_at, refreshed
from sticky.settings import PoolSettings
from sticky.store.base import Decide, Miss
from sticky.store.sqlite.connection import Connection, parse_url
from sticky.store.sqlite.expiry import (
    HORIZON_SLACK,
    evict_all,
    horizon,
    is_live_at_horizon,
    settle,
    store_mapping,
)
from sticky.store.sqlite.invariants import check_rows
from sticky.store.sqlite.schema import recipient_key, recipient_of
from sticky.values import Reason, Selection

__all__ = ["SQLiteStore"]

# A NULL horizon (no write yet) reads as -inf, which judged_at ignores.
_HORIZON = "ifnull(horizon, -1e999)"
# What a select reads, in one statement: the profile, the mapping, its sender (the
# number, from its id) and the sender's flag.
_SELECT = (
    "SELECT p.key, p.version, p.sticky, p.ttl, ifnull(p.horizon, -1e999), p.settings,"
    " n.number, m.last_used, n.eligible, m.idx"
    " FROM profiles AS p"
    " LEFT JOIN mappings AS m ON m.profile = p.key AND m.recipient = ?"
    " LEFT JOIN numbers AS n ON n.profile = p.key AND n.sid = m.sender"
    " WHERE p.id = ?"
)
_PROFILE = f"SELECT key, settings, ttl, {_HORIZON} FROM profiles WHERE id = ?"  # noqa: S608
_POOL = "SELECT number, type, healthy, sid FROM numbers WHERE profile = ? ORDER BY number"
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
# INDEXED BY: without statistics the planner would scan the profile's primary-key
# range for "profile = ? AND sender = ?"; this way SQLite fails rather than scans.
_SENDER = "FROM mappings INDEXED BY mappings_by_sender WHERE profile = ? AND sender = ?"
_SENDER_USED = f"SELECT recipient, last_used {_SENDER}"
_SENDER_LIVE = f"SELECT count(*) {_SENDER} AND last_used > ?"
_SENDER_DELETE = f"DELETE {_SENDER}"

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
_EXPIRED = Reason.EXPIRED
_REASSIGNED = Reason.REASSIGNED
_REASON_POOL = Reason.POOL
_new = tuple.__new__  # builds a Selection (a named tuple) without its __new__ wrapper
_TYPES = {t.value: t for t in NumberType}


class SQLiteStore(Connection):
    """Profiles, pools and mappings in one SQLite file; every method one transaction.

    ``path`` is a file (created with its schema on first open, migrated in place from
    schema 1 or 2) or ``":memory:"``; ``timeout`` is how long, in seconds, a call waits
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

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 5.0) -> None:
        self._settings: dict[str, PoolSettings] = {}
        # profile key -> (pool version, the pool, each number's sid)
        self._pools: dict[int, tuple[int, tuple[SenderNumber, ...], dict[str, int]]] = {}
        # (profile key, sid) -> (pool version, a lower bound of the sender's index keys
        # after this connection's last committed write to it): lets the eviction step
        # skip its look while nothing of the sender can be due (see _OLDEST_MAX).
        self._oldest: dict[tuple[int, int], tuple[int, float]] = {}
        super().__init__(path, timeout=timeout)

    def _forked(self) -> None:
        """In a child after fork(): what the parent knew of the file is not the child's."""
        super()._forked()
        self._oldest = {}

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

    # -- helpers (in a transaction) --------------------------------------------------
    def _decode(self, text: str) -> PoolSettings:
        """Settings from their JSON, cached by text (decoding costs microseconds)."""
        settings = self._settings.get(text)
        if settings is None:
            if len(self._settings) > 256:
                self._settings.clear()
            settings = PoolSettings.from_dict(json.loads(text))
            self._settings[text] = settings
        return settings

    @staticmethod
    def _encode(settings: PoolSettings) -> str:
        return json.dumps(settings.to_dict(), sort_keys=True, separators=(",", ":"))

    @staticmethod
    def _profile(cur: sqlite3.Cursor, profile_id: str) -> tuple[int, str, float, float]:
        """``(key, settings, ttl, stored)``: the ``horizon`` column, -inf when NULL.

        The column is a lower bound of the horizon (see
        :data:`~sticky.store.sqlite.expiry.HORIZON_SLACK`). O(log P).
        """
        row = cur.execute(_PROFILE, (profile_id,)).fetchone()
        if row is None:
            msg = f"unknown profile {shown(profile_id)}"
            raise UnknownProfile(msg)
        return row  # type: ignore[no-any-return]

    @classmethod
    def _exact(cls, cur: sqlite3.Cursor, profile_id: str) -> tuple[int, str, float, float]:
        """``(key, settings, ttl, horizon)``, the horizon exact. O(log P + p log n)."""
        key, text, ttl, stored = cls._profile(cur, profile_id)
        return key, text, ttl, horizon(cur, key, stored)

    @staticmethod
    def _next_version(cur: sqlite3.Cursor) -> int:
        cur.execute("UPDATE meta SET value = value + 1 WHERE name = 'version'")
        return int(cur.execute("SELECT value FROM meta WHERE name = 'version'").fetchone()[0])

    @staticmethod
    def _pool(cur: sqlite3.Cursor, key: int) -> tuple[tuple[SenderNumber, ...], dict[str, int]]:
        """The pool sorted by number, and each number's sid. O(p)."""
        types = _TYPES
        rows = cur.execute(_POOL, (key,)).fetchall()
        pool = tuple(
            SenderNumber(number, types[kind], bool(healthy)) for number, kind, healthy, _ in rows
        )
        return pool, {row[0]: row[3] for row in rows}

    def _cached(
        self, cur: sqlite3.Cursor, key: int, version: int
    ) -> tuple[int, tuple[SenderNumber, ...], dict[str, int]]:
        """``(version, pool, sids)`` of the profile at ``version``, from the cache. O(1).

        Versions are unique per committed pool state (and sids change only with the
        pool), so a cached entry of the same version is exact; else O(p) to read it.
        """
        cached = self._pools.get(key)
        if cached is None or cached[0] != version:
            cached = (version, *self._pool(cur, key))
            self._pools[key] = cached
        return cached

    @staticmethod
    def _in_pool(cur: sqlite3.Cursor, key: int, profile_id: str, number: str) -> int:
        """The sid of ``number`` in the profile's pool. Raises UnknownNumber. O(log p)."""
        found = cur.execute(
            "SELECT sid FROM numbers WHERE number = ? AND profile = ?", (number, key)
        ).fetchone()
        if found is None:
            msg = f"number {shown(number)} is not in profile {shown(profile_id)}"
            raise UnknownNumber(msg)
        return int(found[0])

    @staticmethod
    def _set_eligibility(cur: sqlite3.Cursor, key: int, settings: PoolSettings) -> None:
        """Rewrite the ``eligible`` flags that ``settings`` change. O(p log n)."""
        rows = cur.execute(
            "SELECT number, type, healthy, eligible FROM numbers WHERE profile = ?", (key,)
        ).fetchall()
        changes = []
        for number, kind, healthy, flag in rows:
            eligible = is_eligible(SenderNumber(number, _TYPES[kind], bool(healthy)), settings)
            if eligible != bool(flag):
                changes.append((int(eligible), number))
        cur.executemany("UPDATE numbers SET eligible = ? WHERE number = ?", changes)

    # -- profiles -------------------------------------------------------------------
    def create_profile(self, profile_id: str, settings: PoolSettings) -> None:
        """Create an empty profile. One write transaction, O(log P)."""
        with self._write() as cur:
            if cur.execute("SELECT 1 FROM profiles WHERE id = ?", (profile_id,)).fetchone():
                msg = f"profile {shown(profile_id)} already exists"
                raise ProfileExists(msg)
            cur.execute(
                "INSERT INTO profiles (id, settings, sticky, ttl, version, horizon)"
                " VALUES (?, ?, ?, ?, ?, NULL)",
                (
                    profile_id,
                    self._encode(settings),
                    int(settings.sticky_sender),
                    settings.ttl,
                    self._next_version(cur),
                ),
            )

    def delete_profile(self, profile_id: str, now: float) -> int:
        """Delete a profile with its pool and mappings; return the live ones. O(n + p)."""
        with self._write() as cur:
            key, _, ttl, exact = self._exact(cur, profile_id)
            bound = dead_up_to(ttl, judged_at(now, exact))
            live = cur.execute(
                "SELECT count(*) FROM mappings WHERE profile = ? AND last_used > ?",
                (key, bound),
            ).fetchone()[0]
            for table in ("mappings", "numbers"):
                cur.execute(f"DELETE FROM {table} WHERE profile = ?", (key,))  # noqa: S608
            # The profile's evictions stay in the store's total.
            cur.execute(
                "UPDATE meta SET value = value + (SELECT evicted FROM profiles WHERE key = ?)"
                " WHERE name = 'evicted'",
                (key,),
            )
            cur.execute("DELETE FROM profiles WHERE key = ?", (key,))
            return int(live)

    def settings(self, profile_id: str) -> PoolSettings:
        """A profile's settings. One read, O(log P)."""
        with self._read() as cur:
            return self._decode(self._profile(cur, profile_id)[1])

    def replace_settings(self, profile_id: str, old: PoolSettings, new: PoolSettings) -> bool:
        """Compare-and-set the settings. One write transaction, O(p log n).

        Lengthening the ttl first evicts what is dead at the horizon (O(k log n)).
        """
        with self._write() as cur:
            key, text, ttl, exact = self._exact(cur, profile_id)
            if self._decode(text) != old:
                return False
            if new.ttl > ttl:  # so that no dead mapping comes back to life
                removed = evict_all(cur, key, ttl, exact)
                if removed:
                    cur.execute(
                        "UPDATE profiles SET evicted = evicted + ? WHERE key = ?", (removed, key)
                    )
            cur.execute(
                "UPDATE profiles SET settings = ?, sticky = ?, ttl = ?, version = ? WHERE key = ?",
                (self._encode(new), int(new.sticky_sender), new.ttl, self._next_version(cur), key),
            )
            self._set_eligibility(cur, key, new)
            return True

    def profiles(self) -> list[str]:
        """Every profile id, sorted. One read, O(P log P)."""
        with self._read() as cur:
            return sorted(row[0] for row in cur.execute("SELECT id FROM profiles"))

    # -- pools ----------------------------------------------------------------------
    def add_number(
        self, profile_id: str, number: str, number_type: NumberType, *, healthy: bool
    ) -> None:
        """Add a number to a pool, with the smallest free sid. One write transaction, O(p)."""
        with self._write() as cur:
            key, text, _, _ = self._profile(cur, profile_id)
            owner = cur.execute(
                "SELECT p.id FROM numbers AS n JOIN profiles AS p ON p.key = n.profile"
                " WHERE n.number = ?",
                (number,),
            ).fetchone()
            if owner is not None:
                msg = f"number {shown(number)} is already in profile {shown(owner[0])}"
                raise NumberInUse(msg)
            eligible = is_eligible(SenderNumber(number, number_type, healthy), self._decode(text))
            sid = 1  # the smallest free id: ids stay small (one byte up to 127 numbers)
            for (taken,) in cur.execute(
                "SELECT sid FROM numbers WHERE profile = ? ORDER BY sid", (key,)
            ).fetchall():
                if taken != sid:
                    break
                sid += 1
            cur.execute(
                "INSERT INTO numbers (number, profile, sid, type, healthy, eligible)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (number, key, sid, number_type.value, int(healthy), int(eligible)),
            )
            cur.execute(
                "UPDATE profiles SET version = ? WHERE key = ?", (self._next_version(cur), key)
            )

    def remove_number(self, profile_id: str, number: str, now: float) -> int:
        """Remove a number and its mappings; return the live ones. O(k log n).

        In one write transaction, so no select can store a mapping to the number after
        it left: a select that read the pool before loses its compare-and-set.
        """
        with self._write() as cur:
            key, _, ttl, exact = self._exact(cur, profile_id)
            sid = self._in_pool(cur, key, profile_id, number)
            at = judged_at(now, exact)
            live = cur.execute(_SENDER_LIVE, (key, sid, dead_up_to(ttl, at))).fetchone()[0]
            cur.execute(_SENDER_DELETE, (key, sid))
            cur.execute("DELETE FROM numbers WHERE number = ?", (number,))
            cur.execute(
                "UPDATE profiles SET horizon = ?, version = ? WHERE key = ?",
                (at, self._next_version(cur), key),
            )
            return int(live)

    def set_health(self, number: str, *, healthy: bool) -> None:
        """Set a pooled number's health. One write transaction, O(log n)."""
        with self._write() as cur:
            row = cur.execute(
                "SELECT n.profile, n.type, n.healthy, p.settings FROM numbers AS n"
                " JOIN profiles AS p ON p.key = n.profile WHERE n.number = ?",
                (number,),
            ).fetchone()
            if row is None:
                msg = f"number {shown(number)} is in no profile"
                raise UnknownNumber(msg)
            key, kind, current, text = row
            if bool(current) == healthy:
                return
            eligible = is_eligible(SenderNumber(number, _TYPES[kind], healthy), self._decode(text))
            cur.execute(
                "UPDATE numbers SET healthy = ?, eligible = ? WHERE number = ?",
                (int(healthy), int(eligible), number),
            )
            cur.execute(
                "UPDATE profiles SET version = ? WHERE key = ?", (self._next_version(cur), key)
            )

    def numbers(self, profile_id: str) -> tuple[SenderNumber, ...]:
        """A profile's pool, sorted by number. One read, O(p)."""
        with self._read() as cur:
            return self._pool(cur, self._profile(cur, profile_id)[0])[0]

    # -- selection ------------------------------------------------------------------
    def _hit(
        self, cur: sqlite3.Cursor, profile_id: str, to: str, rk: int, now: float
    ) -> Selection | tuple[Any, ...]:
        """Read a select's row; refresh and return a sticky hit, else return the row.

        The row is ``(key, version, sticky, ttl, stored, settings, sender, last_used,
        live, idx)``, ``stored`` the ``horizon`` column. A hit changes one page, and only
        when ``now`` is past its last use. O(log n).
        """
        row = cur.execute(_SELECT, (rk, profile_id)).fetchone()
        if row is None:
            msg = f"unknown profile {shown(profile_id)}"
            raise UnknownProfile(msg)
        key, version, sticky, ttl, stored, text, sender, last_used, eligible, idx = row
        live = False
        if sticky and sender is not None:
            # Judged at the horizon's upper bound first: live there is live.
            verdict = judge(last_used, ttl, now, stored + HORIZON_SLACK, eligible == 1)
            if verdict is _EXPIRED:
                verdict = settle(cur, key, last_used, ttl, now, stored, eligible == 1)
            if verdict is _STICKY:  # a hit evicts nothing: the horizon stays
                used = refreshed(last_used, now)
                if used != last_used:
                    cur.execute(_REFRESH, (used, key, rk))
                return _new(Selection, (profile_id, to, sender, _STICKY, None))
            live = verdict is _REASSIGNED
        return key, version, sticky, ttl, stored, text, sender, last_used, live, idx

    def _miss(self, cur: sqlite3.Cursor, row: tuple[Any, ...], known_version: int) -> Miss:
        """The Miss of a select that was not a hit; the pool unless ``known_version``."""
        key, version, sticky, _, _, text, sender, last_used, live, _ = row
        previous = (sender, last_used) if sticky and sender is not None else None
        pool = None if known_version == version else self._cached(cur, key, version)[1]
        return Miss(self._decode(text), version, pool, previous, live)

    def select_in_one_step(
        self, profile_id: str, to: str, now: float, decide: Decide, hits: list[int]
    ) -> Selection:
        """A whole select in one ``BEGIN IMMEDIATE`` transaction. O(log n).

        A hit changes one page, and counts in ``hits[0]`` once committed (under the
        store's lock, so the count is exact whichever thread selects). Otherwise
        ``decide`` chooses inside the transaction (the pool comes from a per-version
        cache) and its choice is stored, with at most two amortised evictions; if
        ``decide`` raises, nothing is written. The engine's
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
                    hits[0] += 1
                    return row
                sel = decide(profile_id, to, self._miss(cur, row, -1))
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
            return sel

    def begin_select(
        self, profile_id: str, to: str, now: float, known_version: int
    ) -> Selection | Miss:
        """A sticky hit (refreshed) or what a fresh choice needs. O(log n).

        One ``BEGIN IMMEDIATE`` transaction; only a hit writes (one page).
        """
        rk = recipient_key(to)
        with self._write() as cur:
            row = self._hit(cur, profile_id, to, rk, now)
            return row if row.__class__ is Selection else self._miss(cur, row, known_version)

    def commit_select(
        self, profile_id: str, to: str, chosen: str, miss: Miss, now: float
    ) -> Selection | Literal[True] | None:
        """Compare-and-set of a fresh choice in one ``BEGIN IMMEDIATE`` transaction.

        O(log n), plus at most two amortised evictions.
        """
        with self._write() as cur:
            return self._commit_one(cur, profile_id, to, chosen, miss, now)

    def _commit_one(
        self, cur: sqlite3.Cursor, profile_id: str, to: str, chosen: str, miss: Miss, now: float
    ) -> Selection | Literal[True] | None:
        rk = recipient_key(to)
        row = cur.execute(_SELECT, (rk, profile_id)).fetchone()
        if row is None:
            msg = f"unknown profile {shown(profile_id)}"
            raise UnknownProfile(msg)
        key, version, sticky, ttl, stored, _, sender, last_used, eligible, idx = row
        verdict = _EXPIRED
        if sender is None:
            current = None
        else:
            verdict = judge(last_used, ttl, now, stored + HORIZON_SLACK, eligible == 1)
            if verdict is _EXPIRED:
                verdict = settle(cur, key, last_used, ttl, now, stored, eligible == 1)
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
            return _new(Selection, (profile_id, to, sender, _STICKY, None))
        return None

    def begin_select_many(
        self, profile_id: str, recipients: Sequence[str], now: float, known_version: int
    ) -> list[Selection | Miss]:
        """:meth:`begin_select` for each recipient, all in one write transaction."""
        out: list[Selection | Miss] = []
        keys = [recipient_key(to) for to in recipients]
        with self._write() as cur:
            for to, rk in zip(recipients, keys, strict=True):
                row = self._hit(cur, profile_id, to, rk, now)
                if row.__class__ is Selection:
                    out.append(row)
                    continue
                miss = self._miss(cur, row, known_version)
                if miss.pool is not None:  # one transaction, one version: send it once
                    known_version = miss.version
                out.append(miss)
        return out

    def commit_select_many(
        self, profile_id: str, entries: Sequence[tuple[str, str, Miss]], now: float
    ) -> list[Selection | Literal[True] | None]:
        """:meth:`commit_select` for each ``(to, chosen, miss)``, in one write transaction."""
        with self._write() as cur:
            return [
                self._commit_one(cur, profile_id, to, chosen, miss, now)
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

    def pin(self, profile_id: str, to: str, number: str, now: float) -> PoolSettings:
        """Map ``to`` to ``number`` as used at ``now``. One write transaction, O(log n)."""
        rk = recipient_key(to)
        with self._write() as cur:
            key, text, ttl, stored = self._profile(cur, profile_id)
            sid = self._in_pool(cur, key, profile_id, number)
            replaced = cur.execute(_INDEX_KEY, (key, rk)).fetchone()
            self._oldest.pop((key, sid), None)  # this write may store an older key
            store_mapping(
                cur, key, rk, sid, now, ttl, stored, None if replaced is None else replaced[0]
            )
            return self._decode(text)

    def forget(self, profile_id: str, to: str, now: float) -> bool:
        """Delete the mapping of ``to``; return whether it was live. O(log n)."""
        rk = recipient_key(to)
        with self._write() as cur:
            key, _, ttl, stored = self._profile(cur, profile_id)
            at = judged_at(now, horizon(cur, key, stored))
            if at != stored:
                cur.execute(_RECORD, (at, key))
            row = cur.execute(_MAPPED, (key, rk)).fetchone()
            if row is None:
                return False
            cur.execute(_DELETE, (key, rk))
            return is_live(row[1], ttl, at)

    # -- housekeeping ---------------------------------------------------------------
    def evict_expired(self, now: float) -> int:
        """Remove every dead mapping; return how many. One write transaction.

        O(P + p log n + k log n) for k due mappings (every sender's due range).
        """
        total = 0
        with self._write() as cur:
            for key, ttl, stored in cur.execute(
                f"SELECT key, ttl, {_HORIZON} FROM profiles"  # noqa: S608
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
