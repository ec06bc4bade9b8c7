"""The values the engine returns: reasons, selections, mappings and statistics."""

from __future__ import annotations

import enum
from typing import NamedTuple

import attrs

__all__ = ["GeoTier", "Mapping", "Reason", "Selection", "Stats"]


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
    A named tuple rather than a frozen class: one is made on every select, and a
    tuple costs a quarter of the time to build.
    """

    profile_id: str
    to: str
    from_number: str
    reason: Reason
    tier: GeoTier | None = None


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
    created: by reason, and fresh geomatch choices by tier.
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

    @property
    def selections(self) -> int:
        """Every select that returned a sender."""
        return self.sticky + self.new + self.expired + self.reassigned + self.pool
