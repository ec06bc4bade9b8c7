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

from sticky._async.engine import AsyncEngine
from sticky.errors import InvalidSettings, shown
from sticky.store.aio import AsyncStore, DirectStore, ThreadStore
from sticky.store.memory import MemoryStore

__all__ = ["AsyncEngine", "AsyncStore", "open_async_store"]


def open_async_store(url: str) -> AsyncStore:
    """Open an asyncio store by URL, as :func:`sticky.open_store` opens a store.

    ``memory://`` (called directly), ``sqlite:///...`` (in a worker thread),
    ``redis://...``, ``rediss://...`` or a cluster URL (in a worker thread until the
    native asyncio store serves it). Raises InvalidSettings, ExtraNotInstalled.
    """
    from sticky.store import open_store  # noqa: PLC0415 - the stores load on demand

    if not isinstance(url, str) or "://" not in url:
        msg = f"invalid store URL {shown(url)}: expected memory://, sqlite:///path or redis://host"
        raise InvalidSettings(msg)
    store = open_store(url)
    if isinstance(store, MemoryStore):
        return DirectStore(store)  # type: ignore[return-value]
    return ThreadStore(store)  # type: ignore[return-value]
