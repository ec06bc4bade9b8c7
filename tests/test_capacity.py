"""Capacity's rules as pure functions, its settings, and threads on one engine."""

from __future__ import annotations

import datetime
import itertools
import math
import threading
from collections import Counter, defaultdict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sticky import (
    Engine,
    InvalidSettings,
    ManualClock,
    NumberType,
    PoolBusy,
    PoolExhausted,
    PoolSettings,
    Reason,
    SenderNumber,
)
from sticky.policy import (
    IDLE,
    Chooser,
    Load,
    count_new,
    new_today,
    next_slot,
    plan,
    reserve,
    today,
)
from sticky.testing.model import day_in
from sticky.testing.strategies import ZONES

T0 = 1_700_000_000.0


def rate_bound_holds(entries: list[tuple[float, int]], rate: float, burst: int) -> bool:
    """For i before j: the segments from i up to j are at most r * (s_j - s_i) + b."""
    for (i, (at_i, _)), (j, (at_j, _)) in itertools.combinations(enumerate(entries), 2):
        if sum(seg for _, seg in entries[i:j]) > rate * (at_j - at_i) + burst + 1e-9:
            return False
    return True


def max_in_window(times: list[float], w: float) -> int:
    """The most send times in any half-open window of length ``w``."""
    times = sorted(times)
    best = j = 0
    for i, start in enumerate(times):
        while j < len(times) and times[j] < start + w - 1e-9:
            j += 1
        best = max(best, j - i)
    return best


# -- the schedule ------------------------------------------------------------------
@given(
    rate=st.sampled_from([0.1, 0.5, 1.0, 3.0, 25.0]) | st.floats(0.01, 1000),
    burst=st.integers(1, 5),
    steps=st.lists(
        st.tuples(st.floats(-5.0, 5.0) | st.sampled_from([0.0, -100.0, 100.0]), st.integers(1, 4)),
        min_size=1,
        max_size=40,
    ),
)
def test_the_schedule_keeps_the_rate_over_every_pair(
    rate: float, burst: int, steps: list[tuple[float, int]]
) -> None:
    load, now, entries = IDLE, T0, []
    last = -math.inf
    for delta, segments in steps:
        now += delta
        expected = next_slot(load, now, rate, burst)
        send_at, load = reserve(load, now, rate, burst, segments, 1, new=False)
        assert send_at == expected
        assert send_at >= now
        assert send_at >= last, "a schedule moved back"
        last = send_at
        entries.append((send_at, segments))
    assert rate_bound_holds(entries, rate, burst)
    if all(seg == 1 for _, seg in entries):
        for w in (0.5, 1.0, 5.0):
            assert max_in_window([at for at, _ in entries], w) <= rate * w + burst + 1e-9


def test_without_a_rate_the_schedule_is_now() -> None:
    assert next_slot(IDLE, T0, None, 3) == T0
    assert reserve((5e9, 5e9, 0, 0), T0, None, 1, 9, 1, new=False) == (T0, (5e9, 5e9, 0, 0))


def test_days_count_forward_only() -> None:
    load: Load = IDLE
    load = count_new(load, 10)
    load = count_new(load, 10)
    assert (new_today(load, 10), new_today(load, 11)) == (2, 0)
    load = count_new(load, 9)  # a clock that went back counts on the later day
    assert load[2:] == (10, 3)
    assert new_today(load, 9) == 3
    assert count_new(load, 11)[2:] == (11, 1)


@given(
    now=st.floats(-1e10, 4e11) | st.floats(-1e300, 1e300),
    zone=st.sampled_from([*ZONES, "Pacific/Chatham", "Europe/London"]),
)
def test_today_is_the_calendar_day_of_the_zone(now: float, zone: str) -> None:
    assert today(now, zone) == day_in(now, zone)
    day, nxt = today(now, zone)
    assert nxt > now
    assert today(now, zone) == (day, nxt)  # the cached answer is the same


def test_today_moves_at_local_midnight() -> None:
    zone = "Asia/Kolkata"  # UTC+5:30
    midnight = datetime.datetime(
        2026, 12, 3, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30))
    ).timestamp()
    before, after = today(midnight - 1, zone), today(midnight, zone)
    assert after[0] == before[0] + 1
    assert before[1] == midnight


# -- the choice ----------------------------------------------------------------------
POOL = [
    SenderNumber("+13125550001"),
    SenderNumber("+13125550002"),
    SenderNumber("+14155550003"),
    SenderNumber("+18005550004", NumberType.TOLL_FREE),
]


@given(r=st.floats(0.0, 1.0, exclude_max=True), geo=st.sampled_from(["off", "area_code"]))
def test_a_choice_with_nothing_binding_is_the_plain_choice(r: float, geo: str) -> None:
    settings = PoolSettings(geomatch=geo, daily_new_recipients=100)
    chooser = Chooser(POOL, settings, 1)
    to = "+13125559999"
    sender, tier, reason, send_at = plan(
        chooser, {}, to, r, T0, (1, T0 + 1), None, Reason.NEW, "p"
    )
    assert (sender, tier) == chooser.choose("p", to, r)
    assert (reason, send_at) == (Reason.NEW, T0)
    assert chooser.choose_among(frozenset(chooser.eligible), to, r) == chooser.choose("p", to, r)


