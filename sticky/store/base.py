"""The store interface: what one atomic step of each public operation needs.

A store persists profiles, settings, pools, health and mappings, and does each
operation below as one atomic step. It holds no policy beyond what an atomic step
cannot avoid: deciding whether a stored mapping is live and whether its sender is
eligible, which :mod:`sticky.policy` defines and every store mirrors.

Time never runs backwards for expiry. Each profile has a *horizon*: the latest ``now``
of any write on it that can evict or replace a mapping (a select that stores one,
``pin``, ``import_mappings``, ``forget``, ``remove_number``, ``evict_expired``; a
sticky hit does not move it). A mapping is live at ``now`` while
``max(now, horizon) < last_used + ttl`` (:func:`sticky.policy.judged_at`,
:func:`sticky.policy.is_live`), so a mapping that was dead once stays dead under a
clock that goes back, whether or not it was evicted yet.
For the same reason, a change that lengthens the ttl first evicts the mappings dead at
the horizon.

Choosing a sender is the engine's: :meth:`Store.begin_select` either answers from a
live mapping, or returns a :class:`Miss` (what a fresh choice needs); the engine
chooses and then gives the miss back to :meth:`Store.commit_select`, a
compare-and-set. The rules a store applies inside its steps are the functions of
:mod:`sticky.policy`.

Capacity (rates and daily budgets, ``docs/semantics.md``) is state a store keeps per
number, as a :data:`sticky.policy.Load`, and changes in the select's own atomic step.
For a profile with capacity on (:func:`sticky.policy.capacity_on`), a select always
asks its ``decide``, even for a live mapping: the :class:`Miss` then carries the loads,
the live eligible sender (``sticky``) and ``now``, and the engine's decide answers with
:func:`sticky.policy.plan`; the store stores the choice and :func:`sticky.policy.reserve`
s it. So capacity needs a :class:`OneStepStore`: on the two-step path a Miss with loads
raises :class:`~sticky.IncompatibleStore`, and ``begin_select`` never answers a hit for
such a profile.

Every method raises :class:`~sticky.StoreUnavailable` when the store cannot be reached,
and leaves nothing half-written.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Literal, Protocol, runtime_checkable

import attrs

from sticky.errors import InvalidSettings, NoEligibleSender, UnknownNumber, shown
from sticky.numbers import NumberType, SenderNumber
from sticky.policy import Load, Window, is_live
from sticky.settings import PoolSettings
from sticky.values import GeoTier, Keyword, Outcome, Reason, ReplyAction, Selection

__all__ = [
    "SLOT",
    "BatchStore",
    "BulkImportStore",
    "Decide",
    "Draws",
    "ImportEntry",
    "LiveMapping",
    "MappingScanStore",
    "Miss",
    "OneStepBatchStore",
    "OneStepStore",
    "Store",
    "StoredMapping",
    "coerce_store",
    "count",
    "import_by_pin",
    "new_counts",
    "scan_by_sender",
]

SLOT: dict[Reason | GeoTier | str | None, int] = {
    Reason.STICKY: 0,
    Reason.NEW: 1,
    Reason.EXPIRED: 2,
    Reason.REASSIGNED: 3,
    Reason.POOL: 4,
    GeoTier.AREA_CODE: 5,
    GeoTier.OVERLAY: 6,
    GeoTier.REGION: 7,
    GeoTier.COUNTRY: 8,
    GeoTier.NONE: 9,
    None: 10,
    Reason.OVERFLOW: 11,
    "waited": 12,
    "exhausted": 13,
    "busy": 14,
    "opted_out": 15,
}
"""The slots of an engine's counters (what ``stats()`` reports): by reason, by tier,
and the selects that waited or were refused. A one-step store adds its answers to them
(:func:`count`); the engine counts the rest."""

_WAITED = SLOT["waited"]


def new_counts() -> list[int]:
    """A list of counters, one per :data:`SLOT`, all zero."""
    return [0] * len(SLOT)


def count(counts: list[int], sel: Selection, now: float) -> None:
    """Add one answer to ``counts``: its reason, its tier, and whether it waits. O(1).

    The tier is a fresh choice's (None, not counted, otherwise); a select waits when its
    ``send_at`` is after ``now``.
    """
    counts[SLOT[sel[3]]] += 1
    if sel[4] is not None:
        counts[SLOT[sel[4]]] += 1
    if sel[5] > now:
        counts[_WAITED] += 1


StoredMapping = tuple[str, float]
"""A stored mapping as ``(from_number, last_used)``, live or not."""

LiveMapping = tuple[str, str, float, float]
"""A live mapping as a scan yields it: ``(to, from_number, last_used, ttl)``."""


@attrs.define(slots=True)
class Miss:
    """The read of a select that was not a sticky hit: what a fresh choice needs.

    ``pool`` is the whole pool, sorted by number, or None when it is unchanged since
    the ``known_version`` the engine passed. ``previous`` is the stored mapping (None
    when there is none, or when sticky is off and the table was not read), and
    ``live`` whether it is live (then its sender is not eligible); the engine gives the
    miss back to :meth:`Store.commit_select`, which compares against them. Read-only by
    convention (a plain slotted record: it is made on every fresh choice, and a frozen
    class costs three times as much to build).

    With capacity on, ``loads`` holds the pool's capacity state (a number absent is
    :data:`~sticky.policy.IDLE`), ``sticky`` the sender of a live mapping whose sender
    is eligible (a select that may stay sticky), and ``now`` the select's time; else
    ``loads`` is None.
    """

    settings: PoolSettings
    version: int
    pool: tuple[SenderNumber, ...] | None
    previous: StoredMapping | None
    live: bool
    now: float
    loads: Mapping[str, Load] | None = None
    sticky: str | None = None


@runtime_checkable
class Store(Protocol):
    """Persistence with atomic compare-and-set; see the module docstring."""

    # -- profiles -------------------------------------------------------------------
    def create_profile(self, profile_id: str, settings: PoolSettings) -> None:
        """Create an empty profile. Raises ProfileExists."""
        ...

    def delete_profile(self, profile_id: str, now: float) -> int:
        """Delete a profile, its pool and its mappings; return how many were live.

        Raises UnknownProfile.
        """
        ...

    def settings(self, profile_id: str) -> PoolSettings:
        """Return a profile's settings. Raises UnknownProfile."""
        ...

    def replace_settings(self, profile_id: str, old: PoolSettings, new: PoolSettings) -> bool:
        """Set ``new`` if the settings still equal ``old``; return whether it did.

        Raises UnknownProfile.
        """
        ...

    def profiles(self) -> list[str]:
        """Every profile id, sorted."""
        ...

    # -- pools ----------------------------------------------------------------------
    def add_number(
        self,
        profile_id: str,
        number: str,
        number_type: NumberType,
        *,
        healthy: bool,
        rate: float | None = None,
        daily_new_recipients: int | None = None,
    ) -> None:
        """Add a number to a pool, with its own limits if given.

        Raises UnknownProfile, NumberInUse (in any pool).
        """
        ...

    def set_limits(self, number: str, changes: Mapping[str, float | int | None]) -> SenderNumber:
        """Set a pooled number's own ``rate`` and/or ``daily_new_recipients``; return it.

        ``changes`` holds only those names (None: the profile's limit applies). Its
        capacity state is kept. Raises UnknownNumber (in no pool).
        """
        ...

    def capacity_state(
        self, profile_id: str
    ) -> tuple[PoolSettings, tuple[SenderNumber, ...], dict[str, Load]]:
        """The settings, the pool and each number's capacity state, in one atomic read.

        A number without state is absent (it is :data:`~sticky.policy.IDLE`). Changes
        nothing. Raises UnknownProfile.
        """
        ...

    def remove_number(self, profile_id: str, number: str, now: float) -> int:
        """Remove a number and every mapping to it; return how many of those were live.

        Raises UnknownProfile, UnknownNumber (not in this pool).
        """
        ...

    def set_health(self, number: str, *, healthy: bool) -> None:
        """Set a pooled number's health (the caller's word). Raises UnknownNumber (in no pool).

        ``healthy=True`` also clears its delivery verdict and window (the operator vouches
        for the number: :attr:`~sticky.SenderNumber.delivery_healthy` becomes True and
        its reports start afresh).
        """
        ...

    def set_drain(
        self, profile_id: str, number: str, since: float | None, grace: float | None
    ) -> SenderNumber:
        """Start a number's drain, or end it (``since`` None); return the number.

        A drain at ``since`` with ``grace`` replaces an earlier drain's. A changed
        number is a new pool version. Raises UnknownProfile, UnknownNumber (not in this
        pool).
        """
        ...

    def record_delivery(self, number: str, outcome: Outcome, now: float) -> SenderNumber:
        """Add a delivery report and judge the number: :func:`sticky.policy.after_report`.

        Atomic: the window and the verdict change together, and the verdict is the
        one judged on the window as stored (two reports at once cannot leave the verdict
        of a window that was replaced). A changed verdict changes the number
        (``delivery_healthy``), a new pool version. Returns the number as it is now.
        Raises UnknownNumber (in no pool).
        """
        ...

    def health(self, profile_id: str) -> tuple[tuple[SenderNumber, ...], dict[str, Window]]:
        """The pool and each number's delivery window (absent: empty), in one atomic read.

        Changes nothing. Raises UnknownProfile.
        """
        ...

    def opt_out(self, profile_id: str, to: str, now: float) -> bool:
        """Opt ``to`` out and delete its mapping, in one step; return whether it was in.

        Every later select of ``to`` raises :class:`~sticky.OptedOut` until
        :meth:`opt_in`. Kept until then (never evicted), removed with the profile. The
        mapping's deletion is a ``forget``'s (it moves the horizon). Raises UnknownProfile.
        """
        ...

    def opt_in(self, profile_id: str, to: str) -> bool:
        """End ``to``'s opt-out; return whether it was opted out. Raises UnknownProfile."""
        ...

    def is_opted_out(self, profile_id: str, to: str) -> bool:
        """Whether ``to`` is opted out of the profile. Changes nothing. Raises UnknownProfile."""
        ...

    def opt_outs(self, profile_id: str) -> list[str]:
        """Every opted-out recipient of the profile, sorted. Raises UnknownProfile."""
        ...

    def record_reply(
        self, profile_id: str, to: str, number: str, now: float, keyword: Keyword | None
    ) -> ReplyAction:
        """A reply from ``to`` to our ``number``, in one atomic step; return what it did.

        ``keyword`` first: ``OPT_OUT`` is :meth:`opt_out` (and returns ``OPTED_OUT``),
        ``OPT_IN`` is :meth:`opt_in` and goes on. Then an opted-out recipient gets
        ``OPTED_OUT`` and nothing else changes; else
        :func:`sticky.policy.reply_action` decides, from the number as the pool holds
        it and the sender of ``to``'s live mapping (judged at ``judged_at(now,
        horizon)``): ``REFRESHED`` sets ``last_used = max(last_used, now)`` as a hit does;
        ``MOVED`` and ``MAPPED`` store ``(number, now)`` as a ``pin`` does (with capacity
        on, a new recipient of ``number`` today, whatever its budget). Raises
        UnknownProfile.
        """
        ...

    def numbers(self, profile_id: str) -> tuple[SenderNumber, ...]:
        """A profile's pool, sorted by number. Raises UnknownProfile."""
        ...

    # -- selection ------------------------------------------------------------------
    def begin_select(
        self, profile_id: str, to: str, now: float, known_version: int
    ) -> Selection | Miss:
        """First step of a select, atomic.

        If sticky is on and the stored mapping of ``to`` is live with a kept sender
        (:func:`sticky.policy.judge` with :func:`sticky.policy.keeps`): set
        ``last_used = max(last_used, now)`` and return the sticky :class:`Selection`.
        Otherwise change nothing and return a :class:`Miss`.
        Raises UnknownProfile, OptedOut (``to`` is opted out; before anything else).
        """
        ...

    def commit_select(
        self,
        profile_id: str,
        to: str,
        chosen: str,
        miss: Miss,
        now: float,
    ) -> Selection | Literal[True] | None:
        """Second step of a sticky select: compare-and-set, atomic.

        If the pool version is still ``miss.version``, the stored mapping still equals
        ``miss.previous`` and its liveness still ``miss.live`` (a dead previous mapping
        that has been evicted since counts as unchanged): store ``(chosen, now)`` and
        return True.
        Else, if the stored mapping is live with an eligible sender (another select
        won the race): refresh it and return its sticky :class:`Selection`. Else
        change nothing and return None: the engine starts over. Raises UnknownProfile,
        OptedOut (``to`` opted out since the read: nothing is stored).
        """
        ...

    # -- inspection and override ----------------------------------------------------
    def mapping(self, profile_id: str, to: str, now: float) -> tuple[str, float, float] | None:
        """The live mapping of ``to`` as ``(from_number, last_used, ttl)``, or None.

        Changes nothing. Raises UnknownProfile.
        """
        ...

    def recipients_of(self, profile_id: str, number: str, now: float) -> list[str]:
        """The recipients with a live mapping to ``number``, sorted. Raises UnknownProfile."""
        ...

    def pin(self, profile_id: str, to: str, number: str, now: float) -> PoolSettings:
        """Store ``(number, now)`` for ``to``, replacing any mapping; return the settings.

        With capacity on, the pin counts as a new recipient of ``number`` today (see
        :func:`sticky.policy.reserve`; no slot is reserved), whatever its budget.

        Raises UnknownProfile, UnknownNumber (not in this pool).
        """
        ...

    def forget(self, profile_id: str, to: str, now: float) -> bool:
        """Delete the mapping of ``to``; return whether it was live. Raises UnknownProfile."""
        ...

    # -- housekeeping ---------------------------------------------------------------
    def evict_expired(self, now: float) -> int:
        """Remove every stored mapping that is dead at ``now``; return how many."""
        ...

    def counts(self) -> tuple[int, int]:
        """Stored mappings (live, or dead and not yet evicted), and dead ones evicted.

        The second counts what ``evict_expired`` and amortised steps removed so far.
        """
        ...

    def check_invariants(self) -> None:
        """Assert every internal invariant; raise AssertionError naming the broken one."""
        ...

    def close(self) -> None:
        """Release connections or files. The store is unusable afterwards."""
        ...


