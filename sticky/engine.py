# Generated from sticky/_async/engine.py by .ci/unasync.py: edit the source, then run it.
"""The engine: the facade a service calls.

It reads the clock, validates input at the boundary, applies the policy and drives a
store. It is written once, as asyncio code in ``sticky/_async/engine.py``; the
synchronous ``sticky/engine.py`` is generated from it by ``.ci/unasync.py`` (CI checks
that it is up to date), so both engines apply the same code to their stores.
"""

from __future__ import annotations

import datetime
import functools
import logging
import math
import random
import threading
from collections.abc import Collection, Iterable, Iterator
from types import TracebackType
from typing import Self, cast

from sticky.clock import Clock, ManualClock, SystemClock
from sticky.draws import Draws
from sticky.errors import (
    IncompatibleStore,
    InvalidProfileId,
    InvalidSettings,
    InvalidTime,
    NoEligibleSender,
    OptedOut,
    PoolBusy,
    PoolExhausted,
    ProfileExists,
    shown,
)
from sticky.numbers import NumberType, SenderNumber, check_e164, is_e164
from sticky.policy import (
    IDLE,
    Chooser,
    budget_of,
    capacity_on,
    health_bucket,
    ineligible_because,
    keyword_of,
    new_today,
    next_slot,
    plan,
    rate_of,
    tally,
    today,
)
from sticky.settings import PoolSettings, check_budget, check_grace, check_rate
from sticky.store.base import SLOT as _SLOT
from sticky.store.base import (
    BatchStore,
    BulkImportStore,
    ImportEntry,
    LiveMapping,
    MappingScanStore,
    Miss,
    OneStepBatchStore,
    OneStepStore,
    Store,
    coerce_store,
    count,
    import_by_pin,
    new_counts,
    scan_by_sender,
)
from sticky.values import (
    Mapping,
    NumberCapacity,
    NumberHealth,
    Outcome,
    Reason,
    Reply,
    Selection,
    Selections,
    Stats,
)

__all__ = ["Engine"]

_log = logging.getLogger(__name__)
_DEBUG = logging.DEBUG
_REASSIGNED = Reason.REASSIGNED

_EXHAUSTED, _BUSY = _SLOT["exhausted"], _SLOT["busy"]
_OPTED_OUT = _SLOT["opted_out"]
_STICKY_REASON = Reason.STICKY
_new = tuple.__new__  # builds a Selection without its Python-level __new__
_ONE = 1


