"""The contract suite's errors and concurrency: typed errors that change nothing, races.

Part of :class:`~sticky.testing.StoreContract`, kept in its own module for size.
"""

from __future__ import annotations

import contextlib
import math
import threading

import pytest

from sticky.errors import (
    InvalidNumber,
    InvalidSettings,
    InvalidTime,
    NoEligibleSender,
    ProfileExists,
    StickyError,
    UnknownNumber,
    UnknownProfile,
)
from sticky.settings import PoolSettings
from sticky.testing.contract_base import LONG, T0, TO, TOLL, ContractBase

__all__ = ["ErrorsContract"]


class ErrorsContract(ContractBase):
    """Bad input, failed calls and racing threads, on any store."""

    # -- errors ---------------------------------------------------------------------
    @pytest.mark.parametrize(
        "bad",
        [
            "",
            "12125550123",
            "+0125550123",
            "+123456",
            "+1234567890123456",
            "+1 212 555 0123",
            "+1212555012a",
            "+\uff11\uff12\uff11\uff12\uff15\uff15\uff15\uff10\uff11\uff12\uff13",
            None,
            12125550123,
        ],
    )
    def test_invalid_numbers_are_rejected_and_change_nothing(self, bad: object) -> None:
        e = self.pool()
        e.select("p", TO)
        before = self.snapshot(e)
        for call in (
            lambda: e.select("p", bad),  # type: ignore[arg-type]
            lambda: e.select_many("p", [TO, bad]),  # type: ignore[list-item]
            lambda: e.add_number("p", bad),  # type: ignore[arg-type]
            lambda: e.remove_number("p", bad),  # type: ignore[arg-type]
            lambda: e.set_health(bad, False),  # type: ignore[arg-type]
            lambda: e.pin("p", bad, LONG[0]),  # type: ignore[arg-type]
            lambda: e.pin("p", TO, bad),  # type: ignore[arg-type]
            lambda: e.forget("p", bad),  # type: ignore[arg-type]
            lambda: e.mapping("p", bad),  # type: ignore[arg-type]
            lambda: e.recipients_of("p", bad),  # type: ignore[arg-type]
        ):
            with pytest.raises(InvalidNumber) as info:
                call()
            assert repr(bad) in str(info.value)
        assert self.snapshot(e) == before

    def test_unknown_profile_everywhere(self) -> None:
        e = self.pool()
        e.select("p", TO)
        before = self.snapshot(e)
        for call in (
            lambda: e.select("nope", TO),
            lambda: e.select_many("nope", [TO]),
            lambda: e.settings("nope"),
            lambda: e.update_settings("nope", ttl=5),
            lambda: e.delete_profile("nope"),
            lambda: e.add_number("nope", "+13125559999"),
            lambda: e.remove_number("nope", LONG[0]),
            lambda: e.numbers("nope"),
            lambda: e.mapping("nope", TO),
            lambda: e.recipients_of("nope", LONG[0]),
            lambda: e.pin("nope", TO, LONG[0]),
            lambda: e.forget("nope", TO),
        ):
            with pytest.raises(UnknownProfile, match="'nope'"):
                call()
        assert self.snapshot(e) == before

    def test_bad_settings_change_nothing(self) -> None:
        e = self.pool()
        e.select("p", TO)
        before = self.snapshot(e)
        for changes in (
            {"long_code_weight": math.nan},
            {"toll_free_weight": -1},
            {"long_code_weight": math.inf},
            {"long_code_weight": 0, "toll_free_weight": 0},
            {"ttl": 0},
            {"ttl": -5},
            {"ttl": math.nan},
            {"sticky_sender": "yes"},
            {"geomatch": "nearby"},
            {"colour": "red"},
        ):
            with pytest.raises(InvalidSettings):
                e.update_settings("p", **changes)
        assert self.snapshot(e) == before

    def test_other_errors_change_nothing(self) -> None:
        e = self.pool()
        e.select("p", TO)
        before = self.snapshot(e)
        with pytest.raises(ProfileExists, match="'p'"):
            e.create_profile("p")
        with pytest.raises(UnknownNumber, match=r"\+19995550000"):
            e.remove_number("p", "+19995550000")
        with pytest.raises(UnknownNumber, match=r"\+19995550000"):
            e.set_health("+19995550000", False)
        with pytest.raises(InvalidTime):
            e.select("p", TO, now=math.nan)
        with pytest.raises(InvalidTime):
            e.evict_expired(now=math.inf)
        assert self.snapshot(e) == before
        assert all(
            issubclass(c, StickyError)
            for c in (InvalidNumber, InvalidSettings, UnknownProfile, UnknownNumber)
        )

    def test_no_eligible_sender_changes_nothing_mapping_included(self) -> None:
        e = self.pool(PoolSettings(skip_unhealthy=True))
        first = e.select("p", TO, now=T0)
        for n in LONG + TOLL:
            e.set_health(n, False)
        before = self.snapshot(e)
        with pytest.raises(NoEligibleSender, match="'p'"):
            e.select("p", TO, now=T0 + 1)
        with pytest.raises(NoEligibleSender):
            e.select("p", "+12125550000", now=T0 + 1)
        assert self.snapshot(e) == before
        m = e.mapping("p", TO, now=T0 + 1)
        assert m is not None
        assert m.from_number == first.from_number
        empty = self.engine()
        empty.create_profile("e")
        with pytest.raises(NoEligibleSender):
            empty.select("e", TO)

    # -- concurrency ----------------------------------------------------------------
    def test_racing_selects_agree_on_one_sender(self) -> None:
        store = self.make_store()
        e0 = self.engine(store=store)
        e0.create_profile("p")
        for n in LONG + TOLL:
            e0.add_number("p", n)
        recipients = [f"+1646555{i:04d}" for i in range(40)]
        seen: dict[str, set[str]] = {r: set() for r in recipients}
        lock = threading.Lock()
        errors: list[BaseException] = []

        def work(k: int) -> None:
            engine = e0 if k % 2 else self.engine(store=store, seed=k)
            try:
                for _ in range(3):
                    for r in recipients:
                        s = engine.select("p", r)
                        with lock:
                            seen[r].add(s.from_number)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(self.thread_count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert all(len(s) == 1 for s in seen.values()), seen
        store.check_invariants()

    def test_removal_racing_with_selects_leaves_no_mapping_to_it(self) -> None:
        store = self.make_store()
        e = self.engine(store=store)
        e.create_profile("p")
        numbers = [f"+1312555{i:04d}" for i in range(12)]
        for n in numbers:
            e.add_number("p", n)
        stop = threading.Event()
        errors: list[BaseException] = []

        def select_loop(k: int) -> None:
            i = 0
            try:
                while not stop.is_set():
                    with contextlib.suppress(NoEligibleSender):
                        e.select("p", f"+1646{k:03d}{i % 50:04d}")
                    i += 1
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=select_loop, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        removed = []
        for n in numbers[:-1]:
            e.remove_number("p", n)
            removed.append(n)
            for r in removed:
                assert e.recipients_of("p", r) == []
        stop.set()
        for t in threads:
            t.join()
        assert not errors, errors
        store.check_invariants()
        for r in removed:
            assert e.recipients_of("p", r) == []
        for k in range(4):
            for i in range(50):
                m = e.mapping("p", f"+1646{k:03d}{i:04d}")
                assert m is None or m.from_number == numbers[-1]
