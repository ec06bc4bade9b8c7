"""A database file as sticky 0.1 wrote it (schema version 1), for the migration tests.

The statements are 0.1's schema, verbatim; :func:`build_v1` adds rows such as 0.1's
store leaves: several profiles, mappings of various ages, queue and late entries
(stale ones included), unhealthy numbers, and stored horizons that lag the true
horizon (``max(horizon, max(last_used))`` in 0.1), so that some mappings are dead at
the true horizon though live at the stored one.
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
SLACK = 0.001  # 0.1's bound on how far the stored horizon lagged

SCHEMA_V1 = (
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
    (
        "CREATE TABLE queue ("
        " profile INTEGER NOT NULL,"
        " pos INTEGER NOT NULL,"
        " key REAL NOT NULL,"
        " recipient TEXT NOT NULL,"
        " PRIMARY KEY (profile, pos)) WITHOUT ROWID"
    ),
    (
        "CREATE TABLE late ("
        " profile INTEGER NOT NULL,"
        " key REAL NOT NULL,"
        " recipient TEXT NOT NULL,"
        " seq INTEGER NOT NULL,"
        " PRIMARY KEY (profile, key, recipient, seq)) WITHOUT ROWID"
    ),
    f"PRAGMA application_id = {APPLICATION_ID}",
    "PRAGMA user_version = 1",
)

SETTINGS = {
    "a": PoolSettings(skip_unhealthy=True, toll_free_weight=2.5),
    "b": PoolSettings(ttl=3600.0),
    "c": PoolSettings(sticky_sender=False),
}
# profile -> (key, version, stored horizon, evicted)
PROFILES = {"a": (1, 7, T0, 3), "b": (2, 9, T0 + 50.0, 0), "c": (3, 4, None, 1)}
# (number, profile key, type, healthy, eligible)
NUMBERS = [
    ("+13125550001", 1, "long_code", 1, 1),
    ("+13125550002", 1, "long_code", 0, 0),  # unhealthy, and a skipping profile
    ("+18005550003", 1, "toll_free", 1, 1),
    ("+14155550004", 2, "long_code", 1, 1),
    ("+14155550005", 2, "long_code", 0, 1),  # unhealthy, in a profile that does not skip
    ("+12125550006", 3, "long_code", 1, 1),
]
# (profile key, recipient, sender, last_used, idx)
MAPPINGS = [
    (1, "+16465550001", "+13125550001", T0 - 100.0, T0 - 100.0),  # live
    (1, "+16465550002", "+18005550003", T0 - 5000.25, T0 - 90_000.5),  # live, re-keyed
    (1, "+16465550003", "+13125550001", T0 - TTL - 5.0, T0 - TTL - 5.0),  # dead at S
    # Dead at the true horizon (a hit at T0 + 0.0005 that 0.1 kept in its row only)
    # though live at the stored one: it must stay dead.
    (1, "+16465550004", "+13125550002", T0 - TTL + 0.0003, T0 - TTL + 0.0003),
    (1, "+16465550005", "+13125550001", T0 + 0.0005, T0 - 200.0),  # carries the horizon
    (2, "+16465550006", "+14155550004", T0 + 10.123456789, T0 + 10.123456789),  # live
    (2, "+16465550007", "+14155550005", T0 - 3600.0 + 50.0002, T0 - 3600.0 + 50.0002),
    (2, "+16465550008", "+14155550004", T0 + 50.0004, T0 + 20.0),  # carries the horizon
]
# (profile key, pos, key, recipient): stale entries of replaced mappings included.
QUEUE = [
    (1, 4, T0 - TTL - 5.0, "+16465550003"),
    (1, 5, T0 - TTL + 0.0003, "+16465550004"),
    (1, 6, T0 - 99_000.0, "+16465550002"),  # stale: the mapping was re-keyed since
    (1, 7, T0 - 200.0, "+16465550005"),
    (1, 8, T0 - 100.0, "+16465550001"),
    (2, 1, T0 - 3600.0 + 50.0002, "+16465550007"),
    (2, 2, T0 + 10.123456789, "+16465550006"),
    (2, 3, T0 + 20.0, "+16465550008"),
]
# (profile key, key, recipient, seq)
LATE = [(1, T0 - 90_000.5, "+16465550002", 1), (1, T0 - 150.0, "+16465550001", 1)]
TRUE_HORIZON = {"a": T0 + 0.0005, "b": T0 + 50.0004, "c": None}
DEAD = {"+16465550003", "+16465550004", "+16465550007"}
"""Dead at 0.1's true horizon: they must read as dead after the migration."""


def _encode(settings: PoolSettings) -> str:
    return json.dumps(settings.to_dict(), sort_keys=True, separators=(",", ":"))


def build_v1(path: Path) -> None:
    """Write a version-1 database at ``path``, with the rows above."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA_V1:
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
        conn.executemany("INSERT INTO mappings VALUES (?, ?, ?, ?, ?)", MAPPINGS)
        conn.executemany("INSERT INTO queue VALUES (?, ?, ?, ?)", QUEUE)
        conn.executemany("INSERT INTO late VALUES (?, ?, ?, ?)", LATE)
        conn.execute("COMMIT")
