"""Listing a profile's live mappings on Redis: its buckets, a page at a time.

Kept apart from the scripts on purpose: it reads the current layout (``meta`` for the
ttl, horizon and bucket count, ``ids`` for the sender ids, buckets ``map:<b>`` with
values ``"<sid> <last_used>"``) from Python with plain commands, so it is the one place
to change when that layout does. Liveness is :func:`sticky.policy.is_live` at
:func:`sticky.policy.judged_at`, the rules' Python side.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from typing import Any

from sticky._async.redis.pools import unknown_profile
from sticky._async.redis.runner import AsyncRunner
from sticky.policy import is_live, judged_at
from sticky.store.base import LiveMapping
from sticky.store.redis.keys import ProfileKeys
from sticky.store.redis.scripts import BUCKET_LOAD, LAYOUT, Op, text

__all__ = ["iter_mappings"]

_Page = tuple[list[str | None], dict[str, str], list[list[str]]]


def _flat(reply: Any) -> list[str]:  # noqa: ANN401 - a command's reply
    """A hash's fields and values, flat: redis-py parses HGETALL into a dict."""
    if isinstance(reply, dict):
        return [text(v) for pair in reply.items() for v in pair]
    return [text(v) for v in reply]


async def _page(
    run: Callable[[], AsyncRunner], keys: ProfileKeys, start: int, count: int
) -> _Page:
    """The meta, sender names and flat buckets ``start`` to ``start + count - 1``: 1 round trip.

    The meta is ttl, horizon, bucket count and layout; names map sender ids to numbers.

    ``run`` gives the store's current runner: a store closed during a scan raises.
    """
    # ids last: a sender id a bucket names was given before that read, so a missing
    # one is a number removed since (its mappings with it)
    ops: list[Op] = [
        (None, ("HMGET", keys.meta, "ttl", "horizon", "nb", "layout")),
        *((None, ("HGETALL", keys.bucket(b))) for b in range(start, start + count)),
        (None, ("HGETALL", keys.ids)),
    ]
    meta, *buckets, ids = await run().pipeline(ops)
    flat_ids = _flat(ids)
    pairs = zip(flat_ids[::2], flat_ids[1::2], strict=True)
    names = {f[1:]: v for f, v in pairs if f[:1] == "#" and len(f) > 1}  # '#<sid>' -> number
    return [None if v is None else text(v) for v in meta], names, [_flat(b) for b in buckets]


async def iter_mappings(
    run: Callable[[], AsyncRunner], keys: ProfileKeys, profile_id: str, now: float, batch: int
) -> AsyncIterator[list[LiveMapping]] | None:
    """The profile's live mappings, about ``batch`` a round trip (see the module docstring).

    None when the profile is of an older layout: migrate it, then ask again. Raises
    UnknownProfile at once. A bucket that splits during the scan may give a mapping
    twice, never none, and each page is judged at the horizon of its own read.
    """
    count = max(1, batch // BUCKET_LOAD)
    first = await _page(run, keys, 0, count)
    if first[0][0] is None:
        raise unknown_profile(profile_id)
    if first[0][3] != LAYOUT:
        return None
    return _pages(run, keys, profile_id, now, count, first)


async def _pages(
    run: Callable[[], AsyncRunner],
    keys: ProfileKeys,
    profile_id: str,
    now: float,
    count: int,
    page: _Page,
) -> AsyncIterator[list[LiveMapping]]:
    start = 0
    while True:
        (ttl_s, horizon_s, nb_s, _), names, buckets = page
        if ttl_s is None:  # deleted during the scan
            raise unknown_profile(profile_id)
        ttl = float(ttl_s)
        at = judged_at(now, -math.inf if horizon_s is None else float(horizon_s))
        out: list[LiveMapping] = []
        for flat in buckets:
            for i in range(0, len(flat), 2):
                sid, used = flat[i + 1].split(" ", 1)
                last_used = float(used)
                sender = names.get(sid)
                if sender is not None and is_live(last_used, ttl, at):
                    out.append((flat[i], sender, last_used, ttl))
        if out:
            yield out
        start += count
        if start >= int(nb_s or "1"):  # the table's size as of this page's read
            return
        page = await _page(run, keys, start, count)
