"""Policy: pure functions over frozen values. No store, no clock, no state.

Every rule of ``docs/semantics.md`` that a store must apply inside its atomic step is
one function here, and the in-process stores (memory, SQLite) call these functions;
the Redis scripts have one Lua helper per rule in ``common.lua``, and the constants
both languages need are defined here and substituted into the Lua when the scripts
load. ``docs/rules.md`` maps each rule to its Python function and its Lua helper.

- a mapping is live while ``at < last_used + ttl``: :func:`is_live`, :func:`dead_up_to`,
  and the time it dies, :func:`dies_at`;
- liveness is judged at ``max(now, horizon)``, and writes that can evict move the
  horizon: :func:`judged_at`;
- eligibility for a fresh choice (weight of its type > 0, healthy unless unhealthy is
  allowed, not draining): :func:`is_eligible`, and as data once per pool version,
  :func:`eligible_numbers`; for a live mapping to stay, draining is allowed until its
  grace ends: :func:`may_keep`, :func:`kept_numbers`, :func:`drain_deadlines`,
  :func:`keeps`;
- the sticky hit (live and kept is honoured, live and not kept reassigned):
  :func:`judge`; a mapping never gets younger: :func:`refreshed`;
- the amortised eviction step (two dead mappings, eight index entries at most):
  :data:`STEP_EVICTIONS`, :data:`STEP_LOOKS`;
- the weighted choice within the first non-empty geomatch tier: :class:`Chooser`;
- capacity: each number's limits (:func:`rate_of`, :func:`budget_of`), its schedule
  (the generic cell rate algorithm: :func:`next_slot`, :func:`reserve`), its daily
  budget (:func:`today`, :func:`new_today`, :func:`has_budget`), and the choice that
  weighs stickiness against them (:func:`plan`);
- health from delivery reports (a window of 24 buckets, a verdict with a margin):
  :func:`health_bucket`, :func:`add_outcome`, :func:`tally`, :func:`judge_health`,
  :func:`after_report`;
- replies: :func:`keyword_of`, :func:`reply_action`.
"""

from __future__ import annotations

import datetime
import math
import struct
import zoneinfo
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

from sticky import geo
from sticky.errors import NoEligibleSender, PoolBusy, PoolExhausted, shown
from sticky.numbers import NumberType, SenderNumber
from sticky.settings import GeoMatch, PoolSettings
from sticky.values import GeoTier, Keyword, Outcome, Reason, ReplyAction

__all__ = [
    "COUNTED",
    "HEALTH_BUCKETS",
    "IDLE",
    "STEP_EVICTIONS",
    "STEP_LOOKS",
    "Chooser",
    "Group",
    "Load",
    "Today",
    "Window",
    "add_outcome",
    "after_report",
    "budget_of",
    "busy_until",
    "capacity_on",
    "clears_mappings",
    "clears_windows",
    "count_new",
    "counts_budget",
    "dead_up_to",
    "dies_at",
    "drain_deadlines",
    "eligible_numbers",
    "has_budget",
    "health_bucket",
    "ineligible_because",
    "is_eligible",
    "is_live",
    "judge",
    "judge_health",
    "judged_at",
    "keeps",
    "kept_numbers",
    "keyword_of",
    "may_keep",
    "new_today",
    "next_slot",
    "plan",
    "rate_of",
    "recovery_rates",
    "refreshed",
    "reply_action",
    "reserve",
    "room_wait",
    "stays",
    "step_limit",
    "sticky_step",
    "tally",
    "today",
    "weight_of",
]

_TIERS = (GeoTier.AREA_CODE, GeoTier.OVERLAY, GeoTier.REGION, GeoTier.COUNTRY)

STEP_EVICTIONS = 2
"""Dead mappings a write that stores a mapping removes from its profile, at most."""
STEP_LOOKS = 8
"""Expiry-index entries such a write looks at, at most (stale ones included)."""


def is_live(last_used: float, ttl: float, at: float) -> bool:
    """A mapping is live while ``at < last_used + ttl``; at equality it is dead. O(1).

    That is ``at < dies_at(last_used, ttl)``, written out (it runs in every eviction
    loop); the tests check that the two agree for any input.
    """
    return at < last_used + ttl


