"""Policy: pure functions over frozen values. No store, no clock, no state.

Every rule of ``docs/semantics.md`` that a store must apply inside its atomic step is
one function here, and the in-process stores (memory, SQLite) call these functions;
the Redis scripts have one Lua helper per rule in ``common.lua``, and the constants
both languages need are defined here and substituted into the Lua when the scripts
load. ``docs/rules.md`` maps each rule to its Python function and its Lua helper.

- a mapping is live while ``at < last_used + ttl``: :func:`is_live`, :func:`dead_up_to`;
- liveness is judged at ``max(now, horizon)``, and writes that can evict move the
  horizon: :func:`judged_at`;
- eligibility (weight of its type > 0, healthy unless unhealthy is allowed):
  :func:`is_eligible`, and as data once per pool version, :func:`eligible_numbers`;
- the sticky hit (live and eligible is honoured, live and not eligible reassigned):
  :func:`judge`; a mapping never gets younger: :func:`refreshed`;
- the amortised eviction step (two dead mappings, eight index entries at most):
  :data:`STEP_EVICTIONS`, :data:`STEP_LOOKS`;
- the weighted choice within the first non-empty geomatch tier: :class:`Chooser`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Sequence

from sticky import geo
from sticky.errors import NoEligibleSender, shown
from sticky.numbers import NumberType, SenderNumber
from sticky.settings import GeoMatch, PoolSettings
from sticky.values import GeoTier, Reason

__all__ = [
    "STEP_EVICTIONS",
    "STEP_LOOKS",
    "Chooser",
    "Group",
    "dead_up_to",
    "eligible_numbers",
    "ineligible_because",
    "is_eligible",
    "is_live",
    "judge",
    "judged_at",
    "refreshed",
    "weight_of",
]

_TIERS = (GeoTier.AREA_CODE, GeoTier.OVERLAY, GeoTier.REGION, GeoTier.COUNTRY)

STEP_EVICTIONS = 2
"""Dead mappings a write that stores a mapping removes from its profile, at most."""
STEP_LOOKS = 8
"""Expiry-index entries such a write looks at, at most (stale ones included)."""


def is_live(last_used: float, ttl: float, at: float) -> bool:
    """A mapping is live while ``at < last_used + ttl``; at equality it is dead. O(1)."""
    return at < last_used + ttl


def dead_up_to(ttl: float, at: float) -> float:
    """The largest ``last_used`` that :func:`is_live` calls dead at ``at``. O(1).

    For stores that find dead mappings by an index range (``key <= dead_up_to(...)``):
    the bound is exact in float arithmetic, so the range holds precisely the dead keys.
    ``at - ttl`` is within a few steps of it; where it is not (near zero, where floats
    are dense and ``k + ttl`` rounds to ``ttl`` for a wide range of tiny ``k``), the
    bound is found by bisection over the floats' order, in at most 64 steps.
    """
    if at == -math.inf:
        return -math.inf
    k = at - ttl
    for _ in range(4):  # the common case: one step or none
        if is_live(k, ttl, at):
            k = math.nextafter(k, -math.inf)
            continue
        up = math.nextafter(k, math.inf)
        if is_live(up, ttl, at):
            return k
        k = up
    # Bisection between a dead and a live key (liveness is monotone in last_used).
    step = math.ulp(at) + math.ulp(ttl) + math.ulp(k)
    lo = hi = k
    while is_live(lo, ttl, at):
        lo, step = lo - step, step * 2
    while not is_live(hi, ttl, at):
        hi, step = hi + step, step * 2
    low, high = _order(lo), _order(hi)
    while high - low > 1:
        mid = (low + high) // 2
        if is_live(_unorder(mid), ttl, at):
            high = mid
        else:
            low = mid
    return _unorder(low)


_SIGN = 1 << 63


def _order(x: float) -> int:
    """Map floats to integers in the same order (-0.0 and 0.0 to the same one)."""
    bits = int.from_bytes(struct.pack("<d", x), "little")
    return bits if bits < _SIGN else _SIGN - bits  # -0.0 and 0.0 both map to 0


def _unorder(i: int) -> float:
    bits = i if i >= 0 else _SIGN - i
    return float(struct.unpack("<d", bits.to_bytes(8, "little"))[0])


def judged_at(now: float, horizon: float) -> float:
    """When liveness is judged, and the horizon after a write that can evict. O(1).

    ``max(now, horizon)``: once a write has seen a mapping dead, a clock that goes back
    does not bring it back. The writes that move the horizon are those that can evict
    or replace a mapping (a fresh choice that stores one, ``pin``, ``forget``,
    ``remove_number``, ``evict_expired``); a sticky hit evicts nothing and leaves it.
    """
    return now if now > horizon else horizon  # noqa: FURB136 - max() costs a call


def weight_of(number_type: NumberType, settings: PoolSettings) -> float:
    """The selection weight of one number of this type."""
    if number_type is NumberType.LONG_CODE:
        return settings.long_code_weight
    return settings.toll_free_weight


def ineligible_because(number: SenderNumber, settings: PoolSettings) -> str | None:
    """Why a pool's number may not be chosen, or None when it may. O(1).

    ``<type>_weight_zero`` (its type's weight is 0) or ``unhealthy`` (with skip_unhealthy).
    """
    if weight_of(number.type, settings) <= 0:
        return f"{number.type.value}_weight_zero"
    if not number.healthy and settings.skip_unhealthy:
        return "unhealthy"
    return None


def is_eligible(number: SenderNumber, settings: PoolSettings) -> bool:
    """In the pool (the caller's part), weight > 0, and healthy unless unhealthy is allowed."""
    return ineligible_because(number, settings) is None


def eligible_numbers(pool: Iterable[SenderNumber], settings: PoolSettings) -> frozenset[str]:
    """The eligible numbers of a pool: computed once per pool version, read by selects."""
    return frozenset(n.number for n in pool if is_eligible(n, settings))


_STICKY = Reason.STICKY  # an Enum member read through its class costs a descriptor call
_REASSIGNED = Reason.REASSIGNED
_EXPIRED = Reason.EXPIRED


def judge(last_used: float, ttl: float, now: float, horizon: float, eligible: bool) -> Reason:  # noqa: FBT001
    """What a stored mapping means for a sticky select at ``now``. O(1).

    ``STICKY``: it is live at :func:`judged_at` ``(now, horizon)`` and its sender is
    eligible, so it is honoured (and refreshed to :func:`refreshed`); ``REASSIGNED``: live,
    but its sender is not eligible; ``EXPIRED``: dead. The last two choose afresh.

    The body is ``is_live(last_used, ttl, judged_at(now, horizon))`` written out: it runs
    on every sticky hit, where the two calls cost about a tenth of the hit. The tests
    check that it equals that composition for any input.
    """
    at = now if now > horizon else horizon  # noqa: FURB136 - judged_at, inlined
    if at < last_used + ttl:  # is_live, inlined
        return _STICKY if eligible else _REASSIGNED
    return _EXPIRED


def refreshed(last_used: float, now: float) -> float:
    """A sticky hit's new ``last_used``: ``max(last_used, now)``, never younger. O(1)."""
    return now if now > last_used else last_used  # noqa: FURB136 - max() costs a call


Group = tuple[tuple[str, ...], tuple[str, ...]]
"""A group of eligible numbers as data: long codes, then toll-free numbers."""


class _Group:
    """Eligible numbers split by type, with their total weight, for an O(1) draw."""

    __slots__ = ("long_codes", "split", "toll_free", "total", "w_long", "w_toll")

    def __init__(
        self, long_codes: Sequence[str], toll_free: Sequence[str], w_long: float, w_toll: float
    ) -> None:
        self.long_codes = tuple(long_codes)
        self.toll_free = tuple(toll_free)
        self.w_long = w_long
        self.w_toll = w_toll
        self.split = len(self.long_codes) * w_long
        self.total = self.split + len(self.toll_free) * w_toll

    def pick(self, r: float) -> str:
        """The number at ``r`` in [0, 1) of the cumulative weights. O(1)."""
        # r < 1, but r * total / w can round up to the count: clamp to the last one.
        x = r * self.total
        if x < self.split:
            longs = self.long_codes
            i = int(x / self.w_long)
            return longs[i] if i < len(longs) else longs[-1]
        tolls = self.toll_free
        i = int((x - self.split) / self.w_toll)
        return tolls[i] if i < len(tolls) else tolls[-1]


class Chooser:
    """How a fresh sender is chosen for one pool under one version of its settings.

    Built once per pool version (O(p) in the pool, O(p) geo look-ups, each cached), then
    :meth:`choose` is O(1): a weighted draw within the first non-empty geomatch tier.
    The eligible numbers are ordered by number, so one seed gives one sequence of
    choices whichever store the pool came from.
    """

    __slots__ = ("_all", "_geo_keys", "_tiers", "plain", "settings", "version")

    def __init__(self, pool: Sequence[SenderNumber], settings: PoolSettings, version: int) -> None:
        self.settings = settings
        self.version = version
        eligible = sorted((n for n in pool if is_eligible(n, settings)), key=lambda n: n.number)
        w_long, w_toll = settings.long_code_weight, settings.toll_free_weight
        self._all = _Group(
            [n.number for n in eligible if n.type is NumberType.LONG_CODE],
            [n.number for n in eligible if n.type is NumberType.TOLL_FREE],
            w_long,
            w_toll,
        )
        self._tiers: tuple[dict[str, _Group], ...] = ()
        self._geo_keys: Callable[[str], geo.GeoKeys] | None = None
        self.plain: Callable[[float], str] | None = None
        """With geomatch off and a number eligible, the O(1) draw itself: ``plain(r)``
        is ``choose(..., r)[0]`` without the checks, for the hot path."""
        if settings.geomatch is GeoMatch.OFF:
            if self._all.total > 0:
                self.plain = self._all.pick
            return
        self._geo_keys = geo.keys_function(settings.geomatch)
        buckets: tuple[dict[str, tuple[list[str], list[str]]], ...] = ({}, {}, {}, {})
        for n in eligible:
            keys = self._geo_keys(n.number)
            is_long = n.type is NumberType.LONG_CODE
            # Toll-free numbers are national: they belong to the country tier alone.
            for tier, key in enumerate(keys):
                if key is None or (not is_long and _TIERS[tier] is not GeoTier.COUNTRY):
                    continue
                longs, tolls = buckets[tier].setdefault(key, ([], []))
                (longs if is_long else tolls).append(n.number)
        self._tiers = tuple(
            {k: _Group(lg, tf, w_long, w_toll) for k, (lg, tf) in b.items()} for b in buckets
        )

    def groups(self) -> tuple[Group, tuple[dict[str, Group], ...]]:
        """The draw's data: every eligible number, and each geomatch tier's groups by key.

        A group is ``(long codes, toll-free numbers)``, each sorted by number, as
        :meth:`choose` draws from it; the tiers are ``()`` with geomatch off, else one
        dict per tier (area code, overlay, region, country). For stores that choose
        outside Python from the same data. O(p).
        """
        tiers = tuple({k: (g.long_codes, g.toll_free) for k, g in t.items()} for t in self._tiers)
        return (self._all.long_codes, self._all.toll_free), tiers

    @property
    def empty(self) -> bool:
        """Whether no number is eligible."""
        return self._all.total == 0

    def choose(self, profile_id: str, to: str, r: float) -> tuple[str, GeoTier | None]:
        """Choose a sender for ``to`` with the uniform draw ``r`` in [0, 1).

        Returns the number and the geomatch tier it came from (None with geomatch off).
        Raises :class:`~sticky.NoEligibleSender` when no number is eligible. O(1).
        """
        if self._all.total == 0:
            msg = f"profile {shown(profile_id)} has no eligible sender for {shown(to)}"
            raise NoEligibleSender(msg)
        if self._geo_keys is None:
            return self._all.pick(r), None
        for tier, key, groups in zip(_TIERS, self._geo_keys(to), self._tiers, strict=True):
            if key is not None:
                group = groups.get(key)
                if group is not None:
                    return group.pick(r), tier
        return self._all.pick(r), GeoTier.NONE
