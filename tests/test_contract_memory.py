"""The contract suite on the in-memory store, on its two-step path and its batch path."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

import pytest

from sticky import (
    Engine,
    ManualClock,
    MemoryStore,
    NoEligibleSender,
    OptedOut,
    Reason,
    Selection,
)
from sticky.policy import eligible_numbers
from sticky.store import BatchStore, Miss, OneStepStore, Store
from sticky.testing import StoreContract


class TestMemoryStore(StoreContract):
    state_machine_examples = 400

    def make_store(self) -> MemoryStore:
        return MemoryStore()


class TwoSteps:
    """A MemoryStore seen through the plain Store protocol only: no one-step select, so
    the engine reads, chooses and compares-and-sets, as it does on Redis."""

    def __init__(self) -> None:
        self.inner = MemoryStore()

    def __getattr__(self, name: str) -> object:
        if name == "select_in_one_step":
            raise AttributeError(name)
        return getattr(self.inner, name)


class Batched(TwoSteps):
    """Two steps, plus batch calls made of one-by-one calls."""

    def begin_select_many(
        self, profile_id: str, recipients: Sequence[str], now: float, known_version: int
    ) -> list[Selection | Miss | None]:
        out: list[Selection | Miss | None] = []
        for to in recipients:
            try:
                read = self.inner.begin_select(profile_id, to, now, known_version)
            except OptedOut:  # the protocol's None for an opted-out recipient
                out.append(None)
                continue
            out.append(read)
            if isinstance(read, Miss) and not eligible_numbers(
                self.inner.numbers(profile_id), read.settings
            ):
                break  # the protocol's early end: the batch stops at this miss
        return out

    def commit_select_many(
        self,
        profile_id: str,
        entries: Sequence[tuple[str, str, Miss]],
        now: float,
    ) -> list[Selection | Literal[True] | None]:
        out: list[Selection | Literal[True] | None] = []
        for to, chosen, miss in entries:
            try:
                out.append(self.inner.commit_select(profile_id, to, chosen, miss, now))
            except OptedOut:  # opted out since the read: None, the engine starts over
                out.append(None)
        return out


class TestTwoStepPath(StoreContract):
    state_machine_examples = 150
    keeps_capacity = False

    def make_store(self) -> Store:
        store = TwoSteps()
        assert not isinstance(store, OneStepStore)
        return store  # type: ignore[return-value]


class TestBatchPath(StoreContract):
    state_machine_examples = 60
    keeps_capacity = False

    def make_store(self) -> Store:
        store = Batched()
        assert isinstance(store, BatchStore)
        return store  # type: ignore[return-value]


def test_batches_follow_one_by_one_rules() -> None:
    store = Batched()
    e = Engine(clock=ManualClock(0.0), seed=3, store=store)  # type: ignore[arg-type]
    e.create_profile("p")
    for n in ("+13125550001", "+13125550002", "+13125550003"):
        e.add_number("p", n)
    first = e.select("p", "+12125550000")
    batch = ["+12125550000", "+12125550001", "+12125550001", "+12125550002"]
    out = e.select_many("p", batch)
    assert [s.to for s in out] == batch
    assert [s.reason for s in out] == [Reason.STICKY, Reason.NEW, Reason.STICKY, Reason.NEW]
    assert out[0].from_number == first.from_number
    assert out[1].from_number == out[2].from_number
    for sel in out:
        m = e.mapping("p", sel.to)
        assert m is not None
        assert m.from_number == sel.from_number
    stats = e.stats()
    assert (stats.sticky, stats.new) == (2, 3)
    e.update_settings("p", sticky_sender=False)
    pool = e.select_many("p", ["+12125550009"] * 40)
    assert {s.reason for s in pool} == {Reason.POOL}
    assert len({s.from_number for s in pool}) > 1  # each message chooses afresh
    store.inner.check_invariants()


def test_a_batch_that_runs_out_of_senders_keeps_what_came_before() -> None:
    store = Batched()
    e = Engine(clock=ManualClock(0.0), seed=3, store=store)  # type: ignore[arg-type]
    e.create_profile("p")
    e.add_number("p", "+13125550001")
    e.select("p", "+12125550000")
    e.update_settings("p", skip_unhealthy=True)
    e.set_health("+13125550001", healthy=False)
    with pytest.raises(NoEligibleSender):
        e.select_many("p", ["+12125550001", "+12125550002"])
    assert e.stats().mappings == 1


class _NoBulkImport:
    """A memory store seen without ``import_mappings``: the engine falls back to pins."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.pins = 0

    def __getattr__(self, name: str) -> object:
        if name == "import_mappings":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def pin(self, profile_id: str, to: str, number: str, now: float) -> object:
        self.pins += 1
        return self.inner.pin(profile_id, to, number, now)


def test_an_engine_imports_through_pins_on_a_store_without_bulk_import() -> None:
    from sticky.aio import AsyncEngine  # noqa: PLC0415 - only this test drives it
    from sticky.store.aio import ThreadStore  # noqa: PLC0415

    t0 = 1_700_000_000.0
    entries = [("+16465550001", "+13125550001", t0 - 5), ("+16465550002", "+13125550001", t0)]
    store = _NoBulkImport()
    e = Engine(clock=ManualClock(t0), store=store)  # type: ignore[arg-type]
    e.create_profile("p")
    e.add_number("p", "+13125550001")
    assert e.import_mappings("p", entries) == 2
    assert e.import_mappings("p", entries) == 0
    assert store.pins == 2
    assert e.mapping("p", "+16465550001").last_used == t0 - 5  # type: ignore[union-attr]

    async def on_async() -> int:
        other = _NoBulkImport()
        other.inner.create_profile("p", e.settings("p"))
        other.inner.add_number("p", "+13125550001", e.numbers("p")[0].type, healthy=True)
        engine = AsyncEngine(clock=ManualClock(t0), store=ThreadStore(other))  # type: ignore[arg-type]
        try:
            return await engine.import_mappings("p", entries) + other.pins * 10
        finally:
            await engine.close()

    assert asyncio.run(on_async()) == 22
