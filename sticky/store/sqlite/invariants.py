"""The SQLite store's invariants: every rule of the file that its schema cannot enforce.

:func:`check_rows` is what :meth:`SQLiteStore.check_invariants` runs, in one read
transaction; the stateful tests call it after every step.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable

from sticky.numbers import is_e164
from sticky.policy import HEALTH_BUCKETS
from sticky.settings import PoolSettings
from sticky.store.sqlite.expiry import HORIZON_SLACK
from sticky.store.sqlite.pools import COLUMNS, number_of, sticky_side
from sticky.store.sqlite.schema import recipient_key, recipient_of

__all__ = ["check_rows"]


def check_rows(cur: sqlite3.Cursor, decode: Callable[[str], PoolSettings]) -> None:
    """Assert the file's integrity and every rule the schema cannot. O(N).

    ``PRAGMA integrity_check`` (pages, and each index against its table, so the expiry
    index holds every mapping); the meta rows; per profile, the settings copies, unique
    versions and each number's sticky side (the ``kept`` and ``deadline`` columns against
    :func:`~sticky.policy.may_keep` and :func:`~sticky.policy.drain_deadlines`), its
    verdict a flag and a grace only with a drain; no
    mapping to a number outside its profile's pool (by its sid), E.164 numbers and
    recipient keys that round-trip, one profile per number, no row of
    a deleted profile; rows well-formed; and the horizon rule: a profile with mappings
    has a horizon column, no index key is after its mapping's last use, and the newest
    key is less than :data:`~sticky.store.sqlite.expiry.HORIZON_SLACK` past the column
    (the horizon is ``max(column, newest key)``: each key was written by a write that
    moved the horizon to at least it). Capacity: the numbers' own limits are positive
    (or NULL), and a ``loads`` row is only for a number in its profile's pool, with
    REAL schedule times (``tat`` and ``floor``: -inf, or finite) and a non-negative
    day and count (a count only with a day). A number's life: a ``windows`` row is only
    for a number in its profile's pool, a well-formed :data:`~sticky.policy.Window`
    (at most :data:`~sticky.policy.HEALTH_BUCKETS` buckets, increasing, within that
    many of the newest, counts non-negative integers); an ``optouts`` row is of a
    profile and a recipient key that round-trips.
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
        for row in cur.execute(
            f"SELECT {COLUMNS}, sid, kept, deadline FROM numbers"  # noqa: S608
            " WHERE profile = ?",
            (key,),
        ).fetchall():
            _check_number(pid, row, settings)
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
    _check_life(cur)
    for table in ("mappings", "numbers", "loads", "windows", "optouts"):
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


def _check_window(number: str, text: object) -> None:
    """Assert one stored window is a well-formed :data:`~sticky.policy.Window`."""
    assert type(text) is str, f"{number}: window {text!r}"
    window = json.loads(text)
    assert type(window) is list, f"{number}: window {text}"
    assert 0 < len(window) <= HEALTH_BUCKETS, f"{number}: {len(window)} buckets"
    buckets = []
    for entry in window:
        assert type(entry) is list, f"{number}: bucket {entry!r}"
        assert len(entry) == 4, f"{number}: bucket {entry!r}"
        assert all(type(v) is int for v in entry), f"{number}: bucket {entry!r}"
        assert min(entry[1:]) >= 0, f"{number}: bucket {entry!r}"
        buckets.append(entry[0])
    assert buckets == sorted(set(buckets)), f"{number}: buckets {buckets} not increasing"
    assert buckets[0] > buckets[-1] - HEALTH_BUCKETS, f"{number}: buckets {buckets} too old"


def _check_number(pid: str, row: tuple[object, ...], settings: PoolSettings) -> None:
    """Assert one ``numbers`` row (:data:`COLUMNS`, sid, kept, deadline) is well-formed."""
    number, sid = row[0], row[8]
    assert type(number) is str, f"{pid}: number {number!r}"
    assert is_e164(number), f"{pid}: number {number!r} is not E.164"
    assert type(sid) is int, f"{pid}: {number} has sid {sid!r}"
    assert sid > 0, f"{pid}: {number} has sid {sid!r}"
    assert row[2] in {0, 1}, f"{pid}: {number} healthy {row[2]!r}"
    assert row[5] in {0, 1}, f"{pid}: {number} delivery_healthy {row[5]!r}"
    since, grace = row[6], row[7]
    assert since is None or (type(since) is float and math.isfinite(since)), (
        f"{pid}: {number} drain {since!r}"
    )
    assert grace is None or since is not None, f"{pid}: {number} a grace, no drain"
    assert grace is None or (type(grace) is float and grace >= 0), f"{pid}: {number} grace"
    assert (row[9], row[10]) == sticky_side(number_of(row), settings), (
        f"{pid}: {number} kept flag or deadline {(row[9], row[10])} is stale"
    )


def _check_life(cur: sqlite3.Cursor) -> None:
    """Assert the delivery windows and the opt-outs (see :func:`check_rows`)."""
    strays = cur.execute(
        "SELECT count(*) FROM windows AS w LEFT JOIN numbers AS n"
        " ON n.number = w.number AND n.profile = w.profile WHERE n.number IS NULL"
    ).fetchone()[0]
    assert strays == 0, f"{strays} window(s) of a number outside its profile's pool"
    for number, text in cur.execute("SELECT number, buckets FROM windows"):
        _check_window(number, text)
    for (rk,) in cur.execute("SELECT recipient FROM optouts"):
        assert type(rk) is int, f"opt-out key {rk!r}"
        to = recipient_of(rk)
        assert is_e164(to), f"opted-out recipient {to!r} (key {rk}) is not E.164"
        assert recipient_key(to) == rk, f"opt-out key {rk} does not round-trip"
