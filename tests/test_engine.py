"""The pieces around the store: clocks, settings, numbers, policy and the facade."""

from __future__ import annotations

import datetime
import math
import re
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sticky import (
    DEFAULT_TTL,
    Engine,
    GeoMatch,
    InvalidNumber,
    InvalidProfileId,
    InvalidSettings,
    InvalidTime,
    ManualClock,
    MemoryStore,
    NumberType,
    PoolSettings,
    Reason,
    Selection,
    SenderNumber,
    SQLiteStore,
    Stats,
    StickyError,
    SystemClock,
    UnknownProfile,
    open_store,
)
from sticky.numbers import check_e164, is_e164, match_e164, nanp_area_code
from sticky.policy import (
    Chooser,
    dead_up_to,
    dies_at,
    eligible_numbers,
    is_eligible,
    is_live,
    judge,
    judged_at,
    refreshed,
)
from sticky.testing.strategies import e164_numbers, invalid_numbers, pool_settings, pools

E164 = re.compile(r"\+[1-9][0-9]{6,14}")


# -- clocks ----------------------------------------------------------------------------
def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(100.0)
    assert clock.now() == 100.0
    assert clock.advance(5) == 105.0
    clock.set(50)
    assert clock.now() == 50.0
    assert clock.advance(-60) == -10.0
    for bad in (math.nan, math.inf, "1", None, True):
        with pytest.raises((TypeError, ValueError)):
            clock.set(bad)  # type: ignore[arg-type]
    assert clock.now() == -10.0


def test_system_clock_reads_the_wall_clock() -> None:
    before = time.time()
    now = SystemClock().now()
    assert before <= now <= time.time()


def test_a_custom_clock_is_checked() -> None:
    class Broken:
        def now(self) -> float:
            return math.nan

    e = Engine(clock=Broken(), seed=1)
    e.create_profile("p")
    e.add_number("p", "+13125550001")
    with pytest.raises(InvalidTime, match="nan"):
        e.select("p", "+12125550000")


# -- settings --------------------------------------------------------------------------
def test_settings_defaults() -> None:
    s = PoolSettings()
    assert (s.sticky_sender, s.ttl, s.long_code_weight, s.toll_free_weight) == (
        True,
        DEFAULT_TTL,
        1.0,
        1.0,
    )
    assert (s.skip_unhealthy, s.geomatch) == (False, GeoMatch.OFF)
    assert DEFAULT_TTL == 8 * 86_400
    assert not s.geomatch


def test_ttl_accepts_a_timedelta() -> None:
    assert PoolSettings(ttl=datetime.timedelta(days=8)).ttl == DEFAULT_TTL
    assert PoolSettings(ttl=datetime.timedelta(hours=1)).ttl == 3600.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ttl": 0},
        {"ttl": -1},
        {"ttl": math.nan},
        {"ttl": math.inf},
        {"ttl": datetime.timedelta(0)},
        {"ttl": "8d"},
        {"long_code_weight": math.nan},
        {"long_code_weight": -0.5},
        {"toll_free_weight": math.inf},
        {"toll_free_weight": True},
        {"long_code_weight": 0, "toll_free_weight": 0},
        {"sticky_sender": 1},
        {"skip_unhealthy": "no"},
        {"geomatch": "nearest"},
        {"geomatch": 2},
    ],
)
def test_invalid_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidSettings) as info:
        PoolSettings(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, StickyError)


def test_geomatch_values() -> None:
    assert PoolSettings(geomatch=True).geomatch is GeoMatch.AUTO
    assert PoolSettings(geomatch=False).geomatch is GeoMatch.OFF
    assert PoolSettings(geomatch="area_code").geomatch is GeoMatch.AREA_CODE
    assert PoolSettings(geomatch=GeoMatch.FULL).geomatch is GeoMatch.FULL


@given(pool_settings())
def test_settings_round_trip_through_a_dict(s: PoolSettings) -> None:
    assert PoolSettings.from_dict(s.to_dict()) == s


def test_evolve_rejects_unknown_names() -> None:
    with pytest.raises(InvalidSettings, match="'colour'"):
        PoolSettings().evolve(colour="red")


