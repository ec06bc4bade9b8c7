"""The contract suite's base: the fixtures and helpers its tests share.

:class:`~sticky.testing.StoreContract` is built on it; see :mod:`sticky.testing.contract`.
"""

from __future__ import annotations

import pytest

from sticky.clock import ManualClock
from sticky.engine import Engine
from sticky.numbers import NumberType
from sticky.settings import DEFAULT_TTL, PoolSettings
from sticky.store.base import Store

__all__ = ["LONG", "T0", "TO", "TOLL", "TTL", "ContractBase"]

T0 = 1_700_000_000.0
TTL = DEFAULT_TTL
LONG = ["+13125550001", "+13125550002", "+14155550003"]
TOLL = ["+18005550004", "+18885550005"]
TO = "+12125551234"


class ContractBase:
    """What every contract test uses: fresh engines on the store under test."""

    state_machine_examples = 30
    """Examples of the state machine to run; raise it for a soak."""
    thread_count = 8

    def make_store(self) -> Store:
        """Return a fresh, empty store. Override."""
        raise NotImplementedError

    def make_engine(self, *, clock: ManualClock, seed: int, store: Store) -> Engine:
        """The engine the tests drive; override to test another engine on the store."""
        return Engine(clock=clock, seed=seed, store=store)

    # -- fixtures -------------------------------------------------------------------
    @pytest.fixture(autouse=True)
    def _engines(self) -> object:
        self._opened: list[Engine] = []
        yield
        for engine in self._opened:
            engine.close()

    def engine(
        self, *, seed: int = 7, clock: ManualClock | None = None, store: Store | None = None
    ) -> Engine:
        """An engine on a fresh store (or ``store``) and a :class:`ManualClock` at T0."""
        engine = self.make_engine(
            clock=clock or ManualClock(T0),
            seed=seed,
            store=store if store is not None else self.make_store(),
        )
        self._opened.append(engine)
        return engine

    def pool(
        self, settings: PoolSettings | None = None, *, toll_free: bool = True, seed: int = 7
    ) -> Engine:
        """An engine with profile ``p`` holding three long codes and two toll-free."""
        e = self.engine(seed=seed)
        e.create_profile("p", settings or PoolSettings())
        for n in LONG:
            e.add_number("p", n)
        if toll_free:
            for n in TOLL:
                e.add_number("p", n, NumberType.TOLL_FREE)
        return e

    @staticmethod
    def advance(e: Engine, seconds: float) -> None:
        clock = e.clock
        assert isinstance(clock, ManualClock)
        clock.advance(seconds)

    @staticmethod
    def snapshot(e: Engine, recipients: list[str] | None = None) -> object:
        """Everything observable, to show an error changed nothing."""
        out = []
        for pid in e.profiles():
            pool = e.numbers(pid)
            maps = [e.mapping(pid, to) for to in [*(recipients or []), TO]]
            rec = [e.recipients_of(pid, n.number) for n in pool]
            out.append((pid, e.settings(pid), pool, maps, rec))
        return out, e.stats().mappings
