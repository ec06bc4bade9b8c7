"""The values the engine returns: reasons, selections, mappings and statistics."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import NamedTuple

import attrs

__all__ = [
    "GeoTier",
    "Keyword",
    "Mapping",
    "NumberCapacity",
    "NumberHealth",
    "Outcome",
    "Reason",
    "Reply",
    "ReplyAction",
    "Selection",
    "Selections",
    "Stats",
]


class Reason(enum.Enum):
    """Why a select returned its sender."""

    # Members are singletons compared by identity: hash them by identity too, in C
    # (Enum's own __hash__ is Python code, and the engine counts by reason per select).
    __hash__ = object.__hash__

    STICKY = "sticky"
    """A live mapping, whose sender is eligible, was honoured (and refreshed)."""
    NEW = "new"
    """No mapping was stored: a sender was chosen and mapped."""
    EXPIRED = "expired"
    """The stored mapping was past its ttl: a sender was chosen afresh and mapped."""
    REASSIGNED = "reassigned"
    """The live mapping's sender was no longer eligible: it was replaced."""
    POOL = "pool"
    """Sticky sender is off: a sender was chosen from the pool; no mapping was touched."""
    OVERFLOW = "overflow"
    """The live mapping's sender had no slot within ``max_wait``: moved to a sooner one."""


class GeoTier(enum.Enum):
    """Which geomatch tier a fresh choice came from (nearest first)."""

    __hash__ = object.__hash__  # as Reason's

    AREA_CODE = "area_code"
    OVERLAY = "overlay"
    REGION = "region"
    COUNTRY = "country"
    NONE = "none"
    """Geomatch was on, but no tier had an eligible number: a plain weighted choice."""


class Selection(NamedTuple):
    """The answer of a select: which number sends to ``to`` and why.

    ``tier`` is the geomatch tier of a fresh choice made with geomatch on, else None.
    ``send_at`` is the earliest time the message may leave without exceeding its
    sender's rate: the select's ``now`` when there was room (always set by the engine;
    the default only serves values built by hand). A named tuple rather than a frozen
    class: one is made on every select, and a tuple costs a quarter of the time to build.
    """

    profile_id: str
    to: str
    from_number: str
    reason: Reason
    tier: GeoTier | None = None
    send_at: float = 0.0


@attrs.frozen(slots=True)
class Mapping:
    """A live sticky mapping: ``to`` gets ``from_number`` until ``expires_at``."""

    profile_id: str
    to: str
    from_number: str
    last_used: float
    expires_at: float


@attrs.frozen(slots=True)
class Stats:
    """Counters of one engine, and the mappings its store holds.

    ``mappings`` counts the store's mappings (live, or dead and not yet evicted) and
    ``evicted`` the dead ones the store has removed (by ``evict_expired`` and in
    amortised steps). The other counters count this engine's selects since it was
    created: by reason, and fresh geomatch choices by tier; ``waited`` counts the
    selects whose ``send_at`` was later than their ``now``, ``exhausted`` and ``busy``
    the selects refused with :class:`~sticky.PoolExhausted` and :class:`~sticky.PoolBusy`,
    ``opted_out`` the selects refused for an opted-out recipient (one per recipient of a
    batch).
    """

    mappings: int = 0
    sticky: int = 0
    new: int = 0
    expired: int = 0
    reassigned: int = 0
    pool: int = 0
    evicted: int = 0
    tier_area_code: int = 0
    tier_overlay: int = 0
    tier_region: int = 0
    tier_country: int = 0
    tier_none: int = 0
    overflow: int = 0
    waited: int = 0
    exhausted: int = 0
    busy: int = 0
    opted_out: int = 0

    @property
    def selections(self) -> int:
        """Every select that returned a sender."""
        return self.sticky + self.new + self.expired + self.reassigned + self.pool + self.overflow