def test_retry_at_is_when_a_slot_comes_within_max_queue() -> None:
    settings = PoolSettings(long_code_rate=1.0, toll_free_weight=0, max_queue=2.0)
    chooser = Chooser(POOL, settings, 1)
    busy = {n.number: (T0 + 10.0, T0 + 9.0, 0, 0) for n in POOL}
    with pytest.raises(PoolBusy) as refused:
        plan(chooser, busy, "+12125550000", 0.5, T0, (1, T0 + 1), None, Reason.NEW, "p")
    assert refused.value.retry_at == T0 + 8.0


def test_exhausted_is_retried_at_the_next_day() -> None:
    settings = PoolSettings(daily_new_recipients=1)
    chooser = Chooser(POOL, settings, 1)
    full = {n.number: (-math.inf, -math.inf, 5, 1) for n in POOL}
    with pytest.raises(PoolExhausted) as refused:
        plan(chooser, full, "+12125550000", 0.5, T0, (5, T0 + 60), None, Reason.NEW, "p")
    assert refused.value.retry_at == T0 + 60
    # The next day, each number has its budget again.
    assert plan(chooser, full, "+12125550000", 0.5, T0, (6, T0 + 60), None, Reason.NEW, "p")


# -- settings ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("long_code_rate", 0),
        ("long_code_rate", -1.0),
        ("long_code_rate", math.nan),
        ("toll_free_rate", math.inf),
        ("toll_free_rate", "3"),
        ("burst", 0),
        ("burst", 1.5),
        ("burst", True),
        ("daily_new_recipients", 0),
        ("daily_new_recipients", 2.0),
        ("max_wait", -1.0),
        ("max_wait", math.inf),
        ("choice_wait", None),
        ("choice_wait", -0.5),
        ("max_queue", math.nan),
        ("timezone", "Mars/Olympus"),
        ("timezone", ""),
        ("timezone", 5),
        ("timezone", "../etc/passwd"),
    ],
)
def test_bad_capacity_settings_are_refused(name: str, bad: object) -> None:
    with pytest.raises(InvalidSettings, match=name):
        PoolSettings(**{name: bad})  # type: ignore[arg-type]


def test_capacity_settings_round_trip_and_older_dicts_read() -> None:
    s = PoolSettings(
        long_code_rate=1,
        toll_free_rate=3,
        burst=2,
        daily_new_recipients=200,
        max_wait=datetime.timedelta(seconds=30),
        choice_wait=1,
        max_queue=600,
        timezone="America/New_York",
    )
    assert s.max_wait == 30.0
    assert PoolSettings.from_dict(s.to_dict()) == s
    old = {k: v for k, v in PoolSettings().to_dict().items() if k in {"ttl", "sticky_sender"}}
    assert PoolSettings.from_dict(old) == PoolSettings()


# -- threads on one engine -----------------------------------------------------------
def test_threads_never_beat_a_rate_or_a_budget() -> None:
    numbers = ["+13125550001", "+13125550002", "+13125550003"]
    e = Engine(clock=ManualClock(T0), seed=1)
    e.create_profile("p", PoolSettings(long_code_rate=2.0, burst=2, daily_new_recipients=40))
    for n in numbers:
        e.add_number("p", n)
    got: list[tuple[str, float, Reason]] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        for i in range(60):
            to = f"+1212555{(k * 1000 + i % 25):04d}"
            try:
                sel = e.select("p", to)
            except PoolExhausted:
                continue
            with lock:
                got.append((sel.from_number, sel.send_at, sel.reason))
            if i % 10 == 0:
                e.clock.advance(0.5)  # type: ignore[attr-defined]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    by_number: defaultdict[str, list[float]] = defaultdict(list)
    new: Counter[str] = Counter()
    for sender, at, reason in got:
        by_number[sender].append(at)
        new[sender] += reason is not Reason.STICKY
    for times in by_number.values():
        for w in (0.5, 1.0, 5.0):
            assert max_in_window(times, w) <= 2.0 * w + 2 + 1e-9
    assert all(count <= 40 for count in new.values())
    assert sum(new.values()) == 100  # 4 threads x 25 recipients, each new once
    e.store.check_invariants()


@given(
    tat=st.floats(T0 - 100, T0 + 100) | st.just(-math.inf),
    floor=st.floats(T0 - 100, T0 + 100) | st.just(-math.inf),
    now=st.floats(T0 - 50, T0 + 50),
    rate=st.none() | st.sampled_from([0.5, 1.0, 3.0]) | st.floats(0.01, 100),
    burst=st.integers(1, 4),
    segments=st.integers(1, 3),
    max_wait=st.none() | st.floats(0, 60),
    max_queue=st.none() | st.floats(0, 60),
)
def test_sticky_step_is_stays_then_reserve(
    tat: float,
    floor: float,
    now: float,
    rate: float | None,
    burst: int,
    segments: int,
    max_wait: float | None,
    max_queue: float | None,
) -> None:
    from sticky.policy import busy_until, stays, step_limit, sticky_step  # noqa: PLC0415

    load: Load = (tat, floor, 3, 1)
    settings = PoolSettings(
        long_code_rate=rate, burst=burst, max_wait=max_wait, max_queue=max_queue
    )
    chooser = Chooser([SenderNumber("+13125550001")], settings, 1)
    step = sticky_step(load, now, rate, burst, segments, step_limit(settings))
    try:
        slot = stays(chooser, {"+13125550001": load}, "+13125550001", now, "+1212", "p")
    except PoolBusy:
        slot = None
    if step is None:
        assert slot is None
        return
    assert slot is not None
    send_at, after = reserve(load, now, rate, burst, segments, 3, new=False)
    assert step == (send_at, after, busy_until(after, rate, burst)) or rate is None
    assert step[0] == slot
