"""The Redis store: one shared world for engines in many processes and on many hosts.

:class:`RedisStore` adds the selects (begin, compare-and-set, batches), the look-ups and
overrides, and the housekeeping to the profiles and pools of :mod:`.pools`. Each of
these is one Lua script per atomic step; the rules they apply are one Lua helper each
in ``lua/common.lua``, as :mod:`sticky.policy` has one function each.

Times are passed to the scripts as ``repr(float)`` strings and stored as received, so
they round-trip exactly; Redis' own clock and key expiry are never used.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from sticky._async.redis import invariants, scan
from sticky._async.redis.pools import (
    NO_TIERS,
    AsyncRedisPools,
    Cached,
    not_in_pool,
    unknown_profile,
)
from sticky._async.redis.runner import AsyncClosedRunner
from sticky.errors import (
    IncompatibleStore,
    NoEligibleSender,
    OptedOut,
    PoolBusy,
    PoolExhausted,
    opted_out,
    shown,
)
from sticky.numbers import check_e164, is_e164
from sticky.policy import Load, reply_action, today
from sticky.settings import PoolSettings
from sticky.store.base import Decide, Draws, LiveMapping, Miss, count
from sticky.store.redis import codec
from sticky.store.redis.keys import unhex
from sticky.store.redis.scripts import LAYOUT, REASONS, TIERS, Op, Tag, call, text
from sticky.values import Keyword, Reason, ReplyAction, Selection

__all__ = ["AsyncRedisStore"]

_EVICT_CHUNK = 2_000
"""Dead mappings one evict_expired script removes before yielding the server."""
_EVICT_BUCKETS = 500
"""Buckets one evict_expired script cleans before yielding the server."""
_CHUNK = 256
"""Recipients per batch script: each script is one atomic step, kept short."""

_HIT, _MISS, _STORED, _START_OVER = Tag.HIT, Tag.MISS, Tag.STORED, Tag.START_OVER
_UNKNOWN, _OLD = Tag.UNKNOWN_PROFILE, Tag.OLD_LAYOUT
_CHOSEN, _NO_ELIGIBLE, _STALE, _SKIPPED = Tag.CHOSEN, Tag.NO_ELIGIBLE, Tag.STALE, Tag.SKIPPED
_OPTED_OUT = Tag.OPTED_OUT
_STICKY = Reason.STICKY
_f = codec.float_text
_new = tuple.__new__  # builds a Selection without its Python-level __new__


_STORING = frozenset(
    REASONS.index(r) for r in (Reason.NEW, Reason.EXPIRED, Reason.REASSIGNED, Reason.OVERFLOW)
)
"""The reason codes of a fresh choice that was stored (a mapping created or replaced)."""


def _select_stored(reply: Any) -> bool:  # noqa: ANN401 - a script's reply
    """Whether a select reply stored a mapping (then ``min_replicas`` waits)."""
    return bool(reply[0] == _CHOSEN and reply[2] in _STORING)


def _many_stored(reply: Any) -> bool:  # noqa: ANN401
    """Whether a select_many chunk stored a mapping."""
    return reply[0] in _RAN and any(c in _STORING for c in reply[5::4])


def _commit_stored(reply: Any) -> bool:  # noqa: ANN401
    """Whether a commit_select (or commit_many) reply stored a mapping."""
    return _STORED in reply[::2]


def _pinned(reply: Any) -> bool:  # noqa: ANN401
    return bool(reply[0] == Tag.OK)


_MOVES = frozenset({ReplyAction.MOVED.value, ReplyAction.MAPPED.value})
_KEYWORDS = {Keyword.OPT_OUT: "out", Keyword.OPT_IN: "in"}


def _replied(reply: Any) -> bool:  # noqa: ANN401
    """Whether a record_reply stored a mapping (moved or mapped)."""
    return bool(reply[0] == Tag.OK and reply[1] in _MOVES)


def _no_eligible(profile_id: str, to: str) -> NoEligibleSender:
    return NoEligibleSender(f"profile {profile_id!r} has no eligible sender for {to!r}")


_REFUSALS = frozenset({Tag.EXHAUSTED, Tag.BUSY})
_RAN = frozenset({Tag.OK, Tag.NO_ELIGIBLE, *_REFUSALS})
"""The tags of a select_many chunk that ran (up to a refusal, if any)."""


def _refusal(profile_id: str, to: str, reply: Sequence[str]) -> NoEligibleSender:
    """The PoolExhausted or PoolBusy of a refusal ``[tag, retry_at, sticky, max_queue]``.

    Worded as :func:`sticky.policy.plan` words it.
    """
    retry_at = float(reply[1])
    if reply[0] == Tag.EXHAUSTED:
        msg = (
            f"every eligible sender of profile {shown(profile_id)} is at its daily budget"
            f" of new recipients (for {shown(to)})"
        )
        return PoolExhausted(msg, retry_at)
    max_queue = float(reply[3])
    if reply[2]:
        msg = (
            f"sender {reply[2]} of {shown(to)} in profile {shown(profile_id)} has no slot"
            f" within max_queue={max_queue:g}s"
        )
    else:
        msg = (
            f"no sender of profile {shown(profile_id)} has a slot for {shown(to)}"
            f" within max_queue={max_queue:g}s"
        )
    return PoolBusy(msg, retry_at)


_BEGAN = frozenset({_MISS, Tag.CAPACITY})


def _guess(cached: Cached | None) -> tuple[str, str]:
    """A begin script's cached version and guess whether capacity is on at it."""
    if cached is None:
        return "", "1"
    return cached.version_text, "1" if cached.capacity else "0"