def dies_at(last_used: float, ttl: float) -> float:
    """The first time at which :func:`is_live` calls the mapping dead. O(1).

    ``last_used + ttl``: a store may keep it for the oldest key of its expiry index, so
    that each write asks ``at >= evict_at`` whether an eviction step is due, one float
    comparison instead of a call. ``inf`` for an empty index (``last_used = inf``).
    """
    return last_used + ttl


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


def clears_mappings(old: PoolSettings, new: PoolSettings) -> bool:
    """Whether a settings change deletes the profile's mappings, in its own step. O(1).

    Sticky sender turned off with ``clear_on_sticky_off``; otherwise turning it off keeps
    the mappings, disregarded until it is turned on again.
    """
    return old.sticky_sender and not new.sticky_sender and new.clear_on_sticky_off


def clears_windows(old: PoolSettings, new: PoolSettings) -> bool:
    """Whether a settings change drops the profile's delivery windows, in its step. O(1).

    A new ``health_window`` is a new width of the buckets: reports counted in buckets of
    the old width cannot be placed in the new ones, so every window starts afresh (the
    verdicts stand until the next report judges them).
    """
    return old.health_window != new.health_window


def weight_of(number_type: NumberType, settings: PoolSettings) -> float:
    """The selection weight of one number of this type."""
    if number_type is NumberType.LONG_CODE:
        return settings.long_code_weight
    return settings.toll_free_weight


def ineligible_because(number: SenderNumber, settings: PoolSettings) -> str | None:
    """Why a pool's number may not be chosen afresh, or None when it may. O(1).

    ``<type>_weight_zero`` (its type's weight is 0), ``unhealthy`` (by the caller's word
    or its delivery reports, with skip_unhealthy) or ``draining``.
    """
    if weight_of(number.type, settings) <= 0:
        return f"{number.type.value}_weight_zero"
    if not (number.healthy and number.delivery_healthy) and settings.skip_unhealthy:
        return "unhealthy"
    if number.draining_since is not None:
        return "draining"
    return None


def is_eligible(number: SenderNumber, settings: PoolSettings) -> bool:
    """Whether a fresh choice may land on it: weight > 0, healthy, not draining. O(1).

    Healthy unless unhealthy numbers are allowed (``skip_unhealthy`` off).
    """
    return ineligible_because(number, settings) is None


def eligible_numbers(pool: Iterable[SenderNumber], settings: PoolSettings) -> frozenset[str]:
    """The numbers a fresh choice may land on: computed once per pool version."""
    return frozenset(n.number for n in pool if is_eligible(n, settings))


def may_keep(number: SenderNumber, settings: PoolSettings) -> bool:
    """Whether a live mapping to it may stay, its drain's grace aside. O(1).

    Eligible, or ineligible only because it is draining (see :func:`keeps`).
    """
    why = ineligible_because(number, settings)
    return why is None or why == "draining"


def kept_numbers(pool: Iterable[SenderNumber], settings: PoolSettings) -> frozenset[str]:
    """The numbers that :func:`may_keep` their live mappings: once per pool version.

    A sticky hit reads it, with :func:`drain_deadlines`, through :func:`keeps`.
    """
    return frozenset(n.number for n in pool if may_keep(n, settings))


def drain_deadlines(pool: Iterable[SenderNumber]) -> dict[str, float]:
    """Each draining number with a grace, and when its grace ends: ``since + grace``."""
    return {
        n.number: n.draining_since + n.drain_grace
        for n in pool
        if n.draining_since is not None and n.drain_grace is not None
    }


