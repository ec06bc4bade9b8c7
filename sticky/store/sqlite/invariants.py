"""The SQLite store's invariants: every rule of the file that its schema cannot enforce.

:func:`check_rows` is what :meth:`SQLiteStore.check_invariants` runs, in one read
transaction; the stateful tests call it after every step.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable

from sticky.numbers import NumberType, SenderNumber, is_e164
from sticky.policy import is_eligible
from sticky.settings import PoolSettings
from sticky.store.sqlite.expiry import HORIZON_SLACK
from sticky.store.sqlite.schema import recipient_key, recipient_of

__all__ = ["check_rows"]

_TYPES = {t.value: t for t in NumberType}


def check_rows(cur: sqlite3.Cursor, decode: Callable[[str], PoolSettings]) -> None:
    """Assert the file's integrity and every rule the schema cannot. O(N).

    ``PRAGMA integrity_check`` (pages, and each index against its table, so the expiry
    index holds every mapping); the meta rows; per profile, the settings copies, unique
    versions and the ``eligible`` flags against :func:`~sticky.policy.is_eligible`; no
    mapping to a number outside its profile's pool (by its sid), E.164 numbers and
    recipient keys that round-trip, one profile per number, no row of
    a deleted profile; rows well-formed; and the horizon rule: a profile with mappings
    has a horizon column, no index key is after its mapping's last use, and the newest
    key is less than :data:`~sticky.store.sqlite.expiry.HORIZON_SLACK` past the column
    (the horizon is ``max(column, newest key)``: each key was written by a write that
    moved the horizon to at least it). Capacity: the numbers' own limits are positive
    (or NULL), and a ``loads`` row is only for a number in its profile's pool, with
    REAL schedule times (``tat`` and ``floor``: -inf, or finite) and a non-negative
    day and count (a count only with a day).
    Raises AssertionError naming the broken rule.
    """

    def one(sql: str, *args: object) -> int:
        return int(cur.execute(sql, args).fetchone()[0])

    for (result,) in cur.execute("PRAGMA integrity_check").fetchall():
        assert result == "ok", f"integrity_check: {result}"
    assert one("SELECT count(*) FROM meta") == 2, "meta rows"
    top = one("SELECT value FROM meta WHERE name = 'version'")
    assert one("SELECT value FROM meta WHERE name = 'evicted'") >= 0, "evicted < 0"
    versions: set[int] = set()
    for key, pid, text, sticky, ttl, version, horizon, evicted in cur.execute(
        "SELECT key, id, settings, sticky, ttl, version, horizon, evicted FROM profiles"
    ).fetchall():
        settings = decode(text)
        assert (bool(sticky), ttl) == (settings.sticky_sender, settings.ttl), f"{pid}: copies"
        assert 0 < version <= top, f"{pid}: version {version} (counter {top})"
        assert version not in versions, f"{pid}: version {version} is not unique"
        versions.add(version)
        assert evicted >= 0, f"{pid}: evicted {evicted}"
        for number, sid, kind, healthy, flag in cur.execute(
            "SELECT number, sid, type, healthy, eligible FROM numbers WHERE profile = ?", (key,)
        ).fetchall():
            assert is_e164(number), f"{pid}: number {number!r} is not E.164"
            assert type(sid) is int, f"{pid}: {number} has sid {sid!r}"
            assert sid > 0, f"{pid}: {number} has sid {sid!r}"
            n = SenderNumber(number, _TYPES[kind], bool(healthy))
            assert bool(flag) == is_eligible(n, settings), f"{pid}: {number} eligible flag"
        newest = cur.execute("SELECT max(idx) FROM mappings WHERE profile = ?", (key,))
        newest = newest.fetchone()[0]
        if newest is not None:
            assert horizon is not None, f"{pid}: mappings but no horizon"
            assert newest <= horizon or newest < horizon + HORIZON_SLACK, (
                f"{pid}: an index key {newest} a slack or more past the stored horizon {horizon}"
            )
    orphans = one(
        "SELECT count(*) FROM mappings AS m LEFT JOIN numbers AS n"
        " ON n.sid = m.sender AND n.profile = m.profile WHERE n.number IS NULL"
    )
    assert orphans == 0, f"{orphans} mapping(s) to a number outside its profile's pool"
    bad = cur.execute(
        "SELECT number, rate, daily FROM numbers WHERE (rate IS NOT NULL"
        " AND (typeof(rate) != 'real' OR NOT rate > 0)) OR (daily IS NOT NULL"
        " AND (typeof(daily) != 'integer' OR daily < 0)) LIMIT 1"
    ).fetchone()
    assert bad is None, f"a number's own limits are malformed: {bad}"
    strays = one(
        "SELECT count(*) FROM loads AS l LEFT JOIN numbers AS n"
        " ON n.number = l.number AND n.profile = l.profile WHERE n.number IS NULL"
    )
    assert strays == 0, f"{strays} capacity row(s) of a number outside its profile's pool"
    for number, tat, floor, day, count in cur.execute(
        "SELECT number, tat, floor, day, count FROM loads"
    ):
        for name, value in (("tat", tat), ("floor", floor)):
            assert type(value) is float, f"{number}: {name} {value!r} is not REAL"
            assert value == -math.inf or math.isfinite(value), f"{number}: {name} {value!r}"
        assert type(day) is int, f"{number}: day {day!r}"
        assert type(count) is int, f"{number}: count {count!r}"
        assert day >= 0, f"{number}: day {day!r}"
        assert count >= 0, f"{number}: count {count!r}"
        assert count == 0 or day > 0, f"{number}: a count {count} of no day"
    for table in ("mappings", "numbers", "loads"):
        strays = one(
            f"SELECT count(*) FROM {table}"  # noqa: S608 - the table names above
            " WHERE profile NOT IN (SELECT key FROM profiles)"
        )
        assert strays == 0, f"{strays} {table} row(s) of no profile"
    bad = cur.execute(
        "SELECT profile, recipient, sender, last_used, idx FROM mappings"
        " WHERE typeof(last_used) != 'real' OR typeof(idx) != 'real'"
        " OR idx > last_used OR typeof(sender) != 'integer'"
        " OR typeof(recipient) != 'integer' OR typeof(profile) != 'integer' LIMIT 1"
    ).fetchone()
    assert bad is None, f"a malformed mapping row (or an index key after its last use): {bad}"
    for key, last_used in cur.execute("SELECT recipient, last_used FROM mappings"):
        to = recipient_of(key)
        assert is_e164(to), f"recipient {to!r} (key {key}) is not E.164"
        assert recipient_key(to) == key, f"recipient key {key} does not round-trip"
        assert math.isfinite(last_used), f"{to}: last_used {last_used!r}"
