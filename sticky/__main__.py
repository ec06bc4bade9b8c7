"""``python -m sticky COMMAND``: the command line of :mod:`sticky.cli`."""

from __future__ import annotations

import sys

from sticky.cli import main, program

__all__ = ["main", "program"]

if __name__ == "__main__":
    sys.exit(main())
