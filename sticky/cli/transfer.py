"""``export`` and ``import``: every profile, pool and live mapping as JSON Lines.

The format (version 2), one JSON object a line, in this order::

    {"format": "sticky-export", "version": 2, "exported_at": T, "sticky": "0.1.0"}
    {"kind": "profile", "id": "acme", "settings": {...PoolSettings.to_dict()...}}
    {"kind": "number", "profile": "acme", "number": "+1312...", "type": "long_code",
     "healthy": true, "rate": 2.5, "daily_new_recipients": 500,
     "draining_since": T, "drain_grace": seconds, "delivery_healthy": false,
     "window": [[bucket, delivered, failed, spam], ...]}
    {"kind": "opt_out", "profile": "acme", "to": "+1415..."}
    {"kind": "mapping", "profile": "acme", "to": "+1415...", "from": "+1312...",
     "last_used": T, "age": seconds}

A number's own limits, its drain, its delivery verdict (when unhealthy) and its delivery
window are written only when set; an export without them (version 1, or a number without
them) imports as numbers with the profile's limits, not draining, with no reports. A
drain keeps its start and grace. A window is replayed report by report at its buckets'
times through :meth:`sticky.Engine.record_delivery`, the good outcomes first for a
healthy number and the bad first for an unhealthy one, so the verdict comes back as it
was (unless the number sat within the margin and the window never crossed a threshold:
then the import says so). An opt-out line opts the recipient out of the profile
(:meth:`sticky.Engine.opt_out`). An export streams: one page of a profile's live
mappings in memory at a time (:meth:`sticky.Engine.iter_mappings`). An import writes the
mappings in batches of ``--batch`` (1,000) through
:meth:`sticky.Engine.import_mappings`: each keeps its ``last_used`` (so its age, and it
expires when it would have), unless the target already has a live mapping of the
recipient used as recently or later (then the target's is kept), or the mapping has
expired since the export. Profiles are created if missing (an existing one keeps its
settings), numbers added if missing (an existing one keeps its limits): re-running an
import changes nothing more. An import from a file checks every line before it writes
anything; from a pipe each line is checked before it is applied, and a bad line stops
the import after the lines before it: the mappings read before it are written first
(running it again once fixed is safe). What batching changes: a batch is written when it
is full or when a line of another kind or profile comes, so an import killed while
reading may leave up to a batch of checked lines unwritten; and a batch the store
refuses (a sender that is not in the target's pool) writes none of its mappings, where
the batches before it stay written.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from sticky import __version__
from sticky.cli.progress import Progress, wanted
from sticky.engine import Engine
from sticky.errors import InvalidSettings, StickyError, shown
from sticky.numbers import NumberType, SenderNumber, check_e164, is_e164
from sticky.policy import HEALTH_BUCKETS, Window
from sticky.settings import PoolSettings, check_budget, check_grace, check_rate
from sticky.values import Outcome

__all__ = ["FORMAT", "VERSION", "export", "import_", "read_export", "write_export"]

FORMAT = "sticky-export"
VERSION = 2
READS = frozenset({1, 2})
"""The versions an import reads: 1 is 2 without drains, windows and opt-outs."""


def write_export(
    engine: Engine,
    out: TextIO,
    *,
    now: float,
    profile_ids: Iterable[str] | None = None,
    batch: int = 1_000,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Write the export of ``profile_ids`` (every profile by default); return the counts.

    Memory is bounded by ``batch`` (and the pool of one profile). O(n) for n mappings.
    """
    header = {"format": FORMAT, "version": VERSION, "exported_at": now, "sticky": __version__}
    out.write(json.dumps(header) + "\n")
    counts = {"profiles": 0, "numbers": 0, "opt_outs": 0, "mappings": 0}
    ids = engine.profiles() if profile_ids is None else list(profile_ids)
    for pid in ids:
        settings = engine.settings(pid)
        pool = engine.numbers(pid)
        pj = json.dumps(pid)
        lines = [json.dumps({"kind": "profile", "id": pid, "settings": settings.to_dict()})]
        _, windows = engine.store.health(pid)
        lines += [json.dumps(_number_line(pid, n, windows.get(n.number, ()))) for n in pool]
        opted = engine.opt_outs(pid)
        lines += [json.dumps({"kind": "opt_out", "profile": pid, "to": to}) for to in opted]
        out.write("\n".join(lines) + "\n")
        counts["profiles"] += 1
        counts["numbers"] += len(pool)
        counts["opt_outs"] += len(opted)
        for page in engine.iter_mappings(pid, now=now, batch=batch):
            # Numbers are E.164 (no character JSON escapes) and times finite floats, whose
            # repr is valid JSON: formatted directly, several times faster than dumps.
            out.write(
                "".join(
                    f'{{"kind":"mapping","profile":{pj},"to":"{m.to}","from":"{m.from_number}",'
                    f'"last_used":{m.last_used!r},"age":{now - m.last_used!r}}}\n'
                    for m in page
                )
            )
            counts["mappings"] += len(page)
            if progress is not None:
                progress.advance(len(page))
    return counts


