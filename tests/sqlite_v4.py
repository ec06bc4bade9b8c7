"""A database file as the previous version wrote it (schema version 4), for the migration tests.

The statements are version 4's schema, verbatim; :func:`build_v4` adds the rows of
:mod:`sqlite_v2` as version 4 holds them (recipients as integers, senders by their
ids, an ``eligible`` flag per number), some numbers' own limits and capacity state, with
the settings JSON that version wrote: with the capacity settings, without the health
settings.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

from sqlite_v2 import APPLICATION_ID, DEAD, MAPPINGS, NUMBERS, PROFILES, SETTINGS, SIDS, T0

__all__ = [
    "DEAD",
    "LIMITS",
    "LOADS",
    "MAPPINGS",
    "NUMBERS",
    "PROFILES",
    "SETTINGS",
    "SIDS",
    "T0",
    "build_v4",
]

SCHEMA_V4 = (
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
        " sid INTEGER NOT NULL,"
        " type TEXT NOT NULL CHECK (type IN ('long_code', 'toll_free')),"
        " healthy INTEGER NOT NULL,"
        " eligible INTEGER NOT NULL,"
        " rate REAL,"
        " daily INTEGER) WITHOUT ROWID"
    ),
    (
        "CREATE TABLE mappings ("
        " profile INTEGER NOT NULL,"
        " recipient INTEGER NOT NULL,"
        " sender INTEGER NOT NULL,"
        " last_used REAL NOT NULL,"
        " idx REAL NOT NULL,"
        " PRIMARY KEY (profile, recipient)) WITHOUT ROWID"
    ),
    (
        "CREATE TABLE loads ("
        " profile INTEGER NOT NULL,"
        " number TEXT NOT NULL,"
        " tat REAL NOT NULL,"
        " floor REAL NOT NULL,"
        " day INTEGER NOT NULL,"
        " count INTEGER NOT NULL,"
        " PRIMARY KEY (profile, number)) WITHOUT ROWID"
    ),
    "CREATE INDEX numbers_by_profile ON numbers (profile, number)",
    "CREATE UNIQUE INDEX numbers_by_sid ON numbers (profile, sid)",
    "CREATE INDEX mappings_by_sender ON mappings (profile, sender, idx)",
    f"PRAGMA application_id = {APPLICATION_ID}",
    "PRAGMA user_version = 4",
)
OLD_KEYS = (
    "sticky_sender",
    "ttl",
    "long_code_weight",
    "toll_free_weight",
    "skip_unhealthy",
    "geomatch",
    "long_code_rate",
    "toll_free_rate",
    "burst",
    "daily_new_recipients",
    "max_wait",
    "choice_wait",
    "max_queue",
    "timezone",
    "clear_on_sticky_off",
)
"""The settings version 4's JSON held."""
LIMITS = {"+13125550009": (2.0, None), "+14155550004": (None, 50)}
"""Numbers' own ``(rate, daily)`` (the others NULL: their profile's)."""
LOADS = [(1, "+13125550009", T0 + 1.0, T0 + 0.5, 19675, 3)]
"""Capacity state: ``(profile key, number, tat, floor, day, count)``."""


def _encode(pid: str) -> str:
    full = SETTINGS[pid].to_dict()
    return json.dumps({k: full[k] for k in OLD_KEYS}, sort_keys=True, separators=(",", ":"))


def build_v4(path: Path) -> None:
    """Write a version-4 database at ``path``, with the rows of :mod:`sqlite_v2`."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA_V4:
            conn.execute(statement)
        for pid, (key, version, horizon, evicted) in PROFILES.items():
            s = SETTINGS[pid]
            conn.execute(
                "INSERT INTO profiles (key, id, settings, sticky, ttl, version, horizon, evicted)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key, pid, _encode(pid), int(s.sticky_sender), s.ttl, version, horizon, evicted),
            )
        conn.execute("UPDATE meta SET value = 9 WHERE name = 'version'")
        conn.execute("UPDATE meta SET value = 2 WHERE name = 'evicted'")
        conn.executemany(
            "INSERT INTO numbers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (n, key, SIDS[n], kind, h, e, *LIMITS.get(n, (None, None)))
                for n, key, kind, h, e in NUMBERS
            ],
        )
        conn.executemany(
            "INSERT INTO mappings VALUES (?, ?, ?, ?, ?)",
            [(key, int(to[1:]), SIDS[s], lu, idx) for key, to, s, lu, idx in MAPPINGS],
        )
        conn.executemany("INSERT INTO loads VALUES (?, ?, ?, ?, ?, ?)", LOADS)
        conn.execute("COMMIT")
