"""Properties of a number's life in the policy: the delivery window, the health verdict,
keywords, the sticky side of a drain, and what a reply does.

Each policy function is checked against a naive model written from docs/semantics.md.
"""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction

from hypothesis import assume, given
from hypothesis import strategies as st

from sticky.numbers import NumberType, SenderNumber
from sticky.policy import (
    HEALTH_BUCKETS,
    Window,
    add_outcome,
    after_report,
    drain_deadlines,
    health_bucket,
    is_eligible,
    judge_health,
    keeps,
    kept_numbers,
    keyword_of,
    may_keep,
    reply_action,
    tally,
)
from sticky.settings import PoolSettings
from sticky.values import Keyword, Outcome, ReplyAction

OPT_OUT = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"]
OPT_IN = ["START", "UNSTOP", "YES"]
WHITESPACE = " \t\r\n"

outcomes = st.sampled_from(list(Outcome))
reports = st.lists(st.tuples(st.integers(-40, 80), outcomes), max_size=60)
shares = st.sampled_from([0.0, 0.05, 0.1, 0.25, 0.3, 0.5, 0.75, 0.9, 0.95, 1.0])


def model_tally(accepted: list[tuple[int, Outcome]], top: int) -> tuple[int, int, int]:
    """The outcomes of the reports in the 24 buckets ending at ``top``."""
    seen = Counter(o for b, o in accepted if top - HEALTH_BUCKETS < b <= top)
    return seen[Outcome.DELIVERED], seen[Outcome.FAILED], seen[Outcome.SPAM]


def run(window_reports: list[tuple[int, Outcome]]) -> tuple[Window, list[tuple[int, Outcome]]]:
    """The window after these reports, and the reports a naive model keeps."""
    window: Window = ()
    accepted: list[tuple[int, Outcome]] = []
    for bucket, outcome in window_reports:
        top = max([bucket] + [b for b, _ in accepted])
        if bucket > top - HEALTH_BUCKETS:  # else older than the window: dropped
            accepted.append((bucket, outcome))
        window = add_outcome(window, bucket, outcome)
    return window, accepted


# -- the window -------------------------------------------------------------------
@given(reports)
def test_add_outcome_and_tally_count_as_a_list_of_reports(got: list[tuple[int, Outcome]]) -> None:
    window, accepted = run(got)
    if not accepted:
        assert window == ()
        assert tally(window) == (0, 0, 0)
        return
    top = max(b for b, _ in accepted)
    assert tally(window) == model_tally(accepted, top)
    for later in (top, top + 1, top + 12, top + HEALTH_BUCKETS - 1, top + HEALTH_BUCKETS):
        assert tally(window, later) == model_tally(accepted, later)
    assert tally(window, top - 5) == tally(window)  # an earlier bucket: the window's own end


@given(reports)
def test_a_window_is_at_most_24_buckets_oldest_first(got: list[tuple[int, Outcome]]) -> None:
    window, accepted = run(got)
    buckets = [e[0] for e in window]
    assert len(window) <= HEALTH_BUCKETS
    assert buckets == sorted(set(buckets))
    assert all(e[1] + e[2] + e[3] > 0 for e in window)
    assert all(min(e[1:]) >= 0 for e in window)
    if accepted:
        assert buckets[-1] == max(b for b, _ in accepted)
        assert buckets[0] > buckets[-1] - HEALTH_BUCKETS


@given(reports, outcomes)
def test_a_report_older_than_the_window_changes_nothing(
    got: list[tuple[int, Outcome]], outcome: Outcome
) -> None:
    window, _ = run(got)
    assume(window)
    for old in (window[-1][0] - HEALTH_BUCKETS, window[-1][0] - 1000):
        assert add_outcome(window, old, outcome) == window


@given(st.floats(-1e12, 1e12, allow_nan=False), st.floats(1.0, 1e7))
def test_the_bucket_is_the_floor_of_now_over_a_24th(now: float, health_window: float) -> None:
    b = health_bucket(now, health_window)
    width = health_window / HEALTH_BUCKETS
    assert b == math.floor(now / width)
    assert isinstance(b, int)


@given(
    st.lists(st.tuples(st.floats(0, 10_000), outcomes), max_size=40),
    st.booleans(),
    st.integers(1, 8),
    shares,
    shares,
    shares,
)
def test_after_report_adds_in_the_bucket_of_now_then_judges(
    got: list[tuple[float, Outcome]],
    healthy: bool,
    min_samples: int,
    delivery: float,
    spam: float,
    margin: float,
) -> None:
    settings = PoolSettings(
        health_window=2400.0,
        min_samples=min_samples,
        min_delivery_rate=delivery,
        max_spam_rate=spam,
        health_margin=margin,
    )
    window: Window = ()
    for now, outcome in got:
        expected = add_outcome(window, health_bucket(now, 2400.0), outcome)
        window, verdict = after_report(window, healthy, outcome, now, settings)
        assert window == expected
        assert verdict == judge_health(tally(window), healthy, settings)
        healthy = verdict


