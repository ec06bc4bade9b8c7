"""The SQLite store's schema: its tables, its version, and the migration from 0.1.

Version 2 (``PRAGMA user_version``; ``PRAGMA application_id`` marks the file):

- ``meta(name, value)``: the pool-version counter, and the evictions of profiles since
  deleted;
- ``profiles(key, id, settings, sticky, ttl, version, horizon, evicted)``: ``settings``
  is :meth:`PoolSettings.to_dict` as JSON; ``sticky`` and ``ttl`` are copies a select
  reads without decoding it; ``horizon`` is the profile's horizon, exactly (NULL until
  a write moves it);
- ``numbers(number, profile, type, healthy, eligible)``: the primary key on ``number``
  is the rule that a number belongs to one profile; ``eligible`` is
  :func:`~sticky.policy.is_eligible` under the profile's settings, as data;
- ``mappings(profile, recipient, sender, last_used, idx)``: the primary key
  ``(profile, recipient)`` is the look-up; the index ``(profile, sender, idx)`` is both
  the cascade (by its prefix) and the expiry index, per sender (``idx`` is a lower
  bound of ``last_used``: when the mapping was stored or last re-indexed).

Version 1 (sticky 0.1) also had the tables ``queue`` and ``late`` (a copy of the memory
store's expiry deque and sorted list), and a stored horizon that could lag the true one,
``max(horizon, max(last_used))``. :func:`open_schema` migrates such a file in place.
"""

from __future__ import annotations

import sqlite3

from sticky.errors import IncompatibleStore

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "open_schema"]

SCHEMA_VERSION = 2
"""The schema this version writes (``PRAGMA user_version``); a newer file is refused."""
APPLICATION_ID = 0x53544B59
"""``PRAGMA application_id`` of a sticky store ("STKY")."""

_TABLES = (
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
)

# Version 1 had the same tables and indexes plus these two, and its ``horizon`` column
# lagged: the true horizon was max(horizon, max(last_used)) over the profile's rows.
_FROM_1 = (
    (
        "UPDATE profiles SET horizon = (SELECT max(coalesce(profiles.horizon, top), top)"
        " FROM (SELECT max(last_used) AS top FROM mappings WHERE profile = profiles.key))"
        " WHERE EXISTS (SELECT 1 FROM mappings WHERE profile = profiles.key)"
    ),
    "DROP TABLE queue",
    "DROP TABLE late",
)


def open_schema(conn: sqlite3.Connection, path: str) -> None:
    """Create the schema in a new file, migrate one of version 1, refuse the others.

    Creating and migrating run in one ``BEGIN IMMEDIATE`` transaction, so that two
    processes opening one file at once do it once, and a crash leaves the file as it
    was. Raises :class:`~sticky.IncompatibleStore` naming ``path`` for a file newer
    than :data:`SCHEMA_VERSION` or not a sticky store. O(1), or O(P log n) to migrate.
    """
    if _version(conn, path) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")  # another process may be creating it too
    try:
        version = _version(conn, path)
        if version == 0:
            for statement in _TABLES:
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        elif version == 1:
            for statement in _FROM_1:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _version(conn: sqlite3.Connection, path: str) -> int:
    """The file's schema version: 0 for an empty file. Raises IncompatibleStore."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    app = conn.execute("PRAGMA application_id").fetchone()[0]
    if version == 0 and app == 0:
        if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            msg = f"SQLite file {path!r} is not a sticky store: it holds other tables"
            raise IncompatibleStore(msg)
        return 0
    if app != APPLICATION_ID:
        msg = f"SQLite file {path!r} is not a sticky store (application_id {app:#x})"
        raise IncompatibleStore(msg)
    if version > SCHEMA_VERSION:
        msg = (
            f"SQLite store {path!r} has schema version {version}, newer than the"
            f" {SCHEMA_VERSION} this version of sticky reads: upgrade sticky to open it"
        )
        raise IncompatibleStore(msg)
    if version not in {1, SCHEMA_VERSION}:
        msg = f"SQLite store {path!r} has an unknown schema version {version}"
        raise IncompatibleStore(msg)
    return int(version)
