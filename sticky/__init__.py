"""sticky: sender selection for outbound SMS/MMS, with Sticky Sender.

A recipient keeps getting messages from the same number of a pool; the mapping lives
8 days after the last message. See ``docs/semantics.md`` for every rule.
"""

import logging
from typing import TYPE_CHECKING

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
    OptedOut,
    PoolBusy,
    PoolExhausted,
    ProfileExists,
    StickyError,
    StoreUnavailable,
    UnknownNumber,
    UnknownProfile,
)
from sticky.numbers import NumberType, SenderNumber
from sticky.settings import DEFAULT_TTL, GeoMatch, PoolSettings
from sticky.store import MemoryStore, Store, open_store
from sticky.values import (
    GeoTier,
    Keyword,
    Mapping,
    NumberCapacity,
    NumberHealth,
    Outcome,
    Reason,
    Reply,
    ReplyAction,
    Selection,
    Selections,
    Stats,
)

if TYPE_CHECKING:
    from sticky.store.redis import RedisStore
    from sticky.store.sqlite import SQLiteStore

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
    "Keyword",
    "ManualClock",
    "Mapping",
    "MemoryStore",
    "NoEligibleSender",
    "NumberCapacity",
    "NumberHealth",
    "NumberInUse",
    "NumberType",
    "OptedOut",
    "Outcome",
    "PoolBusy",
    "PoolExhausted",
    "PoolSettings",
    "ProfileExists",
    "Reason",
    "RedisStore",
    "Reply",
    "ReplyAction",
    "SQLiteStore",
    "Selection",
    "Selections",
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

# The library logs to "sticky" and its children; the application decides where it goes.
logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> object:
    """``SQLiteStore`` and ``RedisStore`` on first use: importing sticky loads neither."""
    if name in {"SQLiteStore", "RedisStore"}:
        from sticky import store  # noqa: PLC0415 - loaded on demand

        return getattr(store, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
