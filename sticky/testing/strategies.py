"""Hypothesis strategies for sticky's values: E.164 numbers, settings, pools."""

from __future__ import annotations

from hypothesis import strategies as st

from sticky.numbers import NumberType, SenderNumber
from sticky.settings import DEFAULT_TTL, GeoMatch, PoolSettings

__all__ = [
    "ZONES",
    "capacity_changes",
    "e164_numbers",
    "health_changes",
    "invalid_numbers",
    "nanp_numbers",
    "number_types",
    "pool_settings",
    "pools",
    "weights",
]

DAY = 86_400.0


def e164_numbers() -> st.SearchStrategy[str]:
    """Any valid E.164 number: ``+``, then 7 to 15 digits, the first 1-9."""
    return st.builds(
        lambda first, rest: f"+{first}{rest}",
        st.sampled_from("123456789"),
        st.text("0123456789", min_size=6, max_size=14),
    )


def nanp_numbers(area_codes: list[str] | None = None) -> st.SearchStrategy[str]:
    """NANP numbers (``+1``, a 3-digit area code, 7 digits), from ``area_codes`` if given."""
    npa = (
        st.sampled_from(area_codes)
        if area_codes
        else st.builds(lambda a, b: f"{a}{b:02d}", st.sampled_from("23456789"), st.integers(0, 99))
    )
    return st.builds(
        lambda a, b, c: f"+1{a}{b}{c:04d}",
        npa,
        st.sampled_from(["555", "234", "867"]),
        st.integers(0, 9999),
    )


def invalid_numbers() -> st.SearchStrategy[object]:
    """Things that are not E.164 numbers: wrong shapes, types and characters."""
    return st.one_of(
        st.sampled_from(
            [
                "",
                "+",
                "12025550123",
                "+0123456789",
                "+123456",
                "+1234567890123456",
                "+1 202 555 0123",
                "+1202555012a",
                "+\uff11\uff12\uff10\uff12\uff15\uff15\uff15\uff10\uff11\uff12\uff13",  # wide
                "+1202555012\n",
                "+\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668",  # Arabic-Indic digits
            ]
        ),
        st.text(max_size=20).filter(lambda s: not (s.startswith("+") and s[1:].isdigit())),
        st.integers(),
        st.none(),
        st.floats(),
    )


def weights(*, positive: bool = False) -> st.SearchStrategy[float]:
    """Valid weights: finite and >= 0 (> 0 with ``positive``)."""
    low = st.sampled_from([0.5, 1.0, 2.0, 10.0]) | st.floats(0.001, 1000)
    return low if positive else st.just(0.0) | low


def pool_settings(
    *, ttls: list[float] | None = None, geomatch: list[GeoMatch] | None = None
) -> st.SearchStrategy[PoolSettings]:
    """Valid settings; ttls default to 8 days or shorter, geomatch to off or area code."""
    return st.builds(
        lambda sticky, ttl, wl, wt, skip, geo: PoolSettings(
            sticky_sender=sticky,
            ttl=ttl,
            long_code_weight=wl,
            toll_free_weight=wt if wl > 0 or wt > 0 else 1.0,
            skip_unhealthy=skip,
            geomatch=geo,
        ),
        st.booleans(),
        st.sampled_from(ttls or [DEFAULT_TTL, DEFAULT_TTL, DAY, 3600.0]),
        weights(),
        weights(),
        st.booleans(),
        st.sampled_from(geomatch or [GeoMatch.OFF, GeoMatch.AREA_CODE]),
    )


ZONES = ["UTC", "America/New_York", "Asia/Kolkata"]
"""Time zones for capacity's days: no offset, one with DST, a half-hour offset."""


def capacity_changes() -> st.SearchStrategy[dict[str, object]]:
    """Valid capacity settings, some or none of them: small rates and budgets that bite."""
    return st.fixed_dictionaries(
        {},
        optional={
            "long_code_rate": st.sampled_from([None, 0.5, 1.0, 3.0]),
            "toll_free_rate": st.sampled_from([None, 1.0, 3.0]),
            "burst": st.sampled_from([1, 1, 2, 3]),
            "daily_new_recipients": st.sampled_from([None, 1, 2, 3]),
            "max_wait": st.sampled_from([None, 0.0, 1.0, 5.0]),
            "choice_wait": st.sampled_from([0.0, 0.0, 1.0, 5.0]),
            "max_queue": st.sampled_from([None, None, 2.0, 30.0]),
            "timezone": st.sampled_from(ZONES),
        },
    )


def health_changes() -> st.SearchStrategy[dict[str, object]]:
    """Valid health settings, some or none of them: windows of hours, small sample sizes.

    Their shares are sums a float adds exactly as a decimal does (0.25 + 0.05 is 0.3
    either way), so a verdict does not hang on rounding.
    """
    return st.fixed_dictionaries(
        {},
        optional={
            "health_window": st.sampled_from([3600.0, 7200.0, DAY]),
            "min_samples": st.sampled_from([1, 2, 3, 5]),
            "min_delivery_rate": st.sampled_from([0.25, 0.5]),
            "max_spam_rate": st.sampled_from([0.5, 0.75]),
            "health_margin": st.sampled_from([0.0, 0.05, 0.25]),
        },
    )


def number_types() -> st.SearchStrategy[NumberType]:
    """Either number type."""
    return st.sampled_from(NumberType)


def pools(
    numbers: st.SearchStrategy[str] | None = None, max_size: int = 8
) -> st.SearchStrategy[list[SenderNumber]]:
    """Pools of distinct sender numbers with random types and health."""
    return st.lists(
        st.builds(
            SenderNumber,
            numbers or e164_numbers(),
            number_types(),
            st.booleans(),
        ),
        max_size=max_size,
        unique_by=lambda n: n.number,
    )
