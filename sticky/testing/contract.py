"""The contract suite: every rule of SEMANTICS.md, run against any store.

Subclass :class:`StoreContract` in a module pytest collects and override
:meth:`~StoreContract.make_store` to return a fresh, empty store. The suite includes
the state machine of :mod:`sticky.testing.stateful` on that store; the fixtures are in
:mod:`sticky.testing.contract_base`, the errors and races in
:mod:`sticky.testing.contract_errors`, a number's life (drains, delivery health, opt-outs,
replies) in :mod:`sticky.testing.contract_life`.
"""

from __future__ import annotations

import math
from collections import Counter
from functools import partial

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from sticky.clock import ManualClock
from sticky.engine import Engine
from sticky.errors import (
    NumberInUse,
    UnknownNumber,
    UnknownProfile,
)
from sticky.numbers import NumberType
from sticky.settings import PoolSettings
from sticky.store.base import Store
from sticky.testing.contract_base import LONG, T0, TO, TOLL, TTL
from sticky.testing.contract_capacity import CapacityContract
from sticky.testing.contract_errors import ErrorsContract
from sticky.testing.contract_import import ImportContract
from sticky.testing.contract_life import LifeContract
from sticky.testing.stateful import StickyMachine
from sticky.values import GeoTier, Reason

__all__ = ["StoreContract"]