# -- numbers ---------------------------------------------------------------------------
@given(st.text(max_size=20))
def test_is_e164_is_exactly_the_rule(text: str) -> None:
    assert is_e164(text) == bool(E164.fullmatch(text))
    assert (match_e164(text) is not None) == is_e164(text)


@given(e164_numbers())
def test_valid_numbers_pass(number: str) -> None:
    assert check_e164(number) == number


@given(invalid_numbers())
def test_invalid_numbers_fail_naming_the_value(value: object) -> None:
    with pytest.raises(InvalidNumber) as info:
        check_e164(value)
    assert repr(value) in str(info.value)


def test_shortest_and_longest_numbers() -> None:
    assert is_e164("+6831234")  # Niue: 7 digits
    assert is_e164("+123456789012345")
    assert not is_e164("+683123")
    assert not is_e164("+1234567890123456")


def test_nanp_area_code() -> None:
    assert nanp_area_code("+13125550001") == "312"
    assert nanp_area_code("+442071234567") is None
    assert nanp_area_code("+1312555000") is None


# -- policy ----------------------------------------------------------------------------
@given(pools(), pool_settings(), st.floats(0, 1, exclude_max=True), e164_numbers())
def test_a_choice_is_always_eligible(
    pool: list[SenderNumber], settings: PoolSettings, r: float, to: str
) -> None:
    chooser = Chooser(pool, settings, 1)
    eligible = {n.number for n in pool if is_eligible(n, settings)}
    assert chooser.empty == (not eligible)
    if eligible:
        sender, _ = chooser.choose("p", to, r)
        assert sender in eligible


def test_the_draw_reaches_both_ends() -> None:
    pool = [SenderNumber(f"+1312555000{i}") for i in range(3)]
    chooser = Chooser(pool, PoolSettings(), 1)
    assert chooser.choose("p", "+12125550000", 0.0)[0] == "+13125550000"
    assert chooser.choose("p", "+12125550000", math.nextafter(1.0, 0))[0] == "+13125550002"


_times = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False) | st.sampled_from(
    [0.0, 1.0, 1_700_000_000.0, 0.1 + 0.2, 691_200.0]
)


@given(
    last_used=_times,
    ttl=st.floats(min_value=1e-6, max_value=1e9) | st.sampled_from([DEFAULT_TTL, 3600.0]),
    now=_times,
    horizon=_times | st.just(-math.inf),
    eligible=st.booleans(),
)
def test_judge_is_liveness_at_the_horizon_then_eligibility(
    last_used: float, ttl: float, now: float, horizon: float, eligible: bool
) -> None:
    # judge inlines is_live and judged_at for the hot path: it must equal the composition.
    live = is_live(last_used, ttl, judged_at(now, horizon))
    want = (Reason.STICKY if eligible else Reason.REASSIGNED) if live else Reason.EXPIRED
    assert judge(last_used, ttl, now, horizon, eligible) is want
    assert judged_at(now, horizon) == max(now, horizon)
    assert refreshed(last_used, now) == max(last_used, now)


@given(
    last_used=_times | st.just(math.inf),
    ttl=st.floats(min_value=1e-6, max_value=1e9) | st.sampled_from([DEFAULT_TTL, 3600.0]),
    at=_times,
)
def test_dies_at_is_where_liveness_ends(last_used: float, ttl: float, at: float) -> None:
    # is_live writes dies_at out for the eviction loops: the two must agree everywhere.
    assert is_live(last_used, ttl, at) == (at < dies_at(last_used, ttl))
    assert not is_live(last_used, ttl, dies_at(last_used, ttl))


@given(ttl=st.floats(min_value=1e-6, max_value=1e9), at=_times)
def test_dead_up_to_is_the_exact_bound_of_dead_keys(ttl: float, at: float) -> None:
    bound = dead_up_to(ttl, at)
    assert not is_live(bound, ttl, at)
    assert is_live(math.nextafter(bound, math.inf), ttl, at)
    assert dead_up_to(ttl, -math.inf) == -math.inf


