"""Stores: where profiles, pools and mappings live. See :class:`Store`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sticky.errors import InvalidSettings, shown
from sticky.store.base import BatchStore, Decide, Miss, OneStepStore, Store, StoredMapping
from sticky.store.memory import MemoryStore

if TYPE_CHECKING:
    from sticky.store.redis import RedisStore
    from sticky.store.sqlite import SQLiteStore

__all__ = [
    "BatchStore",
    "Decide",
    "MemoryStore",
    "Miss",
    "OneStepStore",
    "RedisStore",
    "SQLiteStore",
    "Store",
    "StoredMapping",
    "open_store",
]


def __getattr__(name: str) -> object:
    """``SQLiteStore`` and ``RedisStore`` on first use: importing sticky loads neither."""
    if name == "SQLiteStore":
        from sticky.store.sqlite import SQLiteStore  # noqa: PLC0415 - loaded on demand

        return SQLiteStore
    if name == "RedisStore":
        from sticky.store.redis import RedisStore  # noqa: PLC0415 - optional extra

        return RedisStore
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def open_store(url: str) -> Store:
    """Open a store by URL.

    ``memory://`` (a new in-memory store), ``sqlite:///relative.db`` or
    ``sqlite:////absolute/path.db`` (:class:`~sticky.store.sqlite.SQLiteStore`),
    ``redis://host:port/db`` or ``rediss://...``, or a cluster,
    ``redis+cluster://host:port[,host:port...]`` (:class:`~sticky.store.redis.RedisStore`,
    needs ``sticky-sender[redis]``). Raises :class:`~sticky.InvalidSettings` for an unknown
    scheme and :class:`~sticky.ExtraNotInstalled` for a missing extra.
    """
    if not isinstance(url, str) or "://" not in url:
        msg = f"invalid store URL {shown(url)}: expected memory://, sqlite:///path or redis://host"
        raise InvalidSettings(msg)
    scheme = url.partition("://")[0].lower()
    if scheme == "memory":
        return MemoryStore()
    if scheme == "sqlite":
        from sticky.store.sqlite import SQLiteStore  # noqa: PLC0415 - loaded on demand

        store: Store = SQLiteStore.from_url(url)
        return store
    if scheme in {"redis", "rediss", "unix", "redis+cluster", "rediss+cluster"}:
        from sticky.store.redis import RedisStore  # noqa: PLC0415 - optional extra

        redis_store: Store = RedisStore.from_url(url)
        return redis_store
    msg = (
        f"unknown store URL scheme {shown(scheme)} in {shown(url)}: "
        "expected memory, sqlite or redis"
    )
    raise InvalidSettings(msg)
