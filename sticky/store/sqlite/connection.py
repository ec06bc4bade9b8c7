"""The SQLite store's plumbing: one connection, its pragmas, transactions and errors.

:class:`Connection` opens the file (WAL, ``synchronous=NORMAL``), has the schema
created or migrated (:mod:`sticky.store.sqlite.schema`), hands a cursor to one thread
at a time under a lock, takes ``BEGIN`` with a short backoff while another process
holds the write lock, reconnects in a child after ``fork()``, and turns every
:mod:`sqlite3` error into the library's typed errors. It knows nothing of mappings:
the store's operations are in :mod:`sticky.store.sqlite.store`. It also reads the
store's URLs (:func:`parse_url`).
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
import weakref
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs, unquote

from sticky.errors import (
    IncompatibleStore,
    InvalidProfileId,
    InvalidSettings,
    StickyError,
    StoreUnavailable,
)
from sticky.store.sqlite.schema import open_schema

__all__ = ["Connection", "Transaction", "parse_url"]

_log = logging.getLogger("sticky.store.sqlite")

_BACKOFF_FIRST = 50e-6
_BACKOFF_MAX = 1e-3
"""Waiting for another process's lock: sleeps from 50 us, doubling, to 1 ms."""

# Primary result codes (the low byte of an extended code).
_SQLITE_BUSY = 5
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26

_OPEN: weakref.WeakSet[Connection] = weakref.WeakSet()
_INHERITED: list[sqlite3.Connection] = []


def _after_fork_in_child() -> None:
    # A connection must not cross a fork: the child keeps the inherited one referenced
    # but unused (closing it could disturb the parent's locks) and opens its own.
    for conn in list(_OPEN):
        conn._forked()  # noqa: SLF001 - the module's own hook


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def parse_url(url: str) -> tuple[str, float]:
    """``(path, timeout)`` of ``sqlite:///relative.db``, ``sqlite:////abs.db``, ``sqlite://:memory:``.

    ``?timeout=seconds`` sets the lock timeout (default 5). Raises InvalidSettings for
    a URL of another shape.
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
        msg = f"invalid SQLite URL {url!r}: expected sqlite:///relative.db or sqlite:////abs.db"
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
    return path, timeout


def _is_busy(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == _SQLITE_BUSY


class Connection:
    """One SQLite connection behind a lock, opened on a path with the store's schema.

    ``path`` is a file (created with its schema on first open) or ``":memory:"``;
    ``timeout`` is how long, in seconds, a transaction waits for another process's lock
    before raising :class:`~sticky.StoreUnavailable`.
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
        self._conn: sqlite3.Connection | None = None
        self._cur: sqlite3.Cursor | None = None
        self._connect()
        _OPEN.add(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _connect(self) -> sqlite3.Cursor:
        """Open the connection, set the pragmas, create or migrate the schema."""
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
            open_schema(conn, self.path)
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
        error = StoreUnavailable(f"SQLite store {self.path!r}: {doing}: {exc}")
        _log.warning("%s", error, extra={"store": "sqlite", "fault": type(exc).__name__})
        return error

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

    def _write(self) -> Transaction:
        return Transaction(self, "BEGIN IMMEDIATE")

    def _read(self) -> Transaction:
        return Transaction(self, "BEGIN")

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


class Transaction:
    """``with connection._write() as cur``: the lock, BEGIN, then COMMIT or ROLLBACK.

    Errors of :mod:`sqlite3` leave as the library's typed errors, and nothing stays
    half-written (SQLite rolls back what was not committed, even in a killed process).
    """

    __slots__ = ("begin", "conn", "cur")

    def __init__(self, conn: Connection, begin: str) -> None:
        self.conn = conn
        self.begin = begin
        self.cur: sqlite3.Cursor | None = None

    def __enter__(self) -> sqlite3.Cursor:
        conn = self.conn
        conn._lock.acquire()  # noqa: SLF001 - the connection's own helper
        try:
            self.cur = conn._cursor()  # noqa: SLF001
            conn._begin(self.cur, self.begin)  # noqa: SLF001
        except BaseException as exc:
            error = conn._abort(self.cur, exc)  # noqa: SLF001
            conn._lock.release()  # noqa: SLF001
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
        conn = self.conn
        try:
            if exc is None:
                try:
                    self.cur.execute("COMMIT")  # type: ignore[union-attr]
                except BaseException as failure:
                    error = conn._abort(self.cur, failure)  # noqa: SLF001
                    if error is failure:
                        raise
                    raise error from failure
                return
            error = conn._abort(self.cur, exc)  # noqa: SLF001
            if error is not exc:
                raise error from exc
        finally:
            conn._lock.release()  # noqa: SLF001
