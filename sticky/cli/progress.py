"""A progress bar on stderr, for commands that stream: drawn at most ten times a second."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress", "wanted"]

_WIDTH = 30
_EVERY = 0.1
"""Seconds between redraws: drawing costs a write, so it never follows every item."""


def wanted(flag: bool | None, stream: TextIO | None = None) -> bool:  # noqa: FBT001 - a CLI flag
    """``--progress``/``--no-progress``, else whether ``stream`` (stderr) is a terminal."""
    if flag is not None:
        return flag
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


class Progress:
    """``label [#####.....] 45% 123,456/270,000 unit``; a count alone without a total.

    Disabled, it does nothing: the commands call it unconditionally. ``total`` may be an
    estimate (shown with ``~``); the bar never passes 100%.
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        enabled: bool,
        unit: str = "",
        estimate: bool = False,
        stream: TextIO | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.enabled = enabled
        self.unit = unit
        self.estimate = estimate
        self.done = 0
        self._stream = sys.stderr if stream is None else stream
        self._next = 0.0

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more items; redraw if a tenth of a second passed. O(1)."""
        self.done += n
        if self.enabled:
            now = time.monotonic()
            if now >= self._next:
                self._next = now + _EVERY
                self._draw()

    def message(self, text: str) -> None:
        """Show ``text`` in place of the bar (for a step with no count)."""
        if self.enabled:
            self._stream.write(f"\r{self.label}: {text}\x1b[K")
            self._stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw()
            self._stream.write("\n")
            self._stream.flush()

    def line(self) -> str:
        """The text of the bar as it stands."""
        unit = f" {self.unit}" if self.unit else ""
        if not self.total:
            return f"{self.label}: {self.done:,}{unit}"
        share = min(self.done / self.total, 1.0)
        filled = round(share * _WIDTH)
        approx = "~" if self.estimate else ""
        return (
            f"{self.label} [{'#' * filled}{'.' * (_WIDTH - filled)}] {share:4.0%} "
            f"{self.done:,}/{approx}{self.total:,}{unit}"
        )

    def _draw(self) -> None:
        self._stream.write(f"\r{self.line()}\x1b[K")
        self._stream.flush()
