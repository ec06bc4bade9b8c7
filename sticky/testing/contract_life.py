"""The contract suite's "a number's life" part: drains, delivery health, opt-outs, replies.

:class:`~sticky.testing.StoreContract` includes it. Every rule of the section "A number's
life" of docs/semantics.md is a test here, with exact values, on any store.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable

import pytest

from sticky.engine import Engine
from sticky.errors import (
    InvalidNumber,
    InvalidSettings,
    InvalidTime,
    NoEligibleSender,
    OptedOut,
    PoolExhausted,
    StickyError,
    UnknownNumber,
    UnknownProfile,
)
from sticky.numbers import NumberType, SenderNumber
from sticky.settings import PoolSettings
from sticky.testing.contract_base import LONG, T0, TO, TOLL, TTL, ContractBase
from sticky.values import Keyword, NumberHealth, Outcome, Reason, Reply, ReplyAction

__all__ = ["LifeContract"]

A, B, C = LONG
X, Y, Z = "+16465550001", "+16465550002", "+16465550003"
NEW = [f"+1917555{i:04d}" for i in range(30)]
OTHERS = [f"+1718555{i:04d}" for i in range(30)]
OUTSIDE = "+19995550000"
"""A valid number in no pool."""

WINDOW = 2400.0
"""A health window whose buckets are 100 s each (T0 is on a bucket's start)."""

_WITH_CAPACITY = (
    "test_a_drained_number_takes_no_new_recipient_whatever_its_budget",
    "test_a_sticky_recipient_of_a_draining_number_waits_for_its_slot",
    "test_a_kept_recipient_with_nowhere_to_overflow_waits",
    "test_a_moved_or_mapped_reply_counts_a_new_recipient_whatever_its_budget",
)
"""The tests that need a store that keeps capacity."""


def health_settings(**more: float) -> PoolSettings:
    """Settings that judge a number on 4 reports, in buckets of 100 s."""
    return PoolSettings(min_samples=4, health_window=WINDOW, **more)


OPT_OUT_WORDS = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"]
OPT_IN_WORDS = ["START", "UNSTOP", "YES"]


class LifeContract(ContractBase):
    """Every rule of "A number's life" in docs/semantics.md, on any store."""

    keeps_capacity = True
    """As :attr:`CapacityContract.keeps_capacity`: False leaves out the capacity tests."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.keeps_capacity:
            for name in _WITH_CAPACITY:
                setattr(cls, name, None)

    def reopened(self, e: Engine) -> Engine:
        """A new engine on the data of ``e``, as after a restart.

        By default a new engine on the same store (what the engine kept is gone); a
        store that can be closed and opened again overrides it to do so.
        """
        return self.engine(seed=1, store=e.store)

    def life(
        self, settings: PoolSettings | None = None, numbers: list[str] | None = None
    ) -> Engine:
        """An engine with profile ``p`` holding long codes (A and B by default)."""
        e = self.engine()
        e.create_profile("p", settings or PoolSettings())
        for n in numbers if numbers is not None else [A, B]:
            e.add_number("p", n)
        return e

    @staticmethod
    def number(e: Engine, number: str, profile_id: str = "p") -> SenderNumber:
        return {n.number: n for n in e.numbers(profile_id)}[number]

    @staticmethod
    def counts(e: Engine, number: str, now: float) -> tuple[bool, bool, int, int, int]:
        h = {h.number: h for h in e.health("p", now=now)}[number]
        return h.healthy, h.delivery_healthy, h.delivered, h.failed, h.spam

    @staticmethod
    def report(
        e: Engine, number: str, outcome: Outcome | str, times: int, now: float
    ) -> list[bool]:
        """``times`` reports of ``outcome``; the verdict after each."""
        return [e.record_delivery(number, outcome, now=now).delivery_healthy for _ in range(times)]

    def life_snapshot(self, e: Engine, now: float = T0) -> object:
        """Everything observable, a number's life included, to show a call changed nothing."""
        out = []
        for pid in e.profiles():
            maps = [e.mapping(pid, to, now=now) for to in [TO, X, Y, Z]]
            rec = [e.recipients_of(pid, n.number, now=now) for n in e.numbers(pid)]
            out.append((pid, e.numbers(pid), e.health(pid, now=now), e.opt_outs(pid), maps, rec))
        return out, e.stats()

    # -- draining -------------------------------------------------------------------
    def test_a_drain_keeps_live_mappings_and_takes_no_new_recipient(self) -> None:
        e = self.life(numbers=[A])
        assert e.select("p", TO, now=T0).from_number == A
        drained = e.drain("p", A, now=T0 + 10)
        assert (drained.number, drained.draining_since, drained.drain_grace) == (A, T0 + 10, None)
        assert drained.draining
        assert self.number(e, A) == drained
        before = self.life_snapshot(e, T0 + 20)
        with pytest.raises(NoEligibleSender):
            e.select("p", X, now=T0 + 20)
        assert self.life_snapshot(e, T0 + 20) == before
        # Without a grace the live mapping keeps its number as long as it lives.
        for now in (T0 + 30, T0 + TTL / 2, T0 + TTL / 2 + TTL - 1):
            sel = e.select("p", TO, now=now)
            assert (sel.from_number, sel.reason) == (A, Reason.STICKY)
        last = T0 + TTL / 2 + TTL - 1
        assert e.mapping("p", TO, now=last).last_used == last  # type: ignore[union-attr]
        assert e.recipients_of("p", A, now=last) == [TO]
        e.add_number("p", B)
        out = e.select_many("p", [TO, X], now=last)
        assert [(s.from_number, s.reason) for s in out] == [(A, Reason.STICKY), (B, Reason.NEW)]
        undrained = e.undrain("p", A)
        assert (undrained.draining_since, undrained.drain_grace) == (None, None)
        assert not undrained.draining
        e.remove_number("p", B)
        assert e.select("p", Y, now=last).from_number == A  # it takes new recipients again

    def test_a_batch_after_a_pool_change_chooses_from_the_new_pool(self) -> None:
        # A batch's read may send a changed pool once: every fresh choice of the batch,
        # not only the first, is of the new pool.
        for change in ("drain", "verdict", "set_health"):
            e = self.life(PoolSettings(skip_unhealthy=True, min_samples=2))
            e.select_many("p", OTHERS[:2], now=T0)  # the engine holds this pool's chooser
            if change == "drain":
                e.drain("p", A, now=T0)
            elif change == "verdict":
                self.report(e, A, Outcome.FAILED, 2, T0)
            else:
                e.set_health(A, healthy=False)
            out = e.select_many("p", NEW, now=T0 + 1)
            assert [(s.from_number, s.reason) for s in out] == [(B, Reason.NEW)] * len(NEW)
            e.store.check_invariants()

    def test_a_batch_stopped_by_a_drain_refreshes_nothing_after_it(self) -> None:
        # The last eligible number drains: its recipients stay, a new one has no sender.
        e = self.life(numbers=[A])
        e.select_many("p", [TO, Y], now=T0)
        e.drain("p", A, now=T0)
        with pytest.raises(NoEligibleSender):
            e.select_many("p", [Y, X, TO], now=T0 + 100)
        assert e.mapping("p", Y, now=T0 + 100).last_used == T0 + 100  # type: ignore[union-attr]
        assert e.mapping("p", TO, now=T0 + 100).last_used == T0  # type: ignore[union-attr]
        assert e.mapping("p", X, now=T0 + 100) is None
        assert (e.stats().new, e.stats().sticky) == (2, 1)
        e.store.check_invariants()

    def test_a_drain_grace_ends_at_since_plus_grace(self) -> None:
        e = self.life()
        e.pin("p", TO, A, now=T0)
        e.pin("p", X, A, now=T0)
        assert e.drain("p", A, grace=100, now=T0).drain_grace == 100.0
        sel = e.select("p", TO, now=T0 + 99.5)
        assert (sel.from_number, sel.reason) == (A, Reason.STICKY)
        # Ended but not selected yet: still listed, until the next select reassigns it.
        assert e.recipients_of("p", A, now=T0 + 100) == [TO, X]
        sel = e.select("p", TO, now=T0 + 100)
        assert (sel.from_number, sel.reason) == (B, Reason.REASSIGNED)
        assert e.mapping("p", TO, now=T0 + 100).from_number == B  # type: ignore[union-attr]
        assert e.recipients_of("p", A, now=T0 + 100) == [X]
        out = e.select_many("p", [X, TO], now=T0 + 101)
        assert [(s.from_number, s.reason) for s in out] == [
            (B, Reason.REASSIGNED),
            (B, Reason.STICKY),
        ]
        assert e.stats().reassigned == 2
        assert e.recipients_of("p", A, now=T0 + 101) == []
        timed = e.drain("p", B, grace=datetime.timedelta(minutes=2), now=T0 + 200)
        assert (timed.draining_since, timed.drain_grace) == (T0 + 200, 120.0)

    def test_a_zero_grace_reassigns_at_the_next_select(self) -> None:
        e = self.life()
        e.pin("p", TO, A, now=T0)
        e.drain("p", A, grace=0, now=T0 + 5)
        assert (self.number(e, A).draining_since, self.number(e, A).drain_grace) == (T0 + 5, 0.0)
        sel = e.select("p", TO, now=T0 + 5)
        assert (sel.from_number, sel.reason) == (B, Reason.REASSIGNED)

    def test_a_drain_of_a_draining_number_starts_afresh(self) -> None:
        e = self.life()
        e.pin("p", TO, A, now=T0)
        e.drain("p", A, grace=100, now=T0)
        again = e.drain("p", A, grace=1000, now=T0 + 50)
        assert (again.draining_since, again.drain_grace) == (T0 + 50, 1000.0)
        assert e.select("p", TO, now=T0 + 500).reason is Reason.STICKY  # past the old end
        e.drain("p", A, now=T0 + 600)  # without a grace: it never ends the mapping
        assert (self.number(e, A).draining_since, self.number(e, A).drain_grace) == (
            T0 + 600,
            None,
        )
        assert e.select("p", TO, now=T0 + 5000).reason is Reason.STICKY
        e.drain("p", A, grace=10, now=T0 + 6000)
        sel = e.select("p", TO, now=T0 + 6010)
        assert (sel.from_number, sel.reason) == (B, Reason.REASSIGNED)

    def test_a_grace_is_judged_at_the_select_now_not_the_horizon(self) -> None:
        e = self.life()
        e.pin("p", TO, A, now=T0)
        e.drain("p", A, grace=100, now=T0)
        e.pin("p", X, B, now=T0 + 500)  # moves the horizon past the grace's end
        sel = e.select("p", TO, now=T0 + 50)
        assert (sel.from_number, sel.reason) == (A, Reason.STICKY)
        assert e.select("p", TO, now=T0 + 100).reason is Reason.REASSIGNED

    def test_a_grace_ends_exactly_at_its_deadline(self) -> None:
        since, grace = T0 + 0.1234567, 0.001
        end = since + grace  # as floats add: every store compares with this very value
        e = self.life()
        e.pin("p", TO, A, now=T0)
        drained = e.drain("p", A, grace=grace, now=since)
        assert (drained.draining_since, drained.drain_grace) == (since, grace)
        assert self.number(e, A) == drained
        before = math.nextafter(end, -math.inf)
        assert e.select("p", TO, now=before).reason is Reason.STICKY
        assert e.record_reply("p", TO, A, now=before).action is ReplyAction.REFRESHED
        assert e.record_reply("p", TO, A, now=end).action is ReplyAction.INELIGIBLE
        sel = e.select("p", TO, now=end)
        assert (sel.from_number, sel.reason) == (B, Reason.REASSIGNED)
        e.store.check_invariants()

    def test_an_undrained_number_keeps_its_recipients_again(self) -> None:
        e = self.life()
        e.pin("p", TO, A, now=T0)
        e.drain("p", A, grace=10, now=T0)
        e.undrain("p", A)
        sel = e.select("p", TO, now=T0 + 1000)
        assert (sel.from_number, sel.reason) == (A, Reason.STICKY)

    def test_removing_a_draining_number_cascades(self) -> None:
        e = self.life()
        e.pin("p", TO, A, now=T0)
        e.pin("p", X, A, now=T0)
        e.pin("p", Y, A, now=T0 - TTL)  # dead: not counted
        e.drain("p", A, grace=50, now=T0)
        assert e.remove_number("p", A, now=T0 + 100) == 2  # its grace ended: still counted
        assert e.recipients_of("p", A, now=T0 + 100) == []
        assert e.mapping("p", TO, now=T0 + 100) is None
        assert e.stats().mappings == 0
        e.add_number("p", A)
        assert (self.number(e, A).draining_since, self.number(e, A).drain_grace) == (None, None)
        e.store.check_invariants()

    def test_a_drained_number_takes_no_new_recipient_whatever_its_budget(self) -> None:
        e = self.life(PoolSettings(daily_new_recipients=5))
        e.drain("p", A, now=T0)
        assert [e.select("p", to, now=T0).from_number for to in NEW[:5]] == [B] * 5
        with pytest.raises(PoolExhausted):
            e.select("p", NEW[5], now=T0)
        new_today = {c.number: c.new_today for c in e.capacity("p", now=T0)}
        assert new_today == {A: 0, B: 5}

    def test_a_sticky_recipient_of_a_draining_number_waits_for_its_slot(self) -> None:
        e = self.life(PoolSettings(long_code_rate=1.0), numbers=[A])
        assert e.select("p", TO, now=T0).send_at == T0
        e.drain("p", A, now=T0)
        got = [e.select("p", TO, now=T0) for _ in range(2)]
        assert [(s.from_number, s.reason, s.send_at) for s in got] == [
            (A, Reason.STICKY, T0 + 1),
            (A, Reason.STICKY, T0 + 2),
        ]
        assert {c.number: c.next_slot for c in e.capacity("p", now=T0)} == {A: T0 + 3}

    def test_a_kept_recipient_with_nowhere_to_overflow_waits(self) -> None:
        # Past max_wait a sticky recipient overflows to a number with a sooner slot; the
        # drained number was the only one, so there is none and it waits for its slot.
        e = self.life(PoolSettings(long_code_rate=1.0, max_wait=0.0), numbers=[A])
        assert e.select("p", TO, now=T0).send_at == T0
        e.drain("p", A, now=T0)
        sel = e.select("p", TO, now=T0)
        assert (sel.from_number, sel.reason, sel.send_at) == (A, Reason.STICKY, T0 + 1)
        with pytest.raises(NoEligibleSender):
            e.select("p", X, now=T0)
        e.store.check_invariants()

    def test_bad_drains_are_refused_and_change_nothing(self) -> None:
        e = self.life()
        e.pin("p", TO, A, now=T0)
        e.drain("p", B, grace=5, now=T0)
        before = self.life_snapshot(e)
        for bad in (-1, -0.5, math.nan, math.inf, "10", True, datetime.timedelta(seconds=-1)):
            with pytest.raises(InvalidSettings, match="grace"):
                e.drain("p", A, grace=bad, now=T0)  # type: ignore[arg-type]
        calls: list[tuple[Callable[[], object], type[Exception]]] = [
            (lambda: e.drain("p", OUTSIDE, now=T0), UnknownNumber),
            (lambda: e.undrain("p", OUTSIDE), UnknownNumber),
            (lambda: e.drain("nope", A, now=T0), UnknownProfile),
            (lambda: e.undrain("nope", B), UnknownProfile),
            (lambda: e.drain("p", "3125550001", now=T0), InvalidNumber),
            (lambda: e.undrain("p", "+1 312 555 0002"), InvalidNumber),
            (lambda: e.drain("p", A, now=math.nan), InvalidTime),
        ]
        for call, error in calls:
            with pytest.raises(error):
                call()
        assert self.life_snapshot(e) == before

    # -- health from delivery reports -----------------------------------------------
    def test_the_delivery_threshold_is_strict(self) -> None:
        e = self.life(health_settings())
        assert self.report(e, A, "delivered", 1, T0) == [True]
        assert self.report(e, A, "failed", 3, T0) == [True] * 3  # 1/4 is not below 1/4
        assert self.counts(e, A, T0) == (True, True, 1, 3, 0)
        assert self.report(e, A, "failed", 1, T0) == [False]  # 1/5 is
        assert self.number(e, A).delivery_healthy is False
        assert self.number(e, A).healthy is True
        assert self.number(e, A).is_healthy is False
        assert self.counts(e, A, T0) == (True, False, 1, 4, 0)
        assert self.number(e, B).delivery_healthy is True  # reports are per number

    def test_the_spam_threshold_is_strict_and_failures_are_not_spam(self) -> None:
        e = self.life(health_settings(min_delivery_rate=0))
        assert self.report(e, A, "failed", 10, T0) == [True] * 10  # not spam
        assert self.report(e, B, Outcome.DELIVERED, 1, T0) == [True]
        assert self.report(e, B, Outcome.SPAM, 3, T0) == [True] * 3  # 3/4 is not above 3/4
        assert self.report(e, B, Outcome.SPAM, 1, T0) == [False]  # 4/5 is
        assert self.counts(e, B, T0) == (True, False, 1, 0, 4)

    def test_a_share_at_a_threshold_as_written_is_at_it(self) -> None:
        # 3 of 30 is 0.1 and 12 of 40 is 0.1 + 0.2, though 0.1 * 30 > 3 and 0.1 + 0.2 > 0.3
        # in floating point.
        settings = PoolSettings(
            min_samples=30, health_window=WINDOW, min_delivery_rate=0.1, health_margin=0.2
        )
        e = self.life(settings)
        self.report(e, A, Outcome.FAILED, 27, T0)
        assert self.report(e, A, Outcome.DELIVERED, 3, T0) == [True] * 3  # not below 0.1
        assert self.report(e, A, Outcome.FAILED, 1, T0) == [False]  # 3 of 31
        assert self.report(e, A, Outcome.DELIVERED, 9, T0) == [False] * 8 + [True]  # 12 of 40

    def test_fewer_than_min_samples_is_healthy(self) -> None:
        e = self.life(health_settings())
        assert self.report(e, A, "spam", 3, T0) == [True] * 3
        assert self.report(e, A, "failed", 1, T0) == [False]
        d = self.life(PoolSettings())
        assert self.report(d, A, "failed", 20, T0) == [True] * 19 + [False]  # min_samples=20

    def test_recovery_needs_the_margin(self) -> None:
        # delivered below 1/2 turns it unhealthy; it recovers at 3/4 (1/2 + 1/4), no sooner.
        s = health_settings(min_delivery_rate=0.5, max_spam_rate=1.0, health_margin=0.25)
        e = self.life(s)
        assert self.report(e, A, "failed", 4, T0) == [True] * 3 + [False]
        assert self.report(e, A, "delivered", 12, T0) == [False] * 11 + [True]  # 12/16
        assert self.report(e, A, "failed", 8, T0) == [True] * 8  # 12/24: not below 1/2
        assert self.report(e, A, "failed", 1, T0) == [False]  # 12/25
        assert self.report(e, A, "delivered", 1, T0) == [False]  # 13/26 would be healthy
        # The spam side: above 1/2 turns it unhealthy, it recovers at 1/4 (1/2 - 1/4).
        s = health_settings(min_delivery_rate=0, max_spam_rate=0.5, health_margin=0.25)
        e = self.life(s)
        assert self.report(e, A, "spam", 4, T0) == [True] * 3 + [False]
        assert self.report(e, A, "delivered", 12, T0) == [False] * 11 + [True]  # 4/16 spam

    def test_the_window_slides_and_a_verdict_stays_until_a_report(self) -> None:
        e = self.life(health_settings())
        assert self.report(e, A, "failed", 4, T0)[-1] is False
        assert self.report(e, A, "delivered", 1, T0 + 1000) == [False]  # 1/5: not 0.3
        assert self.counts(e, A, T0 + WINDOW - 0.5) == (True, False, 1, 4, 0)  # 24th bucket
        assert self.counts(e, A, T0 + WINDOW) == (True, False, 1, 0, 0)  # T0's bucket left
        assert self.number(e, A).delivery_healthy is False  # aged out, no report: kept
        # The next report is judged on what is left: 2 outcomes, too few to judge.
        assert self.report(e, A, "delivered", 1, T0 + WINDOW) == [True]
        assert self.counts(e, A, T0 + WINDOW) == (True, True, 2, 0, 0)
        assert self.counts(e, A, T0 + 1000 + WINDOW) == (True, True, 1, 0, 0)
        assert self.counts(e, A, T0 + 2 * WINDOW) == (True, True, 0, 0, 0)

    def test_a_new_health_window_starts_every_window_afresh(self) -> None:
        e = self.life(health_settings(skip_unhealthy=True))
        self.report(e, A, Outcome.FAILED, 4, T0)
        self.report(e, B, Outcome.DELIVERED, 1, T0)
        assert self.counts(e, A, T0) == (True, False, 0, 4, 0)
        e.update_settings("p", health_window=WINDOW * 10)  # buckets ten times as wide
        assert self.counts(e, A, T0) == (True, False, 0, 0, 0)  # the verdict stands
        assert self.counts(e, B, T0) == (True, True, 0, 0, 0)
        # New reports count in the new buckets (none is taken for an old one).
        assert self.report(e, A, Outcome.DELIVERED, 4, T0 + 1) == [True] * 4
        assert self.counts(e, A, T0 + 1) == (True, True, 4, 0, 0)
        e.update_settings("p", min_samples=5)  # another setting keeps the windows
        assert self.counts(e, A, T0 + 1) == (True, True, 4, 0, 0)
        e.store.check_invariants()

    def test_a_late_report_counts_in_its_own_bucket_or_is_dropped(self) -> None:
        e = self.life(health_settings())
        self.report(e, A, "delivered", 3, T0 + 2000)
        assert self.report(e, A, "failed", 1, T0 - 300) == [True]  # bucket still in the window
        assert self.counts(e, A, T0 + 2000) == (True, True, 3, 1, 0)
        assert self.counts(e, A, T0 - 300 + WINDOW) == (True, True, 3, 0, 0)
        for _ in range(5):  # older than the window's 24 buckets: dropped
            assert e.record_delivery(A, "failed", now=T0 - 400).delivery_healthy is True
        assert self.counts(e, A, T0 + 2000) == (True, True, 3, 1, 0)
        # A late report is judged with the reports after it (alone, 4 failures would not do).
        self.report(e, B, "delivered", 3, T0 + 2000)
        assert self.report(e, B, "failed", 4, T0) == [True] * 4  # 3/7 delivered
        assert self.counts(e, B, T0 + 2000) == (True, True, 3, 4, 0)

    def test_manual_and_measured_health_combine(self) -> None:
        e = self.life(health_settings(skip_unhealthy=True))
        e.set_health(A, False)  # the caller's word, whatever its reports
        self.report(e, A, "delivered", 5, T0)
        assert self.counts(e, A, T0) == (False, True, 5, 0, 0)
        assert self.number(e, A).is_healthy is False
        assert {e.select("p", to, now=T0).from_number for to in NEW[:10]} == {B}
        e.set_health(B, False)
        self.report(e, B, "failed", 4, T0)
        e.set_health(B, False)  # False keeps its window and its verdict
        assert self.counts(e, B, T0) == (False, False, 0, 4, 0)
        e.set_health(B, True)  # the caller vouches for it: both flags, a fresh window
        assert self.counts(e, B, T0) == (True, True, 0, 0, 0)
        assert self.number(e, B).is_healthy is True
        assert self.report(e, B, "failed", 3, T0) == [True] * 3  # the old four are gone
        e.set_health(A, True)
        assert self.counts(e, A, T0) == (True, True, 0, 0, 0)
        health = e.health("p", now=T0)
        assert health == (
            NumberHealth(A, True, True, 0, 0, 0),
            NumberHealth(B, True, True, 0, 3, 0),
        )
        assert health[1].samples == 3
        assert (health[1].delivery_rate, health[1].spam_rate) == (0.0, 0.0)
        assert (health[0].delivery_rate, health[0].spam_rate) == (None, None)

    def test_an_unhealthy_number_loses_its_recipients_with_skip_unhealthy(self) -> None:
        e = self.life(health_settings(skip_unhealthy=True))
        e.pin("p", TO, A, now=T0)
        assert e.select("p", TO, now=T0).reason is Reason.STICKY
        self.report(e, A, "failed", 4, T0)
        assert e.mapping("p", TO, now=T0).from_number == A  # type: ignore[union-attr]
        sel = e.select("p", TO, now=T0 + 1)
        assert (sel.from_number, sel.reason) == (B, Reason.REASSIGNED)
        assert {e.select("p", to, now=T0 + 1).from_number for to in NEW} == {B}
        # Recovered (by its reports): a pool change again, A takes new recipients.
        assert self.report(e, A, "delivered", 2, T0 + 2) == [False, True]  # 1/5, then 2/6
        assert {e.select("p", to, now=T0 + 3).from_number for to in OTHERS} == {A, B}

    def test_an_unhealthy_number_keeps_its_recipients_without_skip_unhealthy(self) -> None:
        e = self.life(health_settings())
        e.pin("p", TO, A, now=T0)
        self.report(e, A, "failed", 4, T0)
        assert self.number(e, A).delivery_healthy is False
        sel = e.select("p", TO, now=T0 + 1)
        assert (sel.from_number, sel.reason) == (A, Reason.STICKY)
        assert {e.select("p", to, now=T0 + 1).from_number for to in NEW} == {A, B}

    def test_a_removed_number_and_a_deleted_profile_take_their_windows(self) -> None:
        e = self.life(health_settings())
        self.report(e, A, "failed", 4, T0)
        self.report(e, B, "failed", 4, T0)
        e.remove_number("p", A, now=T0)
        with pytest.raises(UnknownNumber, match=r"\+13125550001"):
            e.record_delivery(A, "failed", now=T0)
        e.add_number("p", A)
        assert self.counts(e, A, T0) == (True, True, 0, 0, 0)
        e.delete_profile("p", now=T0)
        e.create_profile("p", health_settings())
        e.add_number("p", B)
        assert self.counts(e, B, T0) == (True, True, 0, 0, 0)
        assert self.report(e, B, "failed", 3, T0) == [True] * 3
        e.store.check_invariants()

    def test_bad_delivery_reports_are_refused_and_change_nothing(self) -> None:
        e = self.life(health_settings())
        self.report(e, A, "failed", 2, T0)
        before = self.life_snapshot(e)
        calls: list[tuple[Callable[[], object], type[Exception]]] = [
            (lambda: e.record_delivery(A, "bounced", now=T0), InvalidSettings),
            (lambda: e.record_delivery(A, "DELIVERED", now=T0), InvalidSettings),
            (lambda: e.record_delivery(A, 1, now=T0), InvalidSettings),  # type: ignore[arg-type]
            (lambda: e.record_delivery(A, None, now=T0), InvalidSettings),  # type: ignore[arg-type]
            (lambda: e.record_delivery(OUTSIDE, "failed", now=T0), UnknownNumber),
            (lambda: e.record_delivery("13125550001", "failed", now=T0), InvalidNumber),
            (lambda: e.record_delivery(A, "failed", now=math.inf), InvalidTime),
            (lambda: e.health("nope", now=T0), UnknownProfile),
        ]
        for call, error in calls:
            with pytest.raises(error):
                call()
        assert self.life_snapshot(e) == before

    # -- opt-outs -------------------------------------------------------------------
    def test_an_opt_out_deletes_the_mapping_and_refuses_every_select(self) -> None:
        e = self.life()
        e.pin("p", TO, A, now=T0)
        assert e.opt_out("p", TO, now=T0) is True
        assert e.opt_out("p", TO, now=T0) is False
        assert (e.is_opted_out("p", TO), e.is_opted_out("p", X)) == (True, False)
        assert e.opt_outs("p") == [TO]
        assert e.mapping("p", TO, now=T0) is None
        assert e.recipients_of("p", A, now=T0) == []
        assert e.stats().mappings == 0
        e.store.check_invariants()
        before = self.life_snapshot(e)
        with pytest.raises(OptedOut) as refused:
            e.select("p", TO, now=T0)
        assert isinstance(refused.value, (StickyError, LookupError))
        assert (refused.value.profile_id, refused.value.to) == ("p", TO)
        assert repr(TO) in str(refused.value)
        with pytest.raises(OptedOut):
            e.select("p", TO, now=T0 + 3 * TTL)
        after = self.life_snapshot(e)
        assert after[0] == before[0]  # type: ignore[index]
        assert e.stats().opted_out == 2
        assert e.opt_in("p", TO) is True
        assert e.opt_in("p", TO) is False
        assert e.opt_outs("p") == []
        assert e.select("p", TO, now=T0).reason is Reason.NEW
        e.store.check_invariants()

    def test_opt_outs_are_per_profile_and_sorted(self) -> None:
        e = self.life()
        e.create_profile("q")
        for to in (Z, X, Y):
            e.opt_out("p", to, now=T0)
        e.opt_out("q", TO, now=T0)
        assert e.opt_outs("p") == [X, Y, Z]
        assert e.opt_outs("q") == [TO]
        assert e.is_opted_out("q", X) is False
        assert e.opt_in("q", X) is False
        assert e.select("p", TO, now=T0).reason is Reason.NEW

    def test_a_refused_select_uses_no_draw(self) -> None:
        a = self.pool(seed=11)
        b = self.pool(seed=11)
        a.opt_out("p", X, now=T0)
        got = []
        for to in NEW[:10]:
            with pytest.raises(OptedOut):
                a.select("p", X, now=T0)
            got.append(a.select("p", to, now=T0).from_number)
        assert got == [b.select("p", to, now=T0).from_number for to in NEW[:10]]
        batch_a = a.select_many("p", [X, *NEW[10:20], X], now=T0)
        batch_b = b.select_many("p", NEW[10:20], now=T0)
        assert [s.from_number for s in batch_a] == [s.from_number for s in batch_b]
        assert (batch_a.opted_out, batch_b.opted_out) == ((X,), ())

    def test_a_batch_refuses_the_opted_out_alone(self) -> None:
        e = self.pool(seed=3)
        first = e.select("p", Y, now=T0)
        e.opt_out("p", X, now=T0)
        e.opt_out("p", Z, now=T0)
        out = e.select_many("p", [Z, Y, X, TO, Z, Y], now=T0 + 1)
        assert [s.to for s in out] == [Y, TO, Y]
        assert [s.reason for s in out] == [Reason.STICKY, Reason.NEW, Reason.STICKY]
        assert out[0].from_number == first.from_number
        assert out.opted_out == (Z, X)  # in the batch's order, once each
        assert e.stats().opted_out == 2
        assert (e.mapping("p", X, now=T0 + 1), e.mapping("p", Z, now=T0 + 1)) == (None, None)
        only = e.select_many("p", [X], now=T0 + 1)
        assert (list(only), only.opted_out) == ([], (X,))
        both = e.select_many("p", [X, Z, X], now=T0 + 1)
        assert (list(both), both.opted_out) == ([], (X, Z))
        assert e.stats().opted_out == 5
        assert e.select_many("p", [TO, Y], now=T0 + 2).opted_out == ()

    def test_opt_outs_are_never_evicted_and_go_with_the_profile(self) -> None:
        e = self.life(PoolSettings(ttl=60))
        e.pin("p", Y, A, now=T0)
        e.opt_out("p", X, now=T0)
        assert e.evict_expired(now=T0 + 10 * TTL) == 1  # Y's mapping, not the opt-out
        assert e.opt_outs("p") == [X]
        with pytest.raises(OptedOut):
            e.select("p", X, now=T0 + 10 * TTL)
        e.delete_profile("p", now=T0 + 10 * TTL)
        e.create_profile("p")
        e.add_number("p", A)
        assert (e.opt_outs("p"), e.is_opted_out("p", X)) == ([], False)
        assert e.select("p", X, now=T0 + 10 * TTL).reason is Reason.NEW

    def test_an_opt_out_moves_the_horizon_as_a_forget_does(self) -> None:
        e = self.life()
        e.pin("p", Y, A, now=T0 - TTL + 100)  # live until T0 + 100
        e.opt_out("p", X, now=T0 + 200)
        assert e.mapping("p", Y, now=T0) is None  # judged at the horizon, T0 + 200

    def test_pin_and_import_do_not_look_at_opt_outs(self) -> None:
        e = self.life()
        e.opt_out("p", TO, now=T0)
        e.opt_out("p", X, now=T0)
        assert e.pin("p", TO, A, now=T0).from_number == A
        assert e.import_mappings("p", [(X, B, T0 - 5)], now=T0) == 1
        assert e.recipients_of("p", A, now=T0) == [TO]
        assert e.mapping("p", X, now=T0).last_used == T0 - 5  # type: ignore[union-attr]
        with pytest.raises(OptedOut):
            e.select("p", TO, now=T0)
        assert e.select_many("p", [X, TO], now=T0).opted_out == (X, TO)
        e.opt_in("p", TO)
        sel = e.select("p", TO, now=T0 + 1)
        assert (sel.from_number, sel.reason) == (A, Reason.STICKY)

    def test_opt_outs_survive_a_restart(self) -> None:
        e = self.life(health_settings())
        e.opt_out("p", X, now=T0)
        e.drain("p", A, grace=100, now=T0)
        self.report(e, B, "failed", 4, T0)
        again = self.reopened(e)
        assert again.opt_outs("p") == [X]
        with pytest.raises(OptedOut):
            again.select("p", X, now=T0)
        assert again.stats().opted_out == 1
        a = self.number(again, A)
        assert (a.draining_since, a.drain_grace) == (T0, 100.0)
        assert self.counts(again, B, T0) == (True, False, 0, 4, 0)

    def test_bad_opt_outs_are_refused_and_change_nothing(self) -> None:
        e = self.life()
        e.opt_out("p", X, now=T0)
        before = self.life_snapshot(e)
        calls: list[tuple[Callable[[], object], type[Exception]]] = [
            (lambda: e.opt_out("p", "6465550001", now=T0), InvalidNumber),
            (lambda: e.opt_in("p", "+1646555000a"), InvalidNumber),
            (lambda: e.is_opted_out("p", 16465550001), InvalidNumber),  # type: ignore[arg-type]
            (lambda: e.opt_out("nope", TO, now=T0), UnknownProfile),
            (lambda: e.opt_in("nope", X), UnknownProfile),
            (lambda: e.is_opted_out("nope", X), UnknownProfile),
            (lambda: e.opt_outs("nope"), UnknownProfile),
            (lambda: e.opt_out("p", TO, now=math.nan), InvalidTime),
        ]
        for call, error in calls:
            with pytest.raises(error):
                call()
        assert self.life_snapshot(e) == before

    # -- replies --------------------------------------------------------------------
    def test_a_reply_to_the_mapped_number_refreshes_it(self) -> None:
        e = self.life()
        e.pin("p", Y, B, now=T0 - TTL + 50)  # live until T0 + 50
        e.pin("p", TO, A, now=T0)
        got = e.record_reply("p", TO, A, now=T0 + 100)
        assert got == Reply("p", TO, A, ReplyAction.REFRESHED, None)
        assert e.mapping("p", TO, now=T0 + 100).last_used == T0 + 100  # type: ignore[union-attr]
        assert e.mapping("p", Y, now=T0) is not None  # a refresh does not move the horizon
        assert e.record_reply("p", TO, A, now=T0 + 10).action is ReplyAction.REFRESHED
        assert e.mapping("p", TO, now=T0 + 10).last_used == T0 + 100  # type: ignore[union-attr]

    def test_a_reply_to_another_number_moves_the_mapping(self) -> None:
        e = self.life()
        e.pin("p", Y, B, now=T0 - TTL + 50)  # live until T0 + 50
        e.pin("p", TO, A, now=T0 + 10)
        got = e.record_reply("p", TO, B, body="thanks", now=T0 + 100)
        assert got == Reply("p", TO, B, ReplyAction.MOVED, None)
        m = e.mapping("p", TO, now=T0 + 100)
        assert (m.from_number, m.last_used) == (B, T0 + 100)  # type: ignore[union-attr]
        assert e.recipients_of("p", A, now=T0 + 100) == []
        assert e.mapping("p", Y, now=T0) is None  # moved as a pin: the horizon moved
        sel = e.select("p", TO, now=T0 + 101)
        assert (sel.from_number, sel.reason) == (B, Reason.STICKY)
        assert e.stats().mappings in (1, 2)  # Y's, dead, may be evicted yet or not
        e.store.check_invariants()

    def test_a_reply_maps_a_recipient_without_a_live_mapping(self) -> None:
        e = self.life()
        assert e.record_reply("p", TO, B, now=T0).action is ReplyAction.MAPPED
        m = e.mapping("p", TO, now=T0)
        assert (m.from_number, m.last_used) == (B, T0)  # type: ignore[union-attr]
        # A dead mapping to the replied number is never revived: a new one is made.
        e.pin("p", X, A, now=T0 - TTL)
        assert e.record_reply("p", X, A, now=T0).action is ReplyAction.MAPPED
        assert e.mapping("p", X, now=T0).last_used == T0  # type: ignore[union-attr]
        # Nor after a clock that went back, once a write has seen it dead.
        e.pin("p", Y, A, now=T0)
        e.pin("p", Z, B, now=T0 + TTL)  # the horizon: Y's mapping is dead there
        assert e.record_reply("p", Y, A, now=T0 + 5).action is ReplyAction.MAPPED
        m = e.mapping("p", Y, now=T0 + 5)
        assert (m.from_number, m.last_used) == (A, T0 + 5)  # type: ignore[union-attr]
        # A dead mapping to another number is not moved either: the reply maps afresh.
        e.pin("p", X, B, now=T0)
        assert e.record_reply("p", X, A, now=T0 + TTL).action is ReplyAction.MAPPED
        assert e.recipients_of("p", A, now=T0 + TTL) == [X, Y]
        assert e.stats().mappings in (3, 4)  # TO's, dead, may be evicted yet or not
        e.store.check_invariants()

    def test_a_reply_to_a_number_that_may_not_take_the_recipient_changes_nothing(self) -> None:
        e = self.life(PoolSettings(skip_unhealthy=True), numbers=[A, B, C])
        e.add_number("p", TOLL[0], NumberType.TOLL_FREE)
        e.pin("p", TO, A, now=T0)
        e.drain("p", B, now=T0)
        e.set_health(C, False)
        e.update_settings("p", toll_free_weight=0)
        before = self.life_snapshot(e, T0 + 1)
        for number in (B, C, TOLL[0]):
            for to in (TO, X):  # mapped to another number, or not at all
                assert e.record_reply("p", to, number, now=T0 + 1) == Reply(
                    "p", to, number, ReplyAction.INELIGIBLE, None
                )
        assert self.life_snapshot(e, T0 + 1) == before
        e.set_health(A, False)  # mapped to it, and it no longer keeps it
        before = self.life_snapshot(e, T0 + 1)
        assert e.record_reply("p", TO, A, now=T0 + 1).action is ReplyAction.INELIGIBLE
        assert self.life_snapshot(e, T0 + 1) == before
        assert e.mapping("p", TO, now=T0 + 1).last_used == T0  # type: ignore[union-attr]

    def test_a_reply_to_a_draining_number_refreshes_within_its_grace_only(self) -> None:
        e = self.life()
        e.pin("p", TO, A, now=T0)
        e.pin("p", X, B, now=T0)
        e.drain("p", A, grace=100, now=T0)
        e.drain("p", B, now=T0)
        assert e.record_reply("p", TO, A, now=T0 + 99).action is ReplyAction.REFRESHED
        assert e.record_reply("p", X, B, now=T0 + 5000).action is ReplyAction.REFRESHED
        assert e.mapping("p", X, now=T0 + 5000).last_used == T0 + 5000  # type: ignore[union-attr]
        assert e.record_reply("p", TO, A, now=T0 + 100).action is ReplyAction.INELIGIBLE
        assert e.mapping("p", TO, now=T0 + 100).last_used == T0 + 99  # type: ignore[union-attr]
        assert e.record_reply("p", TO, B, now=T0 + 100).action is ReplyAction.INELIGIBLE

    def test_a_reply_to_a_number_outside_the_pool_or_with_sticky_off(self) -> None:
        e = self.life()
        e.create_profile("q")
        e.add_number("q", C)
        e.pin("p", TO, A, now=T0)
        before = self.life_snapshot(e, T0 + 1)
        for number in (OUTSIDE, C):  # in no pool, or in another profile's
            assert e.record_reply("p", TO, number, now=T0 + 1) == Reply(
                "p", TO, number, ReplyAction.NOT_IN_POOL, None
            )
        assert self.life_snapshot(e, T0 + 1) == before
        e.update_settings("p", sticky_sender=False)
        before = self.life_snapshot(e, T0 + 1)
        for to, number in ((TO, A), (TO, B), (X, B)):
            assert e.record_reply("p", to, number, now=T0 + 1).action is ReplyAction.STICKY_OFF
        assert e.record_reply("p", TO, OUTSIDE, now=T0 + 1).action is ReplyAction.NOT_IN_POOL
        assert self.life_snapshot(e, T0 + 1) == before
        assert e.mapping("p", TO, now=T0 + 1).last_used == T0  # type: ignore[union-attr]

    def test_an_opt_out_keyword_opts_out(self) -> None:
        e = self.life()
        bodies = [*OPT_OUT_WORDS, " stop ", "Stop\n", "\tquit", "StopAll", "unsubscribe  "]
        people = [f"+1347555{i:04d}" for i in range(len(bodies))]
        for to, body in zip(people, bodies, strict=True):
            e.pin("p", to, A, now=T0)
            got = e.record_reply("p", to, B, body=body, now=T0 + 1)
            assert got == Reply("p", to, B, ReplyAction.OPTED_OUT, Keyword.OPT_OUT), body
            assert e.mapping("p", to, now=T0 + 1) is None
        assert e.opt_outs("p") == sorted(people)
        assert e.recipients_of("p", A, now=T0 + 1) == []
        out = e.select_many("p", people, now=T0 + 1)
        assert (list(out), out.opted_out) == ([], tuple(people))

    def test_an_opt_in_keyword_opts_in_and_then_maps(self) -> None:
        e = self.life()
        bodies = [*OPT_IN_WORDS, " start", "Unstop\r\n", "yes "]
        for i, body in enumerate(bodies):
            to, other = f"+1347555{i:04d}", f"+1347666{i:04d}"
            e.opt_out("p", to, now=T0)
            got = e.record_reply("p", to, B, body=body, now=T0 + 1)
            assert got == Reply("p", to, B, ReplyAction.MAPPED, Keyword.OPT_IN), body
            m = e.mapping("p", to, now=T0 + 1)
            assert (m.from_number, m.last_used) == (B, T0 + 1)  # type: ignore[union-attr]
            # Not opted out before: the keyword changes nothing more.
            assert e.record_reply("p", other, A, body=body, now=T0 + 2) == Reply(
                "p", other, A, ReplyAction.MAPPED, Keyword.OPT_IN
            )
        assert e.opt_outs("p") == []

    def test_a_body_that_is_not_a_whole_keyword_is_a_message(self) -> None:
        e = self.life()
        e.opt_out("p", X, now=T0)
        bodies = ["", "  ", "STOP please", "S T O P", "stop.", "STOPP", "no", "START!", "y"]
        for i, body in enumerate(bodies):
            to = f"+1347555{i:04d}"
            assert e.record_reply("p", to, B, body=body, now=T0) == Reply(
                "p", to, B, ReplyAction.MAPPED, None
            ), body
            assert e.record_reply("p", X, B, body=body, now=T0) == Reply(
                "p", X, B, ReplyAction.OPTED_OUT, None
            ), body
        assert (e.opt_outs("p"), e.mapping("p", X, now=T0)) == ([X], None)
        assert e.recipients_of("p", B, now=T0) == sorted(f"+1347555{i:04d}" for i in range(9))

    def test_a_keyword_applies_whichever_number_it_was_sent_to(self) -> None:
        e = self.life()
        e.create_profile("q")
        e.add_number("q", C)
        e.pin("p", TO, A, now=T0)
        got = e.record_reply("p", TO, OUTSIDE, body="STOP", now=T0)
        assert got == Reply("p", TO, OUTSIDE, ReplyAction.OPTED_OUT, Keyword.OPT_OUT)
        assert (e.opt_outs("p"), e.mapping("p", TO, now=T0)) == ([TO], None)
        got = e.record_reply("p", TO, C, body="start", now=T0)
        assert got == Reply("p", TO, C, ReplyAction.NOT_IN_POOL, Keyword.OPT_IN)
        assert e.opt_outs("p") == []
        assert e.opt_outs("q") == []
        e.update_settings("p", sticky_sender=False)
        assert e.record_reply("p", X, A, body="END", now=T0).action is ReplyAction.OPTED_OUT
        assert e.record_reply("p", X, A, body="YES", now=T0).action is ReplyAction.STICKY_OFF
        e.update_settings("p", sticky_sender=True, skip_unhealthy=True)
        e.set_health(B, False)
        assert e.record_reply("p", Y, B, body="cancel", now=T0).action is ReplyAction.OPTED_OUT
        assert e.opt_outs("p") == [Y]
        e.store.check_invariants()

    def test_a_reply_from_an_opted_out_recipient_maps_nothing(self) -> None:
        e = self.life()
        e.opt_out("p", TO, now=T0)
        before = self.life_snapshot(e)
        for number in (A, B, OUTSIDE):
            got = e.record_reply("p", TO, number, now=T0)
            assert got == Reply("p", TO, number, ReplyAction.OPTED_OUT, None)
        assert self.life_snapshot(e) == before

    def test_a_moved_or_mapped_reply_counts_a_new_recipient_whatever_its_budget(self) -> None:
        e = self.life(PoolSettings(daily_new_recipients=1, long_code_rate=1.0))
        assert e.select("p", TO, now=T0).from_number in (A, B)
        first = e.mapping("p", TO, now=T0).from_number  # type: ignore[union-attr]
        other = B if first == A else A
        e.pin("p", X, other, now=T0)  # both at their budget now
        slots = {c.number: c.next_slot for c in e.capacity("p", now=T0)}
        assert e.record_reply("p", Y, other, now=T0).action is ReplyAction.MAPPED
        assert e.record_reply("p", TO, other, now=T0).action is ReplyAction.MOVED
        assert e.record_reply("p", X, other, now=T0).action is ReplyAction.REFRESHED
        got = {c.number: (c.new_today, c.next_slot) for c in e.capacity("p", now=T0)}
        assert got == {first: (1, slots[first]), other: (3, slots[other])}  # no slot reserved
        e.store.check_invariants()

    def test_bad_replies_are_refused_and_change_nothing(self) -> None:
        e = self.life()
        e.pin("p", TO, A, now=T0)
        before = self.life_snapshot(e)
        calls: list[tuple[Callable[[], object], type[Exception]]] = [
            (lambda: e.record_reply("p", TO, A, body=5, now=T0), InvalidSettings),  # type: ignore[arg-type]
            (lambda: e.record_reply("p", TO, B, body=b"STOP", now=T0), InvalidSettings),  # type: ignore[arg-type]
            (lambda: e.record_reply("p", "2125551234", B, body="STOP", now=T0), InvalidNumber),
            (
                lambda: e.record_reply("p", TO, "+1 312 555 0002", body="STOP", now=T0),
                InvalidNumber,
            ),
            (lambda: e.record_reply("p", TO, None, now=T0), InvalidNumber),  # type: ignore[arg-type]
            (lambda: e.record_reply("nope", TO, A, body="STOP", now=T0), UnknownProfile),
            (lambda: e.record_reply("p", TO, B, body="STOP", now=math.nan), InvalidTime),
        ]
        for call, error in calls:
            with pytest.raises(error):
                call()
        assert self.life_snapshot(e) == before
