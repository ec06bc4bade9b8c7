"""The asyncio engine: the contract suite and the state machine through it, the
generated synchronous engine up to date, and many tasks on one loop."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sticky import (
    Engine,
    InvalidSettings,
    ManualClock,
    MemoryStore,
    PoolSettings,
    Reason,
    Selection,
)
from sticky.aio import AsyncEngine
from sticky.store import Store
from sticky.testing import StoreContract
from sticky.testing.aio import SyncOverAsync
from sticky.testing.stateful import StickyMachine

ROOT = Path(__file__).resolve().parent.parent


def test_the_synchronous_engine_is_generated_from_the_asyncio_source() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "unasync.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


class TestAsyncEngineOnMemory(StoreContract):
    state_machine_examples = 50

    def make_store(self) -> Store:
        return MemoryStore()

    def make_engine(self, *, clock: ManualClock, seed: int, store: Store) -> Engine:
        return SyncOverAsync(clock=clock, seed=seed, store=store)  # type: ignore[return-value]


class SyncAgainstAsync(StickyMachine):
    """The same calls on the synchronous and the asyncio engine, each on its store."""

    def make_stores(self) -> list[Store]:
        return [MemoryStore(), MemoryStore()]

    def make_engine(self, clock: ManualClock, store: Store) -> Engine:
        if not hasattr(self, "_made"):
            self._made = 0
        self._made += 1
        if self._made == 1:
            return Engine(clock=clock, seed=0, store=store)
        return SyncOverAsync(clock=clock, seed=0, store=store)  # type: ignore[return-value]


TestSyncAgainstAsync = SyncAgainstAsync.TestCase


async def _many_tasks(engine: AsyncEngine, tasks: int) -> int:
    """``tasks`` tasks selecting at once; the most of them waiting on a select at once.

    A store that blocked the loop on its I/O would finish each select before another
    task ran: at most one would ever wait. Counted, not timed (speed is measured in
    ``benchmarks/bench_async.py``).
    """
    await engine.create_profile("p", PoolSettings(long_code_rate=50.0, burst=5))
    for i in range(5):
        await engine.add_number("p", f"+1312555000{i}")
    waiting = peak = 0

    async def select(to: str) -> Selection:
        nonlocal waiting, peak
        waiting += 1
        peak = max(peak, waiting)
        try:
            return await engine.select("p", to)
        finally:
            waiting -= 1

    async def task(k: int) -> None:
        to = f"+1212555{k % 400:04d}"
        first = await select(to)
        again = await select(to)
        assert again.reason is Reason.STICKY
        assert again.from_number == first.from_number

    await asyncio.gather(*(task(k) for k in range(tasks)))
    return peak


def test_a_thousand_tasks_on_one_loop_keep_stickiness() -> None:
    async def main() -> None:
        async with AsyncEngine(seed=1) as engine:
            peak = await _many_tasks(engine, 1_000)
            stats = await engine.stats()
            assert stats.mappings == 400
            # Each of the 400 recipients is new once; every other select is sticky.
            assert (stats.new, stats.sticky) == (400, 1_600)
            print(f"memory store: at most {peak} selects waiting at once")

    asyncio.run(main())


def test_sqlite_runs_in_a_worker_thread(tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncEngine(seed=1, store=f"sqlite:///{tmp_path / 's.db'}") as engine:
            assert type(engine.store).__name__ == "ThreadStore"
            await engine.create_profile("p")
            await engine.add_number("p", "+13125550001")
            got = await asyncio.gather(*(engine.select("p", "+12125550000") for _ in range(20)))
            assert {s.from_number for s in got} == {"+13125550001"}
            pages = [page async for page in await engine.iter_mappings("p")]
            assert [m.to for page in pages for m in page] == ["+12125550000"]

    asyncio.run(main())


def test_bad_stores_are_refused() -> None:
    with pytest.raises(InvalidSettings):
        AsyncEngine(store=42)  # type: ignore[arg-type]
    with pytest.raises(InvalidSettings):
        AsyncEngine(store="bogus://x")


class TestAsyncEngineOnSQLite(StoreContract):
    """SQLite through the asyncio engine: every step in the store's worker thread."""

    state_machine_examples = 20

    @pytest.fixture(autouse=True)
    def _files(self, tmp_path: Path) -> None:
        self._dir = tmp_path
        self._n = 0

    def make_store(self) -> Store:
        from sticky.store.sqlite import SQLiteStore  # noqa: PLC0415

        self._n += 1
        return SQLiteStore(self._dir / f"s{self._n}.db")

    def make_engine(self, *, clock: ManualClock, seed: int, store: Store) -> Engine:
        return SyncOverAsync(clock=clock, seed=seed, store=store)  # type: ignore[return-value]


# -- Redis: the asyncio store itself ------------------------------------------------------
redis_server_module = pytest.importorskip("sticky.testing.redis_server")
_PREFIXES = itertools.count()


def _async_redis(url: str, prefix: str) -> object:
    from sticky.aio import AsyncRedisStore  # noqa: PLC0415

    return AsyncRedisStore.from_url(url, prefix=prefix)


