# Generated from sticky/_async/redis/scan.py by .ci/unasync.py: edit the source, then run it.
"""Listing a profile's live mappings on Redis: HSCAN over its mapping hash.

Kept apart from the scripts on purpose: it reads the current layout (``meta`` for the
ttl and horizon, ``map`` with values ``"<last_used> <idx> <sender>"``) from Python with
plain commands, so it is the one place to change when that layout does. Liveness is
:func:`sticky.policy.is_live` at :func:`sticky.policy.judged_at`, the rules' Python side.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

from sticky.policy import is_live, judged_at
from sticky.store.base import LiveMapping
from sticky.store.redis.keys import ProfileKeys
from sticky.store.redis.pools import unknown_profile
from sticky.store.redis.runner import Runner
from sticky.store.redis.scripts import Op, text

__all__ = ["iter_mappings"]


def _page(
    run: Callable[[], Runner], keys: ProfileKeys, cursor: str, batch: int
) -> tuple[list[str | None], str, list[str]]:
    """``(ttl and horizon, next cursor, flat fields)``: 1 round trip (HMGET and HSCAN).

    ``run`` gives the store's current runner: a store closed during a scan raises.
    """
    ops: list[Op] = [
        (None, ("HMGET", keys.meta, "ttl", "horizon")),
        (None, ("HSCAN", keys.map, cursor, "COUNT", str(batch))),
    ]
    meta, (after, fields) = run().pipeline(ops)
    # redis-py parses HSCAN's reply into a dict; a raw client gives the flat list.
    flat = (
        [text(v) for pair in fields.items() for v in pair]
        if isinstance(fields, dict)
        else [text(v) for v in fields]
    )
    return [None if v is None else text(v) for v in meta], text(after), flat


def iter_mappings(
    run: Callable[[], Runner], keys: ProfileKeys, profile_id: str, now: float, batch: int
) -> Iterator[list[LiveMapping]]:
    """The profile's live mappings, about ``batch`` a round trip (see the module docstring).

    Raises UnknownProfile at once. HSCAN may return a field twice when the hash is
    resized during the scan, and each page is judged at the horizon of its own read.
    """
    first = _page(run, keys, "0", batch)
    if first[0][0] is None:
        raise unknown_profile(profile_id)
    return _pages(run, keys, profile_id, now, batch, first)


def _pages(
    run: Callable[[], Runner],
    keys: ProfileKeys,
    profile_id: str,
    now: float,
    batch: int,
    page: tuple[list[str | None], str, list[str]],
) -> Iterator[list[LiveMapping]]:
    while True:
        (ttl_s, horizon_s), cursor, flat = page
        if ttl_s is None:  # deleted during the scan
            raise unknown_profile(profile_id)
        ttl = float(ttl_s)
        at = judged_at(now, -math.inf if horizon_s is None else float(horizon_s))
        out: list[LiveMapping] = []
        for i in range(0, len(flat), 2):
            used, _, sender = flat[i + 1].split(" ", 2)
            last_used = float(used)
            if is_live(last_used, ttl, at):
                out.append((flat[i], sender, last_used, ttl))
        if out:
            yield out
        if cursor == "0":
            return
        page = _page(run, keys, cursor, batch)
