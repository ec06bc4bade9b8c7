"""Stores for the asyncio engine: the protocols, and adapters for in-process stores.

An asyncio store has the methods of :class:`~sticky.store.base.Store` (and of the
optional protocols) as coroutines, with the same promises; ``iter_mappings`` is
required and returns an async iterator of pages. The in-process stores are adapted:
the memory store is called directly (its steps take microseconds and never wait), and a
store that may block (SQLite, or any synchronous store) runs in one worker thread of its
own, so the event loop never waits on a lock or a disk.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, Protocol, TypeVar, cast, runtime_checkable

from sticky.errors import InvalidSettings, NoEligibleSender, UnknownNumber, shown
from sticky.numbers import NumberType, SenderNumber
from sticky.policy import Load, Window, is_live
from sticky.settings import PoolSettings
from sticky.store.base import Decide, ImportEntry, LiveMapping, Miss, Store, scan_by_sender
from sticky.store.memory import MemoryStore
from sticky.values import Keyword, Outcome, ReplyAction, Selection

__all__ = [
    "AsyncBatchStore",
    "AsyncBulkImportStore",
    "AsyncMappingScanStore",
    "AsyncOneStepBatchStore",
    "AsyncOneStepStore",
    "AsyncStore",
    "DirectStore",
    "ThreadStore",
    "aimport_by_pin",
    "coerce_async_store",
]

T = TypeVar("T")


@runtime_checkable
class AsyncStore(Protocol):
    """:class:`~sticky.store.base.Store` with coroutine methods, and ``iter_mappings``."""

    async def create_profile(self, profile_id: str, settings: PoolSettings) -> None: ...
    async def delete_profile(self, profile_id: str, now: float) -> int: ...
    async def settings(self, profile_id: str) -> PoolSettings: ...
    async def replace_settings(
        self, profile_id: str, old: PoolSettings, new: PoolSettings
    ) -> bool: ...
    async def profiles(self) -> list[str]: ...
    async def add_number(
        self,
        profile_id: str,
        number: str,
        number_type: NumberType,
        *,
        healthy: bool,
        rate: float | None = None,
        daily_new_recipients: int | None = None,
    ) -> None: ...
    async def remove_number(self, profile_id: str, number: str, now: float) -> int: ...
    async def set_health(self, number: str, *, healthy: bool) -> None: ...
    async def set_limits(
        self, number: str, changes: Mapping[str, float | int | None]
    ) -> SenderNumber: ...
    async def numbers(self, profile_id: str) -> tuple[SenderNumber, ...]: ...
    async def set_drain(
        self, profile_id: str, number: str, since: float | None, grace: float | None
    ) -> SenderNumber: ...
    async def record_delivery(self, number: str, outcome: Outcome, now: float) -> SenderNumber: ...
    async def health(
        self, profile_id: str
    ) -> tuple[tuple[SenderNumber, ...], dict[str, Window]]: ...
    async def opt_out(self, profile_id: str, to: str, now: float) -> bool: ...
    async def opt_in(self, profile_id: str, to: str) -> bool: ...
    async def is_opted_out(self, profile_id: str, to: str) -> bool: ...
    async def opt_outs(self, profile_id: str) -> list[str]: ...
    async def record_reply(
        self, profile_id: str, to: str, number: str, now: float, keyword: Keyword | None
    ) -> ReplyAction: ...
    async def capacity_state(
        self, profile_id: str
    ) -> tuple[PoolSettings, tuple[SenderNumber, ...], dict[str, Load]]: ...
    async def begin_select(
        self, profile_id: str, to: str, now: float, known_version: int
    ) -> Selection | Miss: ...
    async def commit_select(
        self, profile_id: str, to: str, chosen: str, miss: Miss, now: float
    ) -> Selection | Literal[True] | None: ...
    async def mapping(
        self, profile_id: str, to: str, now: float
    ) -> tuple[str, float, float] | None: ...
    async def recipients_of(self, profile_id: str, number: str, now: float) -> list[str]: ...
    async def iter_mappings(
        self, profile_id: str, now: float, batch: int
    ) -> AsyncIterator[list[LiveMapping]]: ...
    async def pin(self, profile_id: str, to: str, number: str, now: float) -> PoolSettings: ...
    async def forget(self, profile_id: str, to: str, now: float) -> bool: ...
    async def evict_expired(self, now: float) -> int: ...
    async def counts(self) -> tuple[int, int]: ...
    async def check_invariants(self) -> None: ...
    async def close(self) -> None: ...


@runtime_checkable
class AsyncOneStepStore(AsyncStore, Protocol):
    """:class:`~sticky.store.base.OneStepStore` with a coroutine."""

    async def select_in_one_step(
        self,
        profile_id: str,
        to: str,
        now: float,
        decide: Decide,
        hits: list[int],
        segments: int = 1,
    ) -> Selection: ...


@runtime_checkable
class AsyncOneStepBatchStore(AsyncStore, Protocol):
    """:class:`~sticky.store.base.OneStepBatchStore` with a coroutine."""

    async def select_many_in_one_step(
        self,
        profile_id: str,
        recipients: Sequence[str],
        now: float,
        decide: Decide,
        segments: int = 1,
    ) -> tuple[list[Selection], NoEligibleSender | None]: ...


@runtime_checkable
class AsyncBatchStore(AsyncStore, Protocol):
    """:class:`~sticky.store.base.BatchStore` with coroutines."""

    async def begin_select_many(
        self, profile_id: str, recipients: Sequence[str], now: float, known_version: int
    ) -> list[Selection | Miss | None]: ...
    async def commit_select_many(
        self, profile_id: str, entries: Sequence[tuple[str, str, Miss]], now: float
    ) -> list[Selection | Literal[True] | None]: ...


@runtime_checkable
class AsyncBulkImportStore(AsyncStore, Protocol):
    """:class:`~sticky.store.base.BulkImportStore` with a coroutine."""

    async def import_mappings(
        self, profile_id: str, entries: Sequence[ImportEntry], now: float
    ) -> int: ...


async def aimport_by_pin(
    store: AsyncStore, profile_id: str, entries: Sequence[ImportEntry], now: float
) -> int:
    """:func:`~sticky.store.base.import_by_pin` on an asyncio store: the same promises."""
    pool = {n.number for n in await store.numbers(profile_id)}
    for _, sender, _ in entries:
        if sender not in pool:
            msg = f"number {shown(sender)} is not in profile {shown(profile_id)}"
            raise UnknownNumber(msg)
    ttl = (await store.settings(profile_id)).ttl
    written = 0
    for to, sender, last_used in entries:
        if not is_live(last_used, ttl, now):
            continue
        there = await store.mapping(profile_id, to, now)
        if there is not None and there[1] >= last_used:
            continue
        await store.pin(profile_id, to, sender, last_used)
        written += 1
    return written


AsyncMappingScanStore = AsyncStore
"""Every asyncio store scans (``iter_mappings`` is part of :class:`AsyncStore`)."""


class _Adapter:
    """A synchronous store seen as an asyncio one: each method becomes a coroutine.

    Methods the store lacks are missing here too, so the optional protocols are
    detected as they are on the store itself.
    """

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"

    async def _call(self, fn: Callable[..., T], /, *args: object, **kwargs: object) -> T:
        raise NotImplementedError

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        fn = getattr(self.inner, name)  # AttributeError for a method the store lacks
        if not callable(fn):
            raise AttributeError(name)  # noqa: TRY004 - what __getattr__ must raise

        async def call(*args: object, **kwargs: object) -> object:
            return await self._call(fn, *args, **kwargs)

        call.__name__ = name
        vars(self)[name] = call  # once per name: later look-ups skip __getattr__
        return call

    async def iter_mappings(
        self, profile_id: str, now: float, batch: int
    ) -> AsyncIterator[list[LiveMapping]]:
        """The store's scan (or the fallback through public methods), page by page."""
        scan = getattr(self.inner, "iter_mappings", None)
        if scan is None:
            pages = await self._call(scan_by_sender, self.inner, profile_id, now, batch)
        else:
            pages = await self._call(scan, profile_id, now, batch)  # raises at once
        return self._pages(pages)

    async def _pages(self, pages: Iterator[list[LiveMapping]]) -> AsyncIterator[list[LiveMapping]]:
        done = object()
        while True:
            page = await self._call(next, pages, done)
            if page is done:
                return
            yield cast("list[LiveMapping]", page)


