"""Clocks: the only place the library reads the time, and only through the facade."""

from __future__ import annotations

import math
import threading
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Anything with ``now() -> float``: seconds since the epoch."""

    def now(self) -> float:
        """Return the current time in seconds since the epoch."""
        ...


class SystemClock:
    """The wall clock (:func:`time.time`)."""

    __slots__ = ()

    now = staticmethod(time.time)

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that moves only when told to; for tests and simulations.

    It may be set backwards: the engine keeps its rules under a clock that goes back.
    Thread-safe.
    """

    __slots__ = ("_lock", "_t")

    def __init__(self, start: float = 0.0) -> None:
        self._t = _finite(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        """Return the clock's time. O(1)."""
        return self._t

    def advance(self, seconds: float) -> float:
        """Move the clock by ``seconds`` (may be negative) and return the new time."""
        seconds = _finite(seconds)
        with self._lock:
            self._t = _finite(self._t + seconds)
            return self._t

    def set(self, t: float) -> None:
        """Set the clock to ``t`` seconds since the epoch."""
        self._t = _finite(t)

    def __repr__(self) -> str:
        return f"ManualClock({self._t!r})"


def _finite(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"a clock time must be a number, not {value!r}"
        raise TypeError(msg)
    value = float(value)
    if not math.isfinite(value):
        msg = f"a clock time must be finite, not {value!r}"
        raise ValueError(msg)
    return value
