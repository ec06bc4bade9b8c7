"""The settings of a profile's pool: frozen, validated at construction."""

from __future__ import annotations

import datetime
import difflib
import enum
import math
from collections.abc import Iterable
from typing import Any, Self

import attrs

from sticky.errors import InvalidSettings, shown

__all__ = ["DEFAULT_TTL", "GeoMatch", "PoolSettings", "check_budget", "check_grace", "check_rate"]

DEFAULT_TTL = 691_200.0
"""Eight days, in seconds: how long a mapping lives after its last use."""


class GeoMatch(enum.Enum):
    """How far geomatch looks for a sender near the recipient.

    ``OFF``: no geomatch. ``AREA_CODE``: the built-in tier only (same NANP area code).
    ``FULL``: every tier (area code, overlay, state or province, country); needs the
    ``sticky-sender[geo]`` extra. ``AUTO`` (what ``geomatch=True`` means): every tier this
    installation can offer, that is ``FULL`` with the extra and ``AREA_CODE`` without.
    """

    OFF = "off"
    AUTO = "auto"
    AREA_CODE = "area_code"
    FULL = "full"

    def __bool__(self) -> bool:
        return self is not GeoMatch.OFF


def _geomatch(value: object) -> GeoMatch:
    if value is True:
        return GeoMatch.AUTO
    if value is False:
        return GeoMatch.OFF
    if isinstance(value, GeoMatch):
        return value
    if isinstance(value, str):
        try:
            return GeoMatch(value)
        except ValueError:
            pass
    choices = ", ".join(repr(g.value) for g in GeoMatch)
    msg = f"invalid geomatch {shown(value)}: expected a bool or one of {choices}"
    raise InvalidSettings(msg)


def _weight(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"invalid weight {shown(value)}: expected a finite number >= 0"
        raise InvalidSettings(msg)
    if not (math.isfinite(value) and value >= 0):
        msg = f"invalid weight {shown(value)}: expected a finite number >= 0"
        raise InvalidSettings(msg)
    return float(value)


def _seconds(name: str, value: object, *, positive: bool) -> float:
    """Seconds as a finite float (> 0 if ``positive``, else >= 0), or a timedelta's."""
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    bound = "> 0" if positive else ">= 0"
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not (value > 0 if positive else value >= 0)
    ):
        msg = (
            f"invalid {name} {shown(value)}: expected seconds (a finite number {bound})"
            " or a timedelta"
        )
        raise InvalidSettings(msg)
    return float(value)


