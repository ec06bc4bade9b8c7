"""The asyncio engine seen through the synchronous API, for the contract suite.

:class:`SyncOverAsync` runs each coroutine of an :class:`~sticky.aio.AsyncEngine` on
an event loop in a thread of its own and waits for it, so every contract test and the
state machines drive the asyncio engine (and its asyncio store) exactly as they drive
:class:`~sticky.Engine`. Calls from several threads interleave on that one loop, as
tasks of a service would.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, Self, TypeVar

from sticky.aio import AsyncEngine
from sticky.clock import Clock

__all__ = ["SyncOverAsync"]

T = TypeVar("T")


class _Loop:
    """One event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class SyncOverAsync:
    """An :class:`~sticky.aio.AsyncEngine` with the synchronous engine's methods.

    ``store`` is the synchronous store an adapter wraps (for ``check_invariants``), or
    a view that runs an asyncio store's coroutines on the loop.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._loop = _Loop()

        async def build() -> AsyncEngine:
            return AsyncEngine(**kwargs)

        self.engine = self._loop.run(build())

    def __repr__(self) -> str:
        return f"SyncOverAsync({self.engine!r})"

    @property
    def clock(self) -> Clock:
        return self.engine.clock

    @property
    def store(self) -> Any:
        inner = getattr(self.engine.store, "inner", None)
        return inner if inner is not None else _SyncView(self.engine.store, self._loop)

    def close(self) -> None:
        try:
            self._loop.run(self.engine.close())
        finally:
            self._loop.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def iter_mappings(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        pages: AsyncIterator[Any] = self._loop.run(self.engine.iter_mappings(*args, **kwargs))
        return _pages(pages, self._loop)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.engine, name)
        if not callable(method) or not asyncio.iscoroutinefunction(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run(method(*args, **kwargs))

        return call


def _pages(pages: AsyncIterator[Any], loop: _Loop) -> Iterator[Any]:
    async def next_page() -> Any:
        return await anext(pages)

    while True:
        try:
            yield loop.run(next_page())
        except StopAsyncIteration:
            return


class _SyncView:
    """An asyncio store's methods, run on the loop and waited for."""

    def __init__(self, store: object, loop: _Loop) -> None:
        self._store = store
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        if not asyncio.iscoroutinefunction(method):
            return method
        return lambda *a, **k: self._loop.run(method(*a, **k))
