"""The library's exceptions: one base class, subclasses by meaning.

Every error the library raises on purpose derives from :class:`StickyError`; each
message names the offending value, and an operation that raises changes nothing.
"""

from __future__ import annotations

__all__ = [
    "DISTRIBUTION",
    "ExtraNotInstalled",
    "IncompatibleStore",
    "InvalidNumber",
    "InvalidProfileId",
    "InvalidSettings",
    "InvalidTime",
    "NoEligibleSender",
    "NumberInUse",
    "OptedOut",
    "PoolBusy",
    "PoolExhausted",
    "ProfileExists",
    "StickyError",
    "StoreUnavailable",
    "UnknownNumber",
    "UnknownProfile",
    "opted_out",
    "shown",
]

DISTRIBUTION = "sticky-sender"
"""The name ``pip`` installs the library by; the import name is ``sticky``."""

_KEEP = 40
"""Characters of a long value a message keeps: enough to recognise it."""
_REPR_MAX = 80
"""The longest repr a message embeds whole."""


def shown(value: object) -> str:
    """``value`` as a message shows it: its repr, or the start of it and how long it was.

    A message stays short whatever it names (a 1,000,000-character recipient gives a
    message of about 100 characters). O(1) for a str, else the cost of its repr.
    """
    if type(value) is str:
        if len(value) <= _REPR_MAX:
            return repr(value)
        # Cut before repr: a huge string is never copied whole into a message.
        return f"{value[:_KEEP]!r}... ({len(value):,} characters)"
    text = repr(value)
    if len(text) <= _REPR_MAX:
        return text
    return f"{text[:_KEEP]}... (a {type(value).__name__} of repr length {len(text):,})"


class StickyError(Exception):
    """Base class of every error the library raises on purpose."""


class InvalidNumber(StickyError, ValueError):
    """A phone number is not E.164 (``+`` then 7 to 15 digits, the first 1-9)."""


class InvalidSettings(StickyError, ValueError):
    """A setting is out of range (a NaN or negative weight, a ttl that is not > 0...)."""


class InvalidProfileId(StickyError, ValueError):
    """A profile id is not a non-empty string."""


class InvalidTime(StickyError, ValueError):
    """A time (``now``) is not a finite number of seconds."""


class UnknownProfile(StickyError, LookupError):
    """No profile has this id."""


class UnknownNumber(StickyError, LookupError):
    """The number is not in the pool it was looked for in (or in any pool)."""


class NumberInUse(StickyError, ValueError):
    """The number already belongs to a profile; remove it there first."""


class ProfileExists(StickyError, ValueError):
    """A profile with this id already exists."""


class NoEligibleSender(StickyError, LookupError):
    """The pool has no eligible number for a new choice."""


class PoolExhausted(NoEligibleSender):
    """Every eligible number is at its daily budget of new recipients.

    ``retry_at`` is the start of the next day in the profile's time zone, when the
    budgets start afresh. Nothing was changed.
    """

    def __init__(self, message: str, retry_at: float) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class PoolBusy(NoEligibleSender):
    """The earliest slot of every number that could send is later than ``max_queue``.

    ``retry_at`` is the earliest time a select could get a slot within ``max_queue``.
    Nothing was changed: no slot was reserved.
    """

    def __init__(self, message: str, retry_at: float) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class StoreUnavailable(StickyError, ConnectionError):
    """The store cannot be reached (or timed out); the original error is chained."""


class IncompatibleStore(StickyError, RuntimeError):
    """The store holds data this version cannot read (a newer schema, not a database...)."""


class ExtraNotInstalled(StickyError, ImportError):
    """An optional component was asked for but its extra is not installed."""

    def __init__(self, extra: str, module: str, what: str) -> None:
        super().__init__(
            f"{what} needs the optional {module!r} package: pip install '{DISTRIBUTION}[{extra}]'"
        )
        self.extra = extra


class OptedOut(StickyError, LookupError):
    """The recipient has opted out of this profile: no sender may be selected for them.

    Until :meth:`sticky.Engine.opt_in` (or a reply with START). Nothing was changed.
    """

    def __init__(self, message: str, profile_id: str, to: str) -> None:
        super().__init__(message)
        self.profile_id = profile_id
        self.to = to


def opted_out(profile_id: str, to: str) -> OptedOut:
    """The error every store raises for a select of an opted-out recipient."""
    msg = f"recipient {shown(to)} has opted out of profile {shown(profile_id)}"
    return OptedOut(msg, profile_id, to)
