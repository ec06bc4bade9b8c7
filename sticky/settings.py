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

__all__ = ["DEFAULT_TTL", "GeoMatch", "PoolSettings"]

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


def _ttl(value: object) -> float:
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"invalid ttl {shown(value)}: expected seconds (a finite number > 0) or a timedelta"
        raise InvalidSettings(msg)
    if not (math.isfinite(value) and value > 0):
        msg = f"invalid ttl {shown(value)}: expected seconds (a finite number > 0) or a timedelta"
        raise InvalidSettings(msg)
    return float(value)


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        msg = f"invalid {name} {shown(value)}: expected True or False"
        raise InvalidSettings(msg)
    return value


def _sticky_sender(value: object) -> bool:
    return _flag("sticky_sender", value)


def _skip_unhealthy(value: object) -> bool:
    return _flag("skip_unhealthy", value)


@attrs.frozen(slots=True)
class PoolSettings:
    """A profile's settings. Frozen; every value is checked when constructed.

    Raises :class:`~sticky.InvalidSettings` for a NaN, infinite or negative weight, two
    zero weights, a ttl that is not > 0, a value of the wrong type, or an unknown name.
    """

    sticky_sender: bool = attrs.field(default=True, converter=_sticky_sender)
    ttl: float = attrs.field(default=DEFAULT_TTL, converter=_ttl)
    long_code_weight: float = attrs.field(default=1.0, converter=_weight)
    toll_free_weight: float = attrs.field(default=1.0, converter=_weight)
    skip_unhealthy: bool = attrs.field(default=False, converter=_skip_unhealthy)
    geomatch: GeoMatch = attrs.field(default=GeoMatch.OFF, converter=_geomatch)

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
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PoolSettings:
        """Rebuild settings from :meth:`to_dict`'s output."""
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