class StoreContract(ErrorsContract, CapacityContract, ImportContract, LifeContract):
    """Every SEMANTICS.md rule as a test; subclass and override :meth:`make_store`."""

    # -- select and expiry ----------------------------------------------------------
    def test_new_then_sticky(self) -> None:
        e = self.pool()
        first = e.select("p", TO)
        assert first.reason is Reason.NEW
        assert (first.profile_id, first.to) == ("p", TO)
        assert first.from_number in LONG + TOLL
        m = e.mapping("p", TO)
        assert m is not None
        assert (m.from_number, m.last_used, m.expires_at) == (first.from_number, T0, T0 + TTL)
        for _ in range(5):
            self.advance(e, 3600)
            again = e.select("p", TO)
            assert (again.from_number, again.reason) == (first.from_number, Reason.STICKY)
        m = e.mapping("p", TO)
        assert m is not None
        assert m.last_used == T0 + 5 * 3600

    def test_exact_ttl_boundary(self) -> None:
        e = self.pool()
        first = e.select("p", TO, now=T0)
        assert e.mapping("p", TO, now=T0 + TTL - 0.001) is not None
        assert e.mapping("p", TO, now=T0 + TTL) is None  # last_used + ttl is expired
        assert e.recipients_of("p", first.from_number, now=T0 + TTL) == []
        sel = e.select("p", TO, now=T0 + TTL - 0.001)
        assert sel.reason is Reason.STICKY
        last = T0 + TTL - 0.001
        after = e.select("p", TO, now=last + TTL)
        assert after.reason in {Reason.EXPIRED, Reason.NEW}
        m = e.mapping("p", TO, now=last + TTL)
        assert m is not None
        assert m.last_used == last + TTL

    def test_expired_reports_expired_when_still_stored(self) -> None:
        e = self.pool(toll_free=False)
        e.select("p", TO, now=T0)
        sel = e.select("p", TO, now=T0 + TTL)
        assert sel.reason is Reason.EXPIRED
        assert e.stats().mappings == 1

    def test_each_send_refreshes(self) -> None:
        e = self.pool()
        first = e.select("p", TO, now=T0)
        for day in range(1, 30, 7):
            sel = e.select("p", TO, now=T0 + day * 86_400)
            assert (sel.reason, sel.from_number) == (Reason.STICKY, first.from_number)

    def test_a_refreshed_mapping_survives_eviction_until_its_last_use_expires(self) -> None:
        e = self.pool()
        first = e.select("p", TO, now=T0)
        for k in range(1, 4):
            e.select("p", TO, now=T0 + k * TTL * 0.75)
            assert e.evict_expired(now=T0 + k * TTL * 0.75 + TTL * 0.5) == 0
            e.store.check_invariants()
        last = T0 + 3 * TTL * 0.75
        m = e.mapping("p", TO, now=last + TTL - 1)
        assert m is not None
        assert m.from_number == first.from_number
        assert e.evict_expired(now=last + TTL) == 1
        assert e.stats().mappings == 0
        e.store.check_invariants()

    def test_clock_going_backwards_never_makes_a_mapping_younger(self) -> None:
        e = self.pool()
        first = e.select("p", TO, now=T0 + 100)
        sel = e.select("p", TO, now=T0)
        assert (sel.reason, sel.from_number) == (Reason.STICKY, first.from_number)
        m = e.mapping("p", TO, now=T0)
        assert m is not None
        assert m.last_used == T0 + 100
        other = e.select("p", "+12125550000", now=T0 - 86_400)  # new, in the past
        assert other.reason is Reason.NEW
        e.store.check_invariants()
        assert e.evict_expired(now=T0 - 86_400 + TTL) == 1
        assert e.mapping("p", TO, now=T0 - 86_400 + TTL) is not None
        e.store.check_invariants()

    def test_an_expired_mapping_is_never_revived(self) -> None:
        e = self.pool()
        first = e.select("p", TO, now=T0)
        assert e.mapping("p", TO, now=T0 + TTL) is None
        # reads are pure: they move nothing, so an earlier read still sees it
        assert e.mapping("p", TO, now=T0 + 1) is not None
        # a write at a later time makes it dead for good, evicted or not
        e.select("p", "+12125550000", now=T0 + TTL)
        for now in (T0 + 1, T0 + TTL - 1):
            assert e.mapping("p", TO, now=now) is None
            assert e.recipients_of("p", first.from_number, now=now) in ([], ["+12125550000"])
        assert e.select("p", TO, now=T0 + 1).reason in {Reason.EXPIRED, Reason.NEW}
        # lengthening the ttl does not bring back what was dead either
        e.pin("p", "+12125550001", LONG[0], now=T0 - TTL)
        e.update_settings("p", ttl=3 * TTL)
        assert e.mapping("p", "+12125550001", now=T0 + 1) is None

    def test_reads_are_pure(self) -> None:
        e = self.pool()
        for i in range(10):
            e.select("p", f"+1212555{i:04d}", now=T0)
        late = T0 + 2 * TTL
        before = e.stats()
        for i in range(10):
            assert e.mapping("p", f"+1212555{i:04d}", now=late) is None
        for n in LONG + TOLL:
            assert e.recipients_of("p", n, now=late) == []
        e.numbers("p")
        e.settings("p")
        assert e.stats() == before
        assert before.mappings == 10

    # -- sticky off and on ----------------------------------------------------------
    def test_sticky_off_disregards_mappings_and_on_again_honours_live_ones(self) -> None:
        e = self.pool()
        first = e.select("p", TO, now=T0)
        e.update_settings("p", sticky_sender=False)
        seen = {e.select("p", TO, now=T0 + 10).from_number for _ in range(60)}
        assert len(seen) > 1
        assert all(
            e.select("p", "+12125550009", now=T0 + 10).reason is Reason.POOL for _ in range(3)
        )
        m = e.mapping("p", TO, now=T0 + 10)
        assert m is not None
        assert m.last_used == T0  # not refreshed
        assert e.mapping("p", "+12125550009", now=T0 + 10) is None  # not created
        e.update_settings("p", sticky_sender=True)
        sel = e.select("p", TO, now=T0 + 20)
        assert (sel.reason, sel.from_number) == (Reason.STICKY, first.from_number)
        # mappings kept ageing while off: off past the ttl, the mapping is gone
        e.update_settings("p", sticky_sender=False)
        e.update_settings("p", sticky_sender=True)
        assert e.select("p", TO, now=T0 + 20 + TTL).reason in {Reason.EXPIRED, Reason.NEW}

    def test_clear_on_sticky_off_deletes_the_mappings_with_the_change(self) -> None:
        e = self.pool(PoolSettings(clear_on_sticky_off=True))
        senders = {to: e.select("p", to).from_number for to in (TO, "+12125550009")}
        e.update_settings("p", ttl=TTL / 2)  # other changes keep them
        assert all(e.mapping("p", to) is not None for to in senders)
        assert e.stats().mappings == 2
        e.update_settings("p", sticky_sender=False)
        assert [e.mapping("p", to) for to in senders] == [None, None]
        assert e.recipients_of("p", senders[TO]) == []
        assert e.stats().mappings == 0
        e.update_settings("p", sticky_sender=True)
        assert e.select("p", TO).reason is Reason.NEW
        e.store.check_invariants()
        # without the setting, turning sticky off keeps them (the default)
        e.update_settings("p", clear_on_sticky_off=False, sticky_sender=False)
        assert e.mapping("p", TO) is not None

    # -- eligibility ----------------------------------------------------------------
    def test_unhealthy_keeps_mapping_unless_skip_unhealthy(self) -> None:
        e = self.pool()
        first = e.select("p", TO)
        e.set_health(first.from_number, False)
        sel = e.select("p", TO)
        assert (sel.reason, sel.from_number) == (Reason.STICKY, first.from_number)
        e.update_settings("p", skip_unhealthy=True)
        assert e.mapping("p", TO) is not None  # nothing deleted
        sel = e.select("p", TO)
        assert sel.reason is Reason.REASSIGNED
        assert sel.from_number != first.from_number
        for i in range(40):
            assert e.select("p", f"+1646555{i:04d}").from_number != first.from_number
        e.set_health(first.from_number, True)
        assert e.select("p", TO).reason is Reason.STICKY

    def test_weight_zero_takes_a_type_out(self) -> None:
        e = self.pool()
        e.update_settings("p", toll_free_weight=0)
        picks = {e.select("p", f"+1646555{i:04d}").from_number for i in range(60)}
        assert picks <= set(LONG)
        e.pin("p", TO, LONG[0])
        e.update_settings("p", toll_free_weight=1, long_code_weight=0)
        assert e.mapping("p", TO) is not None  # nothing deleted
        sel = e.select("p", TO)
        assert sel.reason is Reason.REASSIGNED
        assert sel.from_number in TOLL

    def test_weights_are_per_number(self) -> None:
        # 2 toll-free at weight 10 and 5 long codes at weight 1: each toll-free number
        # gets 10/25 of new recipients, each long code 1/25. Per-type weighting would
        # give each toll-free 0.4545, uniform 0.143; the tolerance (5 sigma) rules both out.
        e = self.engine(seed=12345)
        e.create_profile("w", PoolSettings(sticky_sender=False, toll_free_weight=10))
        longs = [f"+1312555{i:04d}" for i in range(5)]
        for n in longs:
            e.add_number("w", n)
        for n in TOLL:
            e.add_number("w", n, NumberType.TOLL_FREE)
        draws = 10_000
        counts = Counter(s.from_number for s in e.select_many("w", [TO] * draws))
        for n in TOLL:
            assert abs(counts[n] / draws - 0.4) < 5 * math.sqrt(0.4 * 0.6 / draws)
        for n in longs:
            assert abs(counts[n] / draws - 0.04) < 5 * math.sqrt(0.04 * 0.96 / draws)

    def test_same_seed_same_choices(self) -> None:
        a, b = self.pool(seed=99), self.pool(seed=99)
        recipients = [f"+1646555{i:04d}" for i in range(50)]
        assert [a.select("p", r).from_number for r in recipients] == [
            b.select("p", r).from_number for r in recipients
        ]

    def test_a_batch_makes_the_choices_of_one_by_one_selects(self) -> None:
        # Repeats included: a repeat is a hit on its new mapping with sticky on, and with
        # sticky off a choice of its own, with the draw of its place in the batch.
        rs = [f"+1646555{i:04d}" for i in range(6)]
        batch = [rs[0], rs[1], rs[0], rs[2], rs[3], rs[1], rs[4], rs[4], rs[5]]
        for sticky in (True, False):
            settings = PoolSettings(sticky_sender=sticky)
            a, b = self.pool(settings, seed=11), self.pool(settings, seed=11)
            many = [(s.to, s.from_number, s.reason) for s in a.select_many("p", batch)]
            one = [(s.to, s.from_number, s.reason) for s in map(partial(b.select, "p"), batch)]
            assert many == one, sticky
            assert a.stats() == b.stats()

    # -- cascades -------------------------------------------------------------------
    def test_remove_number_deletes_its_mappings_and_counts_live_ones(self) -> None:
        e = self.pool(toll_free=False)
        e.pin("p", "+12125550001", LONG[0], now=T0 - TTL)  # dead by T0
        for i in range(2, 6):
            e.pin("p", f"+1212555000{i}", LONG[0], now=T0)
        e.pin("p", "+12125550009", LONG[1], now=T0)
        assert e.remove_number("p", LONG[0], now=T0) == 4
        assert e.recipients_of("p", LONG[0], now=T0) == []
        assert e.mapping("p", "+12125550002", now=T0) is None
        assert e.stats().mappings == 1
        assert e.select("p", "+12125550002", now=T0).reason is Reason.NEW
        e.store.check_invariants()

    def test_delete_profile_frees_numbers_and_counts_live_mappings(self) -> None:
        e = self.pool()
        for i in range(3):
            e.select("p", f"+1212555000{i}", now=T0)
        e.select("p", "+12125550009", now=T0 - TTL)
        assert e.delete_profile("p", now=T0) == 3
        assert e.stats().mappings == 0
        with pytest.raises(UnknownProfile, match="'p'"):
            e.select("p", TO)
        e.create_profile("q")
        e.add_number("q", LONG[0])
        assert e.select("q", TO).from_number == LONG[0]

    def test_a_number_belongs_to_one_profile(self) -> None:
        e = self.pool()
        e.create_profile("q")
        before = self.snapshot(e)
        with pytest.raises(NumberInUse, match=r"\+13125550001"):
            e.add_number("q", LONG[0])
        with pytest.raises(NumberInUse):
            e.add_number("p", LONG[0])
        assert self.snapshot(e) == before
        e.remove_number("p", LONG[0])
        e.add_number("q", LONG[0], healthy=False)
        assert [(n.number, n.healthy) for n in e.numbers("q")] == [(LONG[0], False)]

    def test_numbers_are_sorted_with_type_and_health(self) -> None:
        e = self.pool()
        e.set_health(TOLL[1], False)
        got = [(n.number, n.type, n.healthy) for n in e.numbers("p")]
        want = sorted(
            [(n, NumberType.LONG_CODE, True) for n in LONG]
            + [(TOLL[0], NumberType.TOLL_FREE, True), (TOLL[1], NumberType.TOLL_FREE, False)]
        )
        assert got == want

    # -- inspection and override ----------------------------------------------------
    def test_pin_replaces_and_works_whatever_eligibility(self) -> None:
        e = self.pool(PoolSettings(skip_unhealthy=True))
        e.select("p", TO, now=T0)
        e.set_health(LONG[2], False)
        m = e.pin("p", TO, LONG[2], now=T0 + 5)
        assert (m.from_number, m.last_used, m.expires_at) == (LONG[2], T0 + 5, T0 + 5 + TTL)
        assert e.mapping("p", TO, now=T0 + 5) == m
        assert e.recipients_of("p", LONG[2], now=T0 + 5) == [TO]
        assert e.select("p", TO, now=T0 + 6).reason is Reason.REASSIGNED  # unhealthy, skipped
        e.update_settings("p", sticky_sender=False)
        e.pin("p", TO, LONG[2], now=T0 + 7)
        m2 = e.mapping("p", TO, now=T0 + 7)
        assert m2 is not None
        assert m2.from_number == LONG[2]
        before = self.snapshot(e)
        with pytest.raises(UnknownNumber, match=r"\+19995550000"):
            e.pin("p", TO, "+19995550000")
        assert self.snapshot(e) == before

    def test_pin_can_make_a_mapping_younger_than_a_late_clock(self) -> None:
        e = self.pool()
        e.select("p", TO, now=T0 + 1000)
        e.pin("p", TO, LONG[0], now=T0)  # a manual mapping: last_used = now
        m = e.mapping("p", TO, now=T0)
        assert m is not None
        assert m.last_used == T0
        assert e.evict_expired(now=T0 + TTL) == 1
        e.store.check_invariants()

    def test_forget_reports_whether_a_live_mapping_existed(self) -> None:
        e = self.pool()
        e.select("p", TO, now=T0)
        assert e.forget("p", TO, now=T0 + 1) is True
        assert e.mapping("p", TO, now=T0 + 1) is None
        assert e.forget("p", TO, now=T0 + 1) is False
        e.select("p", TO, now=T0)
        assert e.forget("p", TO, now=T0 + TTL) is False  # dead: removed, reported False
        assert e.stats().mappings == 0

    def test_recipients_of_lists_live_mappings_only(self) -> None:
        e = self.pool()
        e.pin("p", "+12125550002", LONG[0], now=T0)
        e.pin("p", "+12125550001", LONG[0], now=T0)
        e.pin("p", "+12125550003", LONG[0], now=T0 - TTL)
        assert e.recipients_of("p", LONG[0], now=T0) == ["+12125550001", "+12125550002"]
        assert e.recipients_of("p", "+19995550000", now=T0) == []
        e.remove_number("p", LONG[0])
        assert e.recipients_of("p", LONG[0], now=T0) == []

    # -- settings -------------------------------------------------------------------
    def test_ttl_change_applies_to_existing_mappings(self) -> None:
        e = self.pool()
        e.select("p", TO, now=T0)
        e.update_settings("p", ttl=3600)
        assert e.mapping("p", TO, now=T0 + 3599) is not None
        assert e.mapping("p", TO, now=T0 + 3600) is None
        assert e.evict_expired(now=T0 + 3600) == 1
        e.update_settings("p", ttl=TTL)
        assert e.mapping("p", TO, now=T0 + 3600) is None  # evicted is gone for good

    def test_settings_round_trip(self) -> None:
        e = self.engine()
        s = PoolSettings(
            sticky_sender=False,
            ttl=1234.5,
            long_code_weight=0.25,
            toll_free_weight=3,
            skip_unhealthy=True,
            geomatch="area_code",
        )
        e.create_profile("s", s)
        assert e.settings("s") == s
        assert e.update_settings("s", ttl=99) == e.settings("s")
        assert e.settings("s").ttl == 99.0

    # -- geomatch (built-in tier) ---------------------------------------------------
    def test_geomatch_prefers_the_area_code_and_falls_through(self) -> None:
        e = self.pool(PoolSettings(geomatch="area_code"))
        for i in range(30):
            sel = e.select("p", f"+1415555{i:04d}")
            assert (sel.from_number, sel.tier) == (LONG[2], GeoTier.AREA_CODE)
        sel = e.select("p", "+12125550000")
        assert sel.tier is GeoTier.NONE
        assert e.stats().tier_area_code == 30
        assert e.stats().tier_none == 1

    def test_a_live_mapping_wins_over_geomatch(self) -> None:
        e = self.pool()
        e.pin("p", "+14155550100", LONG[0])
        e.update_settings("p", geomatch="area_code")
        sel = e.select("p", "+14155550100")
        assert (sel.from_number, sel.reason, sel.tier) == (LONG[0], Reason.STICKY, None)

    # -- housekeeping ---------------------------------------------------------------
    def test_evict_expired_removes_dead_mappings_only(self) -> None:
        e = self.pool()
        for i in range(20):
            e.select("p", f"+1212555{i:04d}", now=T0 + i)
        assert e.evict_expired(now=T0 + TTL + 9.5) == 10
        assert e.stats().mappings == 10
        assert e.evict_expired(now=T0 + TTL + 9.5) == 0
        assert e.stats().evicted >= 10
        assert e.mapping("p", "+12125550010", now=T0 + TTL + 9.5) is not None
        e.store.check_invariants()

    def test_storage_stays_bounded_without_sweeps(self) -> None:
        e = self.pool()
        day = 86_400.0
        peak_live = 0
        for d in range(24):
            for i in range(30):
                e.select("p", f"+1646{d:03d}{i:04d}", now=T0 + d * day + i)
            peak_live = max(peak_live, 30 * min(d + 1, 8))
        stored = e.stats().mappings
        assert stored <= peak_live + 30, f"{stored} stored, {peak_live} live"

    # -- the state machine on this store ---------------------------------------------
    def test_state_machine(self) -> None:
        contract = self

        class Machine(StickyMachine):
            def make_stores(self) -> list[Store]:
                return [contract.make_store()]

            def make_engine(self, clock: ManualClock, store: Store) -> Engine:
                return contract.make_engine(clock=clock, seed=0, store=store)

        run_state_machine_as_test(
            Machine,
            settings=settings(
                max_examples=self.state_machine_examples,
                stateful_step_count=60,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