class TestAsyncEngineOnRedis(StoreContract):
    """The asyncio engine on the asyncio Redis store: every call on the event loop.

    ``make_store`` gives the synchronous store of a fresh prefix; each engine opens
    the asyncio store of the same prefix on its own loop, so engines that share a
    store share its data, as two services on one Redis do.
    """

    state_machine_examples = 20

    @pytest.fixture(autouse=True)
    def _server(self, redis_server: Any) -> None:
        self.server = redis_server

    def make_store(self) -> Store:
        from sticky.store.redis import RedisStore  # noqa: PLC0415

        return RedisStore.from_url(self.server.url, prefix=f"aio{next(_PREFIXES)}")

    def make_engine(self, *, clock: ManualClock, seed: int, store: Store) -> Engine:
        prefix = store._prefix  # type: ignore[attr-defined]
        # The synchronous store stays open: a test may read it (check_invariants).
        return SyncOverAsync(  # type: ignore[return-value]
            clock=clock, seed=seed, store=_async_redis(self.server.url, prefix)
        )


def test_a_thousand_tasks_on_redis_never_block_the_loop(redis_server: Any) -> None:
    """1,000 tasks select at once on the asyncio Redis store: every recipient keeps its
    sender, and the selects wait on Redis side by side (a store that did its I/O on the
    loop would let one wait at a time)."""

    async def main() -> None:
        store = _async_redis(redis_server.url, f"aio{next(_PREFIXES)}")
        async with AsyncEngine(seed=1, store=store) as engine:  # type: ignore[arg-type]
            peak = await _many_tasks(engine, 1_000)
            assert peak >= 100, peak
            stats = await engine.stats()
            assert (stats.new, stats.sticky) == (400, 1_600)
            await engine.store.check_invariants()

    asyncio.run(main())


def test_sync_and_async_engines_on_one_redis_agree(redis_server: Any) -> None:
    """The asyncio store writes what the synchronous one reads, and back: one layout."""
    from sticky.store.redis import RedisStore  # noqa: PLC0415

    prefix = f"aio{next(_PREFIXES)}"
    sync = Engine(
        clock=ManualClock(1e9), seed=3, store=RedisStore.from_url(redis_server.url, prefix=prefix)
    )
    sync.create_profile("p")
    for i in range(3):
        sync.add_number("p", f"+1312555000{i}")
    first = sync.select("p", "+12125550000")

    async def main() -> None:
        store = _async_redis(redis_server.url, prefix)
        async with AsyncEngine(clock=ManualClock(1e9 + 60), seed=3, store=store) as e:  # type: ignore[arg-type]
            again = await e.select("p", "+12125550000")
            assert (again.from_number, again.reason) == (first.from_number, Reason.STICKY)
            await e.select("p", "+12125550001")

    asyncio.run(main())
    m = sync.mapping("p", "+12125550001", now=1e9 + 60)
    assert m is not None
    assert sync.mapping("p", "+12125550000", now=1e9 + 60).last_used == 1e9 + 60  # type: ignore[union-attr]
    sync.store.check_invariants()
    sync.close()


def test_memory_and_async_redis_agree_step_by_step(redis_server: Any) -> None:
    class MemoryVsAsyncRedis(StickyMachine):
        def make_stores(self) -> list[Store]:
            from sticky.store.redis import RedisStore  # noqa: PLC0415

            return [
                MemoryStore(),
                RedisStore.from_url(redis_server.url, prefix=f"aio{next(_PREFIXES)}"),
            ]

        def make_engine(self, clock: ManualClock, store: Store) -> Engine:
            if isinstance(store, MemoryStore):
                return Engine(clock=clock, seed=0, store=store)
            prefix = store._prefix  # type: ignore[attr-defined]
            return SyncOverAsync(  # type: ignore[return-value]
                clock=clock, seed=0, store=_async_redis(redis_server.url, prefix)
            )

    from hypothesis import HealthCheck, settings  # noqa: PLC0415
    from hypothesis.stateful import run_state_machine_as_test  # noqa: PLC0415

    run_state_machine_as_test(
        MemoryVsAsyncRedis,
        settings=settings(
            max_examples=25,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_a_cluster_runs_the_synchronous_store_in_a_worker_thread(redis_cluster: Any) -> None:
    from sticky.aio import open_async_store  # noqa: PLC0415

    async def main() -> None:
        store = open_async_store(redis_cluster.url)
        assert type(store).__name__ == "ThreadStore"
        async with AsyncEngine(seed=2, store=store) as engine:
            profile = f"aio-cluster-{next(_PREFIXES)}"
            await engine.create_profile(profile)
            await engine.add_number(profile, "+13125550001")
            await engine.add_number(profile, "+13125550002")
            first = await engine.select(profile, "+12125550000")
            again = await asyncio.gather(
                *(engine.select(profile, "+12125550000") for _ in range(10))
            )
            assert {s.from_number for s in again} == {first.from_number}
            assert await engine.delete_profile(profile) == 1

    asyncio.run(main())


def test_the_asyncio_redis_store_refuses_what_it_cannot_serve(redis_server: Any) -> None:
    import redis  # noqa: PLC0415

    from sticky.aio import AsyncRedisStore  # noqa: PLC0415

    with pytest.raises(InvalidSettings, match=r"redis\.asyncio"):
        AsyncRedisStore(redis.Redis.from_url(redis_server.url))  # a synchronous client
    with pytest.raises(InvalidSettings, match="min_replicas"):
        AsyncRedisStore.from_url(redis_server.url, min_replicas=1)
