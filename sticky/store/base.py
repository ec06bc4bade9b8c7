"""The store interface: what one atomic step of each public operation needs.

A store persists profiles, settings, pools, health and mappings, and does each
operation below as one atomic step. It holds no policy beyond what an atomic step
cannot avoid: deciding whether a stored mapping is live and whether its sender is
eligible, which :mod:`sticky.policy` defines and every store mirrors.

Time never runs backwards for expiry. Each profile has a *horizon*: the latest ``now``
any write on it has used (a sticky select that refreshes or stores a mapping, ``pin``,
``forget``, ``remove_number``, ``evict_expired``). A mapping is live at ``now`` while
``max(now, horizon) < last_used + ttl``, so a mapping that was dead once stays dead
under a clock that goes back, whether or not it was evicted yet. For the same reason,
a change that lengthens the ttl first evicts the mappings dead at the horizon.

Choosing a sender is the engine's: :meth:`Store.begin_select` either answers from a
live mapping, or returns a :class:`Draw`; the engine chooses and then calls
:meth:`Store.commit_select`, a compare-and-set.

Every method raises :class:`~sticky.StoreUnavailable` when the store cannot be reached,
and leaves nothing half-written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol, runtime_checkable

import attrs

from sticky.numbers import NumberType, SenderNumber
from sticky.settings import PoolSettings
from sticky.values import Selection

__all__ = ["AtomicStore", "BatchStore", "Decide", "Draw", "Store", "StoredMapping"]

StoredMapping = tuple[str, float]
"""A stored mapping as ``(from_number, last_used)``, live or not."""


@attrs.define(slots=True)
class Draw:
    """What a select needs to choose a sender afresh, read in one atomic step.

    ``pool`` is the whole pool, sorted by number, or None when it is unchanged since
    the ``known_version`` the engine passed. ``previous`` is the stored mapping (None
    when there is none, or when sticky is off and the table was not read), and
    ``live`` whether it is live (then its sender is not eligible); they are what
    :meth:`Store.commit_select` compares against. Read-only by convention (a plain
    slotted record: it is made on every fresh choice, and a frozen class costs three
    times as much to build).
    """

    settings: PoolSettings
    version: int
    pool: tuple[SenderNumber, ...] | None
    previous: StoredMapping | None
    live: bool = False


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
        self, profile_id: str, number: str, number_type: NumberType, *, healthy: bool
    ) -> None:
        """Add a number to a pool. Raises UnknownProfile, NumberInUse (in any pool)."""
        ...

    def remove_number(self, profile_id: str, number: str, now: float) -> int:
        """Remove a number and every mapping to it; return how many of those were live.

        Raises UnknownProfile, UnknownNumber (not in this pool).
        """
        ...

    def set_health(self, number: str, *, healthy: bool) -> None:
        """Set a pooled number's health. Raises UnknownNumber (in no pool)."""
        ...

    def numbers(self, profile_id: str) -> tuple[SenderNumber, ...]:
        """A profile's pool, sorted by number. Raises UnknownProfile."""
        ...

    # -- selection ------------------------------------------------------------------
    def begin_select(
        self, profile_id: str, to: str, now: float, known_version: int
    ) -> Selection | Draw:
        """First step of a select, atomic.

        If sticky is on and the stored mapping of ``to`` is live with an eligible
        sender: set ``last_used = max(last_used, now)`` and return the sticky
        :class:`Selection`. Otherwise change nothing and return a :class:`Draw`.
        Raises UnknownProfile.
        """
        ...

    def commit_select(
        self,
        profile_id: str,
        to: str,
        chosen: str,
        previous: StoredMapping | None,
        live: bool,  # noqa: FBT001 - positional like the rest of the protocol
        version: int,
        now: float,
    ) -> Selection | Literal[True] | None:
        """Second step of a sticky select: compare-and-set, atomic.

        If the pool version is still ``version``, the stored mapping still equals
        ``previous`` and its liveness still ``live`` (a dead ``previous`` that has been
        evicted since counts as unchanged): store ``(chosen, now)`` and return True.
        Else, if the stored mapping is live with an eligible sender (another select
        won the race): refresh it and return its sticky :class:`Selection`. Else
        change nothing and return None: the engine starts over. Raises UnknownProfile.
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


Decide = Callable[[str, str, Draw], Selection]
"""The engine's policy for a fresh choice: ``decide(profile_id, to, draw)`` returns the
selection (reason ``new``, ``expired``, ``reassigned`` or ``pool``), or raises."""


@runtime_checkable
class AtomicStore(Store, Protocol):
    """A store that can run a whole select as one atomic step (optional).

    A store in this process (or one with transactions, such as SQLite) runs the
    engine's policy inside its own atomic step, which saves the second step and the
    compare-and-set of :meth:`Store.commit_select`.
    """

    def select_atomic(self, profile_id: str, to: str, now: float, decide: Decide) -> Selection:
        """One select, atomic: a sticky hit, or ``decide`` and store its choice.

        If sticky is on and the stored mapping of ``to`` is live with an eligible
        sender: refresh it as :meth:`Store.begin_select` does and return the sticky
        :class:`Selection`. Otherwise call ``decide(profile_id, to, draw)`` with the
        :class:`Draw` ``begin_select`` would return (``pool`` always given); if it
        raises, change nothing; else, unless its reason is ``pool``, store
        ``(selection.from_number, now)`` as ``commit_select`` would, and return it.
        Raises UnknownProfile.
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
    ) -> list[Selection | Draw]:
        """:meth:`Store.begin_select` for each distinct recipient, in order."""
        ...

    def commit_select_many(
        self,
        profile_id: str,
        entries: Sequence[tuple[str, str, StoredMapping | None, bool, int]],
        now: float,
    ) -> list[Selection | Literal[True] | None]:
        """:meth:`Store.commit_select` for each ``(to, chosen, previous, live, version)``."""
        ...


def sorted_pool(pool: Sequence[SenderNumber]) -> tuple[SenderNumber, ...]:
    """The pool in the order every store returns it: by number. O(p log p)."""
    return tuple(sorted(pool, key=lambda n: n.number))
