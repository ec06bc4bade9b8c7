"""The contract suite's capacity part: rates, daily budgets and the choice between them.

:class:`~sticky.testing.StoreContract` includes it. A store that cannot keep capacity
(one without a one-step select) must refuse limits with IncompatibleStore: its contract
class sets ``keeps_capacity = False``, and then only that refusal is tested (the other
capacity tests are not collected for it).
"""

from __future__ import annotations

import datetime
import zoneinfo

import pytest

from sticky.engine import Engine
from sticky.errors import (
    IncompatibleStore,
    InvalidSettings,
    NoEligibleSender,
    PoolBusy,
    PoolExhausted,
    UnknownNumber,
)
from sticky.numbers import NumberType
from sticky.settings import GeoMatch, PoolSettings
from sticky.store.base import OneStepStore
from sticky.testing.contract_base import LONG, T0, TO, ContractBase
from sticky.values import Reason

__all__ = ["CapacityContract"]

A, B, C = LONG
RECIPIENTS = [f"+1212555{i:04d}" for i in range(40)]


class CapacityContract(ContractBase):
    """Every rule of Capacity in docs/semantics.md, on any store."""

    keeps_capacity = True
    """Whether the store keeps capacity (has a one-step select); False: it must refuse."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.keeps_capacity:  # only the refusal applies to such a store
            for name in dir(CapacityContract):
                if name.startswith("test_") and name != "test_refuses_limits_without_one_step":
                    setattr(cls, name, None)

    def limited(
        self, numbers: list[str] | None = None, seed: int = 7, **settings: object
    ) -> Engine:
        """An engine with profile ``p`` of long codes under capacity settings."""
        e = self.engine(seed=seed)
        e.create_profile("p", PoolSettings(**settings))
        for n in numbers if numbers is not None else [A]:
            e.add_number("p", n)
        return e

    @staticmethod
    def slot(e: Engine, number: str) -> float:
        return {c.number: c for c in e.capacity("p")}[number].next_slot

    @staticmethod
    def new_today(e: Engine, number: str) -> int:
        return {c.number: c for c in e.capacity("p")}[number].new_today

    # -- a store without capacity ---------------------------------------------------
    def test_refuses_limits_without_one_step(self) -> None:
        e = self.engine()
        assert isinstance(e.store, OneStepStore) is self.keeps_capacity
        if self.keeps_capacity:
            assert e.create_profile("p", PoolSettings(long_code_rate=1.0))
            return
        with pytest.raises(IncompatibleStore):
            e.create_profile("p", PoolSettings(long_code_rate=1.0))
        assert e.profiles() == []
        e.create_profile("p")
        with pytest.raises(IncompatibleStore):
            e.update_settings("p", daily_new_recipients=10)
        with pytest.raises(IncompatibleStore):
            e.add_number("p", A, rate=2.0)
        e.add_number("p", A)
        with pytest.raises(IncompatibleStore):
            e.set_limits(A, rate=2.0)
        assert e.settings("p") == PoolSettings()
        assert e.numbers("p")[0].rate is None
        assert e.select("p", TO).send_at == T0

    # -- rates ----------------------------------------------------------------------
    def test_without_limits_send_at_is_now(self) -> None:
        e = self.pool()
        assert all(e.select("p", to).send_at == T0 for to in RECIPIENTS[:5])
        assert all(c.next_slot == T0 and c.rate is None for c in e.capacity("p"))

    def test_a_rate_schedules_each_message(self) -> None:
        e = self.limited(long_code_rate=1.0)
        got = [e.select("p", to).send_at for to in RECIPIENTS[:3]]
        assert got == [T0, T0 + 1, T0 + 2]
        assert self.slot(e, A) == T0 + 3
        self.advance(e, 10)
        assert e.select("p", RECIPIENTS[0]).send_at == T0 + 10  # idle since: room now

    def test_a_burst_sends_at_once_then_at_the_rate(self) -> None:
        e = self.limited(long_code_rate=2.0, burst=3)
        got = [e.select("p", to).send_at for to in RECIPIENTS[:5]]
        assert got == [T0, T0, T0, T0 + 0.5, T0 + 1.0]

    def test_segments_count_against_the_rate(self) -> None:
        e = self.limited(long_code_rate=1.0)
        assert e.select("p", RECIPIENTS[0], segments=3).send_at == T0
        assert e.select("p", RECIPIENTS[1]).send_at == T0 + 3
        assert e.select_many("p", RECIPIENTS[2:4], segments=2)[1].send_at == T0 + 6

    def test_a_clock_that_goes_back_never_moves_a_schedule_back(self) -> None:
        e = self.limited(long_code_rate=1.0, burst=3)
        last = max(e.select("p", to).send_at for to in RECIPIENTS[:3])
        self.advance(e, -100)
        later = e.select("p", RECIPIENTS[3]).send_at
        assert later >= last
        assert self.slot(e, A) >= later

    def test_types_have_their_own_rate_and_numbers_their_own(self) -> None:
        e = self.limited([A, B], long_code_rate=1.0, toll_free_rate=3.0)
        e.add_number("p", "+18005550004", NumberType.TOLL_FREE)
        e.add_number("p", "+18885550005", NumberType.TOLL_FREE, rate=25.0)
        rates = {c.number: c.rate for c in e.capacity("p")}
        assert rates == {A: 1.0, B: 1.0, "+18005550004": 3.0, "+18885550005": 25.0}
        assert e.set_limits(A, rate=10.0).rate == 10.0
        assert {c.number: c.rate for c in e.capacity("p")}[A] == 10.0
        assert e.set_limits(A, rate=None).rate is None  # its type's again
        assert {c.number: c.rate for c in e.capacity("p")}[A] == 1.0

    def test_set_limits_keeps_the_schedule_and_rejects_bad_values(self) -> None:
        e = self.limited(long_code_rate=1.0, daily_new_recipients=5)
        e.select("p", RECIPIENTS[0])
        e.select("p", RECIPIENTS[1])
        before = e.capacity("p")
        for bad in ({"rate": 0}, {"rate": -1.0}, {"rate": float("inf")}, {"rate": "fast"}):
            with pytest.raises(InvalidSettings):
                e.set_limits(A, **bad)
        for bad_budget in (0, -3, 1.5, True):
            with pytest.raises(InvalidSettings):
                e.set_limits(A, daily_new_recipients=bad_budget)
        with pytest.raises(UnknownNumber):
            e.set_limits("+19995550000", rate=2.0)
        assert e.capacity("p") == before
        e.set_limits(A, daily_new_recipients=7)
        after = {c.number: c for c in e.capacity("p")}[A]
        assert (after.next_slot, after.new_today, after.daily_new_recipients) == (T0 + 2, 2, 7)

    def test_bad_segments_change_nothing(self) -> None:
        e = self.limited(long_code_rate=1.0)
        for bad in (0, -1, 1.5, True, "2", None):
            with pytest.raises(InvalidSettings):
                e.select("p", TO, segments=bad)  # type: ignore[arg-type]
            with pytest.raises(InvalidSettings):
                e.select_many("p", [TO], segments=bad)  # type: ignore[arg-type]
        assert e.mapping("p", TO) is None
        assert self.slot(e, A) == T0

    # -- daily budgets --------------------------------------------------------------
    def test_a_budget_refuses_new_recipients_until_the_next_day(self) -> None:
        e = self.limited(daily_new_recipients=2)
        e.select("p", RECIPIENTS[0])
        e.select("p", RECIPIENTS[1])
        before = self.snapshot(e, RECIPIENTS[:3])
        with pytest.raises(PoolExhausted) as refused:
            e.select("p", RECIPIENTS[2])
        assert isinstance(refused.value, NoEligibleSender)
        midnight = (int(T0 // 86_400) + 1) * 86_400.0  # UTC
        assert refused.value.retry_at == midnight
        assert self.snapshot(e, RECIPIENTS[:3]) == before
        assert self.new_today(e, A) == 2
        # A sticky hit never counts and is never refused.
        assert e.select("p", RECIPIENTS[0]).reason is Reason.STICKY
        e.clock.set(midnight)  # type: ignore[attr-defined]
        assert e.select("p", RECIPIENTS[2]).reason is Reason.NEW
        assert self.new_today(e, A) == 1

    def test_days_are_the_profile_time_zone(self) -> None:
        zone = zoneinfo.ZoneInfo("America/New_York")
        late = datetime.datetime(2026, 3, 7, 23, 59, tzinfo=zone).timestamp()  # before DST
        e = self.limited(daily_new_recipients=1, timezone="America/New_York")
        e.clock.set(late)  # type: ignore[attr-defined]
        e.select("p", RECIPIENTS[0])
        with pytest.raises(PoolExhausted) as refused:
            e.select("p", RECIPIENTS[1])
        midnight = datetime.datetime(2026, 3, 8, tzinfo=zone).timestamp()
        assert refused.value.retry_at == midnight
        e.clock.set(midnight + 1)  # type: ignore[attr-defined]
        assert e.select("p", RECIPIENTS[1]).reason is Reason.NEW
        with pytest.raises(PoolExhausted) as again:  # the day of the DST change is 23 h long
            e.select("p", RECIPIENTS[2])
        assert again.value.retry_at == midnight + 23 * 3600

    def test_a_full_number_is_skipped_for_one_with_budget(self) -> None:
        e = self.limited([A, B], daily_new_recipients=3)
        got = [e.select("p", to).from_number for to in RECIPIENTS[:6]]
        assert sorted(got) == [A, A, A, B, B, B]
        with pytest.raises(PoolExhausted):
            e.select("p", RECIPIENTS[6])

    def test_a_pin_counts_and_is_always_allowed(self) -> None:
        e = self.limited(daily_new_recipients=1)
        e.pin("p", RECIPIENTS[0], A)
        e.pin("p", RECIPIENTS[1], A)  # over the budget: a pin is the operator's word
        assert self.new_today(e, A) == 2
        assert self.slot(e, A) == T0  # and reserves no slot
        with pytest.raises(PoolExhausted):
            e.select("p", RECIPIENTS[2])

    def test_with_sticky_off_rates_apply_and_budgets_do_not(self) -> None:
        e = self.limited(sticky_sender=False, daily_new_recipients=1, long_code_rate=1.0)
        got = [e.select("p", TO) for _ in range(3)]
        assert [s.reason for s in got] == [Reason.POOL] * 3
        assert [s.send_at for s in got] == [T0, T0 + 1, T0 + 2]
        assert self.new_today(e, A) == 0

    def test_a_reassignment_respects_budgets(self) -> None:
        e = self.limited([A, B], skip_unhealthy=True, daily_new_recipients=1)
        first = e.select("p", RECIPIENTS[0]).from_number
        other = B if first == A else A
        e.select("p", RECIPIENTS[1])  # the other number's budget goes to a new recipient
        assert e.mapping("p", RECIPIENTS[1]).from_number == other  # type: ignore[union-attr]
        e.set_health(first, False)
        with pytest.raises(PoolExhausted):
            e.select("p", RECIPIENTS[0])
        assert e.mapping("p", RECIPIENTS[0]).from_number == first  # type: ignore[union-attr]

    # -- choosing with capacity -----------------------------------------------------
    def test_a_fresh_choice_takes_a_number_with_room(self) -> None:
        for seed in range(5):
            e = self.limited([A, B], seed=seed, long_code_rate=0.1)
            first = e.select("p", RECIPIENTS[0])
            second = e.select("p", RECIPIENTS[1])
            assert {first.from_number, second.from_number} == {A, B}
            assert second.send_at == T0
            third = e.select("p", RECIPIENTS[2])  # none has room: the earliest slot
            assert third.send_at == T0 + 10

    def test_choice_wait_keeps_geomatch_over_a_short_wait(self) -> None:
        near, far = "+12125550001", "+13125550009"  # near: the recipients' area code
        for wait, want in ((0.0, far), (5.0, near)):
            e = self.limited(
                [near, far], long_code_rate=0.5, geomatch=GeoMatch.AREA_CODE, choice_wait=wait
            )
            assert e.select("p", RECIPIENTS[0]).from_number == near
            got = e.select("p", RECIPIENTS[1])
            assert got.from_number == want
            assert got.send_at == (T0 + 2 if want == near else T0)

    def test_a_sticky_recipient_waits_for_its_number_by_default(self) -> None:
        e = self.limited([A, B], long_code_rate=0.1)
        sender = e.select("p", TO).from_number
        for i in range(1, 4):
            again = e.select("p", TO)
            assert (again.from_number, again.reason) == (sender, Reason.STICKY)
            assert again.send_at == T0 + 10 * i
        assert e.stats().waited == 3

    def test_max_wait_moves_a_sticky_recipient_to_a_sooner_number(self) -> None:
        e = self.limited([A, B], long_code_rate=0.1, max_wait=5.0, daily_new_recipients=5)
        sender = e.select("p", TO).from_number
        other = B if sender == A else A
        moved = e.select("p", TO)
        assert (moved.from_number, moved.reason, moved.send_at) == (other, Reason.OVERFLOW, T0)
        assert e.mapping("p", TO).from_number == other  # type: ignore[union-attr]
        assert self.new_today(e, other) == 1  # its budget counts the moved recipient
        assert e.stats().overflow == 1
        # Both busy now: no number is sooner than its own, so it stays and waits.
        stay = e.select("p", TO)
        assert (stay.from_number, stay.reason, stay.send_at) == (other, Reason.STICKY, T0 + 10)

    def test_an_overflow_needs_budget_left(self) -> None:
        e = self.limited([A, B], long_code_rate=0.1, max_wait=0.0, daily_new_recipients=1)
        first = e.select("p", RECIPIENTS[0]).from_number
        e.select("p", RECIPIENTS[1])  # the other number takes its one new recipient
        stay = e.select("p", RECIPIENTS[0])
        assert (stay.from_number, stay.reason, stay.send_at) == (first, Reason.STICKY, T0 + 10)

    def test_max_queue_refuses_and_reserves_nothing(self) -> None:
        e = self.limited(long_code_rate=1.0, max_queue=1.0)
        e.select("p", RECIPIENTS[0])
        e.select("p", RECIPIENTS[1])  # send_at T0 + 1: within max_queue
        before = self.snapshot(e, RECIPIENTS[:3])
        slot = self.slot(e, A)
        with pytest.raises(PoolBusy) as busy:
            e.select("p", RECIPIENTS[2])
        assert busy.value.retry_at == T0 + 1  # then its slot (T0 + 2) is within 1 s
        with pytest.raises(PoolBusy):  # max_queue refuses a sticky recipient too
            e.select("p", RECIPIENTS[0])
        assert (self.snapshot(e, RECIPIENTS[:3]), self.slot(e, A)) == (before, slot)
        stats = e.stats()
        assert (stats.busy, stats.exhausted) == (2, 0)

    def test_a_batch_reserves_in_order_and_stops_at_a_refusal(self) -> None:
        e = self.limited([A], long_code_rate=1.0, daily_new_recipients=3)
        with pytest.raises(PoolExhausted):
            e.select_many("p", RECIPIENTS[:5])
        assert [e.mapping("p", to) is not None for to in RECIPIENTS[:5]] == [True] * 3 + [
            False
        ] * 2
        out = e.select_many("p", [RECIPIENTS[0], RECIPIENTS[1], RECIPIENTS[0]])
        assert [s.send_at for s in out] == [T0 + 3, T0 + 4, T0 + 5]
        assert [s.reason for s in out] == [Reason.STICKY] * 3
        assert e.stats().exhausted == 1

    # -- cascades -------------------------------------------------------------------
    def test_removing_a_number_drops_its_capacity_state(self) -> None:
        e = self.limited([A, B], long_code_rate=1.0, daily_new_recipients=5)
        for to in RECIPIENTS[:4]:
            e.select("p", to)
        e.remove_number("p", A)
        e.add_number("p", A)
        fresh = {c.number: c for c in e.capacity("p")}[A]
        assert (fresh.next_slot, fresh.new_today) == (T0, 0)
        e.delete_profile("p")
        e.create_profile("p", PoolSettings(long_code_rate=1.0))
        e.add_number("p", B)
        assert self.slot(e, B) == T0

    def test_capacity_reads_change_nothing(self) -> None:
        e = self.limited([A, B], long_code_rate=1.0, daily_new_recipients=9)
        e.select("p", TO)
        first = e.capacity("p")
        assert e.capacity("p") == first
        assert e.capacity("p", now=T0 + 100) != first  # the slots are judged at now
        assert e.capacity("p") == first
        (used,) = (c for c in first if c.new_today)
        assert used.budget_left == 8