def keeps(sender: str, kept: Collection[str], deadlines: Mapping[str, float], now: float) -> bool:
    """Whether a live mapping to ``sender`` is honoured at ``now``: the sticky side. O(1).

    ``sender`` is in ``kept`` and, if it drains with a grace, ``now`` is before the
    grace's end. This is the ``eligible`` that :func:`judge` takes.
    """
    if sender not in kept:
        return False
    end = deadlines.get(sender) if deadlines else None
    return end is None or now < end


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

    def only(self, allowed: Collection[str]) -> _Group:
        """The same group restricted to ``allowed``, in the same order. O(size)."""
        return _Group(
            [n for n in self.long_codes if n in allowed],
            [n for n in self.toll_free if n in allowed],
            self.w_long,
            self.w_toll,
        )

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

    __slots__ = (
        "_all",
        "_geo_keys",
        "_live",
        "_tiers",
        "capacity",
        "eligible",
        "empty",
        "limits",
        "plain",
        "settings",
        "version",
    )

    def __init__(self, pool: Sequence[SenderNumber], settings: PoolSettings, version: int) -> None:
        self.settings = settings
        self.version = version
        eligible = sorted((n for n in pool if is_eligible(n, settings)), key=lambda n: n.number)
        self.eligible = tuple(n.number for n in eligible)
        """The eligible numbers, sorted."""
        self.capacity = capacity_on(pool, settings)
        """Whether any limit applies: then selects go through :func:`plan`."""
        self.limits = {n.number: (rate_of(n, settings), budget_of(n, settings)) for n in pool}
        """Each number's ``(rate, daily budget)`` (a draining one's too: its recipients stay)."""
        w_long, w_toll = settings.long_code_weight, settings.toll_free_weight
        self._all = _Group(
            [n.number for n in eligible if n.type is NumberType.LONG_CODE],
            [n.number for n in eligible if n.type is NumberType.TOLL_FREE],
            w_long,
            w_toll,
        )
        self.empty = self._all.total == 0
        """Whether no number is eligible (an attribute: a fresh choice reads it each time)."""
        self._tiers: tuple[dict[str, _Group], ...] = ()
        self._live: tuple[tuple[int, GeoTier, dict[str, _Group]], ...] = ()
        """The tiers with a group, nearest first: (index in a number's keys, tier, groups).
        A loop over these alone, not a ``zip`` of every tier: a fresh choice's cost."""
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
        self._live = tuple((i, _TIERS[i], t) for i, t in enumerate(self._tiers) if t)

    def groups(self) -> tuple[Group, tuple[dict[str, Group], ...]]:
        """The draw's data: every eligible number, and each geomatch tier's groups by key.

        A group is ``(long codes, toll-free numbers)``, each sorted by number, as
        :meth:`choose` draws from it; the tiers are ``()`` with geomatch off, else one
        dict per tier (area code, overlay, region, country). For stores that choose
        outside Python from the same data. O(p).
        """
        tiers = tuple({k: (g.long_codes, g.toll_free) for k, g in t.items()} for t in self._tiers)
        return (self._all.long_codes, self._all.toll_free), tiers

    def choose(self, profile_id: str, to: str, r: float) -> tuple[str, GeoTier | None]:
        """Choose a sender for ``to`` with the uniform draw ``r`` in [0, 1).

        Returns the number and the geomatch tier it came from (None with geomatch off).
        Raises :class:`~sticky.NoEligibleSender` when no number is eligible. O(1).
        """
        if self.empty:
            msg = f"profile {shown(profile_id)} has no eligible sender for {shown(to)}"
            raise NoEligibleSender(msg)
        if self._geo_keys is None:
            return self._all.pick(r), None
        keys = self._geo_keys(to)
        for i, tier, groups in self._live:
            key = keys[i]
            if key is not None:
                group = groups.get(key)
                if group is not None:
                    return group.pick(r), tier
        return self._all.pick(r), GeoTier.NONE

    def choose_among(
        self, allowed: Collection[str], to: str, r: float
    ) -> tuple[str, GeoTier | None]:
        """:meth:`choose` restricted to ``allowed``, a non-empty set of eligible numbers.

        Each group (every tier's and the whole pool's) keeps only its allowed numbers,
        in order; the first tier whose group keeps one wins. With every eligible number
        allowed, it is :meth:`choose`. O(p).
        """
        if self._geo_keys is None:
            return self._all.only(allowed).pick(r), None
        keys = self._geo_keys(to)
        for i, tier, groups in self._live:
            key = keys[i]
            if key is not None:
                group = groups.get(key)
                if group is not None:
                    kept = group.only(allowed)
                    if kept.total > 0:
                        return kept.pick(r), tier
        return self._all.only(allowed).pick(r), GeoTier.NONE


# -- capacity ---------------------------------------------------------------------

