"""The command line: ``sticky COMMAND`` (the console script) or ``python -m sticky COMMAND``.

``simulate`` runs the main job (:mod:`sticky.simulate`); the operating commands work on
a live store given by ``--store URL``: ``profiles``, ``show``, ``lookup``, ``export``,
``import``, ``evict``, ``stats``, and a number's life: ``drain``, ``undrain``,
``opt-out``, ``opt-in`` and ``opt-outs``. Every :class:`~sticky.StickyError` (a bad store URL,
an unknown profile, a store that is down, a bad export line) prints one line and exits
with status 2, as does a bad argument.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from sticky import __version__
from sticky.cli import commands, transfer
from sticky.cli.args import Parser, count, nonnegative, store_options, time_value
from sticky.engine import Engine
from sticky.errors import StickyError

__all__ = ["main", "program"]

Command = Callable[[Engine, argparse.Namespace], int]


def program() -> str:
    """The name usage lines give: ``sticky`` (the console script) or ``python -m sticky``."""
    name = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else ""
    return "sticky" if name == "sticky" else "python -m sticky"


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description="Sender selection with Sticky Sender.")
    parser.add_argument("--version", action="version", version=f"sticky {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    plain, streaming = store_options(), store_options(progress=True)

    def add(name: str, run: Command, text: str, *, stream: bool = False) -> Parser:
        p: Parser = sub.add_parser(
            name,
            help=text,
            description=text,
            parents=[streaming if stream else plain],
        )
        p.set_defaults(run=run)
        return p

    def now_option(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument(
            "--now",
            type=time_value,
            default=None,
            help=f"{what} at this time: seconds since the epoch or ISO 8601 (default: now)",
        )

    def batch_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--batch",
            type=count(1),
            default=1_000,
            help="mappings read per store call (default 1000)",
        )

    sub.add_parser("simulate", help="run a synthetic month of traffic (see simulate --help)")
    add("profiles", commands.profiles, "list every profile and the size of its pool")
    p = add("show", commands.show, "a profile's settings, pool (type, health) and live counts")
    p.add_argument("profile", help="the profile id")
    now_option(p, "count live mappings")
    batch_option(p)
    p = add(
        "lookup", commands.lookup, "a recipient's live mapping and its expiry (status 1: none)"
    )
    p.add_argument("profile", help="the profile id")
    p.add_argument("recipient", help="the recipient, E.164")
    now_option(p, "judge liveness")
    p = add(
        "export",
        transfer.export,
        "every profile, pool and live mapping as JSON Lines (streamed)",
        stream=True,
    )
    p.add_argument("-o", "--output", help="the file to write (default: stdout)")
    p.add_argument("--profile", action="append", help="export only this profile (repeatable)")
    now_option(p, "export the mappings live")
    batch_option(p)
    p = add(
        "import",
        transfer.import_,
        "an export into this store (existing profiles, numbers and newer mappings kept; "
        "safe to run again)",
        stream=True,
    )
    p.add_argument("input", nargs="?", help="the export to read (default: stdin)")
    p.add_argument("--check", action="store_true", help="only check the export; write nothing")
    now_option(p, "skip the mappings expired")
    p.add_argument(
        "--batch",
        type=count(1),
        default=1_000,
        help="mappings written per store call (default 1000)",
    )
    p = add("evict", commands.evict, "remove every dead mapping (for a periodic job)", stream=True)
    now_option(p, "judge liveness")
    add("stats", commands.stats, "what the store holds: profiles, numbers, mappings, evictions")
    p = add(
        "drain",
        commands.drain,
        "drain a number: no new recipients; its live mappings stay (until --grace ends)",
    )
    p.add_argument("profile", help="the profile id")
    p.add_argument("number", help="the number, E.164")
    p.add_argument(
        "--grace",
        type=nonnegative,
        default=None,
        help="seconds after which its recipients move at their next message (default: never)",
    )
    now_option(p, "start the drain")
    p = add("undrain", commands.undrain, "end a number's drain: it takes new recipients again")
    p.add_argument("profile", help="the profile id")
    p.add_argument("number", help="the number, E.164")
    for name, text in (
        ("opt-out", "opt a recipient out: delete its mapping, refuse every select for it"),
        ("opt-in", "end a recipient's opt-out"),
    ):
        p = add(name, commands.opt, text)
        p.add_argument("profile", help="the profile id")
        p.add_argument("recipient", help="the recipient, E.164")
        p.set_defaults(opt=name)
    p = add("opt-outs", commands.opt_outs, "list a profile's opted-out recipients")
    p.add_argument("profile", help="the profile id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the exit status (0, 1 for ``lookup`` finding none, 2 on error)."""
    args = list(sys.argv[1:] if argv is None else argv)
    prog = program()
    try:
        if args and args[0] == "simulate":
            from sticky import simulate  # noqa: PLC0415 - only when asked for

            return simulate.main(args[1:], prog=f"{prog} simulate")
        ns = _parser(prog).parse_args(args)
        return _run(prog, ns)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader (``| head``) left: not an error of ours
        sys.stdout = open(os.devnull, "w")  # noqa: PTH123, SIM115 - silence the flush at exit
        return 0


def _run(prog: str, ns: argparse.Namespace) -> int:
    """Open the store, run the command, close the store; one line per error."""
    where = f"{prog} {ns.command}"
    try:
        engine = Engine(store=ns.store)
    except StickyError as exc:
        print(f"{where}: error: {exc}", file=sys.stderr)
        return 2
    try:
        status: int = ns.run(engine, ns)
    except StickyError as exc:
        print(f"{where}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an input or output file
        if isinstance(exc, BrokenPipeError):
            raise
        print(f"{where}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.close()
    return status
