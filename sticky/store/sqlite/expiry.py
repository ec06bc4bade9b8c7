"""The SQLite store's writes that can evict: storing a mapping, the step, the sweep.

The expiry index is ``mappings_by_sender (profile, sender, idx)``, the cascade index
itself, read per sender: ``idx`` is a lower bound of a mapping's ``last_used`` (the time
it was stored, or re-indexed), so a mapping whose ``idx`` is not due
(``idx > dead_up_to(ttl, at)``) is live, and one whose ``idx`` is due is dead unless it
was used since. A hit does not touch the index; a due mapping found used since is
re-indexed, at most once per ttl, which its hits pay for. A new mapping therefore writes
two B-trees, its row and one index entry, at the end of its sender's range.

Every function runs inside the caller's write transaction; liveness and the horizon
are :mod:`sticky.policy`'s.
"""

from __future__ import annotations

import math
import sqlite3

from sticky.policy import STEP_EVICTIONS, STEP_LOOKS, dead_up_to, is_live, judge, judged_at
from sticky.values import Reason

__all__ = [
    "HORIZON_SLACK",
    "evict_all",
    "horizon",
    "is_live_at_horizon",
    "settle",
    "store_mapping",
]

HORIZON_SLACK = 1.0
"""How far (seconds) the newest index key may run ahead of the stored ``horizon`` column.

The horizon is exactly ``max(column, newest idx)``: a new mapping's index key is its
``now``, so a write that stores a mapping moves the horizon without writing the
profile's row, unless ``now`` is a second past the column (then it records ``now``).
So the column is a lower bound ``C`` and the horizon is below ``C + HORIZON_SLACK``: a
liveness that is the same at both bounds needs nothing more, and only a mapping that
expires within that second of the column reads the exact horizon (one seek per sender).
"""

_EXPIRED = Reason.EXPIRED
# The newest index key of the profile: one seek at the end of each sender's range.
_TOP = (
    "SELECT max((SELECT max(idx) FROM mappings INDEXED BY mappings_by_sender"
    " WHERE profile = ?1 AND sender = n.sid)) FROM numbers AS n WHERE n.profile = ?1"
)

_PUT = (
    "INSERT OR REPLACE INTO mappings (profile, recipient, sender, last_used, idx)"
    " VALUES (?, ?, ?, ?, ?)"
)
_DELETE = "DELETE FROM mappings WHERE profile = ? AND recipient = ?"
_REINDEX = "UPDATE mappings SET idx = ? WHERE profile = ? AND recipient = ?"
_RECORD = "UPDATE profiles SET horizon = ? WHERE key = ?"
_RECORD_EVICTED = "UPDATE profiles SET horizon = ?, evicted = evicted + ? WHERE key = ?"
# The first entries of one sender's range, in index order: the amortised step's look
# (the due ones are a prefix; the first that is not due bounds the rest). INDEXED BY:
# without statistics the planner might scan the profile's primary-key range instead.
_FIRST = (
    "SELECT recipient, last_used, idx FROM mappings INDEXED BY mappings_by_sender"
    " WHERE profile = ? AND sender = ? ORDER BY idx LIMIT ?"
)
# Every sender's due range: what a sweep decides about.
_DUE_ALL = (
    "SELECT m.recipient, m.last_used FROM numbers AS n"
    " JOIN mappings AS m INDEXED BY mappings_by_sender"
    " ON m.profile = n.profile AND m.sender = n.sid AND m.idx <= ?2"
    " WHERE n.profile = ?1"
)


def horizon(cur: sqlite3.Cursor, key: int, stored: float) -> float:
    """The profile's horizon, exactly: ``max(stored, newest index key)``. O(p log n).

    ``stored`` is the ``horizon`` column (-inf when NULL). Every mapping's sender is in
    the pool, so one seek at the end of each pooled sender's range finds the newest key.
    """
    top = cur.execute(_TOP, (key,)).fetchone()[0]
    return stored if top is None or top <= stored else float(top)


def is_live_at_horizon(
    cur: sqlite3.Cursor, key: int, last_used: float, ttl: float, now: float, stored: float
) -> bool:
    """Whether a mapping is live at ``judged_at(now, horizon)``. O(1), or O(p log n).

    Judged at both bounds of the horizon first (``stored`` and ``stored +
    HORIZON_SLACK``); only when they disagree is the exact horizon read.
    """
    if is_live(last_used, ttl, judged_at(now, stored + HORIZON_SLACK)):
        return True
    if not is_live(last_used, ttl, judged_at(now, stored)):
        return False
    return is_live(last_used, ttl, judged_at(now, horizon(cur, key, stored)))


