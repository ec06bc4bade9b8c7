"""The SQLite store: durable on one host, shared by every process that opens the file.

Everything lives in one database file (Python's standard :mod:`sqlite3`, WAL mode,
``synchronous=NORMAL``), so a restart continues exactly where the process stopped and
the worker processes of a host agree on one sender per recipient. ``docs/sqlite.md``
has the schema, the transactions, durability and measured costs.

The package: :mod:`~sticky.store.sqlite.store` (the operations, and the rules they
call from :mod:`sticky.policy`), :mod:`~sticky.store.sqlite.schema` (tables, version,
migration), :mod:`~sticky.store.sqlite.connection` (the connection, transactions and
errors), :mod:`~sticky.store.sqlite.invariants` (what ``check_invariants`` asserts).
"""

from __future__ import annotations

from sticky.store.sqlite.schema import APPLICATION_ID, SCHEMA_VERSION
from sticky.store.sqlite.store import SQLiteStore

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SQLiteStore"]