Load = tuple[float, float, int, int]
"""A number's capacity state: ``(tat, floor, day, count)``.

``tat`` is the generic cell rate algorithm's theoretical arrival time, ``floor`` the
latest ``send_at`` it gave (so a clock that goes back never moves the schedule back),
``count`` the new recipients of ``day`` (a proleptic Gregorian ordinal in the
profile's zone). A number never used has :data:`IDLE`.
"""
IDLE: Load = (-math.inf, -math.inf, 0, 0)
"""The state of a number with no reservation and no new recipient yet."""

Today = tuple[int, float]
"""A day in a profile's time zone: ``(ordinal, start of the next day)``."""

_DAYS: dict[str, tuple[float, float, int]] = {}
_ZONES: dict[str, zoneinfo.ZoneInfo] = {}
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
_DAY = 86_400.0


def today(now: float, tz: str) -> Today:
    """The day ``now`` falls in, in the IANA zone ``tz``, and when the next one starts.

    O(1): the last day of each zone is cached, so only the first select after a
    midnight computes a date. Times beyond the calendar (years past 9999) count UTC
    days of 86,400 seconds.
    """
    known = _DAYS.get(tz)
    if known is not None and known[0] <= now < known[1]:
        return known[2], known[1]
    zone = _ZONES.get(tz)
    if zone is None:
        zone = _ZONES[tz] = zoneinfo.ZoneInfo(tz)
    try:
        # Whole seconds: midnights are, and fromtimestamp would round to microseconds.
        date = datetime.datetime.fromtimestamp(math.floor(now), zone).date()
        start = datetime.datetime.combine(date, datetime.time(), zone).timestamp()
        end = datetime.datetime.combine(
            date + datetime.timedelta(days=1), datetime.time(), zone
        ).timestamp()
    except (OverflowError, OSError, ValueError):
        days = math.floor(now / _DAY)  # the next day starts after now, however far
        return _EPOCH_ORDINAL + days, max((days + 1) * _DAY, math.nextafter(now, math.inf))
    _DAYS[tz] = (start, end, date.toordinal())
    return date.toordinal(), end


def rate_of(number: SenderNumber, settings: PoolSettings) -> float | None:
    """A number's rate in segments per second: its own, else its type's; None: unlimited."""
    if number.rate is not None:
        return number.rate
    if number.type is NumberType.LONG_CODE:
        return settings.long_code_rate
    return settings.toll_free_rate


def budget_of(number: SenderNumber, settings: PoolSettings) -> int | None:
    """A number's daily budget of new recipients: its own, else the profile's; None: none."""
    if number.daily_new_recipients is not None:
        return number.daily_new_recipients
    return settings.daily_new_recipients


def capacity_on(pool: Iterable[SenderNumber], settings: PoolSettings) -> bool:
    """Whether any rate or budget applies to the pool: else selects skip capacity. O(p)."""
    if (
        settings.long_code_rate is not None
        or settings.toll_free_rate is not None
        or settings.daily_new_recipients is not None
    ):
        return True
    return any(n.rate is not None or n.daily_new_recipients is not None for n in pool)


def next_slot(load: Load, now: float, rate: float | None, burst: int) -> float:
    """The ``send_at`` a select at ``now`` would get: ``max(now, tat - (b - 1) / r, floor)``.

    ``now`` for a number without a rate. O(1).
    """
    if rate is None:
        return now
    slot = load[0] - (burst - 1) / rate
    if slot < load[1]:  # noqa: PLR1730 - max() costs a call
        slot = load[1]
    return now if now > slot else slot  # noqa: FURB136 - max() costs a call


def new_today(load: Load, day: int) -> int:
    """The new recipients counted on ``day``; a day never goes back (clock). O(1)."""
    return load[3] if load[2] >= day else 0


def has_budget(load: Load, day: int, budget: int | None) -> bool:
    """Whether a number may take one more new recipient on ``day``. O(1)."""
    return budget is None or new_today(load, day) < budget


def reserve(
    load: Load,
    now: float,
    rate: float | None,
    burst: int,
    segments: int,
    day: int,
    *,
    new: bool,
) -> tuple[float, Load]:
    """Reserve ``segments`` slots (and count a new recipient if ``new``); the new state.

    Returns ``(send_at, load)``: ``send_at`` is :func:`next_slot`, and the schedule
    moves to ``tat = max(tat, now) + segments / r``. So for any two reservations
    ``i`` before ``j`` on a number, the segments from ``i`` up to ``j`` are at most
    ``r * (send_at_j - send_at_i) + b``. A count belongs to ``max(day, stored day)``.
    O(1).
    """
    send_at = next_slot(load, now, rate, burst)
    if rate is not None:
        tat = load[0]
        start = tat if tat > now else now  # noqa: FURB136 - max() costs a call
        load = (start + segments / rate, send_at, load[2], load[3])
    return send_at, count_new(load, day) if new else load


