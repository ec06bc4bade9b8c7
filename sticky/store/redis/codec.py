"""How the Redis store writes values: floats, settings, pool entries, mappings.

Times, ttls and weights travel as ``repr(float)`` text and are stored as received, so
they round-trip exactly (Lua compares them as the same IEEE doubles, and never formats
one). A pool entry is ``<L|T><h><k><e><d>``: type, the caller's health, whether a live
mapping to it may stay (:func:`sticky.policy.may_keep`: the flag a sticky hit reads),
whether a fresh choice may land on it (:func:`sticky.policy.is_eligible`), and the
delivery reports' verdict, all computed here once per pool version so that Lua reads
them as data; then `` <rate> <budget>`` when the number has a limit of its own or
drains (``-``: none), then `` <since> <grace>`` while it drains, and `` @<since +
grace>`` (:func:`sticky.policy.drain_deadlines`) when the drain has a grace, which the
hit compares with its ``now``. Older entries still parse: ``<L|T><h><k>`` (written
before drains and delivery reports, the two flags one: not draining, delivery healthy),
and 0.1's ``<L|T><h>``. What a fresh choice needs is data too (:func:`choice_fields`,
once per pool version): the groups of :class:`sticky.policy.Chooser`, which the
scripts' ``pick`` draws from, and with capacity on the settings and each number's
limits that ``plan`` in common.lua reads. A number's capacity state is ``"<tat> <floor>
<day> <count>"``; its delivery window (:data:`sticky.policy.Window`) is ``"<token>;<b>
<delivered> <failed> <spam>;..."``, oldest bucket first, after the token of the report
that wrote it last (a re-sent report is not counted twice). A number's owner key holds
``"<incarnation>:<hex id>:<token>"``, the token new for each attempt of an add (0.1 and
layout 2 wrote ``"<incarnation>:<hex id>"``, which still parses).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from sticky import geo
from sticky.errors import ExtraNotInstalled
from sticky.numbers import NumberType, SenderNumber
from sticky.policy import Chooser, Load, Window, drain_deadlines, is_eligible, may_keep
from sticky.settings import GeoMatch, PoolSettings
from sticky.store.base import sorted_pool

__all__ = [
    "choice_args",
    "choice_fields",
    "entry",
    "flat_entries",
    "float_text",
    "geo_mode",
    "group_text",
    "load_text",
    "parse_load",
    "parse_pool",
    "parse_window",
    "settings_args",
    "settings_json",
    "window_text",
]

TYPE_CODE = {NumberType.LONG_CODE: "L", NumberType.TOLL_FREE: "T"}
CODE_TYPE = {"L": NumberType.LONG_CODE, "T": NumberType.TOLL_FREE}


def owner_value(incarnation: str, hex_value: str, token: str) -> str:
    """The owner-key value an attempt of ``add_number`` writes: unique to that attempt."""
    return f"{incarnation}:{hex_value}:{token}"


def parse_owner(value: str) -> tuple[str, str]:
    """An owner-key value's (incarnation, hex id of its profile); any token dropped."""
    incarnation, _, rest = value.partition(":")
    return incarnation, rest.partition(":")[0]


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


def _opt(value: float | None) -> str:
    return "-" if value is None else repr(value)


def entry(number: SenderNumber, settings: PoolSettings) -> str:
    """A pool entry: type, flags under ``settings``, its own limits, its drain. O(1)."""
    out = (
        TYPE_CODE[number.type]
        + ("1" if number.healthy else "0")
        + ("1" if may_keep(number, settings) else "0")
        + ("1" if is_eligible(number, settings) else "0")
        + ("1" if number.delivery_healthy else "0")
    )
    since = number.draining_since
    if number.rate is not None or number.daily_new_recipients is not None or since is not None:
        out += f" {_opt(number.rate)} {_opt(number.daily_new_recipients)}"
    if since is not None:
        out += f" {float_text(since)} {_opt(number.drain_grace)}"
        end = drain_deadlines((number,)).get(number.number)
        if end is not None:
            out += f" @{float_text(end)}"
    return out


def _number(number: str, value: str) -> SenderNumber:
    """A pool entry's number (of any layout, with or without limits or a drain)."""
    kind, healthy = CODE_TYPE[value[0]], value[1] == "1"
    parts = value.split(" ")
    delivery_healthy = len(parts[0]) < 5 or parts[0][4] == "1"
    if len(parts) == 1 and delivery_healthy:
        return SenderNumber(number, kind, healthy)
    rate = budget = since = grace = None
    if len(parts) >= 3:
        rate = None if parts[1] == "-" else float(parts[1])
        budget = None if parts[2] == "-" else int(parts[2])
    if len(parts) >= 5:
        since = float(parts[3])
        grace = None if parts[4] == "-" else float(parts[4])
    return SenderNumber(
        number,
        kind,
        healthy,
        rate,
        budget,
        delivery_healthy=delivery_healthy,
        draining_since=since,
        drain_grace=grace,
    )