def _loads(reply: Sequence[str], at: int, n: int) -> dict[str, Load]:
    """The capacity states a reply carries at ``reply[at : at + n]`` (number, state pairs)."""
    return {reply[i]: codec.parse_load(reply[i + 1]) for i in range(at, at + n, 2)}


_NO_DAY = ("", "0", "0")


def _day(cached: Cached | None, now: float) -> tuple[str, str, str]:
    """A select's capacity arguments: the time zone, the day's ordinal, the next day's start.

    From the cached settings (UTC when nothing is cached); ``("", ...)`` when the cached
    version has capacity off, so that such a select computes no day. The script checks
    the zone against the profile's and answers STALE when it differs. O(1).
    """
    if cached is None:
        tz = "UTC"
    elif not cached.capacity:
        return _NO_DAY
    else:
        tz = cached.settings.timezone
    day, next_day = today(now, tz)
    return tz, str(day), repr(next_day)


class AsyncRedisStore(AsyncRedisPools):
    """A store on a Redis server: shared by every engine on it, every method atomic.

    Round trips: a select 1, a sticky hit or a fresh choice (the script chooses, from data
    computed in Python once per pool version, with a draw the engine passes);
    ``select_many`` 1 for any mix (one script per 256 recipients, in one pipeline);
    ``begin_select``/``commit_select`` and their batch forms 1 each; ``mapping``,
    ``recipients_of``, ``pin``, ``forget``, ``settings``, ``numbers``, ``replace_settings``,
    ``create_profile``, ``capacity_state``, ``set_drain``, ``opt_out``, ``opt_in``,
    ``is_opted_out``, ``opt_outs``, ``health``, ``record_reply``, ``record_delivery`` 1 (its
    verdict included; the owner key once more the first time); ``set_health``,
    ``set_limits``, ``delete_profile``, ``profiles``, ``counts`` 2; ``remove_number`` 3;
    ``add_number`` 3 (more when a rival add races for the same number); ``evict_expired`` 2
    plus one per 2,000 dead mappings of its largest profile. A select whose cached geomatch
    mode is stale, or the first fresh choice after a pool change (which stores that
    version's choice data), costs one more; so does a pool change that finds this store's
    cached pool stale; the first touch of a profile written by 0.1 migrates it (2 more).
    Server work: O(1) per select and look-up (O(log n) for sorted-set steps), O(k) for
    cascades over k mappings, O(p) for a settings change or a migration, O(n) for
    ``delete_profile`` and ``check_invariants``. A sticky hit writes at most one field (the
    mapping's ``last_used``, when it changes). With capacity on, a select is still 1 round
    trip (O(p) on the server: the plan reads every eligible number's state) and also writes
    its sender's capacity state; a cached time zone that is stale costs one more. Every
    select checks the recipient's opt-out first (one set look-up in its script).

    With ``min_replicas``, a call that stored a mapping (a select or commit of a new,
    expired or reassigned recipient, a batch that stored any, a pin) sends one ``WAIT``
    on its write's connection: one more round trip (on a cluster, one per node that
    stored). Hits, look-ups and the other operations never wait.

    Thread-safe (redis-py's connection pool). Connection errors and timeouts raise
    :class:`~sticky.StoreUnavailable` with the redis-py error chained.
    """

    # -- selection ------------------------------------------------------------------
    async def select_in_one_step(  # noqa: PLR0912 - the hot path, written out
        self,
        profile_id: str,
        to: str,
        now: float,
        decide: Decide,
        counts: list[int],
        segments: int = 1,
    ) -> Selection:
        """A whole select in one script: a sticky hit, or a fresh choice it stores.

        1 round trip, plus one ``WAIT`` with ``min_replicas`` when it stored a mapping.

        The script chooses with the next of ``decide.draws`` (the engine's), which is
        consumed only when a fresh choice used it; a ``decide`` without draws is called
        between a begin and a compare-and-set instead (2 round trips). One more when the
        cached geomatch mode or the stored choice data is stale. O(1) on the server.
        """
        if not is_e164(to):  # validated before a script may store it
            check_e164(to, "recipient")
        draws: Draws | None = getattr(decide, "draws", None)
        if draws is None:
            sel = await self._two_steps(profile_id, to, now, decide)
            with self._counts_lock:
                count(counts, sel, now)
            return sel
        keys = self._keys.of(profile_id).script
        now_s = _f(now)
        seg = str(segments)
        before: Op | None = None
        while True:
            cached = self._cache.get(profile_id)
            if cached is None:
                mode, fields = "", NO_TIERS
            else:
                mode, fields = cached.mode, cached.tier_fields(to)
            day, draw = _day(cached, now), repr(draws.peek(1)[0])
            # the arguments a script would not read are left out (see select.lua)
            if fields is not NO_TIERS:
                args: tuple[str, ...] = (to, now_s, draw, mode, *day, seg, *fields)
            elif day is not _NO_DAY:
                args = (to, now_s, draw, mode, *day, seg)
            else:
                args = (to, now_s, draw, mode, "")
            if before is None:
                reply = await self._run.eval(self._s_select, keys, args, _select_stored)
            else:
                reply = (
                    await self._run.pipeline(
                        [before, (self._s_select, call(keys, *args))], _select_stored
                    )
                )[1]
                before = None
            tag = reply[0]
            if tag == _HIT:
                at = now if len(reply) < 3 else float(reply[2])
                sel = _new(Selection, (profile_id, to, reply[1], _STICKY, None, at))
            elif tag == _CHOSEN:
                draws.consume(1)
                at = now if len(reply) < 5 else float(reply[4])
                sel = _new(
                    Selection,
                    (profile_id, to, reply[1], REASONS[reply[2]], TIERS[reply[3]], at),
                )
            else:
                before = await self._not_selected(profile_id, to, reply, keys)
                continue
            with self._counts_lock:
                count(counts, sel, now)
            return sel

    async def _not_selected(
        self, profile_id: str, to: str, reply: list[str], keys: Sequence[str]
    ) -> Op | None:
        """A select reply that is not an answer: raise its error, or cache a STALE's data.

        Returns what to run before the select runs again (or None).
        """
        tag = reply[0]
        if tag == _NO_ELIGIBLE:
            raise _no_eligible(profile_id, to)
        if tag in _REFUSALS:
            raise _refusal(profile_id, to, reply)
        if tag == _STALE:
            return self._stale(profile_id, reply, keys)
        if tag == _OPTED_OUT:
            raise opted_out(profile_id, to)
        await self._refused(profile_id, tag)
        return None

    def _stale(self, profile_id: str, reply: list[str], keys: Sequence[str]) -> Op | None:
        """Cache the data a STALE select reply carried; the store_choice to run first, if any.

        The data is computed again when the script asked for it, and also when the
        stored data's mode is not the one this installation computes for the current
        settings (``auto`` geomatch on hosts with and without the extra): the select
        would find it stale again.
        """
        old = self._cache.get(profile_id)
        current = self._remember(profile_id, reply, 2)
        if reply[1] != "1" and (old is None or old.version != current.version):
            return None
        return (self._s["store_choice"], call(keys, *current.choice_args()))

    async def _two_steps(self, profile_id: str, to: str, now: float, decide: Decide) -> Selection:
        """A select for a ``decide`` without draws: begin, decide, compare-and-set.

        Not counted: the caller counts the answer.
        """
        while True:
            began = await self.begin_select(profile_id, to, now, -1)
            if isinstance(began, Selection):
                return began
            if began.loads is not None:
                msg = "a select with capacity on needs the engine's decide (with its draws)"
                raise IncompatibleStore(msg)
            sel = decide(profile_id, to, began)
            if sel.reason is Reason.POOL:
                return sel
            won = await self.commit_select(profile_id, to, sel.from_number, began, now)
            if won is True:
                return sel
            if won is not None:
                return won

    async def select_many_in_one_step(
        self,
        profile_id: str,
        recipients: Sequence[str],
        now: float,
        decide: Decide,
        segments: int = 1,
    ) -> tuple[list[Selection], NoEligibleSender | None]:
        """:meth:`select_in_one_step` for each distinct recipient, in order.

        1 round trip, plus one ``WAIT`` with ``min_replicas`` when it stored a mapping.
        One script per chunk of 256 recipients (each chunk atomic), all in one pipeline;
        fresh choices use ``decide.draws`` in order, one each (a chunk takes its first
        draw from where the previous one left off, on the server). A stale cache costs
        one more round trip, from the first chunk that found it. O(1) each on the server.
        """
        for to in recipients:
            if not is_e164(to):
                check_e164(to, "recipient")
        draws: Draws | None = getattr(decide, "draws", None)
        if draws is None:
            return await self._many_in_two_steps(profile_id, recipients, now, decide)
        out: list[Selection] = []
        keys = self._keys.of(profile_id).script
        chunks = [recipients[i : i + _CHUNK] for i in range(0, len(recipients), _CHUNK)]
        ahead = [repr(d) for d in draws.peek(len(recipients))]
        used = start = 0
        before: Op | None = None
        while start < len(chunks):
            ops = self._chunk_ops(
                profile_id, chunks, start, ahead[used:], keys, now, str(segments)
            )
            if before is not None:
                replies = (await self._run.pipeline([before, *ops], _many_stored))[1:]
                before = None
            else:
                replies = await self._run.pipeline(ops, _many_stored)
            for chunk, reply in zip(chunks[start:], replies, strict=True):
                tag = reply[0]
                if tag not in _RAN:
                    before = await self._not_run(profile_id, reply, keys)
                    break
                out += self._chunk_selections(profile_id, chunk, reply, now)
                used += reply[1]
                if tag != Tag.OK:
                    draws.consume(used)
                    to = chunk[(len(reply) - 5) // 4]
                    if tag == _NO_ELIGIBLE:
                        return out, _no_eligible(profile_id, to)
                    return out, _refusal(profile_id, to, [tag, *reply[2:5]])
                start += 1
        draws.consume(used)
        return out, None

    async def _not_run(self, profile_id: str, reply: list[str], keys: Sequence[str]) -> Op | None:
        """A chunk that ran nothing: what to run before it runs again (see :meth:`_stale`)."""
        tag = reply[0]
        if tag == _STALE:
            return self._stale(profile_id, reply, keys)
        if tag != _SKIPPED:
            await self._refused(profile_id, tag)
        return None

    async def _many_in_two_steps(
        self, profile_id: str, recipients: Sequence[str], now: float, decide: Decide
    ) -> tuple[list[Selection], NoEligibleSender | None]:
        """select_many for a ``decide`` without draws: two steps per recipient."""
        out: list[Selection] = []
        for to in recipients:
            try:
                out.append(await self._two_steps(profile_id, to, now, decide))
            except NoEligibleSender as exc:
                return out, exc
            except OptedOut:
                continue
        return out, None

    @staticmethod
    def _chunk_selections(
        profile_id: str, chunk: Sequence[str], reply: list[Any], now: float
    ) -> list[Selection]:
        """The selections a select_many reply carries: reason, sender, tier, send_at each.

        An opted-out recipient's reason code is 0: it is skipped.
        """
        return [
            _new(
                Selection,
                (
                    profile_id,
                    to,
                    reply[i + 1],
                    REASONS[reply[i]],
                    TIERS[reply[i + 2]],
                    float(reply[i + 3]) if reply[i + 3] else now,
                ),
            )
            for to, i in zip(chunk, range(5, len(reply), 4), strict=False)
            if reply[i]
        ]

    def _chunk_ops(
        self,
        profile_id: str,
        chunks: list[Sequence[str]],
        start: int,
        ahead: list[str],
        keys: Sequence[str],
        now: float,
        segments: str,
    ) -> list[Op]:
        """The select_many scripts of chunks ``start:``, chained by a token on the server."""
        cached = self._cache.get(profile_id)
        mode = "" if cached is None else cached.mode
        day = _day(cached, now)
        now_s = _f(now)
        token = secrets.token_hex(8)
        ops: list[Op] = []
        span = 0
        for j in range(start, len(chunks)):
            chunk = chunks[j]
            span += len(chunk)
            draws = ahead[:span]  # the most this chunk can need, from the pipeline's first
            head = [
                now_s,
                mode,
                token,
                "0" if j == start else "",
                "1" if j == len(chunks) - 1 else "0",
            ]
            if cached is None or mode == "off":
                args = [*head, "1", str(len(draws)), *day, segments, *draws, *chunk]
            else:
                args = [*head, "5", str(len(draws)), *day, segments, *draws]
                for to in chunk:
                    args += (to, *cached.tier_fields(to))
            ops.append((self._s_many, call(keys, *args)))
        return ops

    async def begin_select(
        self, profile_id: str, to: str, now: float, known_version: int
    ) -> Selection | Miss:
        """A sticky hit (refreshed) or what a fresh choice needs. 1 round trip, O(1).

        Raises OptedOut for an opted-out ``to`` (nothing written).

        With capacity on, never a hit: a Miss with the loads and the live eligible
        sender, O(p), nothing written (one more round trip when this store guessed
        wrong whether capacity is on, its cache being stale).
        """
        while True:
            cached = self._cache.get(profile_id)
            reply = await self._run.eval(
                self._s_begin,
                self._keys.of(profile_id).script,
                (to, _f(now), *_guess(cached)),
            )
            tag = reply[0]
            if tag == _HIT:
                return Selection(profile_id, to, reply[1], _STICKY, None, now)
            if tag == _OPTED_OUT:
                raise opted_out(profile_id, to)
            if tag not in _BEGAN:
                await self._refused(profile_id, tag)
                continue
            n = int(reply[5])
            current = self._current(profile_id, reply, 6 + n, cached)
            if tag == Tag.CAPACITY and not current.capacity:
                continue  # assumed on while not known: ask again, now knowing
            loads = _loads(reply, 6, n) if tag == Tag.CAPACITY else None
            return self._miss(reply, 0, current, known_version, now, loads)

    @staticmethod
    def _miss(
        reply: Sequence[str],
        at: int,
        current: Cached,
        known_version: int,
        now: float,
        loads: dict[str, Load] | None,
    ) -> Miss:
        """The Miss of one recipient's five reply entries at ``reply[at:]``."""
        previous = (reply[at + 2], float(reply[at + 3])) if reply[at + 1] == "1" else None
        pool = None if known_version == current.version else current.pool
        live = reply[at + 4]
        if loads is None:
            return Miss(current.settings, current.version, pool, previous, live == "1", now)
        sticky = reply[at + 2] if live == "s" else None
        return Miss(
            current.settings, current.version, pool, previous, live == "1", now, loads, sticky
        )

    async def _refused(self, profile_id: str, tag: str) -> None:
        """A select script ran nothing: raise for an unknown profile, or migrate one."""
        if tag == _UNKNOWN:
            raise unknown_profile(profile_id)
        assert tag == _OLD, f"unexpected reply {tag!r}"
        await self._migrate(profile_id)

    async def commit_select(
        self,
        profile_id: str,
        to: str,
        chosen: str,
        miss: Miss,
        now: float,
    ) -> Selection | Literal[True] | None:
        """Compare-and-set of a fresh choice. O(log n).

        1 round trip, plus one ``WAIT`` with ``min_replicas`` when it stored the choice.
        Raises OptedOut for a ``to`` opted out since the read (nothing stored).
        """
        keys = self._keys.of(profile_id).script
        args = (*self._commit_args(to, chosen, miss), _f(now))
        reply = await self._run.eval(self._s_commit, keys, args, _commit_stored)
        if reply[0] in {_UNKNOWN, _OLD}:
            await self._refused(profile_id, reply[0])
            reply = await self._run.eval(self._s_commit, keys, args, _commit_stored)
        if reply[0] == _OPTED_OUT:
            raise opted_out(profile_id, to)
        return self._committed(profile_id, to, reply, now)

    @staticmethod
    def _commit_args(to: str, chosen: str, miss: Miss) -> tuple[str, ...]:
        """A commit's arguments before ``now``: to, chosen, previous mapping, live, version."""
        previous = miss.previous
        if previous is None:
            has, sender, last_used = "0", "", ""
        else:
            has, sender, last_used = "1", previous[0], _f(previous[1])
        live = "1" if miss.live else "0"
        return (to, chosen, has, sender, last_used, live, str(miss.version))

    @staticmethod
    def _committed(
        profile_id: str, to: str, reply: list[str], now: float
    ) -> Selection | Literal[True] | None:
        tag = reply[0]
        if tag == _STORED:
            return True
        if tag == _HIT:
            return Selection(profile_id, to, reply[1], _STICKY, None, now)
        if tag in {_START_OVER, _OPTED_OUT}:  # opted out since the read: its select raises
            return None
        if tag == _UNKNOWN:
            raise unknown_profile(profile_id)
        msg = (
            f"profile {shown(profile_id)}: the sender chosen for {shown(to)} is not eligible at "
            "the pool version it was chosen at; was the Redis data replaced under a running "
            "engine?"
        )
        raise IncompatibleStore(msg)

    async def _batch(
        self, profile_id: str, script_name: str, keys: Sequence[str], calls: list[list[str]]
    ) -> list[list[str]]:
        """One script per chunk, all in one pipeline; chunks that met a 0.1 profile run again."""
        script = self._s[script_name]
        wrote = _commit_stored if script_name == "commit_many" else None
        replies = await self._run.pipeline([(script, call(keys, *args)) for args in calls], wrote)
        refused = [i for i, r in enumerate(replies) if r[0] in {_UNKNOWN, _OLD}]
        if refused:
            await self._refused(profile_id, replies[refused[0]][0])
            again = await self._run.pipeline(
                [(script, call(keys, *calls[i])) for i in refused], wrote
            )
            for i, reply in zip(refused, again, strict=True):
                if reply[0] == _UNKNOWN:
                    raise unknown_profile(profile_id)
                replies[i] = reply
        return replies

    async def begin_select_many(
        self, profile_id: str, recipients: Sequence[str], now: float, known_version: int
    ) -> list[Selection | Miss | None]:
        """:meth:`begin_select` for each recipient. 1 round trip, O(1) each on the server.

        One script per chunk of 256 recipients (each chunk atomic), all in one pipeline.
        With capacity on, no hits: Misses with the loads (as :meth:`begin_select`).
        None for an opted-out recipient.
        """
        while True:
            cached = self._cache.get(profile_id)
            head = [_f(now), *_guess(cached)]
            chunks = [recipients[i : i + _CHUNK] for i in range(0, len(recipients), _CHUNK)]
            keys = self._keys.of(profile_id).script
            replies = await self._batch(
                profile_id, "begin_many", keys, [[*head, *c] for c in chunks]
            )
            out = self._began_many(profile_id, chunks, replies, cached, known_version, now)
            if out is not None:
                return out

    def _began_many(
        self,
        profile_id: str,
        chunks: list[Sequence[str]],
        replies: list[list[str]],
        cached: Cached | None,
        known_version: int,
        now: float,
    ) -> list[Selection | Miss | None] | None:
        """The answers of begin_many's chunks; None: capacity was assumed on wrongly."""
        out: list[Selection | Miss | None] = []
        for chunk, reply in zip(chunks, replies, strict=True):
            # every chunk was given `cached`'s version: a reply without data refers to it
            at = 5 * len(chunk)
            n = int(reply[at])
            current: Cached | None = None
            loads: dict[str, Load] | None = None
            for i, to in enumerate(chunk):
                tag = reply[5 * i]
                if tag == _HIT:
                    out.append(Selection(profile_id, to, reply[5 * i + 1], _STICKY, None, now))
                    continue
                if tag == _OPTED_OUT:
                    out.append(None)
                    continue
                if current is None:
                    current = self._current(profile_id, reply, at + 1 + n, cached)
                    if tag == Tag.CAPACITY:
                        if not current.capacity:
                            return None
                        loads = _loads(reply, at + 1, n)
                out.append(self._miss(reply, 5 * i, current, known_version, now, loads))
        return out

    async def commit_select_many(
        self,
        profile_id: str,
        entries: Sequence[tuple[str, str, Miss]],
        now: float,
    ) -> list[Selection | Literal[True] | None]:
        """:meth:`commit_select` for each ``(to, chosen, miss)``. O(log n) each.

        1 round trip, plus one ``WAIT`` with ``min_replicas`` when it stored any.

        One script per chunk of 256 entries (each chunk atomic), all in one pipeline.
        None for a recipient opted out since the read.
        """
        chunks = [entries[i : i + _CHUNK] for i in range(0, len(entries), _CHUNK)]
        calls = []
        for chunk in chunks:
            args = [_f(now)]
            for to, chosen, miss in chunk:
                args += self._commit_args(to, chosen, miss)
            calls.append(args)
        keys = self._keys.of(profile_id).script
        out: list[Selection | Literal[True] | None] = []
        for chunk, reply in zip(
            chunks, await self._batch(profile_id, "commit_many", keys, calls), strict=True
        ):
            out += [
                self._committed(profile_id, entry[0], reply[2 * i : 2 * i + 2], now)
                for i, entry in enumerate(chunk)
            ]
        return out

    # -- inspection and override ----------------------------------------------------
    async def mapping(
        self, profile_id: str, to: str, now: float
    ) -> tuple[str, float, float] | None:
        """The live mapping of ``to`` as ``(from_number, last_used, ttl)``. 1 round trip."""
        keys = self._keys.of(profile_id).script
        reply = await self._eval_current(profile_id, self._s["mapping"], keys, (to, _f(now)))
        if reply[0] == Tag.NO_MAPPING:
            return None
        return reply[1], float(reply[2]), float(reply[3])

    async def recipients_of(self, profile_id: str, number: str, now: float) -> list[str]:
        """Recipients with a live mapping to ``number``, sorted. 1 round trip.

        O(k log k) for its k mappings, plus the buckets that hold them (each read whole).
        """
        keys = self._keys.of(profile_id).script
        args = (number, _f(now))
        reply = await self._eval_current(profile_id, self._s["recipients_of"], keys, args)
        return sorted(reply[1:])

    async def iter_mappings(
        self, profile_id: str, now: float, batch: int
    ) -> AsyncIterator[list[LiveMapping]]:
        """The live mappings, about ``batch`` a round trip (its buckets; :mod:`.scan`)."""
        keys = self._keys.of(profile_id)
        pages = await scan.iter_mappings(lambda: self._run, keys, profile_id, now, batch)
        if pages is None:  # an older layout
            await self._migrate(profile_id)
            pages = await scan.iter_mappings(lambda: self._run, keys, profile_id, now, batch)
            assert pages is not None, "migrated, yet not of this layout"
        return pages

    async def pin(self, profile_id: str, to: str, number: str, now: float) -> PoolSettings:
        """Map ``to`` to ``number`` as used at ``now``, replacing any mapping. 1 round trip.

        With capacity on it counts a new recipient of ``number`` in the same script. One
        more round trip when the cached pool is stale for that (as a select's).
        """
        keys = self._keys.of(profile_id).script
        before: Op | None = None
        while True:
            cached = self._cache.get(profile_id)
            tz, day, _ = _day(cached, now)
            args = (to, number, _f(now), "" if cached is None else cached.version_text, tz, day)
            if before is None:
                reply = await self._run.eval(self._s["pin"], keys, args, _pinned)
            else:
                op: Op = (self._s["pin"], call(keys, *args))
                reply = (await self._run.pipeline([before, op], _pinned))[1]
                before = None
            if reply[0] == _UNKNOWN:
                raise unknown_profile(profile_id)
            if reply[0] == _OLD:
                await self._migrate(profile_id)
                continue
            if reply[0] == Tag.NOT_IN_POOL:
                raise not_in_pool(number, profile_id)
            if reply[0] == _STALE:
                before = self._stale(profile_id, reply, keys)
                continue
            return self._current(profile_id, reply, 1, cached).settings

    async def forget(self, profile_id: str, to: str, now: float) -> bool:
        """Delete the mapping of ``to``; return whether it was live. 1 round trip.

        Never a ``WAIT``: a delete lost at a failover leaves the old mapping, not a second
        sender.
        """
        keys = self._keys.of(profile_id).script
        reply = await self._eval_current(profile_id, self._s["forget"], keys, (to, _f(now)))
        return bool(reply[1] == "1")

    # -- opt-outs and replies -------------------------------------------------------
    async def opt_out(self, profile_id: str, to: str, now: float) -> bool:
        """Opt ``to`` out and delete its mapping in one script; return whether it was in.

        1 round trip, O(log n). The deletion is :meth:`forget`'s (it moves the horizon).
        """
        keys = self._keys.of(profile_id).script
        reply = await self._eval_current(profile_id, self._s["opt_out"], keys, (to, _f(now)))
        return bool(reply[1] == "1")

    async def opt_in(self, profile_id: str, to: str) -> bool:
        """End ``to``'s opt-out; return whether it was opted out. 1 round trip, O(1)."""
        reply = await self._run.eval(self._s["opt_in"], self._keys.of(profile_id).script, (to,))
        if reply[0] == _UNKNOWN:
            raise unknown_profile(profile_id)
        return bool(reply[1] == "1")

    async def is_opted_out(self, profile_id: str, to: str) -> bool:
        """Whether ``to`` is opted out. 1 round trip, O(1)."""
        reply = await self._run.eval(self._s["opted_out"], self._keys.of(profile_id).script, (to,))
        if reply[0] == _UNKNOWN:
            raise unknown_profile(profile_id)
        return bool(reply[1] == "1")

    async def opt_outs(self, profile_id: str) -> list[str]:
        """Every opted-out recipient, sorted. 1 round trip, O(k log k)."""
        reply = await self._run.eval(self._s["opted_out"], self._keys.of(profile_id).script, ())
        if reply[0] == _UNKNOWN:
            raise unknown_profile(profile_id)
        return sorted(reply[1:])

    async def record_reply(
        self, profile_id: str, to: str, number: str, now: float, keyword: Keyword | None
    ) -> ReplyAction:
        """A reply from ``to`` to ``number``: its keyword, then its mapping, in one script.

        :func:`sticky.policy.reply_action` decides, in Python, from the pool cached at
        its current version: its answer for each case of the live mapping (to
        ``number``, to another, none) goes to the script, which compares-and-sets on
        that version, finds the case (liveness at ``judged_at(now, horizon)``) and
        applies the answer (a ``moved`` or ``mapped`` reply stores ``(number, now)`` as
        :meth:`pin` does, counting a new recipient with capacity on). 1 round trip (an
        opt-out keyword needs no pool); one more when the cached pool is stale, and one
        more the first time a profile's choice data is needed for capacity; plus one
        ``WAIT`` with ``min_replicas`` when it stored a mapping. O(log n) on the server.
        """
        if not is_e164(to):  # validated before a script may store it
            check_e164(to, "recipient")
        kw = _KEYWORDS.get(keyword, "") if keyword is not None else ""
        keys = self._keys.of(profile_id).script
        before: Op | None = None
        while True:
            cached = self._cache.get(profile_id)
            if cached is None:  # the reply brings the pool
                version, acts = "", ["", "", ""]
                tz, day = "", "0"
            else:
                n, settings = cached.by_number.get(number), cached.settings
                version = cached.version_text
                acts = [reply_action(n, settings, c, now).value for c in (number, "", None)]
                tz, day, _ = _day(cached, now)
            args = (to, number, _f(now), kw, version, *acts, tz, day)
            if before is None:
                reply = await self._run.eval(self._s["record_reply"], keys, args, _replied)
            else:
                op: Op = (self._s["record_reply"], call(keys, *args))
                reply = (await self._run.pipeline([before, op], _replied))[1]
                before = None
            tag = reply[0]
            if tag == Tag.OK:
                return ReplyAction(reply[1])
            if tag == _OPTED_OUT:
                return ReplyAction.OPTED_OUT
            if tag == _UNKNOWN:
                raise unknown_profile(profile_id)
            if tag == _OLD:
                await self._migrate(profile_id)
                continue
            assert tag == _STALE, f"unexpected reply {tag!r}"
            before = self._stale(profile_id, reply, keys)

    # -- housekeeping ---------------------------------------------------------------
    async def evict_expired(self, now: float) -> int:
        """Remove every dead mapping; return how many. O(k log n) for k dead.

        One pipeline over every profile, repeated while a profile has more than a chunk
        of dead mappings: each script is atomic and bounded, so Redis keeps serving.
        """
        hexes = list(await self._run.command("SMEMBERS", self._keys.profiles))
        script = self._s["evict"]
        args = (_f(now), str(_EVICT_CHUNK), str(_EVICT_BUCKETS))
        total = 0
        while hexes:
            replies = await self._run.pipeline(
                [(script, call(self._keys.of_hex(h).script, *args)) for h in hexes]
            )
            more = []
            for h, reply in zip(hexes, replies, strict=True):
                if reply[0] == Tag.OK:
                    total += int(reply[1])
                    if reply[2] == 1:
                        more.append(h)
                elif reply[0] == _OLD:  # an older layout: migrated, then evicted again
                    await self._migrate(unhex(h))
                    more.append(h)
            hexes = more
        return total

    async def counts(self) -> tuple[int, int]:
        """Stored mappings (live or dead), and dead ones evicted so far. 2 round trips, O(P)."""
        hexes = list(await self._run.command("SMEMBERS", self._keys.profiles))
        ops: list[Op] = [(None, ("GET", self._keys.evicted))]
        for h in hexes:
            k = self._keys.of_hex(h)
            # a profile not yet migrated to this layout counts its layout 2 table
            ops += [(None, ("HMGET", k.meta, "n", "evicted", "layout")), (None, ("HLEN", k.map))]
        results = await self._run.pipeline(ops)
        stored, evicted = 0, int(results[0] or 0)
        for (n, dead, layout), old in zip(results[1::2], results[2::2], strict=True):
            stored += int(n or 0) if text(layout or "") == LAYOUT else int(old)
            evicted += int(dead or 0)
        return stored, evicted

    async def check_invariants(self, *, allow_leftovers: bool = False) -> None:
        """Assert the Redis data is consistent. Reads everything: O(keys), for tests.

        Checks, per profile: its settings fields agree with its settings; every pool
        entry is :func:`sticky.store.redis.codec.entry` under them (its flags
        :func:`sticky.policy.may_keep` and :func:`sticky.policy.is_eligible`; an entry
        written before drains has one flag for both, and a profile written by 0.1 and
        not yet touched has none); delivery windows only for pooled numbers, each
        parseable, with its token, at most 24 buckets; every mapping's
        sender is in its pool; the reverse index and the expiry index agree with the
        mappings (each mapping has an index entry under its index key, which is at most
        its last use; queue keys never decrease); capacity state only for pooled
        numbers, each parseable, and meta's capacity flag as its choice data says; its
        numbers' owner keys name it. And:
        the profile set lists exactly the profiles. With ``allow_leftovers``, what a
        crash between two steps may leave (stale owner keys, pending claims, ids of
        deleted profiles in the profile set) is allowed, as the store treats it as free.
        """
        await invariants.check(self._run, self._keys, allow_leftovers=allow_leftovers)

    async def close(self) -> None:
        """Close the client if this store created it (:meth:`from_url`). Idempotent.

        Every later call raises StoreUnavailable, whoever owns the client.
        """
        self._run = AsyncClosedRunner()
        self._cache.clear()
        if self._owns_client:
            self._owns_client = False
            # async: begin
            await self._client.aclose()
            # async: end
            # sync: self._client.close()

    # -- bulk import ----------------------------------------------------------------
    async def import_mappings(
        self, profile_id: str, entries: Sequence[tuple[str, str, float]], now: float
    ) -> int:
        """Store imported mappings; return how many were written. 1 round trip.

        See :meth:`sticky.store.base.BulkImportStore.import_mappings`. One script per
        chunk of 256 entries (each chunk atomic), all in one pipeline; each chunk checks
        every sender of the call first, so a sender not in the pool writes nothing
        (unless the pool changes between two chunks). O(1) an entry on the server
        (O(log n) for an index key that arrives out of order).
        """
        if not entries:
            return 0
        for to, _, _ in entries:  # validated before a script may store it
            if not is_e164(to):
                check_e164(to, "recipient")
        senders = sorted({sender for _, sender, _ in entries})
        head = [_f(now), str(len(senders)), *senders]
        calls = []
        for start in range(0, len(entries), _CHUNK):
            args = list(head)
            for to, sender, last_used in entries[start : start + _CHUNK]:
                args += (to, sender, _f(last_used))
            calls.append(args)
        keys = self._keys.of(profile_id).script
        script = self._s["import_mappings"]
        replies = await self._run.pipeline([(script, call(keys, *a)) for a in calls], _imported)
        if replies[0][0] == _OLD:  # a profile written by 0.1: no chunk ran
            await self._migrate(profile_id)
            replies = await self._run.pipeline(
                [(script, call(keys, *a)) for a in calls], _imported
            )
        written = 0
        for reply in replies:
            tag = reply[0]
            if tag == _UNKNOWN:
                raise unknown_profile(profile_id)
            if tag == Tag.NOT_IN_POOL:
                raise not_in_pool(reply[1], profile_id)
            assert tag == Tag.OK, f"unexpected reply {tag!r}"
            written += int(reply[1])
        return written


def _imported(reply: Any) -> bool:  # noqa: ANN401 - a script's reply
    """Whether an import chunk stored a mapping (then ``min_replicas`` waits)."""
    return bool(reply[0] == Tag.OK and int(reply[1]) > 0)
