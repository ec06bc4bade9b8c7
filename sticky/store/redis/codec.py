"""How the Redis store writes values: floats, settings, pool entries, mappings.

Times, ttls and weights travel as ``repr(float)`` text and are stored as received, so
they round-trip exactly (Lua compares them as the same IEEE doubles, and never formats
one). A pool entry is ``<L|T><1|0><1|0>``: type, health, and whether the number is
eligible under the profile's settings (:func:`sticky.policy.is_eligible`, computed here
once per pool version, so Lua reads eligibility as data). 0.1 wrote the first two only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from sticky.numbers import NumberType, SenderNumber
from sticky.policy import is_eligible
from sticky.settings import PoolSettings
from sticky.store.base import sorted_pool

__all__ = [
    "entry",
    "flat_entries",
    "float_text",
    "parse_pool",
    "settings_args",
    "settings_json",
]

TYPE_CODE = {NumberType.LONG_CODE: "L", NumberType.TOLL_FREE: "T"}
CODE_TYPE = {"L": NumberType.LONG_CODE, "T": NumberType.TOLL_FREE}


def float_text(value: float) -> str:
    """A time or float as the exact text Redis stores and Lua parses: repr of a float."""
    return repr(float(value))


def settings_json(settings: PoolSettings) -> str:
    """Canonical JSON: equal settings give equal text (-0.0 is written as 0.0)."""
    data = settings.to_dict()
    for name in ("ttl", "long_code_weight", "toll_free_weight"):
        data[name] = data[name] + 0.0
    return json.dumps(data, separators=(",", ":"))


def settings_args(settings: PoolSettings) -> tuple[str, str, str]:
    """The settings as the scripts read them: JSON, ttl, sticky."""
    return (
        settings_json(settings),
        float_text(settings.ttl),
        "1" if settings.sticky_sender else "0",
    )


def entry(number: SenderNumber, settings: PoolSettings) -> str:
    """A pool entry: type, health, eligible under ``settings``."""
    return (
        TYPE_CODE[number.type]
        + ("1" if number.healthy else "0")
        + ("1" if is_eligible(number, settings) else "0")
    )


def flat_entries(pool: Iterable[SenderNumber], settings: PoolSettings) -> list[str]:
    """``number, entry, ...`` for every number of ``pool``, as HSET takes them. O(p)."""
    out: list[str] = []
    for n in pool:
        out += (n.number, entry(n, settings))
    return out


def parse_pool(flat: Sequence[str]) -> tuple[SenderNumber, ...]:
    """The pool from ``number, entry, ...`` (entries of either layout), sorted. O(p log p)."""
    return sorted_pool(
        [
            SenderNumber(flat[i], CODE_TYPE[flat[i + 1][0]], flat[i + 1][1] == "1")
            for i in range(0, len(flat), 2)
        ]
    )