class Draws(Protocol):
    """The engine's stream of uniform draws in [0, 1): each fresh choice uses one."""

    def take(self) -> float:
        """The next draw, consumed."""
        ...

    def peek(self, k: int) -> list[float]:
        """The next ``k`` draws, not consumed."""
        ...

    def consume(self, k: int) -> None:
        """Consume the next ``k`` draws (those :meth:`peek` gave)."""
        ...


class Decide(Protocol):
    """The engine's policy for a fresh choice (any callable of this shape).

    ``decide(profile_id, to, miss)`` returns the selection (reason ``new``, ``expired``,
    ``reassigned`` or ``pool``), or raises. The engine's decide also carries its
    :class:`Draws` as ``decide.draws``, for a store that makes the choice itself
    (Redis, in its script): it peeks a draw and consumes it only when a fresh choice
    used it, as ``decide`` would have.
    """

    def __call__(self, profile_id: str, to: str, miss: Miss, /) -> Selection:
        """Choose a sender for ``to`` from what the store read."""
        ...


@runtime_checkable
class OneStepStore(Store, Protocol):
    """A store that can run a whole select as one step (optional).

    Every store method is atomic; a store in this process (or one with transactions,
    such as SQLite) can also run the engine's policy inside the select's own step,
    which saves the second step and the compare-and-set of :meth:`Store.commit_select`.
    """

    def select_in_one_step(
        self,
        profile_id: str,
        to: str,
        now: float,
        decide: Decide,
        counts: list[int],
        segments: int = 1,
    ) -> Selection:
        """One select in one atomic step: a sticky hit, or ``decide`` and store its choice.

        With capacity on, ``decide`` is asked for every select (see the module
        docstring); a sticky answer refreshes the mapping, any other is stored as
        below, and the answer's sender reserves ``segments`` slots.

        Every answer returned is added to ``counts`` (the engine's counters, by
        :data:`SLOT`) with :func:`count`, once the step is done and before another
        thread's step can add to them: the counts stay exact whichever thread selects,
        and an answer not returned (an error) is not counted.

        If sticky is on and the stored mapping of ``to`` is live with an eligible
        sender: refresh it as :meth:`Store.begin_select` does, and return the sticky
        :class:`Selection`. Otherwise call
        ``decide(profile_id, to, miss)`` with the :class:`Miss` ``begin_select`` would
        return (``pool`` always given); if it
        raises, change nothing; else, unless its reason is ``pool``, store
        ``(selection.from_number, now)`` as ``commit_select`` would, and return it.
        Raises UnknownProfile, OptedOut (``to`` is opted out: nothing changes and
        ``decide`` is not asked).
        """
        ...