def settle(
    cur: sqlite3.Cursor,
    key: int,
    last_used: float,
    ttl: float,
    now: float,
    stored: float,
    eligible: bool,  # noqa: FBT001 - judge's own argument
) -> Reason:
    """:func:`~sticky.policy.judge` at the exact horizon, for a mapping dead at its top.

    The caller judged at the horizon's upper bound ``stored + HORIZON_SLACK`` first and
    found it dead there. Dead at the lower bound too: dead. Else the exact horizon
    decides (O(p log n)).
    """
    if judge(last_used, ttl, now, stored, eligible) is _EXPIRED:
        return _EXPIRED
    return judge(last_used, ttl, now, horizon(cur, key, stored), eligible)


def _reindexed(last_used: float, at: float) -> float:
    """A live mapping's new index key: a lower bound of its last use and of ``at``.

    Its last use, unless hits ran ahead of the horizon: so no key is ever after the
    horizon of the write that made it (``check_invariants`` asserts it).
    """
    return min(at, last_used)


def _step(cur: sqlite3.Cursor, key: int, sender: int, ttl: float, at: float) -> tuple[int, float]:
    """The amortised step on ``sender``'s due entries: ``(removed, oldest)``.

    Looks at up to STEP_LOOKS entries due at ``at``, in index order, deletes the dead
    ones (at most STEP_EVICTIONS, then it stops) and re-indexes the live ones. One
    index seek and at most STEP_LOOKS row writes: O(log n). ``oldest`` is a lower
    bound of the index keys left in the range (inf when it is empty).
    """
    rows = cur.execute(_FIRST, (key, sender, STEP_LOOKS)).fetchall()
    bound = dead_up_to(ttl, at)
    removed = 0
    oldest = math.inf
    for to, last_used, idx in rows:
        if idx > bound:  # not due, and neither is anything after it
            return removed, min(oldest, idx)
        if is_live(last_used, ttl, at):  # used since it was indexed: index it again
            reindexed = _reindexed(last_used, at)
            cur.execute(_REINDEX, (reindexed, key, to))
            oldest = min(oldest, reindexed)
            continue
        cur.execute(_DELETE, (key, to))
        removed += 1
        if removed == STEP_EVICTIONS:  # the rest of the range is at or after this key
            return removed, min(oldest, idx)
    if len(rows) == STEP_LOOKS:  # the range goes on, at or after the last key seen
        oldest = min(oldest, rows[-1][2])
    return removed, oldest


def store_mapping(
    cur: sqlite3.Cursor,
    key: int,
    to: int,
    sender: int,
    now: float,
    ttl: float,
    stored: float,
    replaced: float | None,
    oldest: float = -math.inf,
) -> float:
    """Store ``(sender, now)`` for ``to``, move the horizon, take an eviction step.

    ``oldest`` is a lower bound of ``sender``'s index keys that the caller knows
    (-inf if none): when it is not due, nothing of the sender is and the step's look is
    skipped. Returns such a bound for after this write, for the caller to keep.

    ``to`` is the recipient's key and ``sender`` the sender's sid
    (:mod:`~sticky.store.sqlite.schema`). ``stored`` is the profile's ``horizon`` column
    (-inf before any write) and ``replaced`` the index key of the row this one replaces
    (None if none). The new index key ``now`` moves the horizon by itself; the column is
    written only when ``now`` is :data:`HORIZON_SLACK` past it, or when the replaced row
    held a key newer than both (so that the horizon never goes back). The step judges at
    ``max(now, stored)``, a lower bound of the horizon: what is dead there is dead. It
    looks at ``sender``'s range only: the page the new entry went to is at its end, and
    under steady traffic every sender's dead mappings meet the new mappings of the same
    sender, two removals for each. Writes the row and its index entry, at most the
    step's rows, and the profile's row once a second or when something was evicted.
    O(log n).
    """
    at = judged_at(now, stored)
    cur.execute(_PUT, (key, to, sender, now, now))
    if is_live(oldest, ttl, at):  # every key of the sender is after the due range
        removed = 0
    else:
        removed, oldest = _step(cur, key, sender, ttl, at)
    oldest = min(oldest, now)
    record = None
    if now >= stored + HORIZON_SLACK and now > stored:
        record = now
    elif replaced is not None and replaced > at:
        record = replaced
    if removed:
        cur.execute(_RECORD_EVICTED, (stored if record is None else record, removed, key))
    elif record is not None:
        cur.execute(_RECORD, (record, key))
    return oldest


def evict_all(cur: sqlite3.Cursor, key: int, ttl: float, at: float) -> int:
    """Delete every mapping of the profile dead at ``at``; return how many.

    Walks every sender's due range: the dead go, the live are re-indexed. Neither
    moves the horizon nor counts the evictions: the caller does, with its own writes.
    O(p log n + k log n) for k due mappings.
    """
    rows = cur.execute(_DUE_ALL, (key, dead_up_to(ttl, at))).fetchall()
    dead = [(key, to) for to, last_used in rows if not is_live(last_used, ttl, at)]
    cur.executemany(_DELETE, dead)
    cur.executemany(
        _REINDEX,
        [(_reindexed(lu, at), key, to) for to, lu in rows if is_live(lu, ttl, at)],
    )
    return len(dead)
