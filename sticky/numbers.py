"""Phone numbers: E.164 validation and the sender number value."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable

import attrs

from sticky.errors import InvalidNumber, shown

__all__ = [
    "NumberType",
    "SenderNumber",
    "check_e164",
    "is_e164",
    "match_e164",
    "nanp_area_code",
]


class NumberType(enum.Enum):
    """The kind of a sender number; each kind has its own selection weight."""

    LONG_CODE = "long_code"
    TOLL_FREE = "toll_free"


@attrs.frozen(slots=True)
class SenderNumber:
    """A number of a pool: E.164 string, type, health, its own limits, its drain.

    ``rate`` (segments per second) and ``daily_new_recipients`` override the profile's
    limits for its type when set (an upgraded toll-free number carries more).
    ``healthy`` is the caller's word (:meth:`sticky.Engine.set_health`) and
    ``delivery_healthy`` the delivery reports' (:meth:`sticky.Engine.record_delivery`);
    the number is healthy when both are true (:attr:`is_healthy`). ``draining_since``
    is when :meth:`sticky.Engine.drain` began its drain (None: not draining), and
    ``drain_grace`` how long its recipients may stay on it after that (None: as long
    as their mappings live).
    """

    number: str
    type: NumberType = NumberType.LONG_CODE
    healthy: bool = True
    rate: float | None = None
    daily_new_recipients: int | None = None
    delivery_healthy: bool = attrs.field(default=True, kw_only=True)
    draining_since: float | None = attrs.field(default=None, kw_only=True)
    drain_grace: float | None = attrs.field(default=None, kw_only=True)

    @property
    def is_healthy(self) -> bool:
        """Healthy by the caller's word and by its delivery reports. O(1)."""
        return self.healthy and self.delivery_healthy

    @property
    def draining(self) -> bool:
        """Whether the number is draining: no new recipients. O(1)."""
        return self.draining_since is not None


match_e164: Callable[[str], re.Match[str] | None] = re.compile(
    r"\+[1-9][0-9]{6,14}"  # [0-9]: ASCII digits only
).fullmatch
"""The E.164 rule on a ``str``: a match if it is E.164, else None. O(1).

The compiled pattern's own method, for hot paths that know they hold a ``str``: no
Python frame (a compiled pattern is also faster than the same test with str methods).
It raises TypeError on anything else; :func:`is_e164` takes any value.
"""


def is_e164(value: object) -> bool:
    """Whether ``value`` is ``+`` then 7 to 15 ASCII digits, the first of them 1-9. O(1)."""
    return type(value) is str and match_e164(value) is not None


def check_e164(value: object, what: str = "number") -> str:
    """Return ``value`` if it is E.164, else raise :class:`InvalidNumber` naming it."""
    if is_e164(value):
        return value  # type: ignore[return-value]
    msg = f"invalid {what} {shown(value)}: expected E.164, '+' then 7 to 15 digits, the first 1-9"
    raise InvalidNumber(msg)


def nanp_area_code(number: str) -> str | None:
    """The NANP area code (NPA) of a valid E.164 number, or None if it is not NANP. O(1)."""
    if len(number) == 12 and number[1] == "1":
        return number[2:5]
    return None
