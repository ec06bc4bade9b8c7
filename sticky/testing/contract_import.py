"""The contract suite's import part: :meth:`sticky.Engine.import_mappings` on any store.

:class:`~sticky.testing.StoreContract` includes it. The same rules hold whether the
store has :class:`~sticky.store.base.BulkImportStore` or the engine falls back to
:func:`~sticky.store.base.import_by_pin`; the fallback is also run directly.
"""

from __future__ import annotations

import math

import pytest

from sticky.errors import (
    IncompatibleStore,
    InvalidNumber,
    InvalidSettings,
    InvalidTime,
    UnknownNumber,
    UnknownProfile,
)
from sticky.settings import PoolSettings
from sticky.store.base import import_by_pin
from sticky.testing.contract_base import LONG, T0, TO, TTL, ContractBase

__all__ = ["ImportContract"]

A, B, C = LONG
OTHER = "+19995550009"  # not in profile p's pool
R = [f"+1646555{i:04d}" for i in range(12)]


class ImportContract(ContractBase):
    """Imported mappings keep their age; the target's newer ones and dead ones are skipped."""

    def test_an_imported_mapping_keeps_its_last_use_and_expiry(self) -> None:
        e = self.pool()
        entries = [(R[0], A, T0 - 100), (R[1], B, T0 - TTL + 1), (R[2], C, T0)]
        assert e.import_mappings("p", entries) == 3
        for to, sender, used in entries:
            m = e.mapping("p", to)
            assert m is not None
            assert (m.from_number, m.last_used, m.expires_at) == (sender, used, used + TTL)
        assert e.recipients_of("p", A) == [R[0]]
        assert e.select("p", R[0]).from_number == A  # sticky, as it was
        e.store.check_invariants()
        self.advance(e, 2)
        assert e.mapping("p", R[1]) is None  # expired when it would have
        assert e.evict_expired() == 1
        e.store.check_invariants()

    def test_the_targets_newer_mapping_is_kept_and_an_older_one_replaced(self) -> None:
        e = self.pool()
        e.pin("p", R[0], A, now=T0 - 50)
        e.pin("p", R[1], A, now=T0 - 50)
        entries = [(R[0], B, T0 - 60), (R[1], B, T0 - 40)]
        assert e.import_mappings("p", [(R[0], B, T0 - 50)]) == 0  # as recent: kept
        assert e.import_mappings("p", entries) == 1
        m0, m1 = e.mapping("p", R[0]), e.mapping("p", R[1])
        assert m0 is not None
        assert (m0.from_number, m0.last_used) == (A, T0 - 50)
        assert m1 is not None
        assert (m1.from_number, m1.last_used) == (B, T0 - 40)
        assert e.recipients_of("p", A) == [R[0]]  # the reverse index moved with it
        assert e.recipients_of("p", B) == [R[1]]
        assert e.import_mappings("p", entries) == 0  # re-running writes nothing more
        e.store.check_invariants()

    def test_within_one_call_a_later_entry_meets_an_earlier_one(self) -> None:
        e = self.pool()
        entries = [(R[0], A, T0 - 10), (R[0], B, T0 - 20), (R[0], C, T0 - 5)]
        assert e.import_mappings("p", entries) == 2
        m = e.mapping("p", R[0])
        assert m is not None
        assert (m.from_number, m.last_used) == (C, T0 - 5)
        assert e.recipients_of("p", A) == []
        e.store.check_invariants()

    def test_dead_entries_are_skipped_and_a_dead_stored_mapping_replaced(self) -> None:
        e = self.pool()
        e.pin("p", R[0], A, now=T0 - TTL - 5)  # dead at T0, not yet evicted
        entries = [(R[0], B, T0 - TTL + 10), (R[1], A, T0 - TTL), (R[2], A, T0 - 2 * TTL)]
        assert e.import_mappings("p", entries) == 1
        m = e.mapping("p", R[0])
        assert m is not None
        assert m.from_number == B
        assert e.mapping("p", R[1]) is None  # last_used + ttl == now: dead
        assert e.mapping("p", R[2]) is None
        e.store.check_invariants()

    def test_liveness_is_judged_at_the_horizon(self) -> None:
        e = self.pool()
        e.select("p", TO, now=T0 + 100)  # a write that moves the horizon to T0 + 100
        # live at T0, dead at the horizon: a clock that went back does not revive it
        assert e.import_mappings("p", [(R[0], A, T0 + 100 - TTL)], now=T0) == 0
        assert e.import_mappings("p", [(R[0], A, T0 + 101 - TTL)], now=T0) == 1
        e.store.check_invariants()

    def test_a_last_use_after_now_is_kept_and_the_index_stays_valid(self) -> None:
        e = self.pool()
        assert e.import_mappings("p", [(R[0], A, T0 + 500)]) == 1
        m = e.mapping("p", R[0])
        assert m is not None
        assert m.last_used == T0 + 500
        e.store.check_invariants()
        self.advance(e, TTL + 499)
        assert e.evict_expired() == 0
        self.advance(e, 1)
        assert e.evict_expired() == 1
        e.store.check_invariants()

    def test_a_sender_not_in_the_pool_writes_nothing(self) -> None:
        e = self.pool()
        e.pin("p", R[0], A)
        e.create_profile("q", PoolSettings())
        e.add_number("q", OTHER)
        before = self.snapshot(e, R)
        for bad in (OTHER, "+19995550010"):  # in another pool, in none
            with pytest.raises(UnknownNumber):
                e.import_mappings("p", [(R[1], B, T0 - 1), (R[2], bad, T0 - 1)])
        assert self.snapshot(e, R) == before
        e.store.check_invariants()

    def test_bad_input_is_refused_before_anything_is_written(self) -> None:
        e = self.pool()
        before = self.snapshot(e, R)
        good = (R[0], A, T0 - 1)
        cases: list[tuple[type[Exception], object]] = [
            (InvalidNumber, [good, ("2125551234", A, T0)]),
            (InvalidNumber, [good, (R[1], "bogus", T0)]),
            (InvalidTime, [good, (R[1], A, math.nan)]),
            (InvalidTime, [good, (R[1], A, math.inf)]),
            (InvalidTime, [good, (R[1], A, "T0")]),
            (InvalidSettings, [good, (R[1], A)]),
            (InvalidSettings, [good, None]),
        ]
        for error, entries in cases:
            with pytest.raises(error):
                e.import_mappings("p", entries)  # type: ignore[arg-type]
        with pytest.raises(UnknownProfile):
            e.import_mappings("nope", [good])
        with pytest.raises(UnknownProfile):
            e.import_mappings("nope", [])
        assert self.snapshot(e, R) == before

    def test_an_import_is_not_a_new_recipient(self) -> None:
        e = self.engine()
        if not getattr(self, "keeps_capacity", True):  # then limits are refused
            with pytest.raises(IncompatibleStore):
                e.create_profile("p", PoolSettings(daily_new_recipients=1))
            return
        e.create_profile("p", PoolSettings(daily_new_recipients=1, long_code_rate=1.0))
        e.add_number("p", A)
        before = e.capacity("p")
        assert e.import_mappings("p", [(R[0], A, T0 - 5), (R[1], A, T0 - 1)]) == 2
        assert e.capacity("p") == before
        assert e.select("p", R[0]).from_number == A  # sticky: no budget needed
        e.store.check_invariants()

    def test_the_fallback_through_pin_agrees(self) -> None:
        e = self.pool()
        e.pin("p", R[0], A, now=T0 - 50)
        store = e.store
        entries = [(R[0], B, T0 - 60), (R[1], B, T0 - 40), (R[2], C, T0 - TTL)]
        with pytest.raises(UnknownNumber):
            import_by_pin(store, "p", [*entries, (R[3], OTHER, T0)], T0)
        assert store.mapping("p", R[1], T0) is None
        assert import_by_pin(store, "p", entries, T0) == 1
        assert store.mapping("p", R[1], T0) == (B, T0 - 40, TTL)
        assert import_by_pin(store, "p", entries, T0) == 0
        store.check_invariants()
