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

import sqlite3

from sticky.policy import STEP_EVICTIONS, STEP_LOOKS, dead_up_to, is_live, judged_at

__all__ = ["evict_all", "store_mapping"]

_PUT = (
    "INSERT OR REPLACE INTO mappings (profile, recipient, sender, last_used, idx)"
    " VALUES (?, ?, ?, ?, ?)"
)
_DELETE = "DELETE FROM mappings WHERE profile = ? AND recipient = ?"
_REINDEX = "UPDATE mappings SET idx = ? WHERE profile = ? AND recipient = ?"
_RECORD = "UPDATE profiles SET horizon = ? WHERE key = ?"
_RECORD_EVICTED = "UPDATE profiles SET horizon = ?, evicted = evicted + ? WHERE key = ?"
# One sender's due entries, in index order: the amortised step's look. INDEXED BY:
# without statistics the planner might scan the profile's primary-key range instead.
_DUE = (
    "SELECT recipient, last_used FROM mappings INDEXED BY mappings_by_sender"
    " WHERE profile = ? AND sender = ? AND idx <= ? ORDER BY idx LIMIT ?"
)
# Every sender's due range: what a sweep decides about.
_DUE_ALL = (
    "SELECT m.recipient, m.last_used FROM numbers AS n"
    " JOIN mappings AS m INDEXED BY mappings_by_sender"
    " ON m.profile = n.profile AND m.sender = n.number AND m.idx <= ?2"
    " WHERE n.profile = ?1"
)


def _reindexed(last_used: float, at: float) -> float:
    """A live mapping's new index key: a lower bound of its last use and of ``at``.

    Its last use, unless hits ran ahead of the horizon: so no key is ever after the
    horizon of the write that made it (``check_invariants`` asserts it).
    """
    return min(at, last_used)


def _step(cur: sqlite3.Cursor, key: int, sender: str, ttl: float, at: float) -> int:
    """The amortised step on ``sender``'s due entries; return how many it removed.

    Looks at up to STEP_LOOKS entries due at ``at``, in index order, deletes the dead
    ones (at most STEP_EVICTIONS, then it stops) and re-indexes the live ones. One
    index seek and at most STEP_LOOKS row writes: O(log n).
    """
    rows = cur.execute(_DUE, (key, sender, dead_up_to(ttl, at), STEP_LOOKS)).fetchall()
    removed = 0
    for to, last_used in rows:
        if is_live(last_used, ttl, at):  # used since it was indexed: index it again
            cur.execute(_REINDEX, (_reindexed(last_used, at), key, to))
            continue
        cur.execute(_DELETE, (key, to))
        removed += 1
        if removed == STEP_EVICTIONS:
            break
    return removed


def store_mapping(
    cur: sqlite3.Cursor, key: int, to: str, sender: str, now: float, ttl: float, horizon: float
) -> None:
    """Store ``(sender, now)`` for ``to``, move the horizon, take an eviction step.

    ``horizon`` is the profile's (-inf before any write). The step looks at
    ``sender``'s range only: the page the new entry went to is at its end, and under
    steady traffic every sender's dead mappings meet the new mappings of the same
    sender, two removals for each. Writes the row and its index entry, the profile's
    row when the horizon moves or something was evicted, and at most the step's rows.
    O(log n).
    """
    at = judged_at(now, horizon)
    cur.execute(_PUT, (key, to, sender, now, now))
    removed = _step(cur, key, sender, ttl, at)
    if removed:
        cur.execute(_RECORD_EVICTED, (at, removed, key))
    elif at != horizon:
        cur.execute(_RECORD, (at, key))


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
