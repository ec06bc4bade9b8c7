"""A Hypothesis state machine: engines on one or more stores against the plain model.

Subclass :class:`StickyMachine` and override :meth:`~StickyMachine.make_stores` to run
it against your store; its ``TestCase`` attribute is a unittest case pytest collects::

    class MyStoreMachine(StickyMachine):
        def make_stores(self):
            return [MyStore()]


    TestMyStore = MyStoreMachine.TestCase

With two or more stores, every engine gets the same seed and the same calls, and the
machine asserts they agree with each other (the same senders, mappings and errors) as
well as with the model.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from sticky.clock import ManualClock
from sticky.engine import Engine
from sticky.errors import (
    IncompatibleStore,
    OptedOut,
    PoolBusy,
    PoolExhausted,
    StickyError,
    UnknownProfile,
)
from sticky.numbers import NumberType
from sticky.settings import PoolSettings
from sticky.store.base import OneStepStore, Store
from sticky.store.memory import MemoryStore
from sticky.testing.model import Expected, Model, day_in, same_error
from sticky.testing.strategies import (
    DAY,
    capacity_changes,
    health_changes,
    pool_settings,
    weights,
)
from sticky.values import (
    NumberCapacity,
    Outcome,
    Reason,
    Reply,
    Selection,
    Selections,
)

__all__ = ["NUMBERS", "PROFILES", "RECIPIENTS", "StickyMachine", "comparable"]

T = TypeVar("T")

PROFILES = ["p1", "p2", "p{3}: ü"]
"""Profile ids, one of them full of characters a key scheme must survive."""
NUMBERS = [
    "+13125550001",
    "+13125550002",
    "+14155550003",
    "+18005550004",
    "+18885550005",
    "+442071234567",
]
RECIPIENTS = ["+13125551000", "+14155551001", "+12125551002", "+447700900003", "+13125551004"]
OUTSIDE = "+19995550009"
"""A number no rule adds to a pool: a reply to it is to a number not in the pool."""
BAD = frozenset(NUMBERS[:2])
"""Numbers whose delivery reports are mostly failures and spam, so their verdicts flip."""
BODIES = [None, " stop ", "Start", "STOPALL", "hello", "yes\n", "stop please", ""]
START = 1_700_000_000.0

_changes = st.fixed_dictionaries(
    {},
    optional={
        "sticky_sender": st.booleans(),
        "ttl": st.sampled_from([8 * DAY, DAY, 3600.0]),
        "long_code_weight": weights(),
        "toll_free_weight": weights(),
        "skip_unhealthy": st.booleans(),
        "geomatch": st.sampled_from(["off", "area_code"]),
        "clear_on_sticky_off": st.booleans(),
    },
)
_limits = st.fixed_dictionaries(
    {},
    optional={
        "rate": st.sampled_from([None, 0.5, 2.0]),
        "daily_new_recipients": st.sampled_from([None, 1, 2]),
    },
)
_TOLERANCE = 1e-9


class StickyMachine(RuleBasedStateMachine):
    """Drives engines across the ttl boundary and compares them with :class:`Model`."""

    def make_stores(self) -> list[Store]:
        """The stores to drive, fresh and empty; override for your own store."""
        return [MemoryStore()]

    def make_engine(self, clock: ManualClock, store: Store) -> Engine:
        """The engine on each store; override to drive another engine."""
        return Engine(clock=clock, seed=0, store=store)

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(START)
        stores = self.make_stores()
        self.engines = [self.make_engine(self.clock, s) for s in stores]
        self.model = Model()
        self.counts: Counter[Reason | str] = Counter()
        self.keeps_capacity = all(isinstance(s, OneStepStore) for s in stores)
        """Whether the stores can keep capacity; else limits must raise IncompatibleStore."""
        # Each number's reservations while its rate and burst stayed the same, in the
        # order they were applied: (send_at, segments); the rate bound holds within each.
        self.schedule: dict[tuple[str, int], tuple[float, int, list[tuple[float, int]]]] = {}
        self.stretch: dict[str, tuple[int, float | None, int]] = {}

    def teardown(self) -> None:
        for engine in self.engines:
            engine.close()

    # -- helpers --------------------------------------------------------------------
    def _all(self, call: Callable[[Engine], T]) -> tuple[T | None, StickyError | None]:
        """Run ``call`` on every engine; assert they agree; return the first outcome."""
        outcomes: list[tuple[Any, StickyError | None]] = []
        for engine in self.engines:
            try:
                outcomes.append((call(engine), None))
            except StickyError as exc:
                outcomes.append((None, exc))
        first = outcomes[0]
        for other in outcomes[1:]:
            assert same_error(first[1], other[1]), f"engines disagree: {first} != {other}"
            assert comparable(first[0]) == comparable(other[0]), (
                f"engines disagree: {first[0]} != {other[0]}"
            )
        return first

    def _expect(self, model_call: Callable[[], T], call: Callable[[Engine], Any]) -> Any:
        """Apply to the model and the engines; the same error, or both succeed."""
        try:
            expected: Any = model_call()
            model_error = None
        except StickyError as exc:
            expected, model_error = None, exc
        got, error = self._all(call)
        assert same_error(model_error, error), f"model raised {model_error!r}, engine {error!r}"
        if model_error is None:
            return expected, got
        return None, None

    # -- profiles and pools ---------------------------------------------------------
    def _refuses_capacity(self, call: Callable[[Engine], object]) -> None:
        """On stores that cannot keep capacity, limits raise IncompatibleStore everywhere."""
        _, error = self._all(call)
        assert isinstance(error, IncompatibleStore), f"limits accepted: {error!r}"

    @initialize(
        settings=pool_settings(),
        capacity=capacity_changes(),
        health=health_changes(),
        kinds=st.lists(st.sampled_from(NumberType), min_size=4, max_size=4),
        healthy=st.lists(st.booleans(), min_size=4, max_size=4),
    )
    def a_profile_with_numbers(
        self,
        settings: PoolSettings,
        capacity: dict[str, object],
        health: dict[str, object],
        kinds: list[NumberType],
        healthy: list[bool],
    ) -> None:
        """Start every run with a pool, so that steps go to selects and time.

        Its health settings want few samples, so that verdicts flip within a run.
        """
        settings = settings.evolve(**{"min_samples": 3, **health})
        if self.keeps_capacity:
            settings = settings.evolve(**capacity)
        self.create_profile(PROFILES[0], settings)
        for number, kind, ok in zip(NUMBERS, kinds, healthy, strict=False):
            self.add_number(PROFILES[0], number, kind, ok)

    @rule(pid=st.sampled_from(PROFILES), settings=pool_settings())
    def create_profile(self, pid: str, settings: PoolSettings) -> None:
        if self.model.capacity_on_settings(settings) and not self.keeps_capacity:
            self._refuses_capacity(lambda e: e.create_profile(pid, settings))
            return
        self._expect(
            lambda: self.model.create(pid, settings), lambda e: e.create_profile(pid, settings)
        )

    @rule(pid=st.sampled_from(PROFILES))
    def delete_profile(self, pid: str) -> None:
        now = self.clock.now()
        expected, got = self._expect(
            lambda: self.model.delete(pid, now), lambda e: e.delete_profile(pid)
        )
        assert expected == got

    @rule(
        pid=st.sampled_from(PROFILES),
        number=st.sampled_from(NUMBERS),
        kind=st.sampled_from(NumberType),
        healthy=st.booleans(),
    )
    def add_number(self, pid: str, number: str, kind: NumberType, healthy: bool) -> None:
        self._expect(
            lambda: self.model.add(pid, number, kind, healthy=healthy),
            lambda e: e.add_number(pid, number, kind, healthy=healthy),
        )

    @rule(
        pid=st.sampled_from(PROFILES),
        number=st.sampled_from(NUMBERS),
        kind=st.sampled_from(NumberType),
        limits=_limits,
    )
    def add_number_with_limits(
        self, pid: str, number: str, kind: NumberType, limits: dict[str, Any]
    ) -> None:
        rate, daily = limits.get("rate"), limits.get("daily_new_recipients")
        if (rate is not None or daily is not None) and not self.keeps_capacity:
            self._refuses_capacity(
                lambda e: e.add_number(pid, number, kind, rate=rate, daily_new_recipients=daily)
            )
            return
        self._expect(
            lambda: self.model.add(pid, number, kind, healthy=True, rate=rate, daily=daily),
            lambda e: e.add_number(pid, number, kind, rate=rate, daily_new_recipients=daily),
        )

    @rule(number=st.sampled_from(NUMBERS), limits=_limits)
    def set_limits(self, number: str, limits: dict[str, Any]) -> None:
        if any(v is not None for v in limits.values()) and not self.keeps_capacity:
            self._refuses_capacity(lambda e: e.set_limits(number, **limits))
            return
        expected, got = self._expect(
            lambda: self.model.set_limits(number, limits), lambda e: e.set_limits(number, **limits)
        )
        assert expected == got

    @rule(pid=st.sampled_from(PROFILES), number=st.sampled_from(NUMBERS))
    def remove_number(self, pid: str, number: str) -> None:
        now = self.clock.now()
        expected, got = self._expect(
            lambda: self.model.remove(pid, number, now), lambda e: e.remove_number(pid, number)
        )
        assert expected == got
        if expected is not None:  # a number that comes back starts a schedule afresh
            epoch = self.stretch.get(number, (0, None, 0))[0]
            self.stretch[number] = (epoch + 1, None, 0)

    @rule(number=st.sampled_from(NUMBERS), healthy=st.booleans())
    def set_health(self, number: str, healthy: bool) -> None:
        self._expect(
            lambda: self.model.set_health(number, healthy=healthy),
            lambda e: e.set_health(number, healthy),
        )

    @rule(pid=st.sampled_from(PROFILES), changes=_changes | capacity_changes() | health_changes())
    def update_settings(self, pid: str, changes: dict[str, object]) -> None:
        p = self.model.profiles.get(pid)
        if p is not None and not self.keeps_capacity:
            try:
                limited = self.model.capacity_on_settings(p.settings.evolve(**changes))
            except StickyError:  # bad settings: every engine must refuse them too
                limited = False
            if limited:
                self._refuses_capacity(lambda e: e.update_settings(pid, **changes))
                return
        expected, got = self._expect(
            lambda: self.model.update(pid, changes), lambda e: e.update_settings(pid, **changes)
        )
        assert expected == got

    # -- selection ------------------------------------------------------------------
    @rule(
        pid=st.sampled_from(PROFILES[:1] * 3 + PROFILES),
        to=st.sampled_from(RECIPIENTS),
        segments=st.sampled_from([1, 1, 1, 2, 3]),
    )
    def select(self, pid: str, to: str, segments: int = 1) -> None:
        now = self.clock.now()
        expected, got = self._expect(
            lambda: self.model.expect_select(pid, to, now),
            lambda e: e.select(pid, to, segments=segments),
        )
        if expected is None:
            self._count_refusal(pid, to, now)
            return
        self._apply_select(pid, to, now, expected, got, segments)

    def _apply_select(
        self, pid: str, to: str, now: float, expected: Expected, got: object, segments: int
    ) -> None:
        """Check one select's answer against the model's expectation, then apply it."""
        assert isinstance(got, Selection)
        assert (got.profile_id, got.to) == (pid, to)
        assert got.from_number in expected.senders, f"{got} not in {expected}"
        assert got.reason in expected.reasons, f"{got} not in {expected}"
        assert got.tier is expected.tier, f"{got} not in {expected}"
        self._check_fresh(pid, got)
        want_at = now if expected.send_at is None else expected.send_at[got.from_number]
        assert got.send_at == want_at, f"{got}: send_at, model {want_at}"
        p = self.model.profiles[pid]
        live = self.model.mapping(pid, to, now) if p.settings.sticky_sender else None
        if live is not None and live[0] != got.from_number:  # stickiness broken: why?
            assert got.reason in {Reason.OVERFLOW, Reason.REASSIGNED}, got
            if p.pool[live[0]].draining:
                event(f"select: {got.reason.value} off a drain")
        if self.model.capacity_on(p) and got.reason not in {Reason.STICKY, Reason.POOL}:
            day = day_in(now, p.settings.timezone)[0]
            budget = self.model.budget(p, got.from_number)
            used = self.model.used(p, got.from_number, day)
            assert budget is None or used < budget, f"{got}: over its budget {budget}"
        rate = self.model.rate(p, got.from_number) if self.model.capacity_on(p) else None
        if rate is not None:
            self._log(got.from_number, rate, p.settings.burst, got.send_at, segments)
        event(f"select: {got.reason.value}")
        self.model.record_select(pid, to, got.from_number, got.reason, now, segments)
        self.counts[got.reason] += 1
        if got.send_at > now:
            self.counts["waited"] += 1

    def _check_fresh(self, pid: str, got: Selection) -> None:
        """No select answers an opted-out recipient; no fresh choice lands on a drain."""
        p = self.model.profiles[pid]
        assert got.to not in p.optouts, f"{got}: {got.to} is opted out"
        if got.reason is not Reason.STICKY:
            assert not p.pool[got.from_number].draining, f"{got}: a fresh choice drains"

    def _count_refusal(self, pid: str, to: str, now: float) -> None:
        """Count a select the model (and so every engine) refused for capacity."""
        try:
            self.model.expect_select(pid, to, now)
        except OptedOut:
            self.counts["opted_out"] += 1
        except PoolExhausted:
            self.counts["exhausted"] += 1
        except PoolBusy:
            self.counts["busy"] += 1
        except StickyError:
            pass

    def _log(self, number: str, rate: float, burst: int, send_at: float, segments: int) -> None:
        """Log a reservation in the number's current stretch of one rate and burst."""
        epoch, old_rate, old_burst = self.stretch.get(number, (0, None, 0))
        if (old_rate, old_burst) != (rate, burst):
            epoch += 1
            self.stretch[number] = (epoch, rate, burst)
        self.schedule.setdefault((number, epoch), (rate, burst, []))[2].append((send_at, segments))

    @rule(
        burst=st.lists(
            st.tuples(
                st.sampled_from(PROFILES[:1] * 4 + PROFILES),
                st.sampled_from(RECIPIENTS),
                st.sampled_from([0.0, 60.0, 3600.0, DAY, 2 * DAY, 4 * DAY]),
            ),
            min_size=1,
            max_size=10,
        )
    )
    def traffic(self, burst: list[tuple[str, str, float]]) -> None:
        """Selects spread over time, as messages arrive."""
        for pid, to, gap in burst:
            self.clock.advance(gap)
            self.select(pid, to)

    @precondition(lambda self: any(p.maps for p in self.model.profiles.values()))
    @rule(data=st.data())
    def select_a_mapped_recipient(self, data: st.DataObject) -> None:
        """Select again for a recipient that has a mapping, live or not."""
        pairs = sorted((pid, to) for pid, p in self.model.profiles.items() for to in p.maps)
        self.select(*data.draw(st.sampled_from(pairs)))

    @rule(
        pid=st.sampled_from(PROFILES[:1] * 3 + PROFILES),
        batch=st.lists(st.sampled_from(RECIPIENTS), min_size=1, max_size=5),
    )
    def select_many(self, pid: str, batch: list[str]) -> None:
        """A batch at one ``now``: each opted-out recipient refused alone, once.

        Without capacity only: then a batch stops only where no number is eligible, after
        sticky hits alone, whose senders the model knows even when the batch raises.
        """
        p = self.model.profiles.get(pid)
        if p is not None and self.model.capacity_on(p):
            return
        now = self.clock.now()
        got, error = self._all(lambda e: e.select_many(pid, batch))
        if p is None:
            assert isinstance(error, UnknownProfile), f"engine: {error!r}"
            return
        answers = iter(got or [])
        refused: list[str] = []
        for to in batch:
            try:
                expected = self.model.expect_select(pid, to, now)
            except OptedOut:
                refused += [] if to in refused else [to]
                continue
            except StickyError as exc:
                assert same_error(exc, error), f"model raised {exc!r}, engine {error!r}"
                # How a failed batch counts the refusals before it depends on its path.
                self.counts["opted_out?"] += len(refused)
                return
            if error is None:
                self._apply_select(pid, to, now, expected, next(answers, None), 1)
                continue
            assert expected.reasons == {Reason.STICKY}, f"{to}: {expected} before {error!r}"
            (sender,) = expected.senders
            self._apply_select(
                pid, to, now, expected, Selection(pid, to, sender, Reason.STICKY, None, now), 1
            )
        assert error is None, f"engine raised {error!r}, the model did not"
        assert isinstance(got, Selections)
        assert next(answers, None) is None, f"{got}: more answers than the model"
        assert got.opted_out == tuple(refused), f"{got.opted_out}, model {refused}"
        self.counts["opted_out"] += len(refused)

    @rule(
        pid=st.sampled_from(PROFILES),
        to=st.sampled_from(RECIPIENTS),
        number=st.sampled_from(NUMBERS),
    )
    def pin(self, pid: str, to: str, number: str) -> None:
        now = self.clock.now()
        self._expect(
            lambda: self.model.pin(pid, to, number, now), lambda e: e.pin(pid, to, number)
        )

    @rule(pid=st.sampled_from(PROFILES), to=st.sampled_from(RECIPIENTS))
    def forget(self, pid: str, to: str) -> None:
        now = self.clock.now()
        expected, got = self._expect(
            lambda: self.model.forget(pid, to, now), lambda e: e.forget(pid, to)
        )
        assert expected == got

    @rule()
    def evict_expired(self) -> None:
        now = self.clock.now()
        model_dead = self.model.evict(now)
        # Stores may evict at different times, so each count is checked on its own.
        for engine in self.engines:
            evicted = engine.evict_expired()
            assert evicted <= model_dead, f"evicted {evicted}, but only {model_dead} were dead"
            assert engine.stats().mappings == self.model.stored(), "a dead mapping survived"

    # -- a number's life ------------------------------------------------------------
    @rule(
        pid=st.sampled_from(PROFILES[:1] * 2 + PROFILES),
        number=st.sampled_from(NUMBERS),
        grace=st.sampled_from([None, None, 0.0, 1.0, 3600.0, DAY]),
    )
    def drain(self, pid: str, number: str, grace: float | None) -> None:
        now = self.clock.now()
        expected, got = self._expect(
            lambda: self.model.drain(pid, number, now, grace),
            lambda e: e.drain(pid, number, grace=grace),
        )
        assert expected == got

    @precondition(lambda self: any(p.maps for p in self.model.profiles.values()))
    @rule(
        data=st.data(),
        grace=st.sampled_from([None, 0.0, 60.0, 3600.0]),
        wait=st.sampled_from([0.0, 30.0, 60.0, 3600.0]),
    )
    def drain_a_used_number(self, data: st.DataObject, grace: float | None, wait: float) -> None:
        """Drain a mapped recipient's number, wait, and select the recipient again."""
        now = self.clock.now()
        mapped = sorted((pid, to) for pid, p in self.model.profiles.items() for to in p.maps)
        live = [(pid, to) for pid, to in mapped if self.model.mapping(pid, to, now)]
        pid, to = data.draw(st.sampled_from(live or mapped))
        self.drain(pid, self.model.profiles[pid].maps[to][0], grace)
        self.clock.advance(wait)
        self.select(pid, to)

    @rule(pid=st.sampled_from(PROFILES[:1] * 2 + PROFILES), number=st.sampled_from(NUMBERS))
    def undrain(self, pid: str, number: str) -> None:
        expected, got = self._expect(
            lambda: self.model.undrain(pid, number), lambda e: e.undrain(pid, number)
        )
        assert expected == got

    @rule(
        reports=st.lists(
            st.tuples(
                st.sampled_from(sorted(BAD) * 2 + NUMBERS),
                st.sampled_from([Outcome.SPAM] * 3 + [Outcome.FAILED] * 2 + [Outcome.DELIVERED]),
                st.sampled_from([Outcome.DELIVERED] * 3 + [Outcome.FAILED, Outcome.SPAM]),
                st.sampled_from([0.0, 0.0, 60.0, 1800.0, 3600.0, 6 * 3600.0]),
            ),
            min_size=1,
            max_size=12,
        )
    )
    def record_delivery(self, reports: list[tuple[str, Outcome, Outcome, float]]) -> None:
        """Delivery reports as they arrive: mostly bad from two numbers, mostly good else."""
        for number, bad, good, gap in reports:
            self.clock.advance(gap)
            now = self.clock.now()
            outcome = bad if number in BAD else good
            owner = self.model.owner.get(number)
            was = None if owner is None else self.model.profiles[owner].pool[number]
            expected, got = self._expect(
                lambda: self.model.record_delivery(number, outcome, now),  # noqa: B023
                lambda e: e.record_delivery(number, outcome),  # noqa: B023
            )
            assert expected == got
            if was is not None and was.delivery_healthy != expected.delivery_healthy:
                event(f"delivery verdict flipped to {expected.delivery_healthy}")

    @rule(pid=st.sampled_from(PROFILES[:1] * 2 + PROFILES), to=st.sampled_from(RECIPIENTS))
    def opt_out(self, pid: str, to: str) -> None:
        now = self.clock.now()
        expected, got = self._expect(
            lambda: self.model.opt_out(pid, to, now), lambda e: e.opt_out(pid, to)
        )
        assert expected == got
        self._is_opted_out(pid, to)

    @rule(pid=st.sampled_from(PROFILES[:1] * 2 + PROFILES), to=st.sampled_from(RECIPIENTS))
    def opt_in(self, pid: str, to: str) -> None:
        expected, got = self._expect(
            lambda: self.model.opt_in(pid, to), lambda e: e.opt_in(pid, to)
        )
        assert expected == got
        self._is_opted_out(pid, to)

    def _is_opted_out(self, pid: str, to: str) -> None:
        p = self.model.profiles.get(pid)
        if p is not None:
            for engine in self.engines:
                assert engine.is_opted_out(pid, to) == (to in p.optouts)

    @rule(
        pid=st.sampled_from(PROFILES[:1] * 3 + PROFILES),
        to=st.sampled_from(RECIPIENTS),
        number=st.sampled_from([*NUMBERS, OUTSIDE]),
        body=st.sampled_from(BODIES),
    )
    def record_reply(self, pid: str, to: str, number: str, body: str | None) -> None:
        now = self.clock.now()
        expected, got = self._expect(
            lambda: self.model.record_reply(pid, to, number, body, now),
            lambda e: e.record_reply(pid, to, number, body=body),
        )
        if expected is not None:
            assert got == Reply(pid, to, number, *expected), f"{got}, model {expected}"
            event(f"reply: {expected[0].value}")

    # -- time -----------------------------------------------------------------------
    @rule(
        seconds=st.sampled_from(
            [0.25, 0.5, 1.0, 1.0, 3600.0, DAY, 3 * DAY, 5 * DAY, 8 * DAY, -0.5, -1.0, -3600.0]
        )
    )
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: PROFILES[0] in self.model.profiles)
    @rule(offset=st.sampled_from([-0.5, 0.0, 0.5]))
    def to_midnight(self, offset: float) -> None:
        """Set the clock beside the next midnight in the first profile's time zone."""
        tz = self.model.profiles[PROFILES[0]].settings.timezone
        self.clock.set(day_in(self.clock.now(), tz)[1] + offset)

    @precondition(lambda self: any(p.maps for p in self.model.profiles.values()))
    @rule(data=st.data(), offset=st.sampled_from([0.0, -1.0, 1.0]))
    def to_the_boundary(self, data: st.DataObject, offset: float) -> None:
        """Set the clock to a mapping's exact expiry (``last_used + ttl``), or beside it."""
        choices = [
            (p.settings.ttl, lu) for p in self.model.profiles.values() for _, lu in p.maps.values()
        ]
        ttl, last_used = data.draw(st.sampled_from(sorted(choices)))
        self.clock.set(last_used + ttl + offset)

    @precondition(lambda self: bool(self._drain_ends()))
    @rule(data=st.data(), offset=st.sampled_from([0.0, -0.5, 0.5]))
    def to_a_drain_end(self, data: st.DataObject, offset: float) -> None:
        """Set the clock to a drain's grace end (``since + grace``), or beside it."""
        self.clock.set(data.draw(st.sampled_from(self._drain_ends())) + offset)

    def _drain_ends(self) -> list[float]:
        return sorted(
            n.draining_since + n.drain_grace
            for p in self.model.profiles.values()
            for n in p.pool.values()
            if n.draining_since is not None and n.drain_grace is not None
        )

    # -- invariants -----------------------------------------------------------------
    @invariant()
    def no_number_beats_its_rate(self) -> None:
        """No two reservations on a number break the rate bound, over every pair of the run.

        For ``i`` before ``j``: the segments from ``i`` up to ``j`` are at most
        ``r * (send_at_j - send_at_i) + b``.
        """
        for (number, _), (rate, burst, entries) in self.schedule.items():
            for (i, (at_i, _)), (j, (at_j, _)) in itertools.combinations(enumerate(entries), 2):
                between = sum(seg for _, seg in entries[i:j])
                bound = rate * (at_j - at_i) + burst
                assert between <= bound + _TOLERANCE, (
                    f"{number}: {between} segments between {at_i} and {at_j}, rate {rate}"
                )

    @invariant()
    def stores_keep_their_invariants(self) -> None:
        for engine in self.engines:
            engine.store.check_invariants()

    @invariant()
    def reads_agree_with_the_model(self) -> None:
        now = self.clock.now()
        for pid in PROFILES:
            if pid not in self.model.profiles:
                for engine in self.engines:
                    assert pid not in engine.profiles()
                continue
            p = self.model.profiles[pid]
            for engine in self.engines:
                assert engine.settings(pid) == p.settings
                assert {n.number: n for n in engine.numbers(pid)} == p.pool
                for to in RECIPIENTS:
                    m = engine.mapping(pid, to)
                    want = self.model.mapping(pid, to, now)
                    got = None if m is None else (m.from_number, m.last_used)
                    assert got == want, f"{pid} {to}: engine {m}, model {want}"
                    if m is not None:
                        assert m.expires_at == m.last_used + p.settings.ttl
                for number in NUMBERS:
                    assert engine.recipients_of(pid, number) == self.model.recipients_of(
                        pid, number, now
                    )
                # The scan an export reads: every live mapping once, in pages of 2.
                live = {to: self.model.mapping(pid, to, now) for to in p.maps}
                scanned = [
                    (m.to, (m.from_number, m.last_used))
                    for page in engine.iter_mappings(pid, batch=2)
                    for m in page
                ]
                assert dict(scanned) == {to: m for to, m in live.items() if m is not None}
                assert len(scanned) == len(dict(scanned)), "a mapping listed twice"
            loads = self.model.capacity(pid, now)
            for engine in self.engines:
                seen = [
                    (c.number, c.rate, c.burst, c.daily_new_recipients, c.next_slot, c.new_today)
                    for c in engine.capacity(pid)
                ]
                assert seen == loads, f"{pid}: capacity {seen}, model {loads}"
                assert all(isinstance(c, NumberCapacity) for c in engine.capacity(pid))
            health = self.model.health(pid, now)
            for engine in self.engines:
                assert list(engine.health(pid)) == health, f"{pid}: health, model {health}"
                assert engine.opt_outs(pid) == self.model.opt_outs(pid)
        for engine in self.engines:
            stats = engine.stats()
            assert self.model.live_count(now) <= stats.mappings <= self.model.stored()
            assert stats.overflow == self.counts[Reason.OVERFLOW]
            assert stats.waited == self.counts["waited"]
            assert (stats.exhausted, stats.busy) == (self.counts["exhausted"], self.counts["busy"])
            assert stats.sticky == self.counts[Reason.STICKY]
            assert stats.reassigned == self.counts[Reason.REASSIGNED]
            assert stats.pool == self.counts[Reason.POOL]
            low = self.counts["opted_out"]
            assert low <= stats.opted_out <= low + self.counts["opted_out?"], stats
            assert (
                stats.new + stats.expired == self.counts[Reason.NEW] + self.counts[Reason.EXPIRED]
            )


def comparable(value: object) -> object:
    """A store's answer in the form another store's must equal. Recurses into lists and tuples.

    Two stores may differ only in whether a dead mapping was evicted yet (``expired`` or
    ``new``).
    """
    if isinstance(value, Selections):
        return [comparable(s) for s in value], value.opted_out
    if isinstance(value, Selection) and value.reason is Reason.EXPIRED:
        return (value.profile_id, value.to, value.from_number, Reason.NEW, value.tier, value[5])
    if isinstance(value, Selection):
        return tuple(value)
    if isinstance(value, list | tuple):
        return [comparable(v) for v in value]
    return value
