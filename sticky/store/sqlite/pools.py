"""The SQLite store's profiles and pools: its caches, helpers and pool changes.

:class:`~sticky.store.sqlite.SQLiteStore` is built on :class:`SQLitePools`; this module
holds what every operation shares (the per-version caches of settings and pools, the
profile and pool reads) and the operations on profiles and pools. Each public method
is one transaction; eligibility is :func:`sticky.policy.is_eligible`'s, stored as the
``eligible`` column at every pool, settings or health change.
"""

from __future__ import annotations

import json
import os
import sqlite3

from sticky.errors import (
    NumberInUse,
    ProfileExists,
    UnknownNumber,
    UnknownProfile,
    shown,
)
from sticky.numbers import NumberType, SenderNumber
from sticky.policy import dead_up_to, is_eligible, judged_at
from sticky.settings import PoolSettings
from sticky.store.sqlite.connection import Connection
from sticky.store.sqlite.expiry import (
    evict_all,
    horizon,
)

__all__ = ["HORIZON", "SENDER", "SQLitePools"]

# A NULL horizon (no write yet) reads as -inf, which judged_at ignores.
HORIZON = "ifnull(horizon, -1e999)"
"""A profile's horizon column in SQL: NULL (no write yet) reads as -inf."""
_PROFILE = f"SELECT key, settings, ttl, {HORIZON} FROM profiles WHERE id = ?"  # noqa: S608
_POOL = "SELECT number, type, healthy, sid FROM numbers WHERE profile = ? ORDER BY number"
# INDEXED BY: without statistics the planner would scan the profile's primary-key
# range for "profile = ? AND sender = ?"; this way SQLite fails rather than scans.
SENDER = "FROM mappings INDEXED BY mappings_by_sender WHERE profile = ? AND sender = ?"
_SENDER_LIVE = f"SELECT count(*) {SENDER} AND last_used > ?"
_SENDER_DELETE = f"DELETE {SENDER}"

_TYPES = {t.value: t for t in NumberType}


class SQLitePools(Connection):
    """Profiles, pools and the caches every operation reads; see the module docstring."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 5.0) -> None:
        self._settings: dict[str, PoolSettings] = {}
        # profile key -> (pool version, the pool, each number's sid)
        self._pools: dict[int, tuple[int, tuple[SenderNumber, ...], dict[str, int]]] = {}
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