@runtime_checkable
class OneStepBatchStore(Store, Protocol):
    """A store that can run a batch's selects in one step per chunk, in one round trip.

    Optional; the engine prefers it to :class:`BatchStore`.
    """

    def select_many_in_one_step(
        self,
        profile_id: str,
        recipients: Sequence[str],
        now: float,
        decide: Decide,
        segments: int = 1,
    ) -> tuple[list[Selection], NoEligibleSender | None]:
        """:meth:`OneStepStore.select_in_one_step` for each distinct, valid recipient, in order.

        Fresh choices use ``decide.draws`` in order, one each, as one-by-one selects
        would. An opted-out recipient is skipped (absent from the list; it uses no
        draw). Stops at the first recipient without an eligible sender: returns the
        selections made before it and that error (else None). The engine counts the
        list's selections itself.
        """
        ...


@runtime_checkable
class BatchStore(Store, Protocol):
    """A store that can do many selects' steps in one round trip (optional).

    Each recipient's step is atomic on its own, exactly as :meth:`Store.begin_select`
    and :meth:`Store.commit_select`; the batch as a whole need not be.
    """

    def begin_select_many(
        self, profile_id: str, recipients: Sequence[str], now: float, known_version: int
    ) -> list[Selection | Miss | None]:
        """:meth:`Store.begin_select` for each distinct recipient, in order.

        None for an opted-out recipient (where ``begin_select`` raises OptedOut). The
        list ends early, after the first Miss whose pool has no eligible number (its
        fresh choice raises NoEligibleSender, and the batch stops there): the recipients
        after it are not read, and no sticky hit of theirs is refreshed.
        """
        ...

    def commit_select_many(
        self,
        profile_id: str,
        entries: Sequence[tuple[str, str, Miss]],
        now: float,
    ) -> list[Selection | Literal[True] | None]:
        """:meth:`Store.commit_select` for each ``(to, chosen, miss)``.

        None (start over) for a recipient opted out since the read, whose select then
        raises OptedOut.
        """
        ...


