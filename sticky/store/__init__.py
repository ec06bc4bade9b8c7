"""Stores: where profiles, pools and mappings live. See :class:`Store`."""

from __future__ import annotations

from sticky.store.base import BatchStore, Draw, Store, StoredMapping
from sticky.store.memory import MemoryStore

__all__ = ["BatchStore", "Draw", "MemoryStore", "Store", "StoredMapping", "open_store"]


def open_store(url: str) -> Store:
    """Open a store by URL: ``memory://`` (more schemes come with their stores).

    Raises :class:`~sticky.InvalidSettings` for an unknown scheme.
    """
    from sticky.errors import InvalidSettings  # noqa: PLC0415

    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme == "memory":
        return MemoryStore()
    msg = f"unknown store URL {url!r}: expected memory://"
    raise InvalidSettings(msg)
