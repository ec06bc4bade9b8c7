"""The SQLite store's schema: its tables, its version, and the migrations.

Version 5 (``PRAGMA user_version``; ``PRAGMA application_id`` marks the file):

- ``meta(name, value)``: the pool-version counter, and the evictions of profiles since
  deleted;
- ``profiles(key, id, settings, sticky, ttl, version, horizon, evicted)``: ``settings``
  is :meth:`PoolSettings.to_dict` as JSON; ``sticky`` and ``ttl`` are copies a select
  reads without decoding it; ``horizon`` is a lower bound of the profile's horizon,
  which is ``max(horizon, newest idx)`` (NULL until a write moves it; see
  :data:`~sticky.store.sqlite.expiry.HORIZON_SLACK`);
- ``numbers(number, profile, sid, type, healthy, kept, rate, daily, delivery_healthy,
  draining_since, drain_grace, deadline)``: the primary key on ``number`` is the rule
  that a number belongs to one profile; ``sid`` is its small integer id in the profile
  (unique per profile, the smallest free one when it joins), which mappings store
  instead of the number; ``rate`` and ``daily`` are the number's own limits (NULL: the
  profile's); ``delivery_healthy`` is its delivery reports' verdict, ``draining_since``
  and ``drain_grace`` its drain (NULL: none, or no grace). All of them are the pool and
  part of its version. ``kept`` (:func:`~sticky.policy.may_keep` under the profile's
  settings) and ``deadline`` (its entry of :func:`~sticky.policy.drain_deadlines`,
  NULL: none) are the sticky side as data, rewritten at every pool, settings or health
  change: what a select's hit reads in its one statement;
- ``loads(profile, number, tat, floor, day, count)``: each number's capacity state, a
  :data:`~sticky.policy.Load` (a number without a row is
  :data:`~sticky.policy.IDLE`), keyed ``(profile, number)`` so that a select reads its
  pool's loads in one range. A table of its own rather than columns of ``numbers``:
  a load changes at every select of a profile with capacity on, the pool only at
  pool changes; apart, the pool's rows (read by every select's join, cached per pool
  version) keep their layout and pages, a number never used has no row, and removing
  a number or a profile drops its state with one range delete;
- ``windows(profile, number, buckets)``: each number's delivery window, a
  :data:`~sticky.policy.Window` as JSON (no row: empty), keyed as ``loads`` and apart
  from ``numbers`` for the same reasons (a report writes it; the verdict, in
  ``numbers``, changes rarely);
- ``optouts(profile, recipient)``: the opted-out recipients, keyed as mappings are
  (``recipient`` the digits as an INTEGER). Never evicted; a select's one statement
  looks its recipient up here (one seek of this primary key);
- ``mappings(profile, recipient, sender, last_used, idx)``: ``recipient`` is the E.164
  number's digits as an INTEGER (``+`` and the digits of the integer: one to one),
  ``sender`` the sender's ``sid``; the primary key ``(profile, recipient)`` is the
  look-up; the index ``(profile, sender, idx)`` is both the cascade (by its prefix) and
  the expiry index, per sender (``idx`` is a lower bound of ``last_used``: when the
  mapping was stored or last re-indexed).

Version 4 had no ``windows`` and ``optouts`` tables, no ``delivery_healthy``,
``draining_since``, ``drain_grace`` and ``deadline`` columns (they are added as a
number that is delivery-healthy and not draining), and its ``kept`` column was
``eligible`` (:func:`~sticky.policy.is_eligible`, which equals
:func:`~sticky.policy.may_keep` for such a number: renamed, its values kept).
Version 3 had no ``loads`` table and no ``rate`` and ``daily`` columns (they are
added, NULL: every number takes its profile's limits). Version 2 had the same tables
with the numbers themselves, as TEXT, in ``mappings`` (no ``sid``), and its ``horizon``
column was the horizon exactly (a lower bound, so it reads as it is). Version 1 (sticky
0.1) also had the tables ``queue`` and ``late`` (a copy of the memory store's expiry
deque and sorted list), and a stored horizon that could lag the true one,
``max(horizon, max(last_used))``. :func:`open_schema` migrates any of them in place,
version by version.
"""

from __future__ import annotations

import json
import sqlite3

from sticky.errors import IncompatibleStore, InvalidNumber
from sticky.policy import Window

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "open_schema",
    "recipient_key",
    "recipient_of",
    "window_of",
    "window_text",
]

SCHEMA_VERSION = 5
"""The schema this version writes (``PRAGMA user_version``); a newer file is refused."""
APPLICATION_ID = 0x53544B59
"""``PRAGMA application_id`` of a sticky store ("STKY")."""