@runtime_checkable
class MappingScanStore(Store, Protocol):
    """A store that can list a profile's live mappings in batches (optional).

    Without it, :meth:`sticky.Engine.iter_mappings` lists them through
    :meth:`Store.recipients_of` and :meth:`Store.mapping`, one call per mapping.
    """

    def iter_mappings(
        self, profile_id: str, now: float, batch: int
    ) -> Iterator[list[LiveMapping]]:
        """The live mappings of a profile, in batches of about ``batch``; changes nothing.

        Raises UnknownProfile at once (not at the first ``next``). Each batch is read in
        one atomic step and judged live at ``judged_at(now, horizon)`` as of that step;
        the whole scan is not atomic: a mapping written or removed during it may be
        missed or listed as it was, and one may be listed twice (a Redis hash resized
        during the scan). Memory stays bounded by the batch (the memory store keeps the
        recipients' keys of the profile, 8 bytes each).
        """
        ...


def scan_by_sender(
    store: Store, profile_id: str, now: float, batch: int
) -> Iterator[list[LiveMapping]]:
    """:meth:`MappingScanStore.iter_mappings` through public methods of any store.

    One ``recipients_of`` per number and one ``mapping`` per recipient: O(n) calls.
    Raises UnknownProfile at once (the pool is read before the first batch).
    """
    numbers = store.numbers(profile_id)

    def pages() -> Iterator[list[LiveMapping]]:
        page: list[LiveMapping] = []
        for n in numbers:
            for to in store.recipients_of(profile_id, n.number, now):
                found = store.mapping(profile_id, to, now)
                if found is not None:
                    page.append((to, *found))
                    if len(page) >= batch:
                        yield page
                        page = []
        if page:
            yield page

    return pages()


