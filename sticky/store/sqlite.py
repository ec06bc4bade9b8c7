"""The SQLite store: durable on one host, shared by every process that opens the file.

Everything lives in one database file (Python's standard :mod:`sqlite3`, WAL mode,
``synchronous=NORMAL``), so a restart continues exactly where the process stopped and
the worker processes of a host agree on one sender per recipient. ``docs/sqlite.md``
has the schema, the transactions, durability and measured costs.

Schema (version 1 in ``PRAGMA user_version``; ``PRAGMA application_id`` marks the file):

- ``meta(name, value)``: the pool-version counter, and the evictions of profiles since
  deleted;
- ``profiles(key, id, settings, sticky, ttl, version, horizon, evicted)``: ``settings``
  is :meth:`PoolSettings.to_dict` as JSON; ``sticky`` and ``ttl`` are copies a select
  reads without decoding it;
- ``numbers(number, profile, type, healthy, eligible)``: the primary key on ``number``
  is the rule that a number belongs to one profile; ``eligible`` caches
  :func:`~sticky.policy.is_eligible` under the profile's settings;
- ``mappings(profile, recipient, sender, last_used, idx)``: the primary key
  ``(profile, recipient)`` is the look-up, the index ``(profile, sender, idx)`` the
  cascade (by its prefix; ``idx``, the time a mapping was stored, puts a new entry at
  the end of its sender's range, a page already being written, not a random one);
- ``queue(profile, pos, key, recipient)`` and ``late(profile, key, recipient, seq)``:
  the memory store's expiry index (a deque, and a sorted list for keys that arrive out
  of order) as tables, so that eviction takes the same steps in the same order; ``idx``
  is the key of a mapping's current entry, and entries of replaced or deleted
  mappings stay until popped, as there.

A sticky hit changes one page, because every page a commit changes is a WAL frame,
which costs here about as much as the rest of a hit:

- ``last_used`` is in no index: the expiry index holds a lower bound of it (``idx``),
  and eviction re-indexes a mapping it finds used since (at most once per ttl, paid
  for by the mapping's hits), as the memory store does.
- **Lagging horizon.** The protocol's horizon ``H`` (the latest ``now`` of any write on
  the profile) is not written by every hit. The stored ``horizon`` ``S`` is kept such
  that ``H == max(S, max(last_used))`` over the profile's rows (a write that does not
  record its ``now`` in ``S`` left it in the row it wrote; a row that is deleted or
  replaced folds its ``last_used`` into ``S``) and ``H <= S + SLACK`` (a write whose
  ``now`` is beyond ``S + SLACK`` records it). Liveness at ``max(now, H)`` is therefore
  decided exactly from ``S``, unless an expiry falls within the ``SLACK`` window above
  ``max(now, S)``; only then is ``max(last_used)`` read (an O(n) scan of the profile,
  in the same transaction). With a real clock, ``S`` is written at most once per
  ``SLACK`` second per profile; when writes are a second or more apart, ``S == H``.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qs, unquote

from sticky.errors import (
    IncompatibleStore,
    InvalidProfileId,
    InvalidSettings,
    NumberInUse,
    ProfileExists,
    StickyError,
    StoreUnavailable,
    UnknownNumber,
    UnknownProfile,
)
from sticky.numbers import NumberType, SenderNumber, is_e164
from sticky.policy import is_eligible
from sticky.settings import PoolSettings
from sticky.store.base import Decide, Draw, StoredMapping
from sticky.values import Reason, Selection

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SLACK", "SQLiteStore"]

SCHEMA_VERSION = 1
"""The schema this version writes (``PRAGMA user_version``); a newer file is refused."""
APPLICATION_ID = 0x53544B59
"""``PRAGMA application_id`` of a sticky store ("STKY")."""
SLACK = 0.001
"""Seconds the stored horizon may lag behind the true one (see the module docstring)."""

_STEP_EVICTIONS = 2
"""Dead mappings a write that stores a mapping removes, at most (as the memory store)."""
_STEP_LOOKS = 8
"""Eviction-index entries such a write looks at, at most (as the memory store)."""
_NEG_INF = -math.inf
_BACKOFF_FIRST = 50e-6
_BACKOFF_MAX = 1e-3
"""Waiting for another process's lock: sleeps from 50 us, doubling, to 1 ms."""