# Version 3's numbers table: what the migration from version 2 creates, before the
# migration from 3 adds the limits (so that every file takes the same steps).
_NUMBERS_3 = (
    "CREATE TABLE numbers ("
    " number TEXT PRIMARY KEY,"
    " profile INTEGER NOT NULL,"
    " sid INTEGER NOT NULL,"
    " type TEXT NOT NULL CHECK (type IN ('long_code', 'toll_free')),"
    " healthy INTEGER NOT NULL,"
    " eligible INTEGER NOT NULL) WITHOUT ROWID"
)
# The columns in the order a migrated file has them (each version appends its own).
_NUMBERS = (
    "CREATE TABLE numbers ("
    " number TEXT PRIMARY KEY,"
    " profile INTEGER NOT NULL,"
    " sid INTEGER NOT NULL,"
    " type TEXT NOT NULL CHECK (type IN ('long_code', 'toll_free')),"
    " healthy INTEGER NOT NULL,"
    " kept INTEGER NOT NULL,"
    " rate REAL,"
    " daily INTEGER,"
    " delivery_healthy INTEGER NOT NULL DEFAULT 1,"
    " draining_since REAL,"
    " drain_grace REAL,"
    " deadline REAL) WITHOUT ROWID"
)
_LOADS = (
    "CREATE TABLE loads ("
    " profile INTEGER NOT NULL,"
    " number TEXT NOT NULL,"
    " tat REAL NOT NULL,"
    " floor REAL NOT NULL,"
    " day INTEGER NOT NULL,"
    " count INTEGER NOT NULL,"
    " PRIMARY KEY (profile, number)) WITHOUT ROWID"
)
_WINDOWS = (
    "CREATE TABLE windows ("
    " profile INTEGER NOT NULL,"
    " number TEXT NOT NULL,"
    " buckets TEXT NOT NULL,"
    " PRIMARY KEY (profile, number)) WITHOUT ROWID"
)
_OPTOUTS = (
    "CREATE TABLE optouts ("
    " profile INTEGER NOT NULL,"
    " recipient INTEGER NOT NULL,"
    " PRIMARY KEY (profile, recipient)) WITHOUT ROWID"
)
_MAPPINGS = (
    "CREATE TABLE mappings ("
    " profile INTEGER NOT NULL,"
    " recipient INTEGER NOT NULL,"
    " sender INTEGER NOT NULL,"
    " last_used REAL NOT NULL,"
    " idx REAL NOT NULL,"
    " PRIMARY KEY (profile, recipient)) WITHOUT ROWID"
)
_INDEXES = (
    "CREATE INDEX numbers_by_profile ON numbers (profile, number)",
    "CREATE UNIQUE INDEX numbers_by_sid ON numbers (profile, sid)",
    "CREATE INDEX mappings_by_sender ON mappings (profile, sender, idx)",
)
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
    _NUMBERS,
    _MAPPINGS,
    _LOADS,
    _WINDOWS,
    _OPTOUTS,
    *_INDEXES,
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

# Version 2 to 3: numbers get their ids (in number order within each profile), and the
# mappings are copied with the recipient's digits and the sender's id. The tables are
# renamed to the new ones' names; the old indexes go with the old tables.
_FROM_2 = (
    "ALTER TABLE numbers RENAME TO numbers_2",
    "ALTER TABLE mappings RENAME TO mappings_2",
    "DROP INDEX numbers_by_profile",
    "DROP INDEX mappings_by_sender",
    _NUMBERS_3,
    _MAPPINGS,
    (
        "INSERT INTO numbers (number, profile, sid, type, healthy, eligible)"
        " SELECT number, profile, row_number() OVER (PARTITION BY profile ORDER BY number),"
        " type, healthy, eligible FROM numbers_2"
    ),
    (
        "INSERT INTO mappings (profile, recipient, sender, last_used, idx)"
        " SELECT m.profile, CAST(substr(m.recipient, 2) AS INTEGER), n.sid, m.last_used, m.idx"
        " FROM mappings_2 AS m JOIN numbers AS n ON n.number = m.sender AND n.profile = m.profile"
        " WHERE m.recipient = '+' || CAST(substr(m.recipient, 2) AS INTEGER)"
    ),
    *_INDEXES,
)
# What version 3 cannot hold: a recipient that is not "+" and an integer's digits, or a
# mapping to a number outside its profile's pool (neither written by sticky).
_UNMIGRATED = "SELECT (SELECT count(*) FROM mappings_2) - (SELECT count(*) FROM mappings)"
_DROP_2 = ("DROP TABLE mappings_2", "DROP TABLE numbers_2")
# Version 3 to 4: the numbers' own limits (NULL: the profile's) and the capacity state
# (no row: idle).
_FROM_3 = (
    "ALTER TABLE numbers ADD COLUMN rate REAL",
    "ALTER TABLE numbers ADD COLUMN daily INTEGER",
    _LOADS,
)
# Version 4 to 5: a number's delivery verdict (healthy), its drain (none), the sticky
# side's deadline (none), so ``eligible`` equals ``may_keep`` and becomes ``kept``; the
# delivery windows (no row: empty) and the opt-outs (none).
_FROM_4 = (
    "ALTER TABLE numbers RENAME COLUMN eligible TO kept",
    "ALTER TABLE numbers ADD COLUMN delivery_healthy INTEGER NOT NULL DEFAULT 1",
    "ALTER TABLE numbers ADD COLUMN draining_since REAL",
    "ALTER TABLE numbers ADD COLUMN drain_grace REAL",
    "ALTER TABLE numbers ADD COLUMN deadline REAL",
    _WINDOWS,
    _OPTOUTS,
)


