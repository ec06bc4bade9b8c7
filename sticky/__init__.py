"""sticky: sender selection for outbound SMS/MMS, with Sticky Sender.

A recipient keeps getting messages from the same number of a pool; the mapping lives
8 days after the last message. See ``docs/semantics.md`` for every rule.
"""

from sticky.clock import Clock, ManualClock, SystemClock
from sticky.engine import Engine
from sticky.errors import (
    ExtraNotInstalled,
    IncompatibleStore,
    InvalidNumber,
    InvalidProfileId,
    InvalidSettings,
    InvalidTime,
    NoEligibleSender,
    NumberInUse,
    ProfileExists,
    StickyError,
    StoreUnavailable,
    UnknownNumber,
    UnknownProfile,
)
from sticky.numbers import NumberType, SenderNumber
from sticky.settings import DEFAULT_TTL, GeoMatch, PoolSettings
from sticky.store import MemoryStore, Store, open_store
from sticky.values import GeoTier, Mapping, Reason, Selection, Stats

__all__ = [
    "DEFAULT_TTL",
    "Clock",
    "Engine",
    "ExtraNotInstalled",
    "GeoMatch",
    "GeoTier",
    "IncompatibleStore",
    "InvalidNumber",
    "InvalidProfileId",
    "InvalidSettings",
    "InvalidTime",
    "ManualClock",
    "Mapping",
    "MemoryStore",
    "NoEligibleSender",
    "NumberInUse",
    "NumberType",
    "PoolSettings",
    "ProfileExists",
    "Reason",
    "Selection",
    "SenderNumber",
    "Stats",
    "StickyError",
    "Store",
    "StoreUnavailable",
    "SystemClock",
    "UnknownNumber",
    "UnknownProfile",
    "open_store",
]

__version__ = "0.1.0"