ImportEntry = tuple[str, str, float]
"""A mapping to import: ``(to, from_number, last_used)``."""


@runtime_checkable
class BulkImportStore(Store, Protocol):
    """A store that can write many imported mappings in one step (optional).

    Without it, :meth:`sticky.Engine.import_mappings` goes through :func:`import_by_pin`.
    """

    def import_mappings(self, profile_id: str, entries: Sequence[ImportEntry], now: float) -> int:
        """Store each ``(to, sender, last_used)`` as it was used; return how many were written.

        Liveness is judged at ``at = judged_at(now, horizon)``, and the horizon moves
        to ``at`` (an import can replace mappings). An entry is skipped when it is dead
        at ``at``, or when the stored mapping of ``to`` is live at ``at`` and used as
        recently or later; else it is stored with its own ``last_used`` (index key
        ``min(last_used, at)``), replacing any mapping, in the order given (a later
        entry of the same ``to`` is judged against an earlier one). Every sender must be
        in the pool: else UnknownNumber and nothing of the call is written. An imported
        mapping is not a new recipient: capacity state is not touched, and no amortised
        eviction step is taken. Raises UnknownProfile.

        Atomic: the memory store under its lock, SQLite in one transaction, Redis one
        script per chunk of 256 entries (every chunk checks every sender of the call,
        so only a pool changed during the call can leave earlier chunks written).
        O(k) for k entries (O(k log n) where index keys arrive out of order).
        """
        ...