@attrs.frozen(slots=True)
class NumberCapacity:
    """One number's capacity at a moment: its limits, next free slot and today's count.

    ``rate`` (segments per second, None for unlimited) and ``daily_new_recipients``
    (None for no budget) are the limits in force, the number's own or its type's;
    ``next_slot`` is the ``send_at`` a one-segment select would get now; ``new_today``
    counts the mappings created for it today (in the profile's time zone).
    """

    number: str
    rate: float | None
    burst: int
    daily_new_recipients: int | None
    next_slot: float
    new_today: int

    @property
    def budget_left(self) -> int | None:
        """New recipients it may still take today, or None without a budget."""
        if self.daily_new_recipients is None:
            return None
        return max(0, self.daily_new_recipients - self.new_today)


class Selections(list[Selection]):
    """What ``select_many`` returns: the selections, in the batch's order, and refusals.

    A list of the :class:`Selection` of every recipient that got a sender; the
    recipients refused because they opted out are left out of it and listed, in the
    batch's order and once each, in ``opted_out``.
    """

    __slots__ = ("opted_out",)

    def __init__(
        self, selections: Iterable[Selection] = (), opted_out: Iterable[str] = ()
    ) -> None:
        super().__init__(selections)
        self.opted_out: tuple[str, ...] = tuple(opted_out)


class Outcome(enum.Enum):
    """A delivery report's outcome for one message, as :meth:`record_delivery` takes it."""

    __hash__ = object.__hash__  # as Reason's

    DELIVERED = "delivered"
    FAILED = "failed"
    """Not delivered, for any reason but spam (unreachable, carrier error, expired)."""
    SPAM = "spam"
    """Blocked by a carrier as spam, or reported as spam by the recipient."""


class Keyword(enum.Enum):
    """A standard keyword a reply's body was, which :meth:`record_reply` applied."""

    OPT_OUT = "opt_out"
    """STOP, STOPALL, UNSUBSCRIBE, CANCEL, END or QUIT."""
    OPT_IN = "opt_in"
    """START, UNSTOP or YES."""


class ReplyAction(enum.Enum):
    """What a reply did to its recipient's mapping."""

    REFRESHED = "refreshed"
    """The live mapping was to the replied number: it was refreshed to the reply's time."""
    MOVED = "moved"
    """The live mapping was to another number: the recipient now maps to the replied one."""
    MAPPED = "mapped"
    """No live mapping: a new one to the replied number was made (a dead one is replaced)."""
    NOT_IN_POOL = "not_in_pool"
    """The replied number is not in the profile's pool: nothing changed."""
    INELIGIBLE = "ineligible"
    """The replied number may not take the recipient (weight 0, unhealthy with
    ``skip_unhealthy``, draining without a mapping to it): nothing changed."""
    STICKY_OFF = "sticky_off"
    """Sticky sender is off in the profile: no mapping is kept, nothing changed."""
    OPTED_OUT = "opted_out"
    """The recipient is opted out (by this reply's keyword or before): no mapping."""


@attrs.frozen(slots=True)
class Reply:
    """What :meth:`record_reply` did: the keyword it applied, if any, and the mapping's fate."""

    profile_id: str
    to: str
    """The recipient who replied."""
    number: str
    """Our number they replied to."""
    action: ReplyAction
    keyword: Keyword | None = None


@attrs.frozen(slots=True)
class NumberHealth:
    """One number's health and its delivery reports over the profile's window.

    ``healthy`` is the caller's word, ``delivery_healthy`` the reports' verdict (as of
    the last report); the number is healthy when both are true.
    """

    number: str
    healthy: bool
    delivery_healthy: bool
    delivered: int
    failed: int
    spam: int

    @property
    def samples(self) -> int:
        """The outcomes in the window."""
        return self.delivered + self.failed + self.spam

    @property
    def delivery_rate(self) -> float | None:
        """The delivered share, or None without a sample."""
        return self.delivered / self.samples if self.samples else None

    @property
    def spam_rate(self) -> float | None:
        """The spam share, or None without a sample."""
        return self.spam / self.samples if self.samples else None
