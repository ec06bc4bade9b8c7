"""A plain model of SEMANTICS.md: the obviously correct, obviously slow reference."""

from __future__ import annotations

import datetime
import math
import zoneinfo
from fractions import Fraction

import attrs

from sticky.errors import (
    NoEligibleSender,
    NumberInUse,
    PoolBusy,
    PoolExhausted,
    ProfileExists,
    StickyError,
    UnknownNumber,
    UnknownProfile,
    opted_out,
)
from sticky.geo import area_code_keys
from sticky.numbers import NumberType, SenderNumber
from sticky.settings import GeoMatch, PoolSettings
from sticky.values import GeoTier, Keyword, NumberHealth, Outcome, Reason, ReplyAction

__all__ = ["Expected", "Model"]


@attrs.define
class _Load:
    """A number's schedule and today's count, as the rules of Capacity state them."""

    tat: float = -math.inf
    floor: float = -math.inf
    day: int = 0
    count: int = 0


@attrs.frozen
class _Report:
    """One delivery report: when, what, and its bucket under the window then in force."""

    at: float
    outcome: Outcome
    bucket: int


@attrs.define
class _Profile:
    settings: PoolSettings
    pool: dict[str, SenderNumber] = attrs.Factory(dict)
    maps: dict[str, tuple[str, float]] = attrs.Factory(dict)
    horizon: float = -math.inf
    loads: dict[str, _Load] = attrs.Factory(dict)
    optouts: set[str] = attrs.Factory(set)
    reports: dict[str, list[_Report]] = attrs.Factory(dict)
    """Each number's delivery reports since its window was last cleared, in order."""

    def advance(self, now: float) -> float:
        self.horizon = max(self.horizon, now)
        return self.horizon


@attrs.frozen
class Expected:
    """What a select may return: one of ``senders``, with one of ``reasons`` and ``tier``."""

    senders: frozenset[str]
    reasons: frozenset[Reason]
    tier: GeoTier | None
    send_at: dict[str, float] | None = None
    """Each possible sender's ``send_at``; None: the select's ``now``."""


def day_in(now: float, tz: str) -> tuple[int, float]:
    """The calendar day of ``now`` in ``tz`` (an ordinal) and when the next one starts."""
    zone = zoneinfo.ZoneInfo(tz)
    try:
        date = datetime.datetime.fromtimestamp(math.floor(now), zone).date()
        nxt = datetime.datetime.combine(date + datetime.timedelta(days=1), datetime.time(), zone)
        return date.toordinal(), nxt.timestamp()
    except (OverflowError, OSError, ValueError):
        days = math.floor(now / 86_400)
        after = max((days + 1) * 86_400.0, math.nextafter(now, math.inf))
        return datetime.date(1970, 1, 1).toordinal() + days, after