_SCHEMA = (
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
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

# What a select reads, in one statement: the profile, the mapping, its sender's flag.
_SELECT = (
    "SELECT p.key, p.version, p.sticky, p.ttl, p.horizon, p.settings,"
    " m.sender, m.last_used, n.eligible"
    " FROM profiles AS p"
    " LEFT JOIN mappings AS m ON m.profile = p.key AND m.recipient = ?"
    " LEFT JOIN numbers AS n ON n.number = m.sender AND n.profile = p.key"
    " WHERE p.id = ?"
)
_PROFILE = "SELECT key, settings, ttl, horizon FROM profiles WHERE id = ?"
_POOL = "SELECT number, type, healthy FROM numbers WHERE profile = ? ORDER BY number"
_REFRESH = "UPDATE mappings SET last_used = ? WHERE profile = ? AND recipient = ?"
_RECORD = "UPDATE profiles SET horizon = ? WHERE key = ?"
_RECORD_EVICTED = "UPDATE profiles SET horizon = ?, evicted = evicted + ? WHERE key = ?"
_PUT = (
    "INSERT OR REPLACE INTO mappings (profile, recipient, sender, last_used, idx)"
    " VALUES (?, ?, ?, ?, ?)"
)
_LAST_USED = "SELECT last_used FROM mappings WHERE profile = ? AND recipient = ?"
_DELETE = "DELETE FROM mappings WHERE profile = ? AND recipient = ?"
_MAX_USED = "SELECT max(last_used) FROM mappings WHERE profile = ?"
# INDEXED BY: without statistics the planner would scan the profile's primary-key
# range for "profile = ? AND sender = ?"; this way SQLite fails rather than scans.
_SENDER_USED = (
    "SELECT recipient, last_used FROM mappings INDEXED BY mappings_by_sender"
    " WHERE profile = ? AND sender = ?"
)
_SENDER_DELETE = (
    "DELETE FROM mappings INDEXED BY mappings_by_sender WHERE profile = ? AND sender = ?"
)
_MAPPED = "SELECT sender, last_used, idx FROM mappings WHERE profile = ? AND recipient = ?"
# The expiry index's tail (where a new key goes), head and whether a late key is due.
_INDEX_STATE = (
    "SELECT (SELECT pos FROM queue WHERE profile = ?1 ORDER BY pos DESC LIMIT 1),"
    " (SELECT key FROM queue WHERE profile = ?1 ORDER BY pos DESC LIMIT 1),"
    " (SELECT key FROM queue WHERE profile = ?1 ORDER BY pos LIMIT 1),"
    " EXISTS (SELECT 1 FROM late WHERE profile = ?1 AND key <= ?2)"
)
_QUEUE_ADD = "INSERT INTO queue (profile, pos, key, recipient) VALUES (?, ?, ?, ?)"
_LATE_ADD = (
    "INSERT INTO late (profile, key, recipient, seq) VALUES (?1, ?2, ?3,"
    " (SELECT coalesce(max(seq), 0) + 1 FROM late"
    " WHERE profile = ?1 AND key = ?2 AND recipient = ?3))"
)
_QUEUE_HEAD = "SELECT pos, key, recipient FROM queue WHERE profile = ? ORDER BY pos LIMIT ?"
_LATE_DUE = (
    "SELECT key, recipient, seq FROM late WHERE profile = ? AND key <= ?"
    " ORDER BY key, recipient, seq LIMIT ?"
)
_REKEY = "UPDATE mappings SET idx = last_used WHERE profile = ? AND recipient = ?"

_STICKY = Reason.STICKY
_REASON_POOL = Reason.POOL
_new = tuple.__new__  # builds a Selection (a named tuple) without its __new__ wrapper
_TYPES = {t.value: t for t in NumberType}

# Primary result codes (the low byte of an extended code).
_SQLITE_BUSY = 5
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26

_STORES: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()
_INHERITED: list[sqlite3.Connection] = []


def _after_fork_in_child() -> None:
    # A connection must not cross a fork: the child keeps the inherited one referenced
    # but unused (closing it could disturb the parent's locks) and opens its own.
    for store in list(_STORES):
        store._forked()  # noqa: SLF001 - the module's own hook


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _is_busy(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == _SQLITE_BUSY


def _key_bound(at: float, ttl: float) -> float:
    """The largest float ``k`` with ``k + ttl <= at`` in float arithmetic. O(1).

    Eviction selects ``key <= bound`` through an index; the bound is exact, so
    the range holds precisely the keys :func:`~sticky.policy.is_live` calls dead at ``at``.
    """
    if at == _NEG_INF:
        return _NEG_INF
    k = at - ttl
    while k + ttl > at:
        k = math.nextafter(k, _NEG_INF)
    while True:
        up = math.nextafter(k, math.inf)
        if up + ttl > at:
            return k
        k = up


class _Clock:
    """When a transaction judges liveness: ``max(now, H)``, found only if needed.

    ``lo = max(now, S)`` and ``hi = max(now, S + SLACK)`` bracket it; an expiry outside
    ``(lo, hi]`` is decided without it, else :meth:`exact` reads it once (O(n)).
    """

    __slots__ = ("_at", "cur", "hi", "key", "lo", "stored")

    def __init__(self, cur: sqlite3.Cursor, key: int, now: float, stored: float | None) -> None:
        self.cur = cur
        self.key = key
        self.stored = _NEG_INF if stored is None else stored
        self.lo = max(now, self.stored)
        self.hi = max(now, self.stored + SLACK)
        self._at: float | None = None

    def exact(self) -> float:
        """``max(now, H)`` with ``H = max(S, max(last_used))``. O(1), or O(n) once."""
        if self._at is None:
            if self.lo == self.hi:
                self._at = self.lo
            else:
                top = self.cur.execute(_MAX_USED, (self.key,)).fetchone()[0]
                self._at = self.lo if top is None else max(self.lo, top)
        return self._at

    def live(self, last_used: float, ttl: float) -> bool:
        """:func:`~sticky.policy.is_live` at ``max(now, H)``."""
        expiry = last_used + ttl
        if expiry <= self.lo:
            return False
        if expiry > self.hi:
            return True
        return self.exact() < expiry


class SQLiteStore:
    """Profiles, pools and mappings in one SQLite file; every method one transaction.

    ``path`` is a file (created with its schema on first open) or ``":memory:"``;
    ``timeout`` is how long, in seconds, a call waits for another process's lock before
    raising :class:`~sticky.StoreUnavailable`. A path that cannot be opened raises
    :class:`~sticky.StoreUnavailable`; a file that is not a sticky database, or one
    from a newer schema, :class:`~sticky.IncompatibleStore`; each names the path.

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
    ``select_atomic`` O(log n) in one ``BEGIN IMMEDIATE`` transaction, changing one
    page on a hit and three B-trees for a new mapping (its row, the cascade index, the
    expiry queue; plus at most two amortised evictions); ``remove_number``,
    ``recipients_of`` O(k log n); ``evict_expired`` O(P + k log n) for k due entries;
    ``delete_profile``, ``counts`` and ``check_invariants`` O(n); pool and settings
    changes O(p log n). A liveness test whose answer depends on writes within the last
    :data:`SLACK` second adds one O(n) scan (see the module docstring).
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 5.0) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            msg = f"invalid timeout {timeout!r}: expected seconds, a number >= 0"
            raise InvalidSettings(msg)
        if not (math.isfinite(timeout) and timeout >= 0):
            msg = f"invalid timeout {timeout!r}: expected seconds, a number >= 0"
            raise InvalidSettings(msg)
        self.path = os.fspath(path)
        self.timeout = float(timeout)
        self._lock = threading.Lock()
        self._closed = False
        self._settings: dict[str, PoolSettings] = {}
        self._pools: dict[int, tuple[int, tuple[SenderNumber, ...]]] = {}
        self._conn: sqlite3.Connection | None = None
        self._cur: sqlite3.Cursor | None = None
        self._connect()
        _STORES.add(self)

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        """Open ``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``sqlite://:memory:``.

        ``?timeout=seconds`` sets the lock timeout. Raises InvalidSettings for a URL of
        another shape, and what the constructor raises.
        """
        scheme, sep, rest = url.partition("://")
        if scheme.lower() != "sqlite" or not sep:
            msg = f"invalid SQLite URL {url!r}: expected sqlite:///path/to/file.db"
            raise InvalidSettings(msg)
        rest, _, query = rest.partition("?")
        if rest in {":memory:", "/:memory:"}:
            path = ":memory:"
        elif rest.startswith("/") and len(rest) > 1:
            path = unquote(rest[1:])  # sqlite:///a.db is "a.db"; sqlite:////a.db is "/a.db"
        else:
            msg = (
                f"invalid SQLite URL {url!r}: expected sqlite:///relative.db or sqlite:////abs.db"
            )
            raise InvalidSettings(msg)
        timeout = 5.0
        for name, values in parse_qs(query, keep_blank_values=True).items():
            if name != "timeout":
                msg = f"unknown option {name!r} in SQLite URL {url!r}: expected timeout"
                raise InvalidSettings(msg)
            try:
                timeout = float(values[-1])
            except ValueError:
                msg = f"invalid timeout {values[-1]!r} in SQLite URL {url!r}"
                raise InvalidSettings(msg) from None
        return cls(path, timeout=timeout)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- connection -----------------------------------------------------------------
    def _connect(self) -> sqlite3.Cursor:
        """Open the connection, set the pragmas, create or check the schema."""
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.timeout,  # SQLite's busy handler, while opening only
                isolation_level=None,  # explicit BEGIN/COMMIT/ROLLBACK only
                check_same_thread=False,  # guarded by self._lock instead
                cached_statements=64,
            )
        except sqlite3.Error as exc:
            raise self._error(exc, "cannot open") from exc
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(conn)
            # From here lock waits are ours (_begin): SQLite's handler sleeps >= 1 ms.
            conn.execute("PRAGMA busy_timeout = 0")
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc, "cannot open") from exc
            raise
        self._conn = conn
        self._cur = conn.cursor()
        return self._cur

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Create the schema in a new file; refuse a newer or a foreign one."""
        if self._check_header(conn) == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")  # another process may be creating it too
        try:
            if self._check_header(conn) == 0:
                for statement in _SCHEMA:
                    conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _check_header(self, conn: sqlite3.Connection) -> int:
        """The file's schema version: 0 for an empty file. Raises IncompatibleStore."""
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        app = conn.execute("PRAGMA application_id").fetchone()[0]
        if version == 0 and app == 0:
            if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                msg = f"SQLite file {self.path!r} is not a sticky store: it holds other tables"
                raise IncompatibleStore(msg)
            return 0
        if app != APPLICATION_ID:
            msg = f"SQLite file {self.path!r} is not a sticky store (application_id {app:#x})"
            raise IncompatibleStore(msg)
        if version > SCHEMA_VERSION:
            msg = (
                f"SQLite store {self.path!r} has schema version {version}, newer than the"
                f" {SCHEMA_VERSION} this version of sticky reads: upgrade sticky to open it"
            )
            raise IncompatibleStore(msg)
        if version != SCHEMA_VERSION:
            msg = f"SQLite store {self.path!r} has an unknown schema version {version}"
            raise IncompatibleStore(msg)
        return int(version)

    def _forked(self) -> None:
        """In a child after fork(): never touch the parent's connection again."""
        self._lock = threading.Lock()
        if self._conn is not None:
            _INHERITED.append(self._conn)
        self._conn = self._cur = None

    def _cursor(self) -> sqlite3.Cursor:
        """The cursor (lock held), reconnecting after a fork. Raises when closed."""
        if self._cur is not None:
            return self._cur
        if self._closed:
            msg = f"SQLite store {self.path!r} is closed"
            raise StoreUnavailable(msg)
        return self._connect()

    def _begin(self, cur: sqlite3.Cursor, begin: str) -> None:
        """BEGIN, waiting with a short backoff while another process holds the lock."""
        try:
            cur.execute(begin)
            if begin == "BEGIN":
                cur.execute("PRAGMA schema_version")  # take the read lock here, not later
            return  # noqa: TRY300 - the common case, kept apart from the waiting below
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
            error = exc
        deadline = time.monotonic() + self.timeout
        delay = _BACKOFF_FIRST
        while True:
            if cur.connection.in_transaction:
                cur.execute("ROLLBACK")
            if time.monotonic() >= deadline:
                msg = f"SQLite store {self.path!r}: still locked after {self.timeout} s"
                raise StoreUnavailable(msg) from error
            time.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX)
            try:
                cur.execute(begin)
                if begin == "BEGIN":
                    cur.execute("PRAGMA schema_version")
                return  # noqa: TRY300
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                error = exc

    def _error(self, exc: BaseException, doing: str = "failed") -> StickyError:
        """The library error for a sqlite3 error: the file is wrong, or unreachable."""
        if isinstance(exc, StickyError):
            return exc
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in {_SQLITE_CORRUPT, _SQLITE_NOTADB}:
            return IncompatibleStore(f"SQLite store {self.path!r} is not a sticky database: {exc}")
        if isinstance(exc, UnicodeEncodeError):
            return InvalidProfileId(f"invalid profile id: not storable as UTF-8 ({exc})")
        return StoreUnavailable(f"SQLite store {self.path!r}: {doing}: {exc}")

    def _abort(self, cur: sqlite3.Cursor | None, exc: BaseException) -> BaseException:
        """Roll back after ``exc``; return what to raise (a library error, or ``exc``)."""
        if cur is not None:
            try:
                if cur.connection.in_transaction:
                    cur.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the connection is broken: SQLite rolls back what it did not commit
        if isinstance(exc, (sqlite3.Error, UnicodeEncodeError)):
            return self._error(exc)
        return exc

    def _write(self) -> _Transaction:
        return _Transaction(self, "BEGIN IMMEDIATE")

    def _read(self) -> _Transaction:
        return _Transaction(self, "BEGIN")

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
    def _profile(cur: sqlite3.Cursor, profile_id: str) -> tuple[int, str, float, float | None]:
        row = cur.execute(_PROFILE, (profile_id,)).fetchone()
        if row is None:
            msg = f"unknown profile {profile_id!r}"
            raise UnknownProfile(msg)
        return row  # type: ignore[no-any-return]

    @staticmethod
    def _next_version(cur: sqlite3.Cursor) -> int:
        cur.execute("UPDATE meta SET value = value + 1 WHERE name = 'version'")
        return int(cur.execute("SELECT value FROM meta WHERE name = 'version'").fetchone()[0])

    @staticmethod
    def _pool(cur: sqlite3.Cursor, key: int) -> tuple[SenderNumber, ...]:
        types = _TYPES
        return tuple(
            SenderNumber(number, types[kind], bool(healthy))
            for number, kind, healthy in cur.execute(_POOL, (key,)).fetchall()
        )

    @staticmethod
    def _in_pool(cur: sqlite3.Cursor, key: int, profile_id: str, number: str) -> None:
        found = cur.execute(
            "SELECT 1 FROM numbers WHERE number = ? AND profile = ?", (number, key)
        ).fetchone()
        if found is None:
            msg = f"number {number!r} is not in profile {profile_id!r}"
            raise UnknownNumber(msg)

    @staticmethod
    def _set_eligibility(cur: sqlite3.Cursor, key: int, settings: PoolSettings) -> None:
        rows = cur.execute(
            "SELECT number, type, healthy, eligible FROM numbers WHERE profile = ?", (key,)
        ).fetchall()
        changes = []
        for number, kind, healthy, eligible in rows:
            flag = is_eligible(SenderNumber(number, _TYPES[kind], bool(healthy)), settings)
            if flag != bool(eligible):
                changes.append((int(flag), number))
        cur.executemany("UPDATE numbers SET eligible = ? WHERE number = ?", changes)

    @staticmethod
    def _index(cur: sqlite3.Cursor, key: int, to: str, now: float, ttl: float, at: float) -> bool:
        """Add ``(now, to)`` to the expiry index as MemoryStore._put does. O(log n).

        The queue's tail when keys arrive in order, else ``late``. Returns whether
        anything in the index is due at ``at`` (then an eviction step has work).
        """
        tail_pos, tail_key, head_key, late_due = cur.execute(
            _INDEX_STATE, (key, _key_bound(at, ttl))
        ).fetchone()
        if tail_key is None or tail_key <= now:
            cur.execute(_QUEUE_ADD, (key, (tail_pos or 0) + 1, now, to))
            if head_key is None:
                head_key = now
        else:
            cur.execute(_LATE_ADD, (key, now, to))
            late_due = late_due or at >= now + ttl
        return bool(late_due) or (head_key is not None and at >= head_key + ttl)

    @staticmethod
    def _evict_step(cur: sqlite3.Cursor, key: int, ttl: float, at: float) -> int:
        """MemoryStore._evict(p, at, 2, 8): up to two dead mappings, eight index entries.

        The same entries in the same order: the queue's head unless the late head has a
        smaller key (late entries in ``(key, to)`` order); an entry whose mapping was
        replaced or deleted (stale) counts as looked at. Returns how many mappings it
        removed. O(log n).
        """
        queue = cur.execute(_QUEUE_HEAD, (key, _STEP_LOOKS)).fetchall()
        late = cur.execute(_LATE_DUE, (key, _key_bound(at, ttl), _STEP_LOOKS)).fetchall()
        i = j = removed = looked = 0
        while removed < _STEP_EVICTIONS and looked < _STEP_LOOKS:
            if i < len(queue) and (j >= len(late) or queue[i][1] <= late[j][0]):
                pos, k, to = queue[i]
                if at < k + ttl:
                    break
                i += 1
                cur.execute("DELETE FROM queue WHERE profile = ? AND pos = ?", (key, pos))
            elif j < len(late):  # due: selected so
                k, to, seq = late[j]
                j += 1
                cur.execute(
                    "DELETE FROM late WHERE profile = ? AND key = ? AND recipient = ? AND seq = ?",
                    (key, k, to, seq),
                )
            else:
                break
            looked += 1
            row = cur.execute(_MAPPED, (key, to)).fetchone()
            if row is None or row[2] != k:
                continue  # the mapping it indexed was replaced or deleted
            if at < row[1] + ttl:  # used since it was indexed: index it by its last use
                cur.execute(_REKEY, (key, to))
                cur.execute(_LATE_ADD, (key, row[1], to))
            else:
                cur.execute(_DELETE, (key, to))
                removed += 1
        return removed

    @staticmethod
    def _due(
        cur: sqlite3.Cursor, key: int, ttl: float, at: float
    ) -> tuple[list[tuple[int, float, str]], list[tuple[float, str]]]:
        """The queue's and late's entries due at ``at``. O(k log n) for k of them.

        The queue's due entries are a prefix (its keys never decrease): it is read up to
        the first key not due.
        """
        bound = _key_bound(at, ttl)
        queue: list[tuple[int, float, str]] = []
        for pos, k, to in cur.connection.execute(
            "SELECT pos, key, recipient FROM queue WHERE profile = ? ORDER BY pos", (key,)
        ):
            if k > bound:
                break
            queue.append((pos, k, to))
        late = cur.execute(
            "SELECT key, recipient FROM late WHERE profile = ? AND key <= ?", (key, bound)
        ).fetchall()
        return queue, late

    def _evict_all(self, cur: sqlite3.Cursor, key: int, ttl: float, clock: _Clock) -> int:
        """MemoryStore._evict(p, at, inf, inf) at the clock's exact time. O(k log n).

        Every due entry of the index goes; of the mappings they index, the dead are
        deleted and the live re-indexed by their last use.
        """
        queue, late = self._due(cur, key, ttl, clock.hi)  # due at the latest it may be
        if not queue and not late:
            return 0
        reach = _key_bound(clock.hi, ttl)
        rows: dict[str, tuple[float, float]] = {}  # the mappings whose entry may be due
        for to in {to for _, _, to in queue} | {to for _, to in late}:
            row = cur.execute(_MAPPED, (key, to)).fetchone()
            if row is not None and row[2] <= reach:
                rows[to] = (row[1], row[2])
        at = clock.lo
        if clock.lo < clock.hi:  # the exact time only if an expiry falls in the slack
            expiries = [k + ttl for _, k, _ in queue] + [k + ttl for k, _ in late]
            expiries += [last_used + ttl for last_used, _ in rows.values()]
            if any(clock.lo < e <= clock.hi for e in expiries):
                at = clock.exact()
        bound = _key_bound(at, ttl)
        due_pos = [pos for pos, k, _ in queue if k <= bound]
        if due_pos:
            cur.execute("DELETE FROM queue WHERE profile = ? AND pos <= ?", (key, due_pos[-1]))
        cur.execute("DELETE FROM late WHERE profile = ? AND key <= ?", (key, bound))
        # A mapping whose current entry (key idx) is due is decided; the other due
        # entries of a recipient were stale.
        decided = [(to, lu) for to, (lu, idx) in rows.items() if idx <= bound]
        dead = [(key, to) for to, lu in decided if not at < lu + ttl]
        rekey = [(to, lu) for to, lu in decided if at < lu + ttl]
        cur.executemany(_DELETE, dead)
        cur.executemany(_REKEY, [(key, to) for to, _ in rekey])
        cur.executemany(_LATE_ADD, [(key, lu, to) for to, lu in rekey])
        return len(dead)

    def _store_mapping(
        self,
        cur: sqlite3.Cursor,
        key: int,
        to: str,
        sender: str,
        now: float,
        ttl: float,
        stored: float | None,
        replaced: float | None,
    ) -> None:
        """MemoryStore._store_choice: store ``(sender, now)``, index it, take a step.

        ``stored`` is the profile's stored horizon, ``replaced`` the ``last_used`` of
        the row this one replaces (None if none). The step runs at ``max(now, S)``,
        which is the exact ``max(now, H)`` unless writes interleave within SLACK; then
        it evicts only what is surely dead (eviction timing, which SEMANTICS.md allows
        to differ, is all that can).
        """
        horizon = _NEG_INF if stored is None else stored
        new = horizon
        if now > horizon + SLACK:
            new = now
        if replaced is not None and replaced > now and replaced > new:
            new = replaced  # the replaced row may carry the horizon: keep it
        at = max(now, new)
        cur.execute(_PUT, (key, to, sender, now, now))
        removed = 0
        if self._index(cur, key, to, now, ttl, at):
            removed = self._evict_step(cur, key, ttl, at)
        if removed:
            cur.execute(_RECORD_EVICTED, (new, removed, key))
        elif new != horizon:
            cur.execute(_RECORD, (new, key))

    # -- profiles -------------------------------------------------------------------
    def create_profile(self, profile_id: str, settings: PoolSettings) -> None:
        """Create an empty profile. One write transaction, O(log P)."""
        with self._write() as cur:
            if cur.execute("SELECT 1 FROM profiles WHERE id = ?", (profile_id,)).fetchone():
                msg = f"profile {profile_id!r} already exists"
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
            key, _, ttl, stored = self._profile(cur, profile_id)
            at = _Clock(cur, key, now, stored).exact()
            live = cur.execute(
                "SELECT count(*) FROM mappings WHERE profile = ? AND ? < last_used + ?",
                (key, at, ttl),
            ).fetchone()[0]
            for table in ("mappings", "queue", "late", "numbers"):
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
            key, text, ttl, stored = self._profile(cur, profile_id)
            if self._decode(text) != old:
                return False
            if new.ttl > ttl:  # so that no dead mapping comes back to life
                removed = self._evict_all(cur, key, ttl, _Clock(cur, key, _NEG_INF, stored))
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
        """Add a number to a pool. One write transaction, O(log n)."""
        with self._write() as cur:
            key, text, _, _ = self._profile(cur, profile_id)
            owner = cur.execute(
                "SELECT p.id FROM numbers AS n JOIN profiles AS p ON p.key = n.profile"
                " WHERE n.number = ?",
                (number,),
            ).fetchone()
            if owner is not None:
                msg = f"number {number!r} is already in profile {owner[0]!r}"
                raise NumberInUse(msg)
            eligible = is_eligible(SenderNumber(number, number_type, healthy), self._decode(text))
            cur.execute(
                "INSERT INTO numbers (number, profile, type, healthy, eligible)"
                " VALUES (?, ?, ?, ?, ?)",
                (number, key, number_type.value, int(healthy), int(eligible)),
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
            key, _, ttl, stored = self._profile(cur, profile_id)
            self._in_pool(cur, key, profile_id, number)
            clock = _Clock(cur, key, now, stored)
            used = [row[1] for row in cur.execute(_SENDER_USED, (key, number))]
            live = sum(1 for last_used in used if clock.live(last_used, ttl))
            cur.execute(_SENDER_DELETE, (key, number))
            cur.execute("DELETE FROM numbers WHERE number = ?", (number,))
            horizon = max([clock.lo, *used])  # the deleted rows' last uses fold into S
            cur.execute(
                "UPDATE profiles SET horizon = ?, version = ? WHERE key = ?",
                (horizon, self._next_version(cur), key),
            )
            return live

    def set_health(self, number: str, *, healthy: bool) -> None:
        """Set a pooled number's health. One write transaction, O(log n)."""
        with self._write() as cur:
            row = cur.execute(
                "SELECT n.profile, n.type, n.healthy, p.settings FROM numbers AS n"
                " JOIN profiles AS p ON p.key = n.profile WHERE n.number = ?",
                (number,),
            ).fetchone()
            if row is None:
                msg = f"number {number!r} is in no profile"
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
            return self._pool(cur, self._profile(cur, profile_id)[0])

    # -- selection ------------------------------------------------------------------
    def _hit(
        self, cur: sqlite3.Cursor, profile_id: str, to: str, now: float
    ) -> Selection | tuple[Any, ...]:
        """Read a select's row; refresh and return a sticky hit, else return the row.

        The row is ``(key, version, sticky, ttl, stored, settings, sender, last_used,
        live)``. A hit changes one page (and the stored horizon at most once per SLACK
        second). O(log n).
        """
        row = cur.execute(_SELECT, (to, profile_id)).fetchone()
        if row is None:
            msg = f"unknown profile {profile_id!r}"
            raise UnknownProfile(msg)
        key, version, sticky, ttl, stored, text, sender, last_used, eligible = row
        live = False
        if sticky and sender is not None:
            # _Clock.live, inlined for the hot path.
            horizon = _NEG_INF if stored is None else stored
            expiry = last_used + ttl
            if now >= expiry or horizon >= expiry:
                live = False
            elif horizon + SLACK < expiry:
                live = True
            else:
                live = _Clock(cur, key, now, stored).exact() < expiry
            if live and eligible:
                if now > last_used:
                    cur.execute(_REFRESH, (now, key, to))
                    if now > horizon + SLACK:
                        cur.execute(_RECORD, (now, key))
                return _new(Selection, (profile_id, to, sender, _STICKY, None))
        return key, version, sticky, ttl, stored, text, sender, last_used, live

    def _draw(self, cur: sqlite3.Cursor, row: tuple[Any, ...], known_version: int) -> Draw:
        """The Draw of a select that was not a hit; the pool unless ``known_version``."""
        key, version, sticky, _, _, text, sender, last_used, live = row
        previous = (sender, last_used) if sticky and sender is not None else None
        if known_version == version:
            pool = None
        else:
            # Versions are unique per committed pool state: a cached pool is exact.
            cached = self._pools.get(key)
            if cached is not None and cached[0] == version:
                pool = cached[1]
            else:
                pool = self._pool(cur, key)
                self._pools[key] = (version, pool)
        return Draw(self._decode(text), version, pool, previous, live)

    def select_atomic(self, profile_id: str, to: str, now: float, decide: Decide) -> Selection:
        """A whole select in one ``BEGIN IMMEDIATE`` transaction. O(log n).

        A hit changes one page. Otherwise ``decide`` chooses inside the transaction
        (the pool comes from a per-version cache) and its choice is stored, with at most
        two amortised evictions; if ``decide`` raises, nothing is written. The engine's
        hot path: the transaction is written out here rather than taken from
        :meth:`_write`, whose context manager costs a measurable share of a hit.
        """
        with self._lock:
            cur = self._cur or self._cursor()
            try:
                self._begin(cur, "BEGIN IMMEDIATE")
                row = self._hit(cur, profile_id, to, now)
                if row.__class__ is Selection:
                    cur.execute("COMMIT")
                    return row
                sel = decide(profile_id, to, self._draw(cur, row, -1))
                if sel.reason is not _REASON_POOL:
                    key, _, _, ttl, stored, _, sender, last_used, _ = row
                    replaced = None if sender is None else last_used
                    self._store_mapping(cur, key, to, sel.from_number, now, ttl, stored, replaced)
                cur.execute("COMMIT")
            except BaseException as exc:
                error = self._abort(cur, exc)
                if error is exc:
                    raise
                raise error from exc
            return sel

    def begin_select(
        self, profile_id: str, to: str, now: float, known_version: int
    ) -> Selection | Draw:
        """A sticky hit (refreshed) or what a fresh choice needs. O(log n).

        One ``BEGIN IMMEDIATE`` transaction; only a hit writes (one page).
        """
        with self._write() as cur:
            row = self._hit(cur, profile_id, to, now)
            return row if row.__class__ is Selection else self._draw(cur, row, known_version)

    def commit_select(
        self,
        profile_id: str,
        to: str,
        chosen: str,
        previous: StoredMapping | None,
        live: bool,  # noqa: FBT001 - the protocol's order
        version: int,
        now: float,
    ) -> Selection | Literal[True] | None:
        """Compare-and-set of a fresh choice in one ``BEGIN IMMEDIATE`` transaction.

        O(log n), plus at most two amortised evictions.
        """
        with self._write() as cur:
            return self._commit_one(cur, profile_id, to, chosen, previous, live, version, now)

    def _commit_one(
        self,
        cur: sqlite3.Cursor,
        profile_id: str,
        to: str,
        chosen: str,
        previous: StoredMapping | None,
        live: bool,  # noqa: FBT001 - the protocol's order
        version: int,
        now: float,
    ) -> Selection | Literal[True] | None:
        row = cur.execute(_SELECT, (to, profile_id)).fetchone()
        if row is None:
            msg = f"unknown profile {profile_id!r}"
            raise UnknownProfile(msg)
        key, current_version, sticky, ttl, stored, _, sender, last_used, eligible = row
        if sender is None:
            current, current_live = None, False
        else:
            current = (sender, last_used)
            current_live = _Clock(cur, key, now, stored).live(last_used, ttl)
        # A dead previous mapping that was evicted since the read is no change.
        unchanged = current == previous or (current is None and not live)
        if unchanged and current_live == live and current_version == version:
            self._store_mapping(cur, key, to, chosen, now, ttl, stored, last_used)
            return True
        if current_live and sticky and eligible:
            # Another select stored a live mapping first: honour and refresh it.
            if now > last_used:
                cur.execute(_REFRESH, (now, key, to))
                if now > (_NEG_INF if stored is None else stored) + SLACK:
                    cur.execute(_RECORD, (now, key))
            return _new(Selection, (profile_id, to, sender, _STICKY, None))
        return None

    def begin_select_many(
        self, profile_id: str, recipients: Sequence[str], now: float, known_version: int
    ) -> list[Selection | Draw]:
        """:meth:`begin_select` for each recipient, all in one write transaction."""
        out: list[Selection | Draw] = []
        with self._write() as cur:
            for to in recipients:
                row = self._hit(cur, profile_id, to, now)
                if row.__class__ is Selection:
                    out.append(row)
                    continue
                draw = self._draw(cur, row, known_version)
                if draw.pool is not None:  # one transaction, one version: send it once
                    known_version = draw.version
                out.append(draw)
        return out

    def commit_select_many(
        self,
        profile_id: str,
        entries: Sequence[tuple[str, str, StoredMapping | None, bool, int]],
        now: float,
    ) -> list[Selection | Literal[True] | None]:
        """:meth:`commit_select` for each entry, all in one write transaction."""
        with self._write() as cur:
            return [
                self._commit_one(cur, profile_id, to, chosen, previous, live, version, now)
                for to, chosen, previous, live, version in entries
            ]

    # -- inspection and override ----------------------------------------------------
    def mapping(self, profile_id: str, to: str, now: float) -> tuple[str, float, float] | None:
        """The live mapping of ``to`` as ``(from_number, last_used, ttl)``. One read, O(log n)."""
        with self._read() as cur:
            key, _, ttl, stored = self._profile(cur, profile_id)
            row = cur.execute(
                "SELECT sender, last_used FROM mappings WHERE profile = ? AND recipient = ?",
                (key, to),
            ).fetchone()
            if row is None or not _Clock(cur, key, now, stored).live(row[1], ttl):
                return None
            return row[0], row[1], ttl

    def recipients_of(self, profile_id: str, number: str, now: float) -> list[str]:
        """Recipients with a live mapping to ``number``, sorted. One read, O(k log n)."""
        with self._read() as cur:
            key, _, ttl, stored = self._profile(cur, profile_id)
            rows = cur.execute(_SENDER_USED, (key, number)).fetchall()
            clock = _Clock(cur, key, now, stored)
            return sorted(to for to, last_used in rows if clock.live(last_used, ttl))

    def pin(self, profile_id: str, to: str, number: str, now: float) -> PoolSettings:
        """Map ``to`` to ``number`` as used at ``now``. One write transaction, O(log n)."""
        with self._write() as cur:
            key, text, ttl, stored = self._profile(cur, profile_id)
            self._in_pool(cur, key, profile_id, number)
            row = cur.execute(_LAST_USED, (key, to)).fetchone()
            replaced = None if row is None else row[0]
            self._store_mapping(cur, key, to, number, now, ttl, stored, replaced)
            return self._decode(text)

    def forget(self, profile_id: str, to: str, now: float) -> bool:
        """Delete the mapping of ``to``; return whether it was live. O(log n)."""
        with self._write() as cur:
            key, _, ttl, stored = self._profile(cur, profile_id)
            clock = _Clock(cur, key, now, stored)
            row = cur.execute(_LAST_USED, (key, to)).fetchone()
            horizon = clock.lo
            live = False
            if row is not None:
                live = clock.live(row[0], ttl)
                horizon = max(horizon, row[0])  # the deleted row's last use folds into S
                cur.execute(_DELETE, (key, to))
            if horizon != clock.stored:
                cur.execute(_RECORD, (horizon, key))
            return live

    # -- housekeeping ---------------------------------------------------------------
    def evict_expired(self, now: float) -> int:
        """Remove every dead mapping; return how many. One write transaction.

        O(P + k log n) for k due entries of the expiry index.
        """
        total = 0
        with self._write() as cur:
            for key, ttl, stored in cur.execute(
                "SELECT key, ttl, horizon FROM profiles"
            ).fetchall():
                clock = _Clock(cur, key, now, stored)
                removed = self._evict_all(cur, key, ttl, clock)
                if removed or clock.lo != clock.stored:
                    cur.execute(_RECORD_EVICTED, (clock.lo, removed, key))
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

        ``PRAGMA integrity_check`` (pages, and indexes against their tables); no
        mapping to a number outside its profile's pool; one profile per number; rows
        well-formed; the ``eligible`` flags, settings copies, versions and horizons.
        """
        with self._read() as cur:
            for (result,) in cur.execute("PRAGMA integrity_check").fetchall():
                assert result == "ok", f"integrity_check: {result}"
            self._check_rows(cur)

    def _check_rows(self, cur: sqlite3.Cursor) -> None:
        def one(sql: str, *args: object) -> int:
            return int(cur.execute(sql, args).fetchone()[0])

        assert one("SELECT count(*) FROM meta") == 2, "meta rows"
        top = one("SELECT value FROM meta WHERE name = 'version'")
        assert one("SELECT value FROM meta WHERE name = 'evicted'") >= 0, "evicted < 0"
        versions: set[int] = set()
        for key, pid, text, sticky, ttl, version, stored, evicted in cur.execute(
            "SELECT key, id, settings, sticky, ttl, version, horizon, evicted FROM profiles"
        ).fetchall():
            settings = self._decode(text)
            assert (bool(sticky), ttl) == (settings.sticky_sender, settings.ttl), f"{pid}: copies"
            assert 0 < version <= top, f"{pid}: version {version} (counter {top})"
            assert version not in versions, f"{pid}: version {version} is not unique"
            versions.add(version)
            assert evicted >= 0, f"{pid}: evicted {evicted}"
            for n in self._pool(cur, key):
                flag = one("SELECT eligible FROM numbers WHERE number = ?", n.number)
                assert bool(flag) == is_eligible(n, settings), f"{pid}: {n.number} eligible flag"
            top_used = cur.execute(_MAX_USED, (key,)).fetchone()[0]
            if top_used is not None:
                assert stored is not None, f"{pid}: mappings but no stored horizon"
                assert top_used <= stored + SLACK, f"{pid}: a last use beyond the horizon's slack"
        orphans = one(
            "SELECT count(*) FROM mappings AS m LEFT JOIN numbers AS n"
            " ON n.number = m.sender AND n.profile = m.profile WHERE n.number IS NULL"
        )
        assert orphans == 0, f"{orphans} mapping(s) to a number outside its profile's pool"
        assert (
            one("SELECT count(*) FROM numbers WHERE profile NOT IN (SELECT key FROM profiles)")
            == 0
        ), "a number owned by no profile"
        bad = cur.execute(
            "SELECT profile, recipient, sender, last_used, idx FROM mappings"
            " WHERE typeof(last_used) != 'real' OR typeof(idx) != 'real'"
            " OR idx > last_used OR typeof(sender) != 'text'"
            " OR typeof(recipient) != 'text' OR typeof(profile) != 'integer' LIMIT 1"
        ).fetchone()
        assert bad is None, f"a malformed mapping row: {bad}"
        # The expiry index, as MemoryStore's: each mapping's entry is in it, the
        # queue's keys never decrease, nothing belongs to a deleted profile.
        unindexed = cur.execute(
            "SELECT profile, recipient, idx FROM mappings AS m WHERE NOT EXISTS"
            " (SELECT 1 FROM queue AS q WHERE q.profile = m.profile AND q.pos >= 0"
            " AND q.recipient = m.recipient AND q.key = m.idx)"
            " AND NOT EXISTS (SELECT 1 FROM late AS l WHERE l.profile = m.profile"
            " AND l.key = m.idx AND l.recipient = m.recipient) LIMIT 1"
        ).fetchone()
        assert unindexed is None, f"a mapping missing from the expiry index: {unindexed}"
        backwards = cur.execute(
            "SELECT a.profile, a.pos FROM queue AS a JOIN queue AS b"
            " ON b.profile = a.profile AND b.pos = a.pos + 1 WHERE b.key < a.key LIMIT 1"
        ).fetchone()
        assert backwards is None, f"queue keys decrease at {backwards}"
        for table in ("mappings", "queue", "late"):
            strays = one(
                f"SELECT count(*) FROM {table}"  # noqa: S608 - the table names above
                " WHERE profile NOT IN (SELECT key FROM profiles)"
            )
            assert strays == 0, f"{strays} {table} row(s) of no profile"
        gaps = one(
            "SELECT count(*) FROM (SELECT profile FROM queue GROUP BY profile"
            " HAVING max(pos) - min(pos) + 1 != count(*))"
        )
        assert gaps == 0, "the queue has a gap (it only ever loses its head)"
        for to, sender, last_used in cur.execute(
            "SELECT recipient, sender, last_used FROM mappings"
        ):
            assert is_e164(to), f"recipient {to!r} is not E.164"
            assert is_e164(sender), f"sender {sender!r} is not E.164"
            assert math.isfinite(last_used), f"{to}: last_used {last_used!r}"

    def close(self) -> None:
        """Close the connection (the last one to close checkpoints the WAL). Idempotent."""
        with self._lock:
            self._closed = True
            conn, self._conn, self._cur = self._conn, None, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error as exc:
                raise self._error(exc, "close") from exc


class _Transaction:
    """``with store._write() as cur``: the lock, BEGIN, then COMMIT or ROLLBACK.

    Errors of :mod:`sqlite3` leave as the library's typed errors, and nothing stays
    half-written (SQLite rolls back what was not committed, even in a killed process).
    """

    __slots__ = ("begin", "cur", "store")

    def __init__(self, store: SQLiteStore, begin: str) -> None:
        self.store = store
        self.begin = begin
        self.cur: sqlite3.Cursor | None = None

    def __enter__(self) -> sqlite3.Cursor:
        store = self.store
        store._lock.acquire()  # noqa: SLF001 - the store's own helper
        try:
            self.cur = store._cursor()  # noqa: SLF001
            store._begin(self.cur, self.begin)  # noqa: SLF001
        except BaseException as exc:
            error = store._abort(self.cur, exc)  # noqa: SLF001
            store._lock.release()  # noqa: SLF001
            if error is exc:
                raise
            raise error from exc
        return self.cur

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        store = self.store
        try:
            if exc is None:
                try:
                    self.cur.execute("COMMIT")  # type: ignore[union-attr]
                except BaseException as failure:
                    error = store._abort(self.cur, failure)  # noqa: SLF001
                    if error is failure:
                        raise
                    raise error from failure
                return
            error = store._abort(self.cur, exc)  # noqa: SLF001
            if error is not exc:
                raise error from exc
        finally:
            store._lock.release()  # noqa: SLF001
