"""The Redis store (the ``sticky-sender[redis]`` extra): :class:`RedisStore`.

Its modules: :mod:`.store` (the operations a select needs, look-ups, housekeeping),
:mod:`.pools` (profiles, pools, the per-version cache, the migration of 0.1 data),
:mod:`.scripts` (the Lua scripts: constants, loading, running), :mod:`.keys` (the key
scheme), :mod:`.codec` (value formats), :mod:`.invariants` (check_invariants), and the
Lua itself in ``lua/``. Importing it does not import redis-py; making a store does.
"""

from sticky.store.redis.store import RedisStore

__all__ = ["RedisStore"]