def count_new(load: Load, day: int) -> Load:
    """``load`` with one more new recipient, counted on ``max(day, stored day)``. O(1)."""
    if day > load[2]:
        return load[0], load[1], day, 1
    return load[0], load[1], load[2], load[3] + 1


def counts_budget(reason: Reason) -> bool:
    """Whether a select with this reason created a mapping, which a budget counts."""
    return reason in COUNTED


COUNTED = frozenset({Reason.NEW, Reason.EXPIRED, Reason.REASSIGNED, Reason.OVERFLOW})
"""The reasons of a select that created a mapping (:func:`counts_budget`)."""

Plan = tuple[str, GeoTier | None, Reason, float]
"""A planned select: ``(sender, tier, reason, send_at)``."""


def busy_until(load: Load, rate: float | None, burst: int) -> float:
    """The time from which a number has room: ``max(tat - (b - 1) / r, floor)``. O(1).

    A select at ``now`` waits ``next_slot - now``, which is ``busy_until - now`` when
    positive: so "every number has room within ``w``" is ``max(busy_until) - now <= w``,
    which a store may keep as one float per pool and test in O(1) (see :func:`plan`).
    """
    if rate is None:
        return -math.inf
    busy = load[0] - (burst - 1) / rate
    return busy if busy > load[1] else load[1]  # noqa: FURB136 - max() costs a call


def room_wait(settings: PoolSettings) -> float:
    """How far a slot may be and still count as room: ``min(choice_wait, max_queue)``."""
    wait, max_queue = settings.choice_wait, settings.max_queue
    return wait if max_queue is None or wait <= max_queue else max_queue


def stays(
    chooser: Chooser, loads: Mapping[str, Load], sticky: str, now: float, to: str, profile_id: str
) -> float | None:
    """A sticky recipient's ``send_at`` when it keeps its number with no draw, else None.

    None when its wait exceeds ``max_wait``: then :func:`plan` looks for a sooner number
    (which needs the draw). Raises PoolBusy past ``max_queue``. O(1).
    """
    settings = chooser.settings
    slot = next_slot(loads.get(sticky, IDLE), now, chooser.limits[sticky][0], settings.burst)
    max_wait = settings.max_wait
    if max_wait is not None and slot - now > max_wait:
        return None
    max_queue = settings.max_queue
    if max_queue is not None and slot - now > max_queue:
        msg = (
            f"sender {sticky} of {shown(to)} in profile {shown(profile_id)} has no slot"
            f" within max_queue={max_queue:g}s"
        )
        raise PoolBusy(msg, slot - max_queue)
    return slot


def sticky_step(
    load: Load,
    now: float,
    rate: float | None,
    burst: int,
    segments: int,
    limit: float | None,
) -> tuple[float, Load, float] | None:
    """A sticky hit's whole capacity step: ``(send_at, new load, its busy_until)``, or None.

    :func:`stays`, :func:`reserve` (no new recipient) and :func:`busy_until` in one
    call, for the hot path: ``limit`` is the smaller of ``max_wait`` and ``max_queue``
    (None: neither), and a wait past it gives None, for :func:`plan` to decide (an
    overflow, or PoolBusy). The tests check it equals that composition. O(1).
    """
    if rate is None:
        return now, load, -math.inf
    tat, floor = load[0], load[1]
    slot = tat - (burst - 1) / rate
    if slot < floor:  # noqa: PLR1730 - max() costs a call
        slot = floor
    if slot < now:  # noqa: PLR1730
        slot = now
    if limit is not None and slot - now > limit:
        return None
    tat = (tat if tat > now else now) + segments / rate  # noqa: FURB136
    busy = tat - (burst - 1) / rate
    return slot, (tat, slot, load[2], load[3]), busy if busy > slot else slot  # noqa: FURB136


