"""Policy: pure functions over frozen values. No store, no clock, no state.

The rules here are those of ``docs/semantics.md``; stores that must decide inside an
atomic step (is a mapping live, is its sender eligible) mirror :func:`is_live` and
:func:`is_eligible` exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sticky import geo
from sticky.errors import NoEligibleSender
from sticky.numbers import NumberType, SenderNumber
from sticky.settings import GeoMatch, PoolSettings
from sticky.values import GeoTier

__all__ = ["Chooser", "is_eligible", "is_live", "weight_of"]

_TIERS = (GeoTier.AREA_CODE, GeoTier.OVERLAY, GeoTier.REGION, GeoTier.COUNTRY)


def is_live(last_used: float, ttl: float, now: float) -> bool:
    """A mapping is live while ``now < last_used + ttl``; at equality it is expired."""
    return now < last_used + ttl


def weight_of(number_type: NumberType, settings: PoolSettings) -> float:
    """The selection weight of one number of this type."""
    if number_type is NumberType.LONG_CODE:
        return settings.long_code_weight
    return settings.toll_free_weight


def is_eligible(number: SenderNumber, settings: PoolSettings) -> bool:
    """In the pool (the caller's part), weight > 0, and healthy unless unhealthy is allowed."""
    return weight_of(number.type, settings) > 0 and (number.healthy or not settings.skip_unhealthy)


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
            msg = f"profile {profile_id!r} has no eligible sender for {to!r}"
            raise NoEligibleSender(msg)
        if self._geo_keys is None:
            return self._all.pick(r), None
        for tier, key, groups in zip(_TIERS, self._geo_keys(to), self._tiers, strict=True):
            if key is not None:
                group = groups.get(key)
                if group is not None:
                    return group.pick(r), tier
        return self._all.pick(r), GeoTier.NONE