def _number_line(profile_id: str, n: SenderNumber, window: Window) -> dict[str, Any]:
    """A number's line: its own limits, drain, verdict and window only when set."""
    line: dict[str, Any] = {
        "kind": "number",
        "profile": profile_id,
        "number": n.number,
        "type": n.type.value,
        "healthy": n.healthy,
    }
    if n.rate is not None:
        line["rate"] = n.rate
    if n.daily_new_recipients is not None:
        line["daily_new_recipients"] = n.daily_new_recipients
    if n.draining_since is not None:
        line["draining_since"] = n.draining_since
        line["drain_grace"] = n.drain_grace
    if not n.delivery_healthy:
        line["delivery_healthy"] = False
    if window:
        line["window"] = [list(bucket) for bucket in window]
    return line


# -- reading --------------------------------------------------------------------------
Record = tuple[Any, ...]
"""A checked line: ``("profile", id, settings)``, ``("number", profile, number, type,
healthy, rate, daily_new_recipients, life)`` (``life``: :class:`_Life`), ``("opt_out",
profile, to)`` or ``("mapping", profile, to, from, last_used)``."""


class _Life(NamedTuple):
    """A number's drain, verdict and delivery window, as an export line gives them."""

    draining_since: float | None = None
    drain_grace: float | None = None
    delivery_healthy: bool = True
    window: Window = ()


def _life(line_no: int, data: dict[str, Any]) -> _Life:
    """The optional drain, verdict and window of a number line, checked."""
    since = None if data.get("draining_since") is None else _time(line_no, data, "draining_since")
    grace = check_grace(data.get("drain_grace")) if since is not None else None
    verdict = data.get("delivery_healthy", True)
    if not isinstance(verdict, bool):
        raise _bad(line_no, f"'delivery_healthy' is {shown(verdict)}: expected a bool")
    raw = data.get("window", [])
    window: list[tuple[int, int, int, int]] = []
    if not isinstance(raw, list) or len(raw) > HEALTH_BUCKETS:
        raise _bad(line_no, f"'window' is {shown(raw)}: expected up to 24 buckets")
    for item in raw:
        if not (
            isinstance(item, list)
            and len(item) == 4
            and all(type(x) is int for x in item)
            and min(item[1:]) >= 0
            and (not window or item[0] > window[-1][0])
        ):
            raise _bad(line_no, f"'window' has {shown(item)}: expected [bucket, d, f, s] in order")
        window.append((item[0], item[1], item[2], item[3]))
    return _Life(since, grace, verdict, tuple(window))


def _bad(line_no: int, what: str) -> InvalidSettings:
    return InvalidSettings(f"invalid export, line {line_no}: {what}")