# -- the verdict ------------------------------------------------------------------
counts = st.tuples(st.integers(0, 60), st.integers(0, 60), st.integers(0, 60))


def health_settings(min_samples: int, delivery: float, spam: float, margin: float) -> PoolSettings:
    return PoolSettings(
        min_samples=min_samples,
        min_delivery_rate=delivery,
        max_spam_rate=spam,
        health_margin=margin,
    )


def model_verdict(c: tuple[int, int, int], healthy: bool, s: PoolSettings) -> bool:
    """docs/semantics.md's rule, in exact fractions of the settings as given."""
    d, _, sp = c
    n = sum(c)
    if n < s.min_samples:
        return True
    share_d, share_s = Fraction(d, n), Fraction(sp, n)
    low, high = Fraction(str(s.min_delivery_rate)), Fraction(str(s.max_spam_rate))
    if healthy:
        return not (share_d < low or share_s > high)
    m = Fraction(str(s.health_margin))
    return share_d >= min(Fraction(1), low + m) and share_s <= max(Fraction(0), high - m)


@given(counts, st.booleans(), st.integers(1, 30), shares, shares, shares)
def test_judge_health_is_the_rule_of_the_spec(
    c: tuple[int, int, int],
    healthy: bool,
    min_samples: int,
    delivery: float,
    spam: float,
    margin: float,
) -> None:
    s = health_settings(min_samples, delivery, spam, margin)
    assert judge_health(c, healthy, s) == model_verdict(c, healthy, s)


@given(counts, st.integers(1, 30), shares, shares)
def test_without_a_margin_the_verdict_has_no_memory(
    c: tuple[int, int, int], min_samples: int, delivery: float, spam: float
) -> None:
    s = health_settings(min_samples, delivery, spam, 0.0)
    assert judge_health(c, True, s) == judge_health(c, False, s)


@given(counts, st.integers(1, 30), shares, shares, shares)
def test_a_number_that_may_recover_would_stay_healthy(
    c: tuple[int, int, int], min_samples: int, delivery: float, spam: float, margin: float
) -> None:
    s = health_settings(min_samples, delivery, spam, margin)
    if judge_health(c, False, s):
        assert judge_health(c, True, s)
    if sum(c) < min_samples:
        assert judge_health(c, True, s)
        assert judge_health(c, False, s)


@given(
    counts,
    outcomes,
    st.sampled_from([0.05, 0.1, 0.25, 0.5]),
    st.sampled_from([0.1, 0.25, 0.3, 0.5, 0.75, 0.9]),
    st.sampled_from([0.1, 0.25, 0.5, 0.75, 0.9]),
)
def test_with_a_margin_one_report_at_the_threshold_does_not_flip_it_back(
    c: tuple[int, int, int], outcome: Outcome, margin: float, delivery: float, spam: float
) -> None:
    # One report moves a share by at most 1 / (n + 1): with min_samples >= 1 / margin,
    # a number that just turned unhealthy does not recover at the next report (and one
    # that just recovered does not turn unhealthy at the next).
    min_samples = math.ceil(1 / margin)
    s = health_settings(min_samples, delivery, spam, margin)
    one = {Outcome.DELIVERED: (1, 0, 0), Outcome.FAILED: (0, 1, 0), Outcome.SPAM: (0, 0, 1)}
    after = tuple(a + b for a, b in zip(c, one[outcome], strict=True))
    assume(sum(c) >= min_samples)
    if not judge_health(c, True, s):
        assert not judge_health(after, False, s)  # type: ignore[arg-type]
    if judge_health(c, False, s):
        assert judge_health(after, True, s)  # type: ignore[arg-type]


@given(counts, st.booleans(), st.integers(1, 30), shares, shares, shares)
def test_one_more_delivered_never_hurts(
    c: tuple[int, int, int],
    healthy: bool,
    min_samples: int,
    delivery: float,
    spam: float,
    margin: float,
) -> None:
    assume(sum(c) >= min_samples)
    s = health_settings(min_samples, delivery, spam, margin)
    if judge_health(c, healthy, s):
        assert judge_health((c[0] + 1, c[1], c[2]), healthy, s)


# -- keywords ---------------------------------------------------------------------
def mixed_case(word: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda upper: "".join(ch if u else ch.lower() for ch, u in zip(word, upper, strict=True))
    )


padding = st.text(alphabet=WHITESPACE, max_size=3)


@given(st.sampled_from(OPT_OUT + OPT_IN).flatmap(mixed_case), padding, padding)
def test_a_keyword_is_found_in_any_case_and_trimmed(word: str, left: str, right: str) -> None:
    want = Keyword.OPT_OUT if word.upper() in OPT_OUT else Keyword.OPT_IN
    assert keyword_of(left + word + right) is want


@given(st.text(max_size=12))
def test_anything_else_is_no_keyword(body: str) -> None:
    word = body.strip().upper()
    if word in OPT_OUT:
        assert keyword_of(body) is Keyword.OPT_OUT
    elif word in OPT_IN:
        assert keyword_of(body) is Keyword.OPT_IN
    else:
        assert keyword_of(body) is None


