"""The asyncio engine: :class:`AsyncEngine`, the same API as :class:`sticky.Engine`.

Every method that reaches the store is a coroutine (``await engine.select(...)``);
``iter_mappings`` returns an async iterator (``async for page in await
engine.iter_mappings(...)``), and the engine is an async context manager. The engine's
code is the synchronous engine's (one source, see :mod:`sticky.engine`); the stores are:
Redis natively (``redis.asyncio``, the same scripts and keys as :class:`RedisStore`, so
sync and async engines on one Redis agree), the memory store directly, and SQLite (or
any synchronous store) in a worker thread of its own.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING

from sticky._async.engine import AsyncEngine
from sticky.errors import InvalidSettings, shown
from sticky.store.aio import AsyncStore, DirectStore, ThreadStore
from sticky.store.memory import MemoryStore

if TYPE_CHECKING:
    from sticky._async.redis.store import AsyncRedisStore

__all__ = ["AsyncEngine", "AsyncRedisStore", "AsyncStore", "open_async_store"]


def __getattr__(name: str) -> object:
    """``AsyncRedisStore`` on first use (the Redis store is an optional extra)."""
    if name == "AsyncRedisStore":
        from sticky._async.redis.store import AsyncRedisStore  # noqa: PLC0415

        return AsyncRedisStore
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


_NATIVE = {"redis", "rediss", "unix"}
"""URL schemes the asyncio Redis store serves itself (one server, no min_replicas)."""


def open_async_store(url: str) -> AsyncStore:
    """Open an asyncio store by URL, as :func:`sticky.open_store` opens a store.

    ``memory://`` (called directly), ``sqlite:///...`` (in a worker thread),
    ``redis://...`` or ``rediss://...`` (:class:`AsyncRedisStore`, on the loop), and a
    cluster URL or one with ``min_replicas`` (a :class:`~sticky.store.redis.RedisStore`
    in a worker thread: per-node sends and ``WAIT`` are the synchronous store's).
    Raises InvalidSettings, ExtraNotInstalled.
    """
    from sticky.store import open_store  # noqa: PLC0415 - the stores load on demand

    if not isinstance(url, str) or "://" not in url:
        msg = f"invalid store URL {shown(url)}: expected memory://, sqlite:///path or redis://host"
        raise InvalidSettings(msg)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() in _NATIVE and "min_replicas" not in urllib.parse.parse_qs(
        parts.query
    ):
        from sticky._async.redis.store import AsyncRedisStore  # noqa: PLC0415

        native: AsyncStore = AsyncRedisStore.from_url(url)
        return native
    store = open_store(url)
    if isinstance(store, MemoryStore):
        return DirectStore(store)  # type: ignore[return-value]
    return ThreadStore(store)  # type: ignore[return-value]