def flat_entries(pool: Iterable[SenderNumber], settings: PoolSettings) -> list[str]:
    """``number, entry, ...`` for every number of ``pool``, as HSET takes them. O(p)."""
    out: list[str] = []
    for n in pool:
        out += (n.number, entry(n, settings))
    return out


def parse_pool(flat: Sequence[str]) -> tuple[SenderNumber, ...]:
    """The pool from ``number, entry, ...`` (entries of either layout), sorted. O(p log p)."""
    return sorted_pool([_number(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)])


def window_text(token: str, window: Window) -> str:
    """A delivery window as the scripts store it, after the token that wrote it. O(1)."""
    return ";".join([token, *(f"{b} {d} {f} {s}" for b, d, f, s in window)])


def parse_window(value: str | None) -> Window:
    """A stored delivery window (None or ``""``: empty), its token dropped. O(1)."""
    if not value:
        return ()
    out = []
    for part in value.split(";")[1:]:
        b, d, f, s = part.split(" ")
        out.append((int(b), int(d), int(f), int(s)))
    return tuple(out)


def load_text(load: Load) -> str:
    """A capacity state as the scripts store it (floats as ``%.17g``, exact)."""
    return f"{load[0]!r} {load[1]!r} {load[2]} {load[3]}"


def parse_load(value: str) -> Load:
    """A stored capacity state; Lua writes ``-inf``/``inf`` and ``%.17g`` floats."""
    tat, floor, day, count = value.split(" ")
    return float(tat), float(floor), int(day), int(count)


def _capacity_fields(chooser: Chooser, settings: PoolSettings) -> list[str]:
    """The capacity part of the choice data: ``cap`` (``0``: off), ``tz``, ``lim``. O(p).

    ``cap`` is ``<burst> <max_wait> <choice_wait> <max_queue>`` (``-``: none) and
    ``lim`` each eligible number's ``<number> <rate> <budget>``, in the chooser's order,
    then every other number's as ``~<number> <rate> <budget>`` (:attr:`Chooser.limits`
    covers the pool: a sticky recipient of a draining number is planned too).
    """
    if not chooser.capacity:
        return ["cap", "0"]
    cap = (
        f"{settings.burst} {_opt(settings.max_wait)} {float_text(settings.choice_wait)}"
        f" {_opt(settings.max_queue)}"
    )
    limits = chooser.limits
    eligible = set(chooser.eligible)
    lim = " ".join(
        [f"{n} {_opt(limits[n][0])} {_opt(limits[n][1])}" for n in chooser.eligible]
        + [
            f"~{n} {_opt(limits[n][0])} {_opt(limits[n][1])}"
            for n in sorted(limits)
            if n not in eligible
        ]
    )
    return ["cap", cap, "tz", settings.timezone, "lim", lim]


def geo_mode(settings: PoolSettings) -> str:
    """The geomatch mode a profile's tier keys are computed under, in this installation.

    ``auto`` is ``full`` with the ``sticky[geo]`` extra, ``area_code`` without it.
    """
    mode = settings.geomatch
    if mode is GeoMatch.AUTO:
        return "full" if geo.geo_extra_installed() else "area_code"
    return str(mode.value)


def group_text(long_codes: Sequence[str], toll_free: Sequence[str]) -> str:
    """A group as ``pick`` in common.lua reads it: counts, width, padded numbers. O(g)."""
    numbers = (*long_codes, *toll_free)
    width = max(map(len, numbers), default=0)
    return f"{len(long_codes)} {len(toll_free)} {width} " + "".join(
        n.ljust(width) for n in numbers
    )


def choice_fields(pool: Sequence[SenderNumber], settings: PoolSettings, version: int) -> list[str]:
    """What a fresh choice needs, as ``field, value, ...`` of the choice hash. O(p).

    ``w``: the two weights; ``*``: every eligible number; ``cap``, ``tz``, ``lim``:
    the capacity settings and limits (``cap`` is ``0`` with capacity off);
    ``<tier>:<key>``: a geomatch tier's group (tiers 1-4 in
    :class:`~sticky.policy.Chooser`'s order). Raises ExtraNotInstalled for full geomatch
    without the extra, as the Chooser does.
    """
    chooser = Chooser(pool, settings, version)
    (long_codes, toll_free), tiers = chooser.groups()
    weights = f"{float_text(settings.long_code_weight)} {float_text(settings.toll_free_weight)}"
    out = ["w", weights, "*", group_text(long_codes, toll_free)]
    out += _capacity_fields(chooser, settings)
    for tier, groups in enumerate(tiers, 1):
        for key, (longs, tolls) in groups.items():
            out += (f"{tier}:{key}", group_text(longs, tolls))
    return out


def choice_args(pool: Sequence[SenderNumber], settings: PoolSettings, version: int) -> list[str]:
    """The choice data as a pool change's script takes it: count, mode, fields. O(p).

    ``["0"]`` (drop the stored data; the next fresh choice has it computed) where this
    installation cannot compute it (full geomatch without the extra).
    """
    try:
        fields = choice_fields(pool, settings, version)
    except ExtraNotInstalled:
        return ["0"]
    return [str(1 + len(fields)), geo_mode(settings), *fields]