@given(st.sampled_from(OPT_OUT + OPT_IN), st.sampled_from(["!", ".", " please", "S", "x"]))
def test_a_keyword_must_be_the_whole_message(word: str, extra: str) -> None:
    assert keyword_of(word + extra) is None
    assert keyword_of(extra.strip() + " " + word if extra.strip() else "?" + word) is None


# -- the sticky side of a drain, and replies ---------------------------------------
T0 = 1_700_000_000.0
NUMBERS = ["+13125550001", "+13125550002", "+18005550003", "+18885550004"]


@st.composite
def numbers(draw: st.DrawFn, number: str) -> SenderNumber:
    draining = draw(st.booleans())
    since = draw(st.floats(T0 - 1000, T0 + 1000)) if draining else None
    grace = draw(st.none() | st.floats(0, 2000)) if draining else None
    return SenderNumber(
        number,
        NumberType.TOLL_FREE if number.startswith("+18") else NumberType.LONG_CODE,
        draw(st.booleans()),
        delivery_healthy=draw(st.booleans()),
        draining_since=since,
        drain_grace=grace,
    )


pools = st.tuples(*(numbers(n) for n in NUMBERS))
life_settings = st.builds(
    lambda sticky, weights, skip: PoolSettings(
        sticky_sender=sticky,
        long_code_weight=weights[0],
        toll_free_weight=weights[1],
        skip_unhealthy=skip,
    ),
    st.booleans(),
    st.sampled_from([(0, 1), (1, 0), (1, 1), (2.5, 1), (2.5, 0)]),
    st.booleans(),
)


def model_keeps(n: SenderNumber, s: PoolSettings, now: float) -> bool:
    """The spec: eligible, or ineligible only because draining and within its grace."""
    weighted = (s.long_code_weight if n.type is NumberType.LONG_CODE else s.toll_free_weight) > 0
    healthy = (n.healthy and n.delivery_healthy) or not s.skip_unhealthy
    if not (weighted and healthy):
        return False
    if n.draining_since is None or n.drain_grace is None:
        return True
    return now < n.draining_since + n.drain_grace


@given(pools, life_settings, st.floats(T0 - 2000, T0 + 4000))
def test_keeps_is_may_keep_within_the_grace(
    pool: tuple[SenderNumber, ...], s: PoolSettings, now: float
) -> None:
    kept, deadlines = kept_numbers(pool, s), drain_deadlines(pool)
    assert set(deadlines) == {
        n.number for n in pool if n.draining_since is not None and n.drain_grace is not None
    }
    for n in pool:
        got = keeps(n.number, kept, deadlines, now)
        assert got == model_keeps(n, s, now)
        assert (n.number in kept) == may_keep(n, s)
        if is_eligible(n, s):  # an eligible sender always keeps its recipients
            assert got
            assert not n.draining
        if n.draining_since is not None and n.drain_grace is not None:
            end = n.draining_since + n.drain_grace
            assert deadlines[n.number] == end
            if may_keep(n, s):
                assert keeps(n.number, kept, deadlines, math.nextafter(end, -math.inf))
            assert not keeps(n.number, kept, deadlines, end)
    assert not keeps("+19995550000", kept, deadlines, now)  # not in the pool


def model_reply(
    n: SenderNumber | None, s: PoolSettings, current: str | None, now: float
) -> ReplyAction:
    """The table of docs/semantics.md, row by row."""
    if n is None:
        return ReplyAction.NOT_IN_POOL
    if not s.sticky_sender:
        return ReplyAction.STICKY_OFF
    if current == n.number:
        return ReplyAction.REFRESHED if model_keeps(n, s, now) else ReplyAction.INELIGIBLE
    weighted = (s.long_code_weight if n.type is NumberType.LONG_CODE else s.toll_free_weight) > 0
    healthy = (n.healthy and n.delivery_healthy) or not s.skip_unhealthy
    if not weighted or not healthy or n.draining_since is not None:
        return ReplyAction.INELIGIBLE
    return ReplyAction.MAPPED if current is None else ReplyAction.MOVED


@given(
    pools,
    life_settings,
    st.integers(-1, len(NUMBERS) - 1),
    st.none() | st.sampled_from([*NUMBERS, "+19995550000"]),
    st.floats(T0 - 2000, T0 + 4000),
)
def test_reply_action_is_the_table(
    pool: tuple[SenderNumber, ...],
    s: PoolSettings,
    replied: int,
    current: str | None,
    now: float,
) -> None:
    number = None if replied < 0 else pool[replied]
    got = reply_action(number, s, current, now)
    assert got == model_reply(number, s, current, now)
    if number is not None and s.sticky_sender and current == number.number:
        kept, deadlines = kept_numbers(pool, s), drain_deadlines(pool)
        assert (got is ReplyAction.REFRESHED) == keeps(number.number, kept, deadlines, now)
    if got in (ReplyAction.MOVED, ReplyAction.MAPPED):
        assert number is not None
        assert is_eligible(number, s)
