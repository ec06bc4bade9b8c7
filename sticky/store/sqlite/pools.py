"""The SQLite store's profiles and pools: its caches, helpers and pool changes.

:class:`~sticky.store.sqlite.SQLiteStore` is built on :class:`SQLitePools`; this module
holds what every operation shares (the per-version caches of settings and pools, the
profile and pool reads) and the operations on profiles and pools. Each public method
is one transaction. The sticky side (:func:`sticky.policy.may_keep` and the drain's
deadline, :func:`sticky.policy.drain_deadlines`) is stored as the ``kept`` and
``deadline`` columns at every pool, settings or health change (a delivery verdict that
changes, a drain); the fresh choice's eligibility is the engine's
(:class:`~sticky.policy.Chooser`, from the pool returned with every field of
:class:`~sticky.SenderNumber`). Whether a profile has capacity on
(:func:`sticky.policy.capacity_on`) is a property of its pool version, cached beside
the pool. The delivery reports (:func:`sticky.policy.after_report`) are here too: a
verdict that changes is a pool change.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from sticky.errors import (
    InvalidSettings,
    NumberInUse,
    ProfileExists,
    UnknownNumber,
    UnknownProfile,
    shown,
)
from sticky.numbers import NumberType, SenderNumber
from sticky.policy import (
    Load,
    Window,
    after_report,
    capacity_on,
    clears_mappings,
    clears_windows,
    dead_up_to,
    drain_deadlines,
    eligible_numbers,
    judged_at,
    may_keep,
)
from sticky.settings import PoolSettings
from sticky.store.sqlite.connection import Connection
from sticky.store.sqlite.expiry import (
    evict_all,
    horizon,
)
from sticky.store.sqlite.schema import window_of, window_text
from sticky.values import Outcome

__all__ = ["COLUMNS", "HORIZON", "LOADS", "SENDER", "SQLitePools", "number_of", "sticky_side"]

# A NULL horizon (no write yet) reads as -inf, which judged_at ignores.
HORIZON = "ifnull(horizon, -1e999)"
"""A profile's horizon column in SQL: NULL (no write yet) reads as -inf."""
_PROFILE = f"SELECT key, settings, ttl, {HORIZON} FROM profiles WHERE id = ?"  # noqa: S608
COLUMNS = "number, type, healthy, rate, daily, delivery_healthy, draining_since, drain_grace"
"""A number's columns as :func:`number_of` reads them: what a :class:`SenderNumber` holds."""
_POOL = f"SELECT {COLUMNS}, sid FROM numbers WHERE profile = ? ORDER BY number"  # noqa: S608
_NUMBER = f"SELECT profile, {COLUMNS} FROM numbers WHERE number = ?"  # noqa: S608
_IN_PROFILE = f"SELECT sid, {COLUMNS} FROM numbers WHERE number = ? AND profile = ?"  # noqa: S608
_WRITE_NUMBER = (
    "UPDATE numbers SET healthy = ?, rate = ?, daily = ?, delivery_healthy = ?,"
    " draining_since = ?, drain_grace = ?, kept = ?, deadline = ? WHERE number = ?"
)
_WINDOW = "SELECT buckets FROM windows WHERE profile = ? AND number = ?"
_PUT_WINDOW = "INSERT OR REPLACE INTO windows (profile, number, buckets) VALUES (?, ?, ?)"
_DROP_WINDOW = "DELETE FROM windows WHERE profile = ? AND number = ?"
LOADS = "SELECT number, tat, floor, day, count FROM loads WHERE profile = ?"
"""A profile's capacity state: one range of the ``loads`` primary key."""
_LIMITS = frozenset({"rate", "daily_new_recipients"})
_PLAIN_MAX = 4096
# INDEXED BY: without statistics the planner would scan the profile's primary-key
# range for "profile = ? AND sender = ?"; this way SQLite fails rather than scans.
SENDER = "FROM mappings INDEXED BY mappings_by_sender WHERE profile = ? AND sender = ?"
_SENDER_LIVE = f"SELECT count(*) {SENDER} AND last_used > ?"
_SENDER_DELETE = f"DELETE {SENDER}"

_TYPES = {t.value: t for t in NumberType}


