"""Lua scripts of the Redis store (package data), read by :mod:`sticky.store.redis.scripts`."""