def test_eligibility_as_data_is_the_rule_per_number() -> None:
    pool = [
        SenderNumber("+13125550001", NumberType.LONG_CODE, healthy=True),
        SenderNumber("+13125550002", NumberType.LONG_CODE, healthy=False),
        SenderNumber("+18005550003", NumberType.TOLL_FREE, healthy=True),
    ]
    for settings in (
        PoolSettings(),
        PoolSettings(skip_unhealthy=True),
        PoolSettings(toll_free_weight=0),
        PoolSettings(long_code_weight=0, skip_unhealthy=True),
    ):
        assert eligible_numbers(pool, settings) == {
            n.number for n in pool if is_eligible(n, settings)
        }


# -- the facade ------------------------------------------------------------------------
def test_engine_defaults() -> None:
    e = Engine()
    assert isinstance(e.clock, SystemClock)
    assert isinstance(e.store, MemoryStore)
    e.create_profile("p")
    e.add_number("p", "+13125550001", "toll_free", healthy=False)
    assert e.numbers("p") == (SenderNumber("+13125550001", NumberType.TOLL_FREE, False),)
    sel = e.select("p", "+12125550000")
    assert isinstance(sel, Selection)
    assert (sel.profile_id, sel.to, sel.from_number, sel.reason, sel.tier) == (
        "p",
        "+12125550000",
        "+13125550001",
        Reason.NEW,
        None,
    )
    m = e.mapping("p", "+12125550000")
    assert m is not None
    assert m.expires_at - m.last_used == DEFAULT_TTL


def test_engine_opens_a_store_url() -> None:
    with Engine(store="memory://") as e:
        assert isinstance(e.store, MemoryStore)
    assert isinstance(open_store("memory://"), MemoryStore)
    for bad in ("nosuch://x", "memory", ""):
        with pytest.raises(InvalidSettings, match=re.escape(repr(bad))):
            open_store(bad)


@pytest.mark.parametrize("bad", ["", None, 5, b"p"])
def test_invalid_profile_ids(bad: object) -> None:
    e = Engine(seed=1)
    with pytest.raises(InvalidProfileId):
        e.create_profile(bad)  # type: ignore[arg-type]
    # select skips the check on its hot path: '' is simply a profile that cannot exist
    with pytest.raises(InvalidProfileId if bad != "" else UnknownProfile):
        e.select(bad, "+12125550000")  # type: ignore[arg-type]
    assert e.profiles() == []


def test_invalid_number_type_and_health() -> None:
    e = Engine(seed=1)
    e.create_profile("p")
    with pytest.raises(InvalidSettings, match="'short_code'"):
        e.add_number("p", "+13125550001", "short_code")
    with pytest.raises(InvalidSettings):
        e.add_number("p", "+13125550001", healthy="yes")  # type: ignore[arg-type]
    assert e.numbers("p") == ()


def test_stats_compare_by_value_and_count_each_reason() -> None:
    e = Engine(clock=ManualClock(0), seed=1)
    assert e.stats() == Stats()
    e.create_profile("p")
    e.add_number("p", "+13125550001")
    e.select("p", "+12125550000")
    e.select("p", "+12125550000")
    e.select("p", "+12125550000", now=DEFAULT_TTL)
    assert e.stats() == Stats(mappings=1, sticky=1, new=1, expired=1)
    assert e.stats().selections == 3


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_counters_are_exact_under_threads(kind: str, tmp_path: Path) -> None:
    # The one-step stores count every answer under the lock of its step: thread
    # switches every microsecond must not lose one, whatever its reason or tier.
    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "s.db")
    e = Engine(clock=ManualClock(0), seed=1, store=store)
    e.create_profile("p", PoolSettings(geomatch=GeoMatch.FULL))
    e.add_number("p", "+13125550001")
    rounds = 500 if kind == "memory" else 100

    def work(k: int, now: float) -> None:
        for i in range(rounds):
            e.select("p", f"+1212{k:03d}{i:04d}", now=now)
            e.select("p", f"+1212{k:03d}{i:04d}", now=now)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for now in (0, DEFAULT_TTL * 2):  # new then sticky; then dead, so fresh again
            threads = [threading.Thread(target=work, args=(k, now)) for k in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        sys.setswitchinterval(switch)
    n = 8 * rounds
    stats = e.stats()
    # a dead mapping evicted before its select is new again, else expired
    assert (stats.new + stats.expired, stats.sticky, stats.mappings) == (2 * n, 2 * n, n)
    assert stats.expired > 0
    assert stats.tier_region + stats.tier_country + stats.tier_none == 2 * n