class DirectStore(_Adapter):
    """A store whose steps never wait (the memory store), called on the loop directly."""

    async def _call(self, fn: Callable[..., T], /, *args: object, **kwargs: object) -> T:
        return fn(*args, **kwargs)


class ThreadStore(_Adapter):
    """A store that may block (SQLite), run in one worker thread of its own.

    One thread: the store's own lock would serialise more threads anyway, and a
    connection stays on the thread that uses it.
    """

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sticky-store")

    async def _call(self, fn: Callable[..., T], /, *args: object, **kwargs: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, functools.partial(fn, *args, **kwargs))

    async def close(self) -> None:
        """Close the store, then stop the worker thread."""
        try:
            await self._call(self.inner.close)
        finally:
            self._thread.shutdown(wait=False)


def _is_async_store(store: object) -> bool:
    return inspect.iscoroutinefunction(getattr(store, "create_profile", None))


def coerce_async_store(store: object) -> AsyncStore:
    """The asyncio store an engine drives, from what it was given.

    None: a fresh memory store; a URL: :func:`sticky.aio.open_async_store`; an asyncio
    store as it is; a synchronous store adapted (the memory store directly, any other
    in a worker thread). Raises InvalidSettings for anything else.
    """
    if store is None:
        return cast("AsyncStore", DirectStore(MemoryStore()))
    if isinstance(store, str):
        from sticky.aio import open_async_store  # noqa: PLC0415 - avoids an import cycle

        opened: AsyncStore = open_async_store(store)
        return opened
    if _is_async_store(store):
        return cast("AsyncStore", store)
    if isinstance(store, MemoryStore):
        return cast("AsyncStore", DirectStore(store))
    if isinstance(store, Store):
        return cast("AsyncStore", ThreadStore(store))
    msg = f"invalid store {shown(store)}: expected a Store, an asyncio store or a store URL"
    raise InvalidSettings(msg)