def number_of(row: Sequence[Any]) -> SenderNumber:
    """The number a row of :data:`COLUMNS` stands for (its first eight values). O(1)."""
    number, kind, healthy, rate, daily, delivered, since, grace = row[:8]
    return SenderNumber(
        number,
        _TYPES[kind],
        bool(healthy),
        rate,
        daily,
        delivery_healthy=bool(delivered),
        draining_since=since,
        drain_grace=grace,
    )


def sticky_side(number: SenderNumber, settings: PoolSettings) -> tuple[int, float | None]:
    """The ``kept`` and ``deadline`` columns of ``number``: the policy's, as data. O(1)."""
    return int(may_keep(number, settings)), drain_deadlines((number,)).get(number.number)


class SQLitePools(Connection):
    """Profiles, pools and the caches every operation reads; see the module docstring."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 5.0) -> None:
        self._settings: dict[str, PoolSettings] = {}
        # profile key -> (pool version, the pool, each number's sid)
        self._pools: dict[int, tuple[int, tuple[SenderNumber, ...], dict[str, int]]] = {}
        # pool version -> capacity_on; and the versions known to have it off, which is
        # all a select without capacity tests (a version is one pool and settings).
        self._capacity: dict[int, bool] = {}
        self._plain: set[int] = set()
        # pool version -> whether a fresh choice has a sender (some number is eligible)
        self._choosable: dict[int, bool] = {}
        # (profile key, sid) -> (pool version, a lower bound of the sender's index keys
        # after this connection's last committed write to it): lets the eviction step
        # skip its look while nothing of the sender can be due (see store.py's _OLDEST_MAX).
        self._oldest: dict[tuple[int, int], tuple[int, float]] = {}
        super().__init__(path, timeout=timeout)

    def _forked(self) -> None:
        """In a child after fork(): what the parent knew of the file is not the child's."""
        super()._forked()
        self._oldest = {}

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
        rows = cur.execute(_POOL, (key,)).fetchall()
        return tuple(number_of(row) for row in rows), {row[0]: row[8] for row in rows}

    def _capacity_on(self, cur: sqlite3.Cursor, key: int, version: int, text: str) -> bool:
        """Whether the profile at ``version`` has capacity on, cached per version.

        O(1) once cached, else O(p). A version found without capacity joins
        ``_plain``, the one test a select without capacity pays.
        """
        on = self._capacity.get(version)
        if on is None:
            on = capacity_on(self._cached(cur, key, version)[1], self._decode(text))
            if len(self._capacity) > _PLAIN_MAX:
                self._capacity.clear()
                self._plain.clear()
            self._capacity[version] = on
            if not on:
                self._plain.add(version)
        return on

    def _can_choose(self, cur: sqlite3.Cursor, key: int, version: int, text: str) -> bool:
        """Whether a fresh choice at ``version`` has a sender, cached per version.

        :func:`~sticky.policy.eligible_numbers` is not empty. O(1) once cached, else O(p).
        """
        can = self._choosable.get(version)
        if can is None:
            if len(self._choosable) > _PLAIN_MAX:
                self._choosable.clear()
            pool = self._cached(cur, key, version)[1]
            can = self._choosable[version] = bool(eligible_numbers(pool, self._decode(text)))
        return can

    @staticmethod
    def _loads(cur: sqlite3.Cursor, key: int) -> dict[str, Load]:
        """Each number's capacity state (a number without one is absent). O(p)."""
        return {row[0]: row[1:] for row in cur.execute(LOADS, (key,))}

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
    def _set_kept(cur: sqlite3.Cursor, key: int, settings: PoolSettings) -> None:
        """Rewrite the ``kept`` flags that ``settings`` change. O(p log n)."""
        rows = cur.execute(
            f"SELECT {COLUMNS}, kept FROM numbers WHERE profile = ?",  # noqa: S608
            (key,),
        ).fetchall()
        changes = []
        for row in rows:
            kept = sticky_side(number_of(row), settings)[0]
            if kept != row[8]:
                changes.append((kept, row[0]))
        cur.executemany("UPDATE numbers SET kept = ? WHERE number = ?", changes)

    def _write_number(
        self, cur: sqlite3.Cursor, key: int, number: SenderNumber, settings: PoolSettings
    ) -> None:
        """Store a changed number with its sticky side: a new pool version. O(log n)."""
        cur.execute(
            _WRITE_NUMBER,
            (
                int(number.healthy),
                number.rate,
                number.daily_new_recipients,
                int(number.delivery_healthy),
                number.draining_since,
                number.drain_grace,
                *sticky_side(number, settings),
                number.number,
            ),
        )
        cur.execute(
            "UPDATE profiles SET version = ? WHERE key = ?", (self._next_version(cur), key)
        )

    def _pooled(self, cur: sqlite3.Cursor, number: str) -> tuple[int, SenderNumber, PoolSettings]:
        """``(profile key, number, settings)`` of a pooled number. Raises UnknownNumber."""
        row = cur.execute(_NUMBER, (number,)).fetchone()
        if row is None:
            msg = f"number {shown(number)} is in no profile"
            raise UnknownNumber(msg)
        text = cur.execute("SELECT settings FROM profiles WHERE key = ?", (row[0],)).fetchone()
        return row[0], number_of(row[1:]), self._decode(text[0])

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
            for table in ("mappings", "numbers", "loads", "windows", "optouts"):
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

        Lengthening the ttl first evicts what is dead at the horizon (O(k log n));
        :func:`~sticky.policy.clears_mappings` deletes every mapping in the same
        transaction (O(n)), :func:`~sticky.policy.clears_windows` every delivery window.
        """
        with self._write() as cur:
            key, text, ttl, exact = self._exact(cur, profile_id)
            current = self._decode(text)
            if current != old:
                return False
            if clears_mappings(current, new):
                cur.execute("DELETE FROM mappings WHERE profile = ?", (key,))
            elif new.ttl > ttl:  # so that no dead mapping comes back to life
                removed = evict_all(cur, key, ttl, exact)
                if removed:
                    cur.execute(
                        "UPDATE profiles SET evicted = evicted + ? WHERE key = ?", (removed, key)
                    )
            if clears_windows(current, new):
                cur.execute("DELETE FROM windows WHERE profile = ?", (key,))
            cur.execute(
                "UPDATE profiles SET settings = ?, sticky = ?, ttl = ?, version = ? WHERE key = ?",
                (self._encode(new), int(new.sticky_sender), new.ttl, self._next_version(cur), key),
            )
            self._set_kept(cur, key, new)
            return True

    def profiles(self) -> list[str]:
        """Every profile id, sorted. One read, O(P log P)."""
        with self._read() as cur:
            return sorted(row[0] for row in cur.execute("SELECT id FROM profiles"))

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
        """Add a number to a pool, with the smallest free sid. One write transaction, O(p).

        ``rate`` and ``daily_new_recipients`` are its own limits (None: the profile's).
        """
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
            added = SenderNumber(number, number_type, healthy, rate, daily_new_recipients)
            kept, deadline = sticky_side(added, self._decode(text))
            sid = 1  # the smallest free id: ids stay small (one byte up to 127 numbers)
            for (taken,) in cur.execute(
                "SELECT sid FROM numbers WHERE profile = ? ORDER BY sid", (key,)
            ).fetchall():
                if taken != sid:
                    break
                sid += 1
            cur.execute(
                "INSERT INTO numbers (number, profile, sid, type, healthy, kept, rate, daily,"
                " deadline) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    number,
                    key,
                    sid,
                    number_type.value,
                    int(healthy),
                    kept,
                    rate,
                    daily_new_recipients,
                    deadline,
                ),
            )
            cur.execute(
                "UPDATE profiles SET version = ? WHERE key = ?", (self._next_version(cur), key)
            )

    def remove_number(self, profile_id: str, number: str, now: float) -> int:
        """Remove a number, its mappings, load and window; return the live ones. O(k log n).

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
            cur.execute("DELETE FROM loads WHERE profile = ? AND number = ?", (key, number))
            cur.execute(_DROP_WINDOW, (key, number))
            cur.execute(
                "UPDATE profiles SET horizon = ?, version = ? WHERE key = ?",
                (at, self._next_version(cur), key),
            )
            return int(live)

    def set_health(self, number: str, *, healthy: bool) -> None:
        """Set a pooled number's health (its limits kept). One write transaction, O(log n).

        ``healthy=True`` also makes it delivery-healthy and deletes its window. A changed
        number is a new pool version.
        """
        with self._write() as cur:
            key, current, settings = self._pooled(cur, number)
            updated = attrs.evolve(current, healthy=healthy)
            if healthy:
                updated = attrs.evolve(updated, delivery_healthy=True)
                cur.execute(_DROP_WINDOW, (key, number))
            if updated != current:
                self._write_number(cur, key, updated, settings)

    def set_drain(
        self, profile_id: str, number: str, since: float | None, grace: float | None
    ) -> SenderNumber:
        """Start (or replace) a number's drain, or end it; return it. One write, O(log n).

        ``since`` None ends the drain (and its grace). A changed number is a new pool
        version. Raises UnknownProfile, UnknownNumber (not in this pool).
        """
        with self._write() as cur:
            key, text, _, _ = self._profile(cur, profile_id)
            row = cur.execute(_IN_PROFILE, (number, key)).fetchone()
            if row is None:
                msg = f"number {shown(number)} is not in profile {shown(profile_id)}"
                raise UnknownNumber(msg)
            current = number_of(row[1:])
            updated = attrs.evolve(
                current, draining_since=since, drain_grace=None if since is None else grace
            )
            if updated != current:
                self._write_number(cur, key, updated, self._decode(text))
            return updated

    def record_delivery(self, number: str, outcome: Outcome, now: float) -> SenderNumber:
        """Add a delivery report and judge the number; return it. One write, O(log n).

        :func:`~sticky.policy.after_report` on the window as stored, in the same
        transaction as its write, so the window and the verdict change together; a
        changed verdict is a new pool version. Raises UnknownNumber (in no pool).
        """
        with self._write() as cur:
            key, current, settings = self._pooled(cur, number)
            found = cur.execute(_WINDOW, (key, number)).fetchone()
            window, verdict = after_report(
                window_of(None if found is None else found[0]),
                current.delivery_healthy,
                outcome,
                now,
                settings,
            )
            cur.execute(_PUT_WINDOW, (key, number, window_text(window)))
            if verdict == current.delivery_healthy:
                return current
            updated = attrs.evolve(current, delivery_healthy=verdict)
            self._write_number(cur, key, updated, settings)
            return updated

    def health(self, profile_id: str) -> tuple[tuple[SenderNumber, ...], dict[str, Window]]:
        """The pool and each number's delivery window (absent: empty). One read, O(p)."""
        with self._read() as cur:
            key = self._profile(cur, profile_id)[0]
            windows = {
                number: window_of(text)
                for number, text in cur.execute(
                    "SELECT number, buckets FROM windows WHERE profile = ?", (key,)
                )
            }
            return self._pool(cur, key)[0], windows

    def set_limits(self, number: str, changes: Mapping[str, float | int | None]) -> SenderNumber:
        """Set a pooled number's own limits; return it. One write transaction, O(log n).

        ``changes`` holds ``rate`` and/or ``daily_new_recipients`` (None: the profile's).
        A change is a new pool version; the number's capacity state is kept. Raises
        UnknownNumber (in no pool), InvalidSettings (another name).
        """
        unknown = set(changes) - _LIMITS
        if unknown:
            msg = f"invalid limits {shown(sorted(unknown))}: expected rate, daily_new_recipients"
            raise InvalidSettings(msg)
        with self._write() as cur:
            key, current, settings = self._pooled(cur, number)
            updated = attrs.evolve(current, **changes)  # type: ignore[arg-type]
            if updated != current:
                self._write_number(cur, key, updated, settings)
            return updated

    def capacity_state(
        self, profile_id: str
    ) -> tuple[PoolSettings, tuple[SenderNumber, ...], dict[str, Load]]:
        """The settings, the pool and each number's capacity state. One read, O(p)."""
        with self._read() as cur:
            key, text, _, _ = self._profile(cur, profile_id)
            return self._decode(text), self._pool(cur, key)[0], self._loads(cur, key)

    def numbers(self, profile_id: str) -> tuple[SenderNumber, ...]:
        """A profile's pool, sorted by number. One read, O(p)."""
        with self._read() as cur:
            return self._pool(cur, self._profile(cur, profile_id)[0])[0]