class Model:
    """Profiles, pools and mappings in plain dicts; every rule written out directly.

    Dead mappings stay in the model until :meth:`evict` (a store may drop them sooner,
    which SEMANTICS.md allows to show only in the mapping count and in EXPIRED/NEW).
    Liveness is judged at ``max(now, horizon)``, the horizon being the latest ``now`` of
    a write on the profile that can evict or replace a mapping (not a sticky hit), so
    that nothing dead comes back under a clock that goes back; lengthening the ttl
    first drops what is dead at the horizon.
    Methods raise the error SEMANTICS.md asks for, and then change nothing.

    A number's life: a drain's grace is judged at the select's ``now`` (not the
    horizon); each number's delivery reports are a plain list, each report with its
    bucket under the ``health_window`` in force when it came, judged over the 24
    buckets ending at the newest bucket reported, in exact decimal arithmetic (a
    setting of 0.3 is three tenths); opt-outs are a set per profile, untouched by the
    ttl and gone with the profile.
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
    def _usable(p: _Profile, n: SenderNumber) -> bool:
        """Its type's weight is > 0 and it is healthy (both flags) or may be unhealthy."""
        s = p.settings
        weight = s.long_code_weight if n.type is NumberType.LONG_CODE else s.toll_free_weight
        return weight > 0 and ((n.healthy and n.delivery_healthy) or not s.skip_unhealthy)

    @classmethod
    def eligible(cls, p: _Profile) -> list[str]:
        """The numbers of a pool a fresh choice may land on: usable and not draining."""
        return [
            n.number for n in p.pool.values() if cls._usable(p, n) and n.draining_since is None
        ]

    @classmethod
    def keeps(cls, p: _Profile, sender: str, now: float) -> bool:
        """Whether a live mapping to ``sender`` is honoured at ``now``.

        Eligible, or ineligible only for a drain whose grace has not ended at ``now``.
        """
        n = p.pool[sender]
        if not cls._usable(p, n):
            return False
        if n.draining_since is None or n.drain_grace is None:
            return True
        return now < n.draining_since + n.drain_grace

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

    def add(
        self,
        pid: str,
        number: str,
        kind: NumberType,
        *,
        healthy: bool,
        rate: float | None = None,
        daily: int | None = None,
    ) -> None:
        p = self._get(pid)
        if number in self.owner:
            raise NumberInUse(number)
        p.pool[number] = SenderNumber(number, kind, healthy, rate, daily)
        self.owner[number] = pid

    def set_limits(self, number: str, changes: dict[str, float | int | None]) -> SenderNumber:
        if number not in self.owner:
            raise UnknownNumber(number)
        p = self.profiles[self.owner[number]]
        p.pool[number] = attrs.evolve(p.pool[number], **changes)  # type: ignore[arg-type]
        return p.pool[number]

    # -- capacity -------------------------------------------------------------------
    @staticmethod
    def rate(p: _Profile, number: str) -> float | None:
        n = p.pool[number]
        if n.rate is not None:
            return n.rate
        s = p.settings
        return s.long_code_rate if n.type is NumberType.LONG_CODE else s.toll_free_rate

    @staticmethod
    def budget(p: _Profile, number: str) -> int | None:
        own = p.pool[number].daily_new_recipients
        return own if own is not None else p.settings.daily_new_recipients

    @staticmethod
    def capacity_on_settings(s: PoolSettings) -> bool:
        """Whether these settings set a rate or a budget."""
        return (
            s.long_code_rate is not None
            or s.toll_free_rate is not None
            or s.daily_new_recipients is not None
        )

    @classmethod
    def capacity_on(cls, p: _Profile) -> bool:
        return any(cls.rate(p, n) is not None or cls.budget(p, n) is not None for n in p.pool) or (
            p.settings.long_code_rate is not None
            or p.settings.toll_free_rate is not None
            or p.settings.daily_new_recipients is not None
        )

    def slot(self, p: _Profile, number: str, now: float) -> float:
        """When a message to ``number`` may leave if reserved at ``now``."""
        rate = self.rate(p, number)
        if rate is None:
            return now
        load = p.loads.get(number, _Load())
        return max(now, load.tat - (p.settings.burst - 1) / rate, load.floor)

    @staticmethod
    def used(p: _Profile, number: str, day: int) -> int:
        load = p.loads.get(number, _Load())
        return load.count if load.day >= day else 0

    def has_budget(self, p: _Profile, number: str, day: int) -> bool:
        budget = self.budget(p, number)
        return budget is None or self.used(p, number, day) < budget

    def _count(self, p: _Profile, number: str, now: float) -> None:
        day = day_in(now, p.settings.timezone)[0]
        load = p.loads.setdefault(number, _Load())
        if day > load.day:
            load.day, load.count = day, 0
        load.count += 1

    def capacity(
        self, pid: str, now: float
    ) -> list[tuple[str, float | None, int, int | None, float, int]]:
        """Each number's ``(number, rate, burst, budget, next slot, new today)``."""
        p = self._get(pid)
        day = day_in(now, p.settings.timezone)[0]
        return [
            (
                n,
                self.rate(p, n),
                p.settings.burst,
                self.budget(p, n),
                self.slot(p, n, now),
                self.used(p, n, day),
            )
            for n in sorted(p.pool)
        ]

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
        p.loads.pop(number, None)
        p.reports.pop(number, None)
        del self.owner[number]
        return live

    def set_health(self, number: str, *, healthy: bool) -> None:
        """The caller's word; True also clears the reports' verdict and the reports."""
        if number not in self.owner:
            raise UnknownNumber(number)
        p = self.profiles[self.owner[number]]
        if healthy:
            p.pool[number] = attrs.evolve(p.pool[number], healthy=True, delivery_healthy=True)
            p.reports.pop(number, None)
        else:
            p.pool[number] = attrs.evolve(p.pool[number], healthy=False)

    # -- a number's life ------------------------------------------------------------
    def drain(self, pid: str, number: str, now: float, grace: float | None) -> SenderNumber:
        """Start a drain at ``now`` (afresh if it drains already); return the number."""
        p = self._get(pid)
        if number not in p.pool:
            raise UnknownNumber(number)
        p.pool[number] = attrs.evolve(p.pool[number], draining_since=now, drain_grace=grace)
        return p.pool[number]

    def undrain(self, pid: str, number: str) -> SenderNumber:
        p = self._get(pid)
        if number not in p.pool:
            raise UnknownNumber(number)
        p.pool[number] = attrs.evolve(p.pool[number], draining_since=None, drain_grace=None)
        return p.pool[number]

    @staticmethod
    def _bucket(now: float, health_window: float) -> int:
        return math.floor(now / (health_window / 24))

    @staticmethod
    def _counts(reports: list[_Report], top: int) -> tuple[int, int, int]:
        """``(delivered, failed, spam)`` of the reports in the 24 buckets ending at ``top``."""
        inside = [r.outcome for r in reports if top - 24 < r.bucket <= top]
        return (
            inside.count(Outcome.DELIVERED),
            inside.count(Outcome.FAILED),
            inside.count(Outcome.SPAM),
        )

    @staticmethod
    def _verdict(counts: tuple[int, int, int], healthy: bool, s: PoolSettings) -> bool:
        """The reports' verdict, as SEMANTICS.md words it, in exact decimal arithmetic."""
        delivered, _, spam = counts
        n = sum(counts)
        if n < s.min_samples:
            return True
        rate, spam_rate = Fraction(delivered, n), Fraction(spam, n)
        low, high, margin = (
            Fraction(repr(x)) for x in (s.min_delivery_rate, s.max_spam_rate, s.health_margin)
        )
        if healthy:
            return not (rate < low or spam_rate > high)
        need, allow = min(Fraction(1), low + margin), max(Fraction(0), high - margin)
        return rate >= need and spam_rate <= allow

    def record_delivery(self, number: str, outcome: Outcome, now: float) -> SenderNumber:
        """Add a report; judge the window ending at the newest bucket reported."""
        if number not in self.owner:
            raise UnknownNumber(number)
        p = self.profiles[self.owner[number]]
        reports = p.reports.setdefault(number, [])
        reports.append(_Report(now, outcome, self._bucket(now, p.settings.health_window)))
        counts = self._counts(reports, max(r.bucket for r in reports))
        n = p.pool[number]
        p.pool[number] = attrs.evolve(
            n, delivery_healthy=self._verdict(counts, n.delivery_healthy, p.settings)
        )
        return p.pool[number]

    def health(self, pid: str, now: float) -> list[NumberHealth]:
        """Each number's flags and outcomes in the window ending at ``now`` (or later)."""
        p = self._get(pid)
        out = []
        for number in sorted(p.pool):
            n, reports = p.pool[number], p.reports.get(number, [])
            top = max([self._bucket(now, p.settings.health_window)] + [r.bucket for r in reports])
            out.append(
                NumberHealth(number, n.healthy, n.delivery_healthy, *self._counts(reports, top))
            )
        return out

    def opt_out(self, pid: str, to: str, now: float) -> bool:
        """Forget the mapping (as :meth:`forget`) and record the opt-out; whether it is new."""
        p = self._get(pid)
        self.forget(pid, to, now)
        new = to not in p.optouts
        p.optouts.add(to)
        return new

    def opt_in(self, pid: str, to: str) -> bool:
        p = self._get(pid)
        was = to in p.optouts
        p.optouts.discard(to)
        return was

    def opt_outs(self, pid: str) -> list[str]:
        return sorted(self._get(pid).optouts)

    @staticmethod
    def keyword(body: str | None) -> Keyword | None:
        """The standard keyword a whole body is, trimmed and in any case."""
        word = None if body is None else body.strip().upper()
        if word in {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}:
            return Keyword.OPT_OUT
        if word in {"START", "UNSTOP", "YES"}:
            return Keyword.OPT_IN
        return None

    def record_reply(
        self, pid: str, to: str, number: str, body: str | None, now: float
    ) -> tuple[ReplyAction, Keyword | None]:
        """A reply: its keyword first, then the table of SEMANTICS.md's Replies."""
        p = self._get(pid)
        keyword = self.keyword(body)
        if keyword is Keyword.OPT_OUT:
            self.opt_out(pid, to, now)
        elif keyword is Keyword.OPT_IN:
            p.optouts.discard(to)
        if to in p.optouts:
            return ReplyAction.OPTED_OUT, keyword
        if number not in p.pool:
            return ReplyAction.NOT_IN_POOL, keyword
        if not p.settings.sticky_sender:
            return ReplyAction.STICKY_OFF, keyword
        live = self._live(p, to, now)
        if live is not None and live[0] == number:
            if not self.keeps(p, number, now):
                return ReplyAction.INELIGIBLE, keyword
            p.maps[to] = (number, max(live[1], now))  # a refresh: the horizon stays
            return ReplyAction.REFRESHED, keyword
        if number not in self.eligible(p):
            return ReplyAction.INELIGIBLE, keyword
        p.advance(now)
        p.maps[to] = (number, now)
        if self.capacity_on(p):
            self._count(p, number, now)
        return (ReplyAction.MAPPED if live is None else ReplyAction.MOVED), keyword

    def update(self, pid: str, changes: dict[str, object]) -> PoolSettings:
        p = self._get(pid)
        new = p.settings.evolve(**changes)
        if p.settings.sticky_sender and not new.sticky_sender and new.clear_on_sticky_off:
            p.maps.clear()  # cleared with the change, in one step
        elif new.ttl > p.settings.ttl:
            self._drop_dead(p, p.horizon)
        if new.health_window != p.settings.health_window:
            p.reports.clear()  # buckets of another width: every window starts afresh
        p.settings = new
        return p.settings

    def expect_select(self, pid: str, to: str, now: float) -> Expected:
        """What a select may return now; raises what it must raise. Changes nothing."""
        p = self._get(pid)
        if to in p.optouts:
            raise opted_out(pid, to)
        s = p.settings
        if self.capacity_on(p):
            return self._expect_with_capacity(p, to, now)
        if s.sticky_sender:
            m = p.maps.get(to)
            live = self._live(p, to, now)
            if live is not None and self.keeps(p, live[0], now):
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

    def _expect_with_capacity(self, p: _Profile, to: str, now: float) -> Expected:
        s = p.settings
        day, next_day = day_in(now, s.timezone)
        eligible = self.eligible(p)
        live = self._live(p, to, now) if s.sticky_sender else None
        if live is not None and self.keeps(p, live[0], now):
            sender = live[0]
            slot = self.slot(p, sender, now)
            if s.max_wait is not None and slot - now > s.max_wait:
                sooner = {
                    n: self.slot(p, n, now)
                    for n in eligible
                    if n != sender and self.has_budget(p, n, day)
                }
                sooner = {n: at for n, at in sooner.items() if at < slot}
                if sooner:
                    return self._among(p, to, now, sooner, Reason.OVERFLOW)
            if s.max_queue is not None and slot - now > s.max_queue:
                raise PoolBusy(to, slot - s.max_queue)
            return Expected(frozenset([sender]), frozenset([Reason.STICKY]), None, {sender: slot})
        if not s.sticky_sender:
            reasons = {Reason.POOL}
        elif to not in p.maps:
            reasons = {Reason.NEW}
        elif live is None:
            reasons = {Reason.EXPIRED, Reason.NEW}
        else:
            reasons = {Reason.REASSIGNED}
        if not eligible:
            raise NoEligibleSender(to)
        slots = {
            n: self.slot(p, n, now)
            for n in eligible
            if not s.sticky_sender or self.has_budget(p, n, day)
        }
        if not slots:
            raise PoolExhausted(to, next_day)
        return self._among(p, to, now, slots, *reasons)

    def _among(
        self, p: _Profile, to: str, now: float, slots: dict[str, float], *reasons: Reason
    ) -> Expected:
        """The choice among numbers with budget left: those with room, else the earliest."""
        s = p.settings
        wait = s.choice_wait if s.max_queue is None else min(s.choice_wait, s.max_queue)
        room = {n for n, at in slots.items() if at - now <= wait}
        if not room:
            earliest = min(slots.values())
            if s.max_queue is not None and earliest - now > s.max_queue:
                raise PoolBusy(to, earliest - s.max_queue)
            room = {n for n, at in slots.items() if at == earliest}
        senders, tier = self._fresh(p, to, room)
        return Expected(senders, frozenset(reasons), tier, {n: slots[n] for n in senders})

    def _fresh(
        self, p: _Profile, to: str, allowed: set[str] | None = None
    ) -> tuple[frozenset[str], GeoTier | None]:
        eligible = [n for n in self.eligible(p) if allowed is None or n in allowed]
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

    def record_select(
        self, pid: str, to: str, sender: str, reason: Reason, now: float, segments: int = 1
    ) -> None:
        """Apply a select the engine made (checked against :meth:`expect_select`)."""
        p = self.profiles[pid]
        if self.capacity_on(p):
            rate = self.rate(p, sender)
            if rate is not None:
                load = p.loads.setdefault(sender, _Load())
                send_at = self.slot(p, sender, now)
                load.tat = max(load.tat, now) + segments / rate
                load.floor = send_at
            if reason not in {Reason.STICKY, Reason.POOL}:
                self._count(p, sender, now)
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
        if self.capacity_on(p):
            self._count(p, number, now)

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