def step_limit(settings: PoolSettings) -> float | None:
    """The wait past which a sticky hit needs :func:`plan`: ``min(max_wait, max_queue)``."""
    a, b = settings.max_wait, settings.max_queue
    if a is None:
        return b
    return a if b is None or a <= b else b


def plan(
    chooser: Chooser,
    loads: Mapping[str, Load],
    to: str,
    r: float,
    now: float,
    day: Today,
    sticky: str | None,
    reason: Reason,
    profile_id: str,
    *,
    all_room: bool = False,
) -> Plan:
    """A select with capacity on: the sender, its tier, the reason and ``send_at``.

    ``sticky`` is the sender of a live mapping with an eligible sender (None for a
    fresh choice, whose ``reason`` is then given: new, expired, reassigned or pool).
    A sticky recipient keeps its number (:func:`stays`) unless its slot is more than
    ``max_wait`` away and a number with budget left has a sooner one (then
    ``OVERFLOW``); a fresh choice keeps the numbers with budget left (with sticky on)
    whose slot is within :func:`room_wait` and draws among them with
    :meth:`Chooser.choose_among` (geomatch tiers, then weights), else among those with
    the earliest slot. ``all_room`` is a store's word that every eligible number has
    budget left and room (its pool's ``max(busy_until)``): then the choice is
    :meth:`Chooser.choose`, the same answer in O(1). The draw ``r`` is used only by a
    fresh choice or an overflow. Changes nothing: the caller :func:`reserve` s the
    plan. Raises NoEligibleSender (no number is eligible), PoolExhausted (none has
    budget left), PoolBusy (none has a slot within ``max_queue``). O(p).
    """
    if sticky is not None:
        slot = stays(chooser, loads, sticky, now, to, profile_id)
        if slot is not None:
            return sticky, None, Reason.STICKY, slot
        slot = next_slot(
            loads.get(sticky, IDLE), now, chooser.limits[sticky][0], chooser.settings.burst
        )
        moved = _fresh(chooser, loads, to, r, now, day, profile_id, sticky, slot)
        if moved is not None:
            return moved[0], moved[1], Reason.OVERFLOW, moved[2]
        max_queue = chooser.settings.max_queue
        if max_queue is not None and slot - now > max_queue:
            msg = (
                f"sender {sticky} of {shown(to)} in profile {shown(profile_id)} has no slot"
                f" within max_queue={max_queue:g}s"
            )
            raise PoolBusy(msg, slot - max_queue)
        return sticky, None, Reason.STICKY, slot
    if all_room:
        sender, tier = chooser.choose(profile_id, to, r)
        slot = next_slot(
            loads.get(sender, IDLE), now, chooser.limits[sender][0], chooser.settings.burst
        )
        return sender, tier, reason, slot
    chosen = _fresh(chooser, loads, to, r, now, day, profile_id, None, math.inf)
    assert chosen is not None
    return chosen[0], chosen[1], reason, chosen[2]


def _fresh(  # noqa: C901, PLR0912 - the loop is written out: it runs per fresh choice
    chooser: Chooser,
    loads: Mapping[str, Load],
    to: str,
    r: float,
    now: float,
    day: Today,
    profile_id: str,
    sticky: str | None,
    before: float,
) -> tuple[str, GeoTier | None, float] | None:
    """A fresh choice with capacity: ``(sender, tier, send_at)``.

    For an overflow (``sticky`` given), a number with a slot sooner than ``before``,
    or None when there is none (the recipient stays).
    """
    settings = chooser.settings
    if not chooser.eligible:
        if sticky is not None:  # a kept sender that takes no fresh choice: it stays
            return None
        msg = f"profile {shown(profile_id)} has no eligible sender for {shown(to)}"
        raise NoEligibleSender(msg)
    limits, burst, budgets, today_ = chooser.limits, settings.burst, settings.sticky_sender, day[0]
    slots: dict[str, float] = {}
    for n in chooser.eligible:  # has_budget and next_slot, written out: O(p) per choice
        load = loads.get(n, IDLE)
        rate, budget = limits[n]
        if n == sticky or (
            budgets and budget is not None and load[2] >= today_ and load[3] >= budget
        ):
            continue
        if rate is None:
            slot = now
        else:
            slot = load[0] - (burst - 1) / rate
            if slot < load[1]:  # noqa: PLR1730 - max() costs a call
                slot = load[1]
            if slot < now:  # noqa: PLR1730
                slot = now
        if slot < before:
            slots[n] = slot
    if not slots:
        if sticky is not None:
            return None
        msg = (
            f"every eligible sender of profile {shown(profile_id)} is at its daily budget"
            f" of new recipients (for {shown(to)})"
        )
        raise PoolExhausted(msg, day[1])
    wait = room_wait(settings)
    max_queue = settings.max_queue
    room = [n for n, slot in slots.items() if slot - now <= wait]
    if not room:
        earliest = min(slots.values())
        if max_queue is not None and earliest - now > max_queue:
            msg = (
                f"no sender of profile {shown(profile_id)} has a slot for {shown(to)}"
                f" within max_queue={max_queue:g}s"
            )
            raise PoolBusy(msg, earliest - max_queue)
        room = [n for n, slot in slots.items() if slot == earliest]
    if len(room) == len(chooser.eligible):  # every number: the plain choice, in O(1)
        sender, tier = chooser.choose(profile_id, to, r)
    else:
        sender, tier = chooser.choose_among(frozenset(room), to, r)
    return sender, tier, slots[sender]


