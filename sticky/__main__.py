"""Command line: ``sticky simulate [options]`` (the console script) or ``python -m sticky``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sticky import __version__

__all__ = ["main", "program"]


def program() -> str:
    """The name usage lines give: ``sticky`` (the console script) or ``python -m sticky``."""
    name = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else ""
    return "sticky" if name == "sticky" else "python -m sticky"


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a subcommand; return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    prog = program()
    parser = argparse.ArgumentParser(prog=prog, description="Sender selection with Sticky Sender.")
    parser.add_argument("--version", action="version", version=f"sticky {__version__}")
    parser.add_argument("command", choices=["simulate"], help="what to run")
    if not args or args[0].startswith("-"):
        parser.parse_args(args)  # prints help, version or a usage error, and exits
        return 2
    parser.parse_args(args[:1])
    from sticky import simulate  # noqa: PLC0415 - only when asked for

    try:
        return simulate.main(args[1:], prog=f"{prog} simulate")
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader (``| head``) left: not an error of ours
        sys.stdout = open(os.devnull, "w")  # noqa: PTH123, SIM115 - silence the flush at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