def open_schema(conn: sqlite3.Connection, path: str) -> None:
    """Create the schema in a new file, migrate one of version 1 to 4, refuse the others.

    Creating and migrating run in one ``BEGIN IMMEDIATE`` transaction, so that two
    processes opening one file at once do it once, and a crash leaves the file as it
    was. Raises :class:`~sticky.IncompatibleStore` naming ``path`` for a file newer
    than :data:`SCHEMA_VERSION` or not a sticky store, or one holding mappings version
    3 cannot (nothing is changed then). O(1), or O(n log n) to migrate.
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
        else:
            _migrate(conn, path, version)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _migrate(conn: sqlite3.Connection, path: str, version: int) -> None:
    """Migrate a file of ``version`` (1 to 4) in the caller's transaction, version by version."""
    if version < 3:  # 1 and 2 become 3 first
        for statement in (_FROM_1 if version == 1 else ()) + _FROM_2:
            conn.execute(statement)
        _check_migrated(conn, path, version)
        for statement in _DROP_2:
            conn.execute(statement)
    if version < 4:  # then 4
        for statement in _FROM_3:
            conn.execute(statement)
    for statement in _FROM_4:
        conn.execute(statement)


def _check_migrated(conn: sqlite3.Connection, path: str, version: int) -> None:
    """Raise IncompatibleStore if a mapping of the old tables was not copied."""
    lost = conn.execute(_UNMIGRATED).fetchone()[0]
    if lost:
        msg = (
            f"SQLite store {path!r}: {lost} mapping(s) of schema version {version}"
            " have a recipient that is not E.164 or a sender outside the pool"
        )
        raise IncompatibleStore(msg)


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
    if version not in {1, 2, 3, 4, SCHEMA_VERSION}:
        msg = f"SQLite store {path!r} has an unknown schema version {version}"
        raise IncompatibleStore(msg)
    return int(version)


_MAX_DIGITS = 10**15  # E.164 has at most 15 digits


def recipient_key(to: str) -> int:
    """The stored key of a recipient: its digits as an integer. O(1).

    ``+16465550001`` is 16465550001. One to one: ``"+"`` and the integer's digits give
    ``to`` back.

    Raises :class:`~sticky.InvalidNumber` for anything else than ``+`` and the digits of
    a positive integer of at most 15 digits (E.164 numbers are such).
    """
    try:
        digits = to[1:]
        n = int(digits)
        if to[0] == "+" and 0 < n < _MAX_DIGITS and str(n) == digits:
            return n
    except (TypeError, ValueError, IndexError):
        pass
    msg = f"invalid recipient {to!r}: expected E.164, '+' then 7 to 15 digits, the first 1-9"
    raise InvalidNumber(msg)


def recipient_of(key: int) -> str:
    """The recipient a stored key stands for: the inverse of :func:`recipient_key`."""
    return f"+{key}"


def window_text(window: Window) -> str:
    """A delivery window as the ``windows`` table stores it: JSON, ``[[b,d,f,s],...]``. O(1)."""
    return json.dumps(window, separators=(",", ":"))


def window_of(text: str | None) -> Window:
    """The window a ``buckets`` value stands for (None, no row: empty). O(1)."""
    if text is None:
        return ()
    return tuple((b, d, f, s) for b, d, f, s in json.loads(text))