def _rate(value: object, name: str = "rate") -> float | None:
    """A rate in segments per second: a finite number > 0, or None for unlimited."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and value > 0)
    ):
        msg = (
            f"invalid {name} {shown(value)}: expected segments per second"
            " (a finite number > 0) or None"
        )
        raise InvalidSettings(msg)
    return float(value)


def _count(value: object, name: str) -> int:
    """A positive integer (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"invalid {name} {shown(value)}: expected an integer >= 1"
        raise InvalidSettings(msg)
    return value


def _budget(value: object, name: str = "daily_new_recipients") -> int | None:
    """A daily budget of new recipients: an integer >= 1, or None for no budget."""
    return None if value is None else _count(value, name)


def _long_code_rate(value: object) -> float | None:
    return _rate(value, "long_code_rate")


def _toll_free_rate(value: object) -> float | None:
    return _rate(value, "toll_free_rate")


def _burst(value: object) -> int:
    return _count(value, "burst")


def _max_wait(value: object) -> float | None:
    return None if value is None else _seconds("max_wait", value, positive=False)


def _max_queue(value: object) -> float | None:
    return None if value is None else _seconds("max_queue", value, positive=False)


def _choice_wait(value: object) -> float:
    return _seconds("choice_wait", value, positive=False)


def _timezone(value: object) -> str:
    """An IANA time zone name that this installation knows."""
    import zoneinfo  # noqa: PLC0415 - only profiles that set a zone pay for the import

    if type(value) is str and value:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
        else:
            return value
    msg = (
        f"invalid timezone {shown(value)}: expected an IANA time zone name"
        " such as 'UTC' or 'America/New_York'"
    )
    raise InvalidSettings(msg)


def _ttl(value: object) -> float:
    return _seconds("ttl", value, positive=True)


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        msg = f"invalid {name} {shown(value)}: expected True or False"
        raise InvalidSettings(msg)
    return value


def _sticky_sender(value: object) -> bool:
    return _flag("sticky_sender", value)


def _skip_unhealthy(value: object) -> bool:
    return _flag("skip_unhealthy", value)


def _clear_on_sticky_off(value: object) -> bool:
    return _flag("clear_on_sticky_off", value)


def _share(name: str, value: object) -> float:
    """A share of outcomes: a number in [0, 1]."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (0 <= value <= 1)  # also refuses NaN
    ):
        msg = f"invalid {name} {shown(value)}: expected a share, a number from 0 to 1"
        raise InvalidSettings(msg)
    return float(value) + 0.0  # -0.0 becomes 0.0: equal settings give equal JSON


def _health_window(value: object) -> float:
    return _seconds("health_window", value, positive=True)


def _min_samples(value: object) -> int:
    return _count(value, "min_samples")


def _min_delivery_rate(value: object) -> float:
    return _share("min_delivery_rate", value)


def _max_spam_rate(value: object) -> float:
    return _share("max_spam_rate", value)


def _health_margin(value: object) -> float:
    return _share("health_margin", value)


@attrs.frozen(slots=True)
class PoolSettings:
    """A profile's settings. Frozen; every value is checked when constructed.

    Raises :class:`~sticky.InvalidSettings` for a NaN, infinite or negative weight, two
    zero weights, a ttl that is not > 0, a value of the wrong type, or an unknown name.

    Capacity (``docs/semantics.md``, "Capacity"): ``long_code_rate`` and
    ``toll_free_rate`` are each type's rate in segments per second (None: unlimited),
    ``burst`` the segments a number may send at once, ``daily_new_recipients`` each
    number's budget of new recipients per day in ``timezone`` (None: none);
    ``choice_wait`` is how long a fresh choice may wait for a slot before it gives up
    geomatch and weights for the earliest one, ``max_wait`` how long a sticky recipient
    waits for its own number before it overflows to a sooner one (None: always), and
    ``max_queue`` the longest wait a select accepts before it raises
    :class:`~sticky.PoolBusy` (None: any). Times in seconds or timedeltas.

    ``clear_on_sticky_off``: turning ``sticky_sender`` off also deletes the profile's
    mappings, in the same atomic step (the default keeps them, disregarded, for when it
    is turned on again).

    Health from delivery reports (``docs/semantics.md``, "A number's life"): over the
    last ``health_window``, a number with at least ``min_samples`` outcomes is measured
    unhealthy when its delivered share is below ``min_delivery_rate`` or its spam share
    above ``max_spam_rate``, and healthy again only once both pass by
    ``health_margin``.
    """

    sticky_sender: bool = attrs.field(default=True, converter=_sticky_sender)
    ttl: float = attrs.field(default=DEFAULT_TTL, converter=_ttl)
    long_code_weight: float = attrs.field(default=1.0, converter=_weight)
    toll_free_weight: float = attrs.field(default=1.0, converter=_weight)
    skip_unhealthy: bool = attrs.field(default=False, converter=_skip_unhealthy)
    geomatch: GeoMatch = attrs.field(default=GeoMatch.OFF, converter=_geomatch)
    long_code_rate: float | None = attrs.field(
        default=None, converter=_long_code_rate, kw_only=True
    )
    toll_free_rate: float | None = attrs.field(
        default=None, converter=_toll_free_rate, kw_only=True
    )
    burst: int = attrs.field(default=1, converter=_burst, kw_only=True)
    daily_new_recipients: int | None = attrs.field(default=None, converter=_budget, kw_only=True)
    max_wait: float | None = attrs.field(default=None, converter=_max_wait, kw_only=True)
    choice_wait: float = attrs.field(default=0.0, converter=_choice_wait, kw_only=True)
    max_queue: float | None = attrs.field(default=None, converter=_max_queue, kw_only=True)
    timezone: str = attrs.field(default="UTC", converter=_timezone, kw_only=True)
    clear_on_sticky_off: bool = attrs.field(
        default=False, converter=_clear_on_sticky_off, kw_only=True
    )
    health_window: float = attrs.field(default=86_400.0, converter=_health_window, kw_only=True)
    min_samples: int = attrs.field(default=20, converter=_min_samples, kw_only=True)
    min_delivery_rate: float = attrs.field(
        default=0.25, converter=_min_delivery_rate, kw_only=True
    )
    max_spam_rate: float = attrs.field(default=0.75, converter=_max_spam_rate, kw_only=True)
    health_margin: float = attrs.field(default=0.05, converter=_health_margin, kw_only=True)

    def __new__(cls, *_args: object, **names: object) -> Self:
        """Refuse unknown names with InvalidSettings, naming them (not a bare TypeError).

        Type checkers still see attrs' ``__init__``, so a misspelt name fails there too.
        """
        if names and not _FIELDS.issuperset(names):
            raise InvalidSettings(_unknown(names))
        return object.__new__(cls)

    def __attrs_post_init__(self) -> None:
        if self.long_code_weight == 0 and self.toll_free_weight == 0:
            msg = "invalid weights: long_code_weight and toll_free_weight are both 0"
            raise InvalidSettings(msg)
        if self.geomatch is GeoMatch.FULL:
            from sticky.geo import require_geo_extra  # noqa: PLC0415 - optional extra

            require_geo_extra()

    def evolve(self, **changes: object) -> PoolSettings:
        """Return a copy with ``changes`` applied and validated.

        Unknown names raise :class:`~sticky.InvalidSettings`.
        """
        if not _FIELDS.issuperset(changes):
            raise InvalidSettings(_unknown(changes))
        return attrs.evolve(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that :meth:`from_dict` turns back into equal settings."""
        return {
            "sticky_sender": self.sticky_sender,
            "ttl": self.ttl,
            "long_code_weight": self.long_code_weight,
            "toll_free_weight": self.toll_free_weight,
            "skip_unhealthy": self.skip_unhealthy,
            "geomatch": self.geomatch.value,
            "long_code_rate": self.long_code_rate,
            "toll_free_rate": self.toll_free_rate,
            "burst": self.burst,
            "daily_new_recipients": self.daily_new_recipients,
            "max_wait": self.max_wait,
            "choice_wait": self.choice_wait,
            "max_queue": self.max_queue,
            "timezone": self.timezone,
            "clear_on_sticky_off": self.clear_on_sticky_off,
            "health_window": self.health_window,
            "min_samples": self.min_samples,
            "min_delivery_rate": self.min_delivery_rate,
            "max_spam_rate": self.max_spam_rate,
            "health_margin": self.health_margin,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PoolSettings:
        """Rebuild settings from :meth:`to_dict`'s output (an older one lacks capacity)."""
        return cls(**data)


_FIELDS = frozenset(a.name for a in attrs.fields(PoolSettings))


def _unknown(names: Iterable[str]) -> str:
    """The message for names that are not settings, with the nearest setting of each."""
    parts = []
    for name in sorted(set(names) - _FIELDS):
        near = difflib.get_close_matches(name, _FIELDS, n=1)
        parts.append(shown(name) + (f" (did you mean {near[0]!r}?)" if near else ""))
    known = ", ".join(sorted(_FIELDS))
    plural = "s" if len(parts) > 1 else ""
    return f"unknown setting{plural} {', '.join(parts)}: the settings are {known}"


def check_rate(value: object) -> float | None:
    """A number's own rate, validated as the settings' rates are (None: its type's)."""
    return _rate(value)


def check_budget(value: object) -> int | None:
    """A number's own daily budget, validated as the settings' (None: its profile's)."""
    return _budget(value)


def check_grace(value: object) -> float | None:
    """A drain's grace: seconds >= 0 or a timedelta, or None (as long as mappings live)."""
    return None if value is None else _seconds("grace", value, positive=False)