def _field(line_no: int, data: dict[str, Any], name: str, kind: type) -> Any:  # noqa: ANN401 - JSON
    value = data.get(name)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise _bad(line_no, f"{name!r} is {shown(value)}: expected a {kind.__name__}")
    return value


def _time(line_no: int, data: dict[str, Any], name: str) -> float:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(line_no, f"{name!r} is {shown(value)}: expected a finite number")
    return float(value)


_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"  # JSON's grammar
_MAPPING_LINE = re.compile(
    r'\{"kind":"mapping","profile":("(?:[^"\\\x00-\x1f]|\\.)*"),"to":"([^"\\]*)",'
    rf'"from":"([^"\\]*)","last_used":({_NUMBER}),"age":{_NUMBER}\}}[ \t\r\n]*'
).fullmatch
"""A mapping line exactly as :func:`write_export` writes it: read without ``json``."""


def _fast_mapping(text: str, profiles: set[str]) -> Record | None:
    """A mapping line in the exporter's own layout, checked; None for any other line.

    Accepts exactly what the general path accepts for such a line, and gives the same
    record (anything unusual, an error included, is left to it): several times faster
    than decoding the JSON, for the lines an import is made of.
    """
    match = _MAPPING_LINE(text)
    if match is None:
        return None
    token, to, sender, used = match.groups()
    pid = token[1:-1] if "\\" not in token else json.loads(token)
    last_used = float(used)
    if pid not in profiles or not (is_e164(to) and is_e164(sender) and math.isfinite(last_used)):
        return None
    return ("mapping", pid, to, sender, last_used)