def _time(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"invalid time {shown(value)}: expected seconds since the epoch"
        raise InvalidTime(msg)
    if not math.isfinite(value):
        msg = f"invalid time {shown(value)}: expected a finite number"
        raise InvalidTime(msg)
    return float(value)


def _distinct_runs(batch: list[str], opted: Collection[str]) -> Iterator[list[str]]:
    """The batch as runs of distinct recipients, in order, a new run at each repeat.

    Lazy: a recipient refused in an earlier run (``opted``, as it grows) is left out.
    O(n).
    """
    run: list[str] = []
    seen: set[str] = set()
    for to in batch:
        if to in seen:
            yield run
            run, seen = [], set()
        if to not in opted:
            run.append(to)
            seen.add(to)
    if run:
        yield run


def _profile_id(value: object) -> str:
    if type(value) is not str:
        msg = f"invalid profile id {shown(value)}: expected a non-empty string"
        raise InvalidProfileId(msg)
    if not value:
        msg = "invalid profile id '': expected a non-empty string"
        raise InvalidProfileId(msg)
    return value


def _segments(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"invalid segments {shown(value)}: expected an integer >= 1"
        raise InvalidSettings(msg)
    return value


def _outcome(value: object) -> Outcome:
    if isinstance(value, Outcome):
        return value
    if type(value) is str:
        try:
            return Outcome(value)
        except ValueError:
            pass
    choices = ", ".join(repr(o.value) for o in Outcome)
    msg = f"invalid outcome {shown(value)}: expected an Outcome or one of {choices}"
    raise InvalidSettings(msg)


def _import_entry(item: object) -> ImportEntry:
    """One mapping to import, checked: ``(to, from_number, last_used)``."""
    if not isinstance(item, (tuple, list)) or len(item) != 3:
        msg = f"invalid mapping {shown(item)}: expected (to, from_number, last_used)"
        raise InvalidSettings(msg)
    to, sender, last_used = item
    return check_e164(to, "recipient"), check_e164(sender), _time(last_used)


_UNSET: object = object()


def _cause(miss: Miss) -> tuple[str | None, str | None]:
    """The replaced sender of a reassignment and why it is no longer eligible."""
    sender = None if miss.previous is None else miss.previous[0]
    for n in miss.pool or ():
        if n.number == sender:
            return sender, ineligible_because(n, miss.settings)
    return sender, None


class Engine:
    """Chooses the sender of each message; Sticky Sender over a pool of numbers.

    ``clock`` defaults to :class:`SystemClock`, ``seed`` to OS randomness (the same
    seed and the same calls give the same choices), ``store`` to a fresh in-memory
    store; a store URL (``memory://``, ``sqlite:///file.db``, ``redis://host/0``) is
    opened for it. Every method is atomic and thread-safe; each ``now`` keyword
    defaults to the clock, read once per call. Errors change nothing. The engine comes
    in two flavours with the same methods: synchronous (:mod:`sticky.engine`) and
    asyncio (:mod:`sticky.aio`, where each method that reaches the store is a
    coroutine).
    """

    def __init__(
        self,
        clock: Clock | None = None,
        seed: int | None = None,
        store: Store | str | None = None,
    ) -> None:
        self._clock: Clock = SystemClock() if clock is None else clock
        now = self._clock.now
        if isinstance(self._clock, (SystemClock, ManualClock)):
            self._now = now
        else:
            self._now = lambda: _time(now())
        store = coerce_store(store)
        self._store: Store = store
        self._random = random.Random(seed)  # noqa: S311 - not for cryptography
        self._draws = Draws(self._random)
        self._choosers: dict[str, Chooser] = {}
        self._one_step = store.select_in_one_step if isinstance(store, OneStepStore) else None
        self._many_in_one_step = (
            store.select_many_in_one_step if isinstance(store, OneStepBatchStore) else None
        )
        # A partial of the function (not a bound method, nor a subclass): the cheapest
        # call that can carry the draws, for a store that chooses itself.
        self._decide_bound = functools.partial(Engine._decide, self)
        vars(self._decide_bound)["draws"] = self._draws
        self._lock = threading.Lock()
        self._local = threading.local()
        self._all_counts: list[list[int]] = []
        # One-step selects: the store counts them under the lock of its step, which it
        # holds anyway (cheaper than this thread's counters on the hot path).
        self._counts = new_counts()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(clock={self._clock!r}, store={self._store!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def store(self) -> Store:
        """The store this engine drives."""
        return self._store

    @property
    def clock(self) -> Clock:
        """The clock this engine reads."""
        return self._clock

    def close(self) -> None:
        """Close the store."""
        self._store.close()

    def _at(self, now: float | None) -> float:
        return self._now() if now is None else _time(now)

    def _capacity_needs_one_step(self, what: str) -> None:
        """Refuse limits on a store that cannot keep them in a select's own step."""
        if self._one_step is None:
            msg = (
                f"{what} needs a store with a one-step select to keep capacity;"
                f" {self._store!r} has none"
            )
            raise IncompatibleStore(msg)

    # -- profiles -------------------------------------------------------------------
    def create_profile(
        self, profile_id: str, settings: PoolSettings | None = None, *, exist_ok: bool = False
    ) -> bool:
        """Create a profile with an empty pool; return True, or False if it existed.

        An existing profile raises ProfileExists, or with ``exist_ok`` is left as it is
        (its settings too: use :meth:`update_settings` to change them), which suits a
        service that runs this at every start. Raises InvalidProfileId, InvalidSettings.
        """
        profile_id = _profile_id(profile_id)
        if settings is None:
            settings = PoolSettings()
        elif not isinstance(settings, PoolSettings):
            msg = f"invalid settings {shown(settings)}: expected a PoolSettings"
            raise InvalidSettings(msg)
        if not isinstance(exist_ok, bool):
            msg = f"invalid exist_ok {shown(exist_ok)}: expected True or False"
            raise InvalidSettings(msg)
        if capacity_on((), settings):
            self._capacity_needs_one_step("a rate or a daily budget")
        try:
            self._store.create_profile(profile_id, settings)
        except ProfileExists:
            if exist_ok:
                return False
            raise
        return True

    def delete_profile(self, profile_id: str, *, now: float | None = None) -> int:
        """Delete a profile, its pool and its mappings; return how many were live."""
        profile_id = _profile_id(profile_id)
        removed = self._store.delete_profile(profile_id, self._at(now))
        self._choosers.pop(profile_id, None)
        _log.info(
            "deleted profile %r and %d live mappings",
            profile_id,
            removed,
            extra={"profile_id": profile_id, "removed": removed},
        )
        return removed

    def settings(self, profile_id: str) -> PoolSettings:
        """A profile's settings."""
        return self._store.settings(_profile_id(profile_id))

    def update_settings(self, profile_id: str, **changes: object) -> PoolSettings:
        """Change some settings at once for every later call; return the new settings.

        Raises InvalidSettings (nothing changes) for an unknown name or a bad value.
        """
        profile_id = _profile_id(profile_id)
        while True:
            old = self._store.settings(profile_id)
            new = old.evolve(**changes)
            if capacity_on((), new):
                self._capacity_needs_one_step("a rate or a daily budget")
            if self._store.replace_settings(profile_id, old, new):
                if new != old:
                    _log.info(
                        "settings of profile %r changed: %s",
                        profile_id,
                        ", ".join(f"{k}={v!r}" for k, v in sorted(changes.items())),
                        extra={"profile_id": profile_id, "changes": sorted(changes)},
                    )
                return new

    def profiles(self) -> list[str]:
        """Every profile id, sorted."""
        return self._store.profiles()

    # -- pools ----------------------------------------------------------------------
    def add_number(
        self,
        profile_id: str,
        number: str,
        number_type: NumberType | str = NumberType.LONG_CODE,
        *,
        healthy: bool = True,
        rate: float | None = None,
        daily_new_recipients: int | None = None,
    ) -> SenderNumber:
        """Add a number to a profile's pool and return it.

        ``rate`` (segments per second) and ``daily_new_recipients`` are the number's
        own limits, in place of its profile's for its type (None: the profile's).
        Raises InvalidNumber, InvalidSettings, UnknownProfile, NumberInUse (it is in a
        pool already), IncompatibleStore (limits on a store that cannot keep them).
        """
        profile_id = _profile_id(profile_id)
        number = check_e164(number)
        try:
            kind = NumberType(number_type)
        except ValueError:
            msg = f"invalid number type {shown(number_type)}: expected 'long_code' or 'toll_free'"
            raise InvalidSettings(msg) from None
        if not isinstance(healthy, bool):
            msg = f"invalid health {shown(healthy)}: expected True or False"
            raise InvalidSettings(msg)
        rate, daily = check_rate(rate), check_budget(daily_new_recipients)
        if rate is not None or daily is not None:
            self._capacity_needs_one_step("a number's own limits")
            self._store.add_number(
                profile_id, number, kind, healthy=healthy, rate=rate, daily_new_recipients=daily
            )
        else:  # the call every store knows, limits or not
            self._store.add_number(profile_id, number, kind, healthy=healthy)
        return SenderNumber(number, kind, healthy, rate, daily)

    def remove_number(self, profile_id: str, number: str, *, now: float | None = None) -> int:
        """Remove a number and every mapping to it at once; return how many were live.

        Raises UnknownProfile, UnknownNumber (not in this pool).
        """
        profile_id = _profile_id(profile_id)
        number = check_e164(number)
        removed = self._store.remove_number(profile_id, number, self._at(now))
        _log.info(
            "removed number %s from profile %r and its %d live mappings",
            number,
            profile_id,
            removed,
            extra={"profile_id": profile_id, "number": number, "removed": removed},
        )
        return removed

    def set_health(self, number: str, healthy: bool) -> None:  # noqa: FBT001 - the spec's signature
        """Mark a pooled number healthy or not. Raises UnknownNumber (in no pool)."""
        if not isinstance(healthy, bool):
            msg = f"invalid health {shown(healthy)}: expected True or False"
            raise InvalidSettings(msg)
        number = check_e164(number)
        self._store.set_health(number, healthy=healthy)
        _log.info(
            "number %s marked %s",
            number,
            "healthy" if healthy else "unhealthy",
            extra={"number": number, "healthy": healthy},
        )

    def set_limits(
        self,
        number: str,
        *,
        rate: float | object | None = _UNSET,
        daily_new_recipients: int | object | None = _UNSET,
    ) -> SenderNumber:
        """Change a pooled number's own limits; return the number as it is now.

        Only the names given change; None gives the number its profile's limit back.
        Its schedule and today's count are kept. Raises InvalidSettings, UnknownNumber
        (in no pool), IncompatibleStore (a store that cannot keep capacity).
        """
        number = check_e164(number)
        changes: dict[str, float | int | None] = {}
        if rate is not _UNSET:
            changes["rate"] = check_rate(rate)
        if daily_new_recipients is not _UNSET:
            changes["daily_new_recipients"] = check_budget(daily_new_recipients)
        if any(v is not None for v in changes.values()):
            self._capacity_needs_one_step("a number's own limits")
        updated = self._store.set_limits(number, changes)
        _log.info(
            "limits of number %s set: rate=%r, daily_new_recipients=%r",
            number,
            updated.rate,
            updated.daily_new_recipients,
            extra={"number": number, "changes": sorted(changes)},
        )
        return updated

    def numbers(self, profile_id: str) -> tuple[SenderNumber, ...]:
        """A profile's pool, sorted by number: each number's health, limits and drain."""
        return self._store.numbers(_profile_id(profile_id))

    # -- a number's life ------------------------------------------------------------
    def drain(
        self,
        profile_id: str,
        number: str,
        *,
        grace: float | datetime.timedelta | None = None,
        now: float | None = None,
    ) -> SenderNumber:
        """Drain a number: no fresh choice lands on it; its live mappings stay sticky.

        With ``grace`` (seconds or a timedelta), once ``grace`` has passed since now,
        its recipients are reassigned at their next select. A drain of a draining number
        starts afresh (now, with this grace). ``recipients_of`` lists who is still on
        it; remove it when that list is empty. Returns the number as it is now. Raises
        InvalidSettings (grace), UnknownProfile, UnknownNumber (not in this pool).
        """
        at = self._at(now)
        profile_id = _profile_id(profile_id)
        number = check_e164(number)
        seconds = check_grace(grace)
        drained = self._store.set_drain(profile_id, number, at, seconds)
        _log.info(
            "number %s of profile %r draining (grace %s)",
            number,
            profile_id,
            "none" if seconds is None else f"{seconds:g}s",
            extra={"profile_id": profile_id, "number": number, "grace": seconds},
        )
        return drained

    def undrain(self, profile_id: str, number: str) -> SenderNumber:
        """End a number's drain: it takes new recipients again. Returns the number.

        Raises UnknownProfile, UnknownNumber (not in this pool).
        """
        profile_id = _profile_id(profile_id)
        number = check_e164(number)
        undrained = self._store.set_drain(profile_id, number, None, None)
        _log.info(
            "number %s of profile %r no longer draining",
            number,
            profile_id,
            extra={"profile_id": profile_id, "number": number},
        )
        return undrained

    def record_delivery(
        self, number: str, outcome: Outcome | str, *, now: float | None = None
    ) -> SenderNumber:
        """Count a delivery report of a message sent from ``number``; return the number.

        ``outcome`` is an :class:`~sticky.Outcome` or its value (``"delivered"``,
        ``"failed"``, ``"spam"``). Over its profile's ``health_window``, the number is
        measured unhealthy (``delivery_healthy`` False) when it has ``min_samples``
        outcomes and its delivered share is below ``min_delivery_rate`` or its spam
        share above ``max_spam_rate``; it recovers once both pass by
        ``health_margin``. O(1) (a pool change when the verdict changes). Raises
        InvalidSettings (outcome), UnknownNumber (in no pool).
        """
        at = self._at(now)
        number = check_e164(number)
        kind = _outcome(outcome)
        updated = self._store.record_delivery(number, kind, at)
        _log.debug(
            "delivery report %s for number %s",
            kind.value,
            number,
            extra={
                "number": number,
                "outcome": kind.value,
                "delivery_healthy": updated.delivery_healthy,
            },
        )
        return updated

    def health(self, profile_id: str, *, now: float | None = None) -> tuple[NumberHealth, ...]:
        """Each number's health and its delivery reports over the window ending now. Pure.

        O(p).
        """
        at = self._at(now)
        settings = self._store.settings(_profile_id(profile_id))
        pool, windows = self._store.health(profile_id)
        bucket = health_bucket(at, settings.health_window)
        return tuple(
            NumberHealth(
                n.number, n.healthy, n.delivery_healthy, *tally(windows.get(n.number, ()), bucket)
            )
            for n in pool
        )

    def opt_out(self, profile_id: str, to: str, *, now: float | None = None) -> bool:
        """Opt ``to`` out: delete its mapping, and refuse every select for them.

        Later selects raise :class:`~sticky.OptedOut` until :meth:`opt_in`; the opt-out
        is never evicted and goes with the profile. Returns whether it is new. O(1).
        """
        at = self._at(now)
        profile_id = _profile_id(profile_id)
        to = check_e164(to, "recipient")
        added = self._store.opt_out(profile_id, to, at)
        _log.info(
            "recipient %s opted out of profile %r",
            to,
            profile_id,
            extra={"profile_id": profile_id, "recipient": to},
        )
        return added

    def opt_in(self, profile_id: str, to: str) -> bool:
        """End ``to``'s opt-out; return whether they were opted out. O(1)."""
        profile_id = _profile_id(profile_id)
        to = check_e164(to, "recipient")
        removed = self._store.opt_in(profile_id, to)
        _log.info(
            "recipient %s opted in to profile %r",
            to,
            profile_id,
            extra={"profile_id": profile_id, "recipient": to},
        )
        return removed

    def is_opted_out(self, profile_id: str, to: str) -> bool:
        """Whether ``to`` is opted out of the profile. Pure. O(1)."""
        profile_id = _profile_id(profile_id)
        return self._store.is_opted_out(profile_id, check_e164(to, "recipient"))

    def opt_outs(self, profile_id: str) -> list[str]:
        """Every opted-out recipient of the profile, sorted. Pure. O(k log k)."""
        return self._store.opt_outs(_profile_id(profile_id))

    def record_reply(
        self,
        profile_id: str,
        to: str,
        number: str,
        *,
        body: str | None = None,
        now: float | None = None,
    ) -> Reply:
        """A message from ``to`` to our ``number``: keep the conversation on that number.

        With ``body``, a standard keyword applies first (the whole message, trimmed,
        any case): STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT opt out; START,
        UNSTOP, YES opt back in. Then, for a recipient not opted out, the mapping
        becomes ``number`` (see :class:`~sticky.ReplyAction`): a live mapping to it is
        refreshed to ``max(last_used, now)``; a live mapping to another number moves
        to it; with none live (a dead one is never revived), a new one is made; when
        ``number`` is not in the pool, or may not take the recipient, nothing changes.
        A new or moved mapping counts as a new recipient of ``number`` (capacity),
        whatever its budget. Returns what was done. O(1). Raises UnknownProfile,
        InvalidNumber, InvalidSettings (a body that is not a string).
        """
        at = self._at(now)
        profile_id = _profile_id(profile_id)
        to = check_e164(to, "recipient")
        number = check_e164(number)
        if body is not None and not isinstance(body, str):
            msg = f"invalid body {shown(body)}: expected a string or None"
            raise InvalidSettings(msg)
        keyword = None if body is None else keyword_of(body)
        action = self._store.record_reply(profile_id, to, number, at, keyword)
        _log.log(
            logging.INFO if keyword is not None else _DEBUG,
            "reply from %s to %s in profile %r: %s",
            to,
            number,
            profile_id,
            action.value if keyword is None else f"{keyword.value}, {action.value}",
            extra={
                "profile_id": profile_id,
                "recipient": to,
                "number": number,
                "action": action.value,
                "keyword": None if keyword is None else keyword.value,
            },
        )
        return Reply(profile_id, to, number, action, keyword)

    def capacity(self, profile_id: str, *, now: float | None = None) -> tuple[NumberCapacity, ...]:
        """Each number's limits, next free slot and new recipients today. Pure. O(p)."""
        at = self._at(now)
        settings, pool, loads = self._store.capacity_state(_profile_id(profile_id))
        day = today(at, settings.timezone)[0]
        out = []
        for n in pool:
            load, rate = loads.get(n.number, IDLE), rate_of(n, settings)
            out.append(
                NumberCapacity(
                    n.number,
                    rate,
                    settings.burst,
                    budget_of(n, settings),
                    next_slot(load, at, rate, settings.burst),
                    new_today(load, day),
                )
            )
        return tuple(out)

    # -- selection ------------------------------------------------------------------
    def select(
        self, profile_id: str, to: str, *, segments: int = 1, now: float | None = None
    ) -> Selection:
        """Choose the sender of a message to ``to``, keeping Sticky Sender's rules.

        ``segments`` is the message's size in segments, which its sender's rate counts;
        ``send_at`` in the answer is when it may leave (``now`` when there was room).
        O(1) expected: a live mapping is one store look-up and refresh; a fresh choice
        is one weighted draw in the first non-empty geomatch tier and one
        compare-and-set (O(p) with capacity on). Raises UnknownProfile, InvalidNumber,
        InvalidSettings (segments), NoEligibleSender, and its kinds PoolExhausted and
        PoolBusy (capacity).
        """
        now = self._now() if now is None else _time(now)
        if type(profile_id) is not str or type(to) is not str:
            _profile_id(profile_id)
            check_e164(to, "recipient")
        # The default 1 is one object (CPython caches small ints): an identity test spares
        # the common case the type test; any other value is checked in full.
        if segments is not _ONE and (type(segments) is not int or segments < 1):
            _segments(segments)
        # A recipient already stored was validated when it was stored: only a fresh
        # choice validates ``to`` (in _decide), before anything is written.
        one_step = self._one_step
        if one_step is not None:
            try:
                # the store counts the answer, under the lock of its step
                sel = one_step(profile_id, to, now, self._decide_bound, self._counts, segments)
            except (NoEligibleSender, OptedOut) as exc:
                self._refused(exc)
                raise
        else:
            try:
                sel = self._two_steps(profile_id, to, now)
            except OptedOut as exc:
                self._refused(exc)
                raise
            count(self._tally(), sel, now)
        if sel[3] is _REASSIGNED:  # a tuple's index: cheaper than the field's name
            self._reassigned(sel)
        return sel

    def _refused(self, exc: NoEligibleSender | OptedOut) -> None:
        """Count a select refused for capacity (PoolExhausted, PoolBusy) or an opt-out."""
        if isinstance(exc, OptedOut):
            self._tally()[_OPTED_OUT] += 1
        elif isinstance(exc, PoolExhausted):
            self._tally()[_EXHAUSTED] += 1
        elif isinstance(exc, PoolBusy):
            self._tally()[_BUSY] += 1

    def _reassigned(self, sel: Selection) -> None:
        """Log a reassignment at DEBUG, with its cause when this engine's decide saw it.

        A store that chooses itself (Redis) does not tell which sender it replaced.
        """
        stash = getattr(self._local, "replaced", None)
        self._local.replaced = None
        if not _log.isEnabledFor(_DEBUG):
            return
        previous, cause = stash[1:] if stash is not None and stash[0] == sel.to else (None, None)
        _log.debug(
            "reassigned %s of profile %r from %s to %s (%s)",
            sel.to,
            sel.profile_id,
            previous or "its ineligible sender",
            sel.from_number,
            cause or "ineligible",
            extra={
                "profile_id": sel.profile_id,
                "recipient": sel.to,
                "number": sel.from_number,
                "previous": previous,
                "cause": cause or "ineligible",
            },
        )

    def _decide(
        self, profile_id: str, to: str, miss: Miss, known: Chooser | None = None
    ) -> Selection:
        """The policy of a fresh choice, given what the store read (may raise).

        ``known`` is the chooser whose version the read was given; a miss without a
        pool means that version is current.
        """
        if not is_e164(to):
            check_e164(to, "recipient")
        chooser = self._chooser_for(profile_id, miss, known)
        if miss.loads is not None:
            return self._plan(profile_id, to, miss, chooser)
        plain = chooser.plain
        if plain is not None:
            sender, tier = plain(self._draws.take()), None
        else:
            # An empty pool raises before a random number is used, so one seed gives one
            # sequence of choices whatever errors happened in between.
            sender, tier = chooser.choose(
                profile_id, to, 0.0 if chooser.empty else self._draws.take()
            )
        reason = self._fresh_reason(to, miss)
        return _new(Selection, (profile_id, to, sender, reason, tier, miss.now))

    def _chooser_for(self, profile_id: str, miss: Miss, known: Chooser | None) -> Chooser:
        """The chooser of the miss's pool version. O(1), or O(p) to build a new one.

        ``known`` (the one the read was given) or the cached one, unless the miss
        brought a pool of another version.
        """
        chooser = known or self._choosers.get(profile_id)
        if miss.pool is not None and (chooser is None or chooser.version != miss.version):
            chooser = Chooser(miss.pool, miss.settings, miss.version)
            self._choosers[profile_id] = chooser
        assert chooser is not None, "a miss without a pool needs the chooser it was read for"
        return chooser

    def _fresh_reason(self, to: str, miss: Miss) -> Reason:
        """Why a fresh choice is made, from what the store read."""
        if not miss.settings.sticky_sender:
            return Reason.POOL
        if miss.previous is None:
            return Reason.NEW
        if miss.live:
            self._local.replaced = (to, *_cause(miss))
            return Reason.REASSIGNED
        return Reason.EXPIRED

    def _plan(self, profile_id: str, to: str, miss: Miss, chooser: Chooser) -> Selection:
        """A select with capacity on: :func:`sticky.policy.plan` with the next draw.

        The draw is consumed only when a fresh choice (or an overflow) used it.
        """
        assert miss.loads is not None
        now = miss.now
        fresh = _STICKY_REASON if miss.sticky is not None else self._fresh_reason(to, miss)
        sender, tier, reason, send_at = plan(
            chooser,
            miss.loads,
            to,
            self._draws.peek(1)[0],
            now,
            today(now, miss.settings.timezone),
            miss.sticky,
            fresh,
            profile_id,
        )
        if reason is not _STICKY_REASON:
            self._draws.consume(1)
        return _new(Selection, (profile_id, to, sender, reason, tier, send_at))

    def _two_steps(self, profile_id: str, to: str, now: float) -> Selection:
        """Select on a store without a one-step select: read, choose, compare-and-set."""
        store = self._store
        while True:
            chooser = self._choosers.get(profile_id)
            known = -1 if chooser is None else chooser.version
            miss = store.begin_select(profile_id, to, now, known)
            if isinstance(miss, Selection):
                return miss
            if miss.loads is not None:
                self._capacity_needs_one_step("a select with capacity on")
            sel = self._decide(profile_id, to, miss, chooser)
            if sel.reason is Reason.POOL:
                return sel
            won = store.commit_select(profile_id, to, sel.from_number, miss, now)
            if won is True:
                return sel
            if won is not None:  # another select stored a live mapping first: honour it
                return won
            # The pool or the mapping changed since the read: start over.

    def _tally(self) -> list[int]:
        """This thread's counters: no lock on the hot path; stats() adds them up."""
        try:
            return self._local.counts  # type: ignore[no-any-return]
        except AttributeError:
            counts = self._local.counts = new_counts()
            with self._lock:
                self._all_counts.append(counts)
            return counts

    def select_many(
        self,
        profile_id: str,
        recipients: Iterable[str],
        *,
        segments: int = 1,
        now: float | None = None,
    ) -> Selections:
        """Select for each recipient, at one ``now``, with the rules of one-by-one selects.

        Every recipient is validated first, so a bad one changes nothing. Each select
        is atomic; the batch as a whole is not (a NoEligibleSender stops it, after the
        selects before it). An opted-out recipient is refused alone: the others proceed,
        and the answer (a list of the selections, in order) names the refused in
        ``opted_out``. On a store with one-step batches (:class:`OneStepBatchStore`,
        such as Redis), the whole batch costs one round trip; with batch calls
        (:class:`BatchStore`), two: one read, one compare-and-set.
        A recipient repeated in a batch is selected again after its first occurrence
        (a sticky hit on the sender it just got, which reserves its own slots; with
        sticky off, a choice with the draw of its place): the batch runs as runs of
        distinct recipients, each run those round trips. Every message of the batch
        has ``segments`` segments.
        """
        at = self._at(now)
        profile_id = _profile_id(profile_id)
        segments = _segments(segments)
        batch = [check_e164(to, "recipient") for to in recipients]
        store = self._store
        if len(batch) < 2 or (
            self._many_in_one_step is None and not isinstance(store, BatchStore)
        ):
            return self._one_by_one(profile_id, batch, at, segments)
        # A repeated recipient is selected again after its first occurrence: the batch
        # runs as runs of distinct recipients, one after the other, so that every select
        # (and every draw) comes in the batch's order, as one by one.
        out: list[Selection] = []
        opted: dict[str, None] = {}
        for run in _distinct_runs(batch, opted):
            if len(run) == 1:
                got = self._one_by_one(profile_id, run, at, segments)
            elif self._many_in_one_step is not None:
                got = self._select_many_in_one_step(profile_id, run, at, segments)
            else:
                assert isinstance(store, BatchStore)
                got = self._select_many_batched(store, profile_id, run, at, segments)
            out += got
            opted.update(dict.fromkeys(got.opted_out))
        return Selections(out, opted)

    def _select_many_batched(
        self, store: BatchStore, profile_id: str, batch: list[str], at: float, segments: int
    ) -> Selections:
        """select_many of distinct recipients with batch calls: one read, one commit."""
        unique = batch
        chooser = self._choosers.get(profile_id)
        known = -1 if chooser is None else chooser.version
        began = store.begin_select_many(profile_id, unique, at, known)
        if any(isinstance(b, Miss) and b.loads is not None for b in began):
            # Capacity on: its begin answered no hit and wrote nothing; one-step selects.
            return self._one_by_one(profile_id, batch, at, segments)
        done: dict[str, Selection] = {}
        opted: dict[str, None] = {}
        pending: list[tuple[Selection, Miss]] = []
        failure: NoEligibleSender | None = None
        # The read ends early after a miss that no choice can answer: its choice raises.
        for to, result in zip(unique, began, strict=False):
            if result is None:
                opted[to] = None
                continue
            if isinstance(result, Selection):
                done[to] = result
                continue
            # A batch's read sends a changed pool once, with its first miss: the misses
            # after it are of that pool's version, not of the one the read was given.
            chooser = self._chooser_for(profile_id, result, chooser)
            try:
                sel = self._decide(profile_id, to, result, chooser)
            except NoEligibleSender as exc:
                failure = exc
                break
            if sel.reason is Reason.POOL:
                done[to] = sel
            else:
                pending.append((sel, result))
        assert failure is not None or len(began) == len(unique), "a read that ended early"
        if pending:
            self._commit_many(store, profile_id, pending, done, opted, at)
        self._count(done.values(), at)
        self._tally()[_OPTED_OUT] += len(opted)
        if failure is not None:
            raise failure
        return Selections([done[to] for to in batch if to not in opted], opted)

    def _one_by_one(
        self, profile_id: str, batch: list[str], at: float, segments: int
    ) -> Selections:
        """select_many as one select per recipient (each counted by select)."""
        out: list[Selection] = []
        opted: dict[str, None] = {}
        for to in batch:
            if to in opted:
                continue
            try:
                out.append(self.select(profile_id, to, segments=segments, now=at))
            except OptedOut:
                opted[to] = None
        return Selections(out, opted)

    def _select_many_in_one_step(
        self, profile_id: str, batch: list[str], at: float, segments: int
    ) -> Selections:
        """select_many of distinct recipients by a store that runs them in one step."""
        assert self._many_in_one_step is not None
        unique = batch
        made, failed = self._many_in_one_step(profile_id, unique, at, self._decide_bound, segments)
        self._count(made, at)
        if failed is not None:
            self._refused(failed)
            raise failed
        done = {s.to: s for s in made}
        # The store skips an opted-out recipient: absent from a batch that did not fail.
        opted = dict.fromkeys(to for to in unique if to not in done)
        self._tally()[_OPTED_OUT] += len(opted)
        return Selections([done[to] for to in batch if to not in opted], opted)

    def _count(self, selections: Iterable[Selection], now: float) -> None:
        """Count a batch's selections by reason and tier in this thread's counters."""
        counts = self._tally()
        for sel in selections:
            count(counts, sel, now)
            if sel.reason is _REASSIGNED:
                self._reassigned(sel)

    def _commit_many(
        self,
        store: BatchStore,
        profile_id: str,
        pending: list[tuple[Selection, Miss]],
        done: dict[str, Selection],
        opted: dict[str, None],
        at: float,
    ) -> None:
        """Compare-and-set a batch's fresh choices in one call; settle losers alone."""
        outcomes = store.commit_select_many(
            profile_id,
            [(s.to, s.from_number, miss) for s, miss in pending],
            at,
        )
        for (sel, _), won in zip(pending, outcomes, strict=True):
            if won is True:
                done[sel.to] = sel
            elif won is not None:
                done[sel.to] = won
            else:  # lost a race on this recipient (or it opted out): settle it alone
                try:
                    done[sel.to] = self._two_steps(profile_id, sel.to, at)
                except OptedOut:
                    opted[sel.to] = None

    # -- inspection and override ----------------------------------------------------
    def mapping(self, profile_id: str, to: str, *, now: float | None = None) -> Mapping | None:
        """The live mapping of ``to``, or None. Pure: changes nothing. O(1)."""
        at = self._at(now)
        profile_id = _profile_id(profile_id)
        to = check_e164(to, "recipient")
        found = self._store.mapping(profile_id, to, at)
        if found is None:
            return None
        sender, last_used, ttl = found
        return Mapping(profile_id, to, sender, last_used, last_used + ttl)

    def recipients_of(
        self, profile_id: str, number: str, *, now: float | None = None
    ) -> list[str]:
        """The recipients with a live mapping to ``number``, sorted. Pure. O(k log k)."""
        at = self._at(now)
        profile_id = _profile_id(profile_id)
        return self._store.recipients_of(profile_id, check_e164(number), at)

    def pin(self, profile_id: str, to: str, number: str, *, now: float | None = None) -> Mapping:
        """Map ``to`` to ``number`` of the pool as used now, replacing any mapping.

        Allowed whatever the number's health or weight and whether sticky is on.
        Raises UnknownNumber when ``number`` is not in the pool.
        """
        at = self._at(now)
        profile_id = _profile_id(profile_id)
        to = check_e164(to, "recipient")
        number = check_e164(number)
        settings = self._store.pin(profile_id, to, number, at)
        return Mapping(profile_id, to, number, at, at + settings.ttl)

    def import_mappings(
        self,
        profile_id: str,
        mappings: Iterable[tuple[str, str, float]],
        *,
        now: float | None = None,
    ) -> int:
        """Store mappings ``(to, from_number, last_used)`` as they were used; return how many.

        For imports from another store: each keeps its ``last_used`` (so its age, and
        it expires when it would have). One is skipped when it is dead now, or when the
        recipient has a live mapping used as recently or later (re-running an import
        writes nothing more). Imported mappings are not new recipients for capacity.
        Every input is checked before anything is written: InvalidNumber, InvalidTime,
        InvalidSettings (an item that is not a triple); UnknownNumber (a sender not in
        the pool) writes nothing. Atomic on the memory store and SQLite, per 256
        entries on Redis, in one round trip a call
        (:class:`~sticky.store.base.BulkImportStore`); on another store one ``mapping``
        and one ``pin`` per entry. Raises UnknownProfile. O(k) for k mappings.
        """
        at = self._at(now)
        profile_id = _profile_id(profile_id)
        entries = [_import_entry(item) for item in mappings]
        store = self._store
        if not entries:
            store.settings(profile_id)  # an unknown profile raises all the same
            return 0
        # The optional protocol's one method decides: a store may lack other optional
        # parts (the runtime protocol check asks for every method of Store too).
        if hasattr(store, "import_mappings"):
            written = cast("BulkImportStore", store).import_mappings(profile_id, entries, at)
        else:
            written = import_by_pin(store, profile_id, entries, at)
        _log.info(
            "imported %d of %d mappings into profile %r",
            written,
            len(entries),
            profile_id,
            extra={"profile_id": profile_id, "written": written, "given": len(entries)},
        )
        return written

    def forget(self, profile_id: str, to: str, *, now: float | None = None) -> bool:
        """Delete the mapping of ``to``; return whether a live one existed."""
        at = self._at(now)
        profile_id = _profile_id(profile_id)
        return self._store.forget(profile_id, check_e164(to, "recipient"), at)

    # -- housekeeping ---------------------------------------------------------------
    def evict_expired(self, *, now: float | None = None) -> int:
        """Remove every dead mapping from the store; return how many. O(k log n)."""
        at = self._at(now)
        removed = self._store.evict_expired(at)
        _log.log(
            logging.INFO if removed else _DEBUG,
            "evicted %d dead mappings",
            removed,
            extra={"removed": removed, "now": at},
        )
        return removed

    def iter_mappings(
        self, profile_id: str, *, now: float | None = None, batch: int = 1_000
    ) -> Iterator[list[Mapping]]:
        """A profile's live mappings in batches of about ``batch``: for exports. Pure.

        Streams: memory stays bounded by the batch, whatever the profile's size. Each
        batch is one atomic read (one round trip on Redis, one transaction on SQLite) on
        a store with ``iter_mappings``; on another store it is built from
        ``recipients_of`` and one ``mapping`` per recipient. Not a snapshot: a mapping
        written or removed during the scan may be missed or listed as it was. O(n) in
        all. Raises UnknownProfile, InvalidSettings (a batch that is not a count >= 1).
        """
        at = self._at(now)
        profile_id = _profile_id(profile_id)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            msg = f"invalid batch {shown(batch)}: expected an integer >= 1"
            raise InvalidSettings(msg)
        store = self._store
        if isinstance(store, MappingScanStore):
            scan = store.iter_mappings(profile_id, at, batch)
        else:
            scan = scan_by_sender(store, profile_id, at, batch)
        return _as_mappings(profile_id, scan)

    def stats(self) -> Stats:
        """This engine's counters and the store's mapping count. Pure."""
        mappings, evicted = self._store.counts()
        with self._lock:
            c = [sum(column) for column in zip(*self._all_counts, self._counts, strict=True)]
        return Stats(
            mappings=mappings,
            sticky=c[0],
            new=c[1],
            expired=c[2],
            reassigned=c[3],
            pool=c[4],
            evicted=evicted,
            tier_area_code=c[5],
            tier_overlay=c[6],
            tier_region=c[7],
            tier_country=c[8],
            tier_none=c[9],
            overflow=c[11],
            waited=c[12],
            exhausted=c[13],
            busy=c[14],
            opted_out=c[15],
        )


def _as_mappings(profile_id: str, scan: Iterator[list[LiveMapping]]) -> Iterator[list[Mapping]]:
    """A scan's pages of ``(to, sender, last_used, ttl)`` as pages of :class:`Mapping`."""
    for page in scan:
        yield [Mapping(profile_id, to, sender, used, used + ttl) for to, sender, used, ttl in page]
