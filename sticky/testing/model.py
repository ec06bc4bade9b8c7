"""A plain model of SEMANTICS.md: the obviously correct, obviously slow reference."""

from __future__ import annotations

import math

import attrs

from sticky.errors import (
    NoEligibleSender,
    NumberInUse,
    ProfileExists,
    StickyError,
    UnknownNumber,
    UnknownProfile,
)
from sticky.geo import area_code_keys
from sticky.numbers import NumberType, SenderNumber
from sticky.settings import GeoMatch, PoolSettings
from sticky.values import GeoTier, Reason

__all__ = ["Expected", "Model"]


@attrs.define
class _Profile:
    settings: PoolSettings
    pool: dict[str, SenderNumber] = attrs.Factory(dict)
    maps: dict[str, tuple[str, float]] = attrs.Factory(dict)
    horizon: float = -math.inf

    def advance(self, now: float) -> float:
        self.horizon = max(self.horizon, now)
        return self.horizon


@attrs.frozen
class Expected:
    """What a select may return: one of ``senders``, with one of ``reasons`` and ``tier``."""

    senders: frozenset[str]
    reasons: frozenset[Reason]
    tier: GeoTier | None


class Model:
    """Profiles, pools and mappings in plain dicts; every rule written out directly.

    Dead mappings stay in the model until :meth:`evict` (a store may drop them sooner,
    which SEMANTICS.md allows to show only in the mapping count and in EXPIRED/NEW).
    Liveness is judged at ``max(now, horizon)``, the horizon being the latest ``now`` of
    a write on the profile that can evict or replace a mapping (not a sticky hit), so
    that nothing dead comes back under a clock that goes back; lengthening the ttl
    first drops what is dead at the horizon.
    Methods raise the error SEMANTICS.md asks for, and then change nothing.
    """

    def __init__(self) -> None:
        self.profiles: dict[str, _Profile] = {}
        self.owner: dict[str, str] = {}

    def _get(self, pid: str) -> _Profile:
        if pid not in self.profiles:
            raise UnknownProfile(pid)
        return self.profiles[pid]

    @staticmethod
    def _live(p: _Profile, to: str, now: float) -> tuple[str, float] | None:
        m = p.maps.get(to)
        return m if m is not None and max(now, p.horizon) < m[1] + p.settings.ttl else None

    @staticmethod
    def eligible(p: _Profile) -> list[str]:
        """The eligible numbers of a pool."""
        s = p.settings
        out = []
        for n in p.pool.values():
            weight = s.long_code_weight if n.type is NumberType.LONG_CODE else s.toll_free_weight
            if weight > 0 and (n.healthy or not s.skip_unhealthy):
                out.append(n.number)
        return out

    def create(self, pid: str, settings: PoolSettings) -> None:
        if pid in self.profiles:
            raise ProfileExists(pid)
        self.profiles[pid] = _Profile(settings)

    def delete(self, pid: str, now: float) -> int:
        p = self._get(pid)
        live = sum(1 for to in p.maps if self._live(p, to, now))
        for n in p.pool:
            del self.owner[n]
        del self.profiles[pid]
        return live

    def add(self, pid: str, number: str, kind: NumberType, *, healthy: bool) -> None:
        p = self._get(pid)
        if number in self.owner:
            raise NumberInUse(number)
        p.pool[number] = SenderNumber(number, kind, healthy)
        self.owner[number] = pid

    def remove(self, pid: str, number: str, now: float) -> int:
        p = self._get(pid)
        if number not in p.pool:
            raise UnknownNumber(number)
        p.advance(now)
        gone = [to for to, (s, _) in p.maps.items() if s == number]
        live = sum(1 for to in gone if self._live(p, to, now))
        for to in gone:
            del p.maps[to]
        del p.pool[number]
        del self.owner[number]
        return live

    def set_health(self, number: str, *, healthy: bool) -> None:
        if number not in self.owner:
            raise UnknownNumber(number)
        p = self.profiles[self.owner[number]]
        p.pool[number] = attrs.evolve(p.pool[number], healthy=healthy)

    def update(self, pid: str, changes: dict[str, object]) -> PoolSettings:
        p = self._get(pid)
        new = p.settings.evolve(**changes)
        if new.ttl > p.settings.ttl:
            self._drop_dead(p, p.horizon)
        p.settings = new
        return p.settings

    def expect_select(self, pid: str, to: str, now: float) -> Expected:
        """What a select may return now; raises what it must raise. Changes nothing."""
        p = self._get(pid)
        s = p.settings
        if s.sticky_sender:
            m = p.maps.get(to)
            live = self._live(p, to, now)
            eligible = self.eligible(p)
            if live is not None and live[0] in eligible:
                return Expected(frozenset([live[0]]), frozenset([Reason.STICKY]), None)
            if m is None:
                reasons = {Reason.NEW}
            elif live is None:
                reasons = {Reason.EXPIRED, Reason.NEW}  # NEW if the store evicted it first
            else:
                reasons = {Reason.REASSIGNED}
        else:
            reasons = {Reason.POOL}
        senders, tier = self._fresh(p, to)
        return Expected(senders, frozenset(reasons), tier)

    def _fresh(self, p: _Profile, to: str) -> tuple[frozenset[str], GeoTier | None]:
        eligible = self.eligible(p)
        if not eligible:
            raise NoEligibleSender(to)
        if not p.settings.geomatch:
            return frozenset(eligible), None
        if p.settings.geomatch is not GeoMatch.AREA_CODE:
            msg = "the model knows the built-in area-code tier only"
            raise NotImplementedError(msg)
        npa = area_code_keys(to)[0]
        near = [
            n
            for n in eligible
            if p.pool[n].type is NumberType.LONG_CODE and npa and area_code_keys(n)[0] == npa
        ]
        if near:
            return frozenset(near), GeoTier.AREA_CODE
        return frozenset(eligible), GeoTier.NONE

    def record_select(self, pid: str, to: str, sender: str, reason: Reason, now: float) -> None:
        """Apply a select the engine made (checked against :meth:`expect_select`)."""
        p = self.profiles[pid]
        if reason is Reason.POOL:
            return
        if reason is Reason.STICKY:  # a hit evicts nothing: the horizon stays
            old = p.maps[to]
            p.maps[to] = (sender, max(old[1], now))
        else:
            p.advance(now)
            p.maps[to] = (sender, now)

    def mapping(self, pid: str, to: str, now: float) -> tuple[str, float] | None:
        return self._live(self._get(pid), to, now)

    def recipients_of(self, pid: str, number: str, now: float) -> list[str]:
        p = self._get(pid)
        return sorted(
            to for to, (s, _) in p.maps.items() if s == number and self._live(p, to, now)
        )

    def pin(self, pid: str, to: str, number: str, now: float) -> None:
        p = self._get(pid)
        if number not in p.pool:
            raise UnknownNumber(number)
        p.advance(now)
        p.maps[to] = (number, now)

    def forget(self, pid: str, to: str, now: float) -> bool:
        p = self._get(pid)
        p.advance(now)
        live = self._live(p, to, now) is not None
        p.maps.pop(to, None)
        return live

    def _drop_dead(self, p: _Profile, now: float) -> int:
        dead = [to for to in p.maps if not self._live(p, to, now)]
        for to in dead:
            del p.maps[to]
        return len(dead)

    def evict(self, now: float) -> int:
        return sum(self._drop_dead(p, p.advance(now)) for p in self.profiles.values())

    def stored(self) -> int:
        return sum(len(p.maps) for p in self.profiles.values())

    def live_count(self, now: float) -> int:
        return sum(1 for p in self.profiles.values() for to in p.maps if self._live(p, to, now))


def same_error(a: BaseException | None, b: BaseException | None) -> bool:
    """Whether two outcomes are the same library error class (or both None)."""
    if a is None or b is None:
        return a is b
    return isinstance(a, StickyError) and type(a) is type(b)
