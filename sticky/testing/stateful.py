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
from sticky.errors import StickyError
from sticky.numbers import NumberType
from sticky.settings import PoolSettings
from sticky.store.base import Store
from sticky.store.memory import MemoryStore
from sticky.testing.model import Model, same_error
from sticky.testing.strategies import DAY, pool_settings, weights
from sticky.values import Reason, Selection

__all__ = ["NUMBERS", "PROFILES", "RECIPIENTS", "StickyMachine"]

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
    },
)


class StickyMachine(RuleBasedStateMachine):
    """Drives engines across the ttl boundary and compares them with :class:`Model`."""

    def make_stores(self) -> list[Store]:
        """The stores to drive, fresh and empty; override for your own store."""
        return [MemoryStore()]

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(START)
        self.engines = [Engine(clock=self.clock, seed=0, store=s) for s in self.make_stores()]
        self.model = Model()
        self.counts: Counter[Reason] = Counter()

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
            assert _comparable(first[0]) == _comparable(other[0]), (
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
    @initialize(
        settings=pool_settings(),
        kinds=st.lists(st.sampled_from(NumberType), min_size=4, max_size=4),
        healthy=st.lists(st.booleans(), min_size=4, max_size=4),
    )
    def a_profile_with_numbers(
        self, settings: PoolSettings, kinds: list[NumberType], healthy: list[bool]
    ) -> None:
        """Start every run with a pool, so that steps go to selects and time."""
        self.create_profile(PROFILES[0], settings)
        for number, kind, ok in zip(NUMBERS, kinds, healthy, strict=False):
            self.add_number(PROFILES[0], number, kind, ok)

    @rule(pid=st.sampled_from(PROFILES), settings=pool_settings())
    def create_profile(self, pid: str, settings: PoolSettings) -> None:
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

    @rule(pid=st.sampled_from(PROFILES), number=st.sampled_from(NUMBERS))
    def remove_number(self, pid: str, number: str) -> None:
        now = self.clock.now()
        expected, got = self._expect(
            lambda: self.model.remove(pid, number, now), lambda e: e.remove_number(pid, number)
        )
        assert expected == got

    @rule(number=st.sampled_from(NUMBERS), healthy=st.booleans())
    def set_health(self, number: str, healthy: bool) -> None:
        self._expect(
            lambda: self.model.set_health(number, healthy=healthy),
            lambda e: e.set_health(number, healthy),
        )

    @rule(pid=st.sampled_from(PROFILES), changes=_changes)
    def update_settings(self, pid: str, changes: dict[str, object]) -> None:
        expected, got = self._expect(
            lambda: self.model.update(pid, changes), lambda e: e.update_settings(pid, **changes)
        )
        assert expected == got

    # -- selection ------------------------------------------------------------------
    @rule(pid=st.sampled_from(PROFILES[:1] * 3 + PROFILES), to=st.sampled_from(RECIPIENTS))
    def select(self, pid: str, to: str) -> None:
        now = self.clock.now()
        expected, got = self._expect(
            lambda: self.model.expect_select(pid, to, now), lambda e: e.select(pid, to)
        )
        if expected is None:
            return
        assert isinstance(got, Selection)
        assert (got.profile_id, got.to) == (pid, to)
        assert got.from_number in expected.senders, f"{got} not in {expected}"
        assert got.reason in expected.reasons, f"{got} not in {expected}"
        assert got.tier is expected.tier, f"{got} not in {expected}"
        event(f"select: {got.reason.value}")
        self.model.record_select(pid, to, got.from_number, got.reason, now)
        self.counts[got.reason] += 1

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

    # -- time -----------------------------------------------------------------------
    @rule(seconds=st.sampled_from([1.0, 3600.0, DAY, 3 * DAY, 5 * DAY, 8 * DAY, -1.0, -3600.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: any(p.maps for p in self.model.profiles.values()))
    @rule(data=st.data(), offset=st.sampled_from([0.0, -1.0, 1.0]))
    def to_the_boundary(self, data: st.DataObject, offset: float) -> None:
        """Set the clock to a mapping's exact expiry (``last_used + ttl``), or beside it."""
        choices = [
            (p.settings.ttl, lu) for p in self.model.profiles.values() for _, lu in p.maps.values()
        ]
        ttl, last_used = data.draw(st.sampled_from(sorted(choices)))
        self.clock.set(last_used + ttl + offset)

    # -- invariants -----------------------------------------------------------------
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
        for engine in self.engines:
            stats = engine.stats()
            assert self.model.live_count(now) <= stats.mappings <= self.model.stored()
            assert stats.sticky == self.counts[Reason.STICKY]
            assert stats.reassigned == self.counts[Reason.REASSIGNED]
            assert stats.pool == self.counts[Reason.POOL]
            assert (
                stats.new + stats.expired == self.counts[Reason.NEW] + self.counts[Reason.EXPIRED]
            )


def _comparable(value: object) -> object:
    """Two stores may differ only in whether a dead mapping was evicted yet."""
    if isinstance(value, Selection) and value.reason is Reason.EXPIRED:
        return (value.profile_id, value.to, value.from_number, Reason.NEW, value.tier)
    if isinstance(value, Selection):
        return (value.profile_id, value.to, value.from_number, value.reason, value.tier)
    return value
