"""Lua scripts of the Redis store, loaded with :mod:`importlib.resources`."""