def import_by_pin(
    store: Store, profile_id: str, entries: Sequence[ImportEntry], now: float
) -> int:
    """:meth:`BulkImportStore.import_mappings` through public methods of any store.

    One ``mapping`` and at most one ``pin`` (made at the entry's ``last_used``) per
    entry: O(k) calls, not atomic, and judged at ``now`` (the store's horizon is not
    visible); with capacity on, each pin counts as a new recipient (see
    :meth:`Store.pin`). The senders are checked against the pool first, so an
    UnknownNumber writes nothing unless the pool changes during the call.
    """
    pool = {n.number for n in store.numbers(profile_id)}
    for _, sender, _ in entries:
        if sender not in pool:
            msg = f"number {shown(sender)} is not in profile {shown(profile_id)}"
            raise UnknownNumber(msg)
    ttl = store.settings(profile_id).ttl
    written = 0
    for to, sender, last_used in entries:
        if not is_live(last_used, ttl, now):
            continue
        there = store.mapping(profile_id, to, now)
        if there is not None and there[1] >= last_used:
            continue
        store.pin(profile_id, to, sender, last_used)
        written += 1
    return written


def coerce_store(store: object) -> Store:
    """The store an engine drives: None is a fresh memory store, a URL is opened.

    Raises InvalidSettings for anything that is not a :class:`Store` or a URL (an
    asyncio store belongs to :class:`sticky.aio.AsyncEngine`).
    """
    from sticky.store import open_store  # noqa: PLC0415 - the stores import this module
    from sticky.store.memory import MemoryStore  # noqa: PLC0415

    if store is None:
        return MemoryStore()
    if isinstance(store, str):
        return open_store(store)
    if not isinstance(store, Store):  # fail here, not at the first call
        msg = f"invalid store {shown(store)}: expected a Store or a store URL"
        raise InvalidSettings(msg)
    return store


def sorted_pool(pool: Sequence[SenderNumber]) -> tuple[SenderNumber, ...]:
    """The pool in the order every store returns it: by number. O(p log p)."""
    return tuple(sorted(pool, key=lambda n: n.number))
