"""Argument types and the parser every command shares: bad values give one line, status 2."""

from __future__ import annotations

import argparse
import datetime
import math
import os
from collections.abc import Callable
from typing import NoReturn

__all__ = [
    "DEFAULT_STORE",
    "Parser",
    "count",
    "nonnegative",
    "positive",
    "share",
    "store_options",
    "time_value",
]

DEFAULT_STORE = "memory://"
"""The store a command opens without ``--store`` or ``STICKY_STORE``."""


class Parser(argparse.ArgumentParser):
    """Bad arguments give one line on stderr (not the whole usage) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``prog: error: message (see --help)`` and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def count(least: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``least``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            msg = f"not an integer: {text!r}"
            raise argparse.ArgumentTypeError(msg) from None
        if value < least:
            msg = f"must be >= {least}, not {value}"
            raise argparse.ArgumentTypeError(msg)
        return value

    parse.__name__ = "count"  # what argparse names in its message
    return parse


def _number(text: str) -> float:
    """``float(text)``, or the argparse error that names the text."""
    try:
        return float(text)
    except ValueError:
        msg = f"not a number: {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def positive(text: str) -> float:
    """An argparse type: a finite number > 0."""
    value = _number(text)
    if not (math.isfinite(value) and value > 0):
        msg = f"must be a finite number > 0, not {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def nonnegative(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    value = _number(text)
    if not (math.isfinite(value) and value >= 0):
        msg = f"must be a finite number >= 0, not {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def share(text: str) -> float:
    """An argparse type: a share, a number from 0 to 1."""
    value = _number(text)
    if not 0 <= value <= 1:  # NaN fails it too
        msg = f"must be a share from 0 to 1, not {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


def time_value(text: str) -> float:
    """An argparse type: seconds since the epoch, or an ISO 8601 time (UTC unless it says)."""
    try:
        value = float(text)
    except ValueError:
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            msg = f"not seconds since the epoch nor an ISO 8601 time: {text!r}"
            raise argparse.ArgumentTypeError(msg) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        return moment.timestamp()
    if not math.isfinite(value):
        msg = f"must be a finite number of seconds, not {text}"
        raise argparse.ArgumentTypeError(msg)
    return value


time_value.__name__ = "time"


def store_options(*, progress: bool = False) -> Parser:
    """The options every operating command takes: ``--store``, ``--json``, ``--progress``."""
    p = Parser(add_help=False)
    default = os.environ.get("STICKY_STORE") or DEFAULT_STORE
    p.add_argument(
        "--store",
        default=default,
        help=(
            "store URL: memory://, sqlite:///file.db, redis://host:port/db "
            f"(default: $STICKY_STORE, else {DEFAULT_STORE})"
        ),
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON, for scripts")
    if progress:
        p.add_argument(
            "--progress",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="show a progress bar on stderr (default: when stderr is a terminal)",
        )
    return p
