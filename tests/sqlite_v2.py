"""A database file as the previous version wrote it (schema version 2), for the migration tests.

The statements are version 2's schema, verbatim; :func:`build_v2` adds rows such as that
version's store leaves: several profiles, mappings of various ages with the numbers
themselves as TEXT, index keys re-indexed below their last use, a mapping used by hits
past the profile's horizon, one dead at the horizon though live at an earlier clock,
unhealthy numbers, a profile with no horizon yet, and a pool whose number order is not
the order the numbers joined.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

from sticky import PoolSettings

APPLICATION_ID = 0x53544B59
T0 = 1_700_000_000.0
TTL = 691_200.0

SCHEMA_V2 = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT INTO meta (name, value) VALUES ('version', 0), ('evicted', 0)",
    (
        "CREATE TABLE profiles ("
        " key INTEGER PRIMARY KEY,"
        " id TEXT NOT NULL UNIQUE,"
        " settings TEXT NOT NULL,"
        " sticky INTEGER NOT NULL,"
        " ttl REAL NOT NULL,"
        " version INTEGER NOT NULL,"
        " horizon REAL,"
        " evicted INTEGER NOT NULL DEFAULT 0)"
    ),
    (
        "CREATE TABLE numbers ("
        " number TEXT PRIMARY KEY,"
        " profile INTEGER NOT NULL,"
        " type TEXT NOT NULL CHECK (type IN ('long_code', 'toll_free')),"
        " healthy INTEGER NOT NULL,"
        " eligible INTEGER NOT NULL) WITHOUT ROWID"
    ),
    "CREATE INDEX numbers_by_profile ON numbers (profile, number)",
    (
        "CREATE TABLE mappings ("
        " profile INTEGER NOT NULL,"
        " recipient TEXT NOT NULL,"
        " sender TEXT NOT NULL,"
        " last_used REAL NOT NULL,"
        " idx REAL NOT NULL,"
        " PRIMARY KEY (profile, recipient)) WITHOUT ROWID"
    ),
    "CREATE INDEX mappings_by_sender ON mappings (profile, sender, idx)",
    f"PRAGMA application_id = {APPLICATION_ID}",
    "PRAGMA user_version = 2",
)

SETTINGS = {
    "a": PoolSettings(skip_unhealthy=True, toll_free_weight=2.5),
    "b": PoolSettings(ttl=3600.0),
    "c": PoolSettings(sticky_sender=False),
}
# profile -> (key, version, horizon, evicted)
PROFILES = {"a": (1, 7, T0, 3), "b": (2, 9, T0 + 50.0004, 0), "c": (3, 4, None, 1)}
# (number, profile key, type, healthy, eligible)
NUMBERS = [
    ("+13125550009", 1, "long_code", 1, 1),  # joined first, sorts last: sid 3
    ("+13125550001", 1, "long_code", 1, 1),
    ("+13125550002", 1, "long_code", 0, 0),  # unhealthy, and a skipping profile
    ("+18005550003", 1, "toll_free", 1, 1),
    ("+14155550004", 2, "long_code", 1, 1),
    ("+14155550005", 2, "long_code", 0, 1),  # unhealthy, in a profile that does not skip
    ("+12125550006", 3, "long_code", 1, 1),
]
SIDS = {
    "+13125550001": 1,
    "+13125550002": 2,
    "+13125550009": 3,
    "+18005550003": 4,
    "+14155550004": 1,
    "+14155550005": 2,
    "+12125550006": 1,
}
"""The ids the migration gives: 1, 2, ... in number order within each profile."""
# (profile key, recipient, sender, last_used, idx)
MAPPINGS = [
    (1, "+16465550001", "+13125550001", T0 - 100.0, T0 - 100.0),  # live
    (1, "+16465550002", "+18005550003", T0 - 5000.25, T0 - 90_000.5),  # live, re-keyed
    (1, "+16465550003", "+13125550001", T0 - TTL - 5.0, T0 - TTL - 5.0),  # dead
    (1, "+16465550004", "+13125550002", T0 - TTL - 0.0003, T0 - TTL - 0.0003),  # dead at T0
    (1, "+16465550005", "+13125550009", T0 + 500.5, T0 - 200.0),  # hits ran past the horizon
    (1, "+4930123456789", "+13125550009", T0 - 1.0, T0 - 1.0),  # 13 digits
    (2, "+16465550006", "+14155550004", T0 + 10.123456789, T0 + 10.123456789),  # live
    (2, "+16465550007", "+14155550005", T0 - 3600.0 + 50.0002, T0 - 3600.0 + 50.0002),  # dead
    (2, "+16465550008", "+14155550004", T0 + 50.0004, T0 + 50.0004),  # the newest write
]
DEAD = {"+16465550003", "+16465550004", "+16465550007"}
"""Dead at their profile's horizon: they must read as dead after the migration."""


def _encode(settings: PoolSettings) -> str:
    return json.dumps(settings.to_dict(), sort_keys=True, separators=(",", ":"))


def build_v2(path: Path, *, extra: tuple[tuple[object, ...], ...] = ()) -> None:
    """Write a version-2 database at ``path``, with the rows above (and ``extra`` mappings)."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA_V2:
            conn.execute(statement)
        for pid, (key, version, horizon, evicted) in PROFILES.items():
            s = SETTINGS[pid]
            conn.execute(
                "INSERT INTO profiles (key, id, settings, sticky, ttl, version, horizon, evicted)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key, pid, _encode(s), int(s.sticky_sender), s.ttl, version, horizon, evicted),
            )
        conn.execute("UPDATE meta SET value = 9 WHERE name = 'version'")
        conn.execute("UPDATE meta SET value = 2 WHERE name = 'evicted'")  # of deleted profiles
        conn.executemany("INSERT INTO numbers VALUES (?, ?, ?, ?, ?)", NUMBERS)
        conn.executemany("INSERT INTO mappings VALUES (?, ?, ?, ?, ?)", MAPPINGS + list(extra))
        conn.execute("COMMIT")