# -- a number's life: delivery health and replies -----------------------------------

HEALTH_BUCKETS = 24
"""A delivery window is kept as this many buckets of ``health_window / 24`` each."""

Window = tuple[tuple[int, int, int, int], ...]
"""A number's delivery reports: ``(bucket, delivered, failed, spam)``, oldest first,
at most :data:`HEALTH_BUCKETS` of them (O(1) state per number)."""

_OUTCOME_SLOT = {Outcome.DELIVERED: 1, Outcome.FAILED: 2, Outcome.SPAM: 3}


def health_bucket(now: float, health_window: float) -> int:
    """The bucket a report at ``now`` counts in: ``floor(now / (window / 24))``. O(1)."""
    return math.floor(now / (health_window / HEALTH_BUCKETS))


def add_outcome(window: Window, bucket: int, outcome: Outcome) -> Window:
    """The window with one more ``outcome`` in ``bucket``. O(1) (24 buckets at most).

    Buckets older than the 24 ending at the newest are dropped; a report older than
    those (a clock far back) changes nothing.
    """
    slot = _OUTCOME_SLOT[outcome]
    if window and window[-1][0] == bucket and window[0][0] > bucket - HEALTH_BUCKETS:
        # The common case, a report in the newest bucket of a window that drops nothing.
        last = list(window[-1])
        last[slot] += 1
        return (*window[:-1], (last[0], last[1], last[2], last[3]))
    top = bucket if not window or bucket > window[-1][0] else window[-1][0]
    oldest = top - HEALTH_BUCKETS
    if bucket <= oldest:
        return window
    out = []
    placed = False
    for entry in window:
        if entry[0] <= oldest:
            continue
        if entry[0] == bucket:
            counts = list(entry)
            counts[slot] += 1
            out.append((counts[0], counts[1], counts[2], counts[3]))
            placed = True
        else:
            if not placed and entry[0] > bucket:
                out.append(_one(bucket, slot))
                placed = True
            out.append(entry)
    if not placed:
        out.append(_one(bucket, slot))
    return tuple(out)


def _one(bucket: int, slot: int) -> tuple[int, int, int, int]:
    counts = [bucket, 0, 0, 0]
    counts[slot] = 1
    return counts[0], counts[1], counts[2], counts[3]


def tally(window: Window, bucket: int | None = None) -> tuple[int, int, int]:
    """``(delivered, failed, spam)`` over the 24 buckets ending at ``bucket``. O(1).

    ``bucket`` defaults to the window's newest (how a report is judged); a later one
    counts what is left of the window then (how :meth:`sticky.Engine.health` shows it).
    """
    if not window:
        return 0, 0, 0
    top = window[-1][0] if bucket is None or bucket < window[-1][0] else bucket
    oldest = top - HEALTH_BUCKETS
    delivered = failed = spam = 0
    for b, d, f, s in window:
        if b > oldest:
            delivered += d
            failed += f
            spam += s
    return delivered, failed, spam