def _record(line_no: int, text: str, profiles: set[str]) -> Record:  # noqa: C901 - one check a field
    """Check one line (not the header); raise InvalidSettings or InvalidNumber naming it."""
    fast = _fast_mapping(text, profiles)
    if fast is not None:
        return fast
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _bad(line_no, f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _bad(line_no, f"expected an object, not {shown(data)}")
    kind = data.get("kind")
    try:
        if kind == "profile":
            pid = _field(line_no, data, "id", str)
            if not pid:
                raise _bad(line_no, "an empty profile id")
            raw = _field(line_no, data, "settings", dict)
            profiles.add(pid)
            return ("profile", pid, PoolSettings.from_dict(raw))
        if kind not in {"number", "mapping", "opt_out"}:
            raise _bad(line_no, f"unknown kind {shown(kind)}")
        pid = _field(line_no, data, "profile", str)
        if pid not in profiles:
            raise _bad(line_no, f"profile {shown(pid)} has no profile line before it")
        if kind == "number":
            number = check_e164(_field(line_no, data, "number", str))
            kind_text = _field(line_no, data, "type", str)
            try:
                number_type = NumberType(kind_text)
            except ValueError:
                raise _bad(line_no, f"unknown number type {shown(kind_text)}") from None
            healthy = _field(line_no, data, "healthy", bool)
            rate = check_rate(data.get("rate"))
            daily = check_budget(data.get("daily_new_recipients"))
            life = _life(line_no, data)
            return ("number", pid, number, number_type, healthy, rate, daily, life)
        if kind == "opt_out":
            return ("opt_out", pid, check_e164(_field(line_no, data, "to", str), "recipient"))
        to = check_e164(_field(line_no, data, "to", str), "recipient")
        sender = check_e164(_field(line_no, data, "from", str))
        return ("mapping", pid, to, sender, _time(line_no, data, "last_used"))
    except StickyError as exc:
        if str(exc).startswith("invalid export"):
            raise
        raise type(exc)(f"invalid export, line {line_no}: {exc}") from None


def read_export(lines: Iterable[str], progress: Progress | None = None) -> Iterator[Record]:
    """The checked records of an export, lazily; raises on the first bad line."""
    it = iter(lines)
    first = next(it, "")
    if progress is not None:
        progress.advance(len(first))
    try:
        header = json.loads(first)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        msg = f"invalid export, line 1: not a {FORMAT} header: {shown(first.strip())}"
        raise InvalidSettings(msg)
    if header.get("version") not in READS:
        msg = f"invalid export: version {shown(header.get('version'))}, expected 1 or {VERSION}"
        raise InvalidSettings(msg)
    profiles: set[str] = set()
    for line_no, text in enumerate(it, 2):
        if progress is not None:
            progress.advance(len(text))
        if text.strip():
            yield _record(line_no, text, profiles)


class _Target:
    """What an import knows of the target per profile (its pool and ttl), and its batch."""

    def __init__(self, engine: Engine, now: float, log: TextIO, batch: int = 1_000) -> None:
        self.engine = engine
        self.now = now
        self.log = log
        self.batch = batch
        self.pools: dict[str, set[str]] = {}
        self.ttls: dict[str, float] = {}
        self.pending: list[tuple[str, str, float]] = []
        self.pending_profile = ""
        self.counts = dict.fromkeys(
            (
                "profiles_created",
                "profiles_kept",
                "numbers_added",
                "numbers_kept",
                "opt_outs",
                "mappings_written",
                "mappings_kept",
                "mappings_expired",
            ),
            0,
        )

    def apply(self, record: Record) -> None:
        """Apply one checked record; a mapping waits in the batch (see :meth:`flush`)."""
        engine, counts = self.engine, self.counts
        kind, pid = record[0], record[1]
        if kind == "mapping":
            _, _, to, sender, last_used = record
            if last_used + self.ttls[pid] <= self.now:
                counts["mappings_expired"] += 1
                return
            if pid != self.pending_profile:
                self.flush()
                self.pending_profile = pid
            self.pending.append((to, sender, last_used))
            if len(self.pending) >= self.batch:
                self.flush()
            return
        self.flush()  # the mappings before a profile or number line are written first
        if kind == "profile":
            settings: PoolSettings = record[2]
            if engine.create_profile(pid, settings, exist_ok=True):
                counts["profiles_created"] += 1
            else:
                counts["profiles_kept"] += 1
                if engine.settings(pid) != settings:
                    print(
                        f"import: profile {pid!r} exists with other settings: kept as it is",
                        file=self.log,
                    )
            self.pools[pid] = {n.number for n in engine.numbers(pid)}
            self.ttls[pid] = engine.settings(pid).ttl
        elif kind == "opt_out":
            counts["opt_outs"] += engine.opt_out(pid, record[2], now=self.now)
        else:
            _, _, number, number_type, healthy, rate, daily, life = record
            if number in self.pools[pid]:
                counts["numbers_kept"] += 1
            else:
                engine.add_number(
                    pid,
                    number,
                    number_type,
                    healthy=healthy,
                    rate=rate,
                    daily_new_recipients=daily,
                )
                self.pools[pid].add(number)
                counts["numbers_added"] += 1
                self._restore(pid, number, life)

    def _restore(self, pid: str, number: str, life: _Life) -> None:
        """Give an added number its drain and its delivery window (replayed)."""
        engine = self.engine
        if life.draining_since is not None:
            engine.drain(pid, number, grace=life.drain_grace, now=life.draining_since)
        width = engine.settings(pid).health_window / HEALTH_BUCKETS
        order = [Outcome.DELIVERED, Outcome.FAILED, Outcome.SPAM]
        if not life.delivery_healthy:
            order.reverse()  # the bad first: the shares move one way, as the verdict did
        verdict = True
        for outcome in order:
            slot = 1 + [Outcome.DELIVERED, Outcome.FAILED, Outcome.SPAM].index(outcome)
            for bucket in life.window:
                at = (bucket[0] + 0.5) * width  # inside the bucket, whatever the rounding
                for _ in range(bucket[slot]):
                    verdict = engine.record_delivery(number, outcome, now=at).delivery_healthy
        if verdict != life.delivery_healthy:
            print(
                f"import: number {number} of profile {pid!r}: its delivery reports give"
                f" {'healthy' if verdict else 'unhealthy'} here (exported otherwise)",
                file=self.log,
            )

    def apply_all(self, records: Iterable[Record]) -> None:
        """Apply every record and write the last batch.

        A bad line (raised by ``records``) first has the batch read before it written:
        every line before a bad one is applied, as without batches.
        """
        try:
            for record in records:
                self.apply(record)
        except StickyError:
            self.flush()
            raise
        self.flush()

    def flush(self) -> None:
        """Write the batch of mappings: one :meth:`~sticky.Engine.import_mappings` call."""
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        written = self.engine.import_mappings(self.pending_profile, batch, now=self.now)
        self.counts["mappings_written"] += written
        self.counts["mappings_kept"] += len(batch) - written


# -- the commands ---------------------------------------------------------------------
def export(engine: Engine, args: argparse.Namespace) -> int:
    """``export``: JSON Lines to ``--output`` or stdout; a summary on stderr."""
    now = time.time() if args.now is None else args.now
    total = None if args.profile else engine.stats().mappings
    bar = Progress("export", total, enabled=wanted(args.progress), unit="mappings", estimate=True)
    started = time.perf_counter()
    if args.output in {None, "-"}:
        counts = write_export(
            engine, sys.stdout, now=now, profile_ids=args.profile, batch=args.batch, progress=bar
        )
        sys.stdout.flush()
    else:
        with Path(args.output).open("w", encoding="utf-8") as out:
            counts = write_export(
                engine, out, now=now, profile_ids=args.profile, batch=args.batch, progress=bar
            )
    bar.close()
    seconds = time.perf_counter() - started
    where = "stdout" if args.output in {None, "-"} else args.output
    if args.json:
        print(
            json.dumps({**counts, "seconds": round(seconds, 6), "output": where}), file=sys.stderr
        )
    else:
        print(
            f"exported {counts['profiles']:,} profiles, {counts['numbers']:,} numbers and "
            f"{counts['mappings']:,} live mappings to {where} in {seconds:.2f} s",
            file=sys.stderr,
        )
    return 0


def import_(engine: Engine, args: argparse.Namespace) -> int:
    """``import``: an export into this store; safe to run again."""
    now = time.time() if args.now is None else args.now
    enabled = wanted(args.progress)
    started = time.perf_counter()
    target = _Target(engine, now, sys.stderr, args.batch)
    if args.input in {None, "-"}:
        bar = Progress("import", enabled=enabled, unit="characters")
        records = read_export(sys.stdin, bar)
        if args.check:
            for _ in records:
                pass
        else:
            target.apply_all(records)
        bar.close()
    else:
        size = Path(args.input).stat().st_size
        with Path(args.input).open(encoding="utf-8") as src:
            checking = Progress("check", size, enabled=enabled, unit="bytes")
            for _ in read_export(src, checking):  # every line, before anything is written
                pass
            checking.close()
            if not args.check:
                src.seek(0)
                bar = Progress("import", size, enabled=enabled, unit="bytes")
                target.apply_all(read_export(src, bar))
                bar.close()
    seconds = time.perf_counter() - started
    counts = target.counts
    if args.json:
        print(json.dumps({**counts, "checked_only": args.check, "seconds": round(seconds, 6)}))
    elif args.check:
        print(f"the export is valid (checked in {seconds:.2f} s); nothing was written")
    else:
        c = counts
        print(
            f"imported in {seconds:.2f} s: "
            f"profiles {c['profiles_created']:,} created, {c['profiles_kept']:,} existing; "
            f"numbers {c['numbers_added']:,} added, {c['numbers_kept']:,} existing; "
            f"opt-outs {c['opt_outs']:,} added; "
            f"mappings {c['mappings_written']:,} written, {c['mappings_kept']:,} kept "
            f"(the target's as recent), {c['mappings_expired']:,} expired since the export"
        )
    return 0