def judge_health(counts: tuple[int, int, int], healthy: bool, settings: PoolSettings) -> bool:  # noqa: FBT001
    """The delivery verdict over a window's ``counts``, given the verdict before. O(1).

    Fewer than ``min_samples`` outcomes: healthy (not enough evidence, whatever the
    verdict before). A healthy number turns unhealthy when its delivered share is
    strictly below ``min_delivery_rate`` or its spam share strictly above
    ``max_spam_rate``; an unhealthy one recovers only when the delivered share is at
    least ``min_delivery_rate + health_margin`` and the spam share at most
    ``max_spam_rate - health_margin`` (each clamped to [0, 1]), so a number hovering at
    a threshold does not flip at every report.
    """
    delivered, failed, spam = counts
    n = delivered + failed + spam
    if n < settings.min_samples:
        return True
    # Shares as quotients: d / n is the double nearest the exact share, so a share equal
    # to a threshold as written (3 of 30 against 0.1) compares equal, where 0.1 * 30 > 3.
    delivered_share, spam_share = delivered / n, spam / n
    if healthy:
        return not (
            delivered_share < settings.min_delivery_rate or spam_share > settings.max_spam_rate
        )
    need, allow = recovery_rates(settings)
    return delivered_share >= need and spam_share <= allow


def recovery_rates(settings: PoolSettings) -> tuple[float, float]:
    """The shares an unhealthy number must reach to recover: ``(delivered, spam)``. O(1).

    At least ``min_delivery_rate + health_margin`` delivered and at most
    ``max_spam_rate - health_margin`` spam, each clamped to [0, 1] and rounded to 12
    decimal places, so that settings written as decimals add as decimals (0.1 + 0.2 is
    0.3, not 0.30000000000000004).
    """
    return (
        round(min(1.0, settings.min_delivery_rate + settings.health_margin), 12),
        round(max(0.0, settings.max_spam_rate - settings.health_margin), 12),
    )


def after_report(
    window: Window,
    healthy: bool,  # noqa: FBT001
    outcome: Outcome,
    now: float,
    settings: PoolSettings,
) -> tuple[Window, bool]:
    """A delivery report's whole step: the new window and the new verdict. O(1).

    :func:`add_outcome` in :func:`health_bucket` ``(now)``, then :func:`judge_health`
    over the result (judged at the newest bucket: a late report is judged with the
    reports after it).
    """
    window = add_outcome(window, health_bucket(now, settings.health_window), outcome)
    return window, judge_health(tally(window), healthy, settings)


_OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
_OPT_IN_WORDS = frozenset({"START", "UNSTOP", "YES"})


def keyword_of(body: str) -> Keyword | None:
    """The standard keyword a reply's whole body is (trimmed, any case), or None. O(len)."""
    word = body.strip().upper()
    if word in _OPT_OUT_WORDS:
        return Keyword.OPT_OUT
    if word in _OPT_IN_WORDS:
        return Keyword.OPT_IN
    return None


def reply_action(
    number: SenderNumber | None, settings: PoolSettings, current: str | None, now: float
) -> ReplyAction:
    """What a reply to ``number`` does to a recipient who is not opted out. O(1).

    ``number`` is the replied number as the pool holds it (None: not in the pool) and
    ``current`` the sender of the recipient's live mapping (None: none, or dead).
    ``REFRESHED`` when the live mapping is to it and it :func:`keeps` it at ``now``
    (``last_used`` becomes ``max(last_used, now)``); else ``MOVED`` (a live mapping to
    another number) or ``MAPPED`` (none live) when a fresh choice could land on it, the
    mapping becoming ``(number, now)``; else ``INELIGIBLE``. ``NOT_IN_POOL`` and
    ``STICKY_OFF`` change nothing.
    """
    if number is None:
        return ReplyAction.NOT_IN_POOL
    if not settings.sticky_sender:
        return ReplyAction.STICKY_OFF
    if current == number.number:
        end = drain_deadlines((number,)).get(number.number)
        if may_keep(number, settings) and (end is None or now < end):
            return ReplyAction.REFRESHED
        return ReplyAction.INELIGIBLE
    if not is_eligible(number, settings):
        return ReplyAction.INELIGIBLE
    return ReplyAction.MAPPED if current is None else ReplyAction.MOVED
