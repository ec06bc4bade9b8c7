"""The Redis store: one shared world for engines in many processes and on many hosts.

Everything lives in Redis (profiles, settings, pools with type and health, owners of
numbers, mappings, the expiry index, the reverse index, horizons, versions and eviction
counts), and every public operation is one Lua script, so engines that share a Redis
behave as one engine. The scripts mirror :class:`~sticky.store.memory.MemoryStore`
step by step (liveness at the horizon, which error comes first, the amortised eviction
of up to two dead mappings per write); see ``docs/redis.md`` for the key layout, the
round trips of each operation, Redis Cluster and faults.

Times are passed to the scripts as ``repr(float)`` strings and stored as received, so
they round-trip exactly; Redis' own clock and key expiry are never used.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.resources
import json
import random
import secrets
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Self

from sticky.errors import (
    ExtraNotInstalled,
    IncompatibleStore,
    InvalidSettings,
    NumberInUse,
    ProfileExists,
    StoreUnavailable,
    UnknownNumber,
    UnknownProfile,
)
from sticky.numbers import NumberType, SenderNumber
from sticky.settings import PoolSettings
from sticky.store.base import Draw, StoredMapping, sorted_pool
from sticky.values import Reason, Selection

if TYPE_CHECKING:
    import redis

__all__ = ["RedisStore"]

_SCRIPT_NAMES = (
    "add_claim",
    "add_commit",
    "begin_many",
    "begin_select",
    "commit_many",
    "commit_select",
    "create_profile",
    "delete_profile",
    "evict",
    "forget",
    "info",
    "mapping",
    "own",
    "own_check",
    "own_release",
    "pin",
    "recipients_of",
    "remove_number",
    "replace_settings",
    "set_health",
    "withdraw",
)
_EVICT_CHUNK = 2_000
"""Dead mappings one evict_expired script removes before yielding the server."""
_EVICT_POPS = 20_000
"""Index entries one evict_expired script looks at before yielding the server."""
_CHUNK = 256
"""Recipients per batch script: each script is one atomic step, kept short."""
_KEYS_CACHED = 10_000
"""Profiles whose key names a store keeps built."""
_ADD_ATTEMPTS = 50
"""Rounds of add_number's claim protocol before giving up on a racing rival add."""
_DEFAULT_TIMEOUT = 5.0
"""Default socket and connect timeouts of :meth:`RedisStore.from_url`, in seconds."""
_TRANSIENT = ("READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "LOADING", "BUSY", "OOM")
"""Error replies that mean "not now" rather than "wrong": raised as StoreUnavailable."""

_TYPE_CODE = {NumberType.LONG_CODE: "L", NumberType.TOLL_FREE: "T"}
_CODE_TYPE = {"L": NumberType.LONG_CODE, "T": NumberType.TOLL_FREE}


class _Script:
    """One Lua script: the shared helpers, then its own body; run by SHA."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


@functools.cache
def _scripts() -> dict[str, _Script]:
    """The scripts, read once from the package with importlib.resources."""
    root = importlib.resources.files("sticky.store.lua")
    common = root.joinpath("common.lua").read_text(encoding="utf-8")
    return {
        name: _Script(name, common + "\n" + root.joinpath(f"{name}.lua").read_text("utf-8"))
        for name in _SCRIPT_NAMES
    }


def _hex(value: str) -> str:
    """An id as key-safe text: hex of its UTF-8 (lone surrogates kept), injective."""
    return value.encode("utf-8", "surrogatepass").hex()


def _unhex(value: str) -> str:
    return bytes.fromhex(value).decode("utf-8", "surrogatepass")


def _f(value: float) -> str:
    """A time or float as the exact text Redis stores and Lua parses: repr of a float."""
    return repr(float(value))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _reply(value: Any) -> Any:  # noqa: ANN401 - redis-py replies are untyped
    """A reply as str (or a list of str), whether or not the client decodes responses."""
    if isinstance(value, (list, set)):  # SMEMBERS gives a set
        return [_text(v) if isinstance(v, bytes) else v for v in value]
    if isinstance(value, bytes):
        return value.decode()
    return value


def _settings_json(settings: PoolSettings) -> str:
    """Canonical JSON: equal settings give equal text (-0.0 is written as 0.0)."""
    data = settings.to_dict()
    for name in ("ttl", "long_code_weight", "toll_free_weight"):
        data[name] = data[name] + 0.0
    return json.dumps(data, separators=(",", ":"))


def _settings_args(settings: PoolSettings) -> tuple[str, str, str, str, str, str]:
    """The settings as the scripts read them: JSON, ttl, sticky, weights, skip."""
    return (
        _settings_json(settings),
        _f(settings.ttl),
        "1" if settings.sticky_sender else "0",
        _f(settings.long_code_weight),
        _f(settings.toll_free_weight),
        "1" if settings.skip_unhealthy else "0",
    )


def _unknown_profile(profile_id: str) -> UnknownProfile:
    return UnknownProfile(f"unknown profile {profile_id!r}")


def _not_in_pool(number: str, profile_id: str) -> UnknownNumber:
    return UnknownNumber(f"number {number!r} is not in profile {profile_id!r}")


class _Keys:
    """The keys of one profile, all under one ``{hash tag}``: the hex of its id."""

    __slots__ = ("claims", "hex", "k2", "k4", "k7", "k8", "late", "map", "meta", "pool", "rev")

    def __init__(self, prefix: str, hex_id: str) -> None:
        base = f"{prefix}:{{{hex_id}}}:"
        self.hex = hex_id
        self.meta = base + "meta"
        self.map = base + "map"
        self.pool = base + "pool"
        ver = base + "ver"
        queue = base + "queue"
        self.late = base + "late"
        self.rev = base + "rev"
        self.claims = base + "claims"
        # The scripts' KEYS, in the order common.lua names them; each script gets a prefix.
        self.k8 = (self.meta, self.map, self.pool, ver, queue, self.late, self.rev, self.claims)
        self.k7 = self.k8[:7]
        self.k4 = self.k8[:4]
        self.k2 = self.k8[:2]


class _Cached:
    """A profile's settings and pool at one version (versions are never reused)."""

    __slots__ = ("pool", "settings", "version", "version_text")

    def __init__(
        self, version_text: str, settings: PoolSettings, pool: tuple[SenderNumber, ...]
    ) -> None:
        self.version_text = version_text
        self.version = int(version_text)
        self.settings = settings
        self.pool = pool


def _parse_pool(flat: Sequence[str]) -> tuple[SenderNumber, ...]:
    return sorted_pool(
        [
            SenderNumber(flat[i], _CODE_TYPE[flat[i + 1][0]], flat[i + 1][1] == "1")
            for i in range(0, len(flat), 2)
        ]
    )


class RedisStore:
    """A store on a Redis server: shared by every engine on it, every method atomic.

    Round trips: a sticky hit 1; a new recipient 2 (begin, then compare-and-set);
    ``begin_select_many``/``commit_select_many`` 1 each for a whole batch; ``mapping``,
    ``recipients_of``, ``pin``, ``forget``, ``settings``, ``numbers``,
    ``replace_settings``, ``create_profile`` 1; ``remove_number``, ``set_health``,
    ``delete_profile``, ``profiles``, ``counts`` 2; ``add_number`` 3 (more when a rival
    add races for the same number); ``evict_expired`` 2 plus one per 2,000 dead
    mappings of its largest profile. Server work: O(1) per select and look-up (O(log n)
    for sorted-set steps), O(k) for cascades over k mappings, O(n) for
    ``delete_profile`` and ``check_invariants``.

    Thread-safe (redis-py's connection pool). Connection errors and timeouts raise
    :class:`~sticky.StoreUnavailable` with the redis-py error chained.
    """

    def __init__(self, client: redis.Redis, *, prefix: str = "sticky") -> None:
        try:
            import redis as redis_module  # noqa: PLC0415 - the optional extra, on demand
        except ImportError as exc:
            raise ExtraNotInstalled("redis", "redis", "the Redis store") from exc
        if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
            msg = f"invalid key prefix {prefix!r}: expected a non-empty string without braces"
            raise InvalidSettings(msg)
        self._client: Any = client  # redis-py leaves some methods untyped
        self._prefix = prefix
        self._owns_client = False
        self._profiles_key = f"{prefix}:profiles"
        self._evicted_key = f"{prefix}:evicted"
        errors = redis_module.exceptions
        self._down: tuple[type[Exception], ...] = (errors.ConnectionError, errors.TimeoutError)
        self._noscript: type[Exception] = errors.NoScriptError
        self._response_error: type[Exception] = errors.ResponseError
        # redis-py strips the code of the replies it has a class for: match on the class
        self._transient: tuple[type[Exception], ...] = tuple(
            getattr(errors, name)
            for name in ("ReadOnlyError", "OutOfMemoryError", "ClusterDownError", "TryAgainError")
            if hasattr(errors, name)
        )
        s = _scripts()
        self._s = s
        self._s_begin = s["begin_select"]
        self._s_commit = s["commit_select"]
        self._keys_cache: dict[str, _Keys] = {}
        self._cache: dict[str, _Cached] = {}

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "sticky", **client_options: Any) -> Self:  # noqa: ANN401
        """Open ``redis://``, ``rediss://`` or ``unix://`` with redis-py; closed by :meth:`close`.

        Defaults: 5 s socket and connect timeouts, decoded replies, and no automatic
        retries (a retried script could apply twice; a failed call raises
        StoreUnavailable instead). ``client_options`` go to ``redis.Redis.from_url``.
        """
        try:
            import redis as redis_module  # noqa: PLC0415 - the optional extra, on demand
            from redis.backoff import NoBackoff  # noqa: PLC0415
            from redis.retry import Retry  # noqa: PLC0415
        except ImportError as exc:
            raise ExtraNotInstalled("redis", "redis", "the Redis store") from exc
        options: dict[str, Any] = {
            "socket_timeout": _DEFAULT_TIMEOUT,
            "socket_connect_timeout": _DEFAULT_TIMEOUT,
            "decode_responses": True,
            "retry": Retry(NoBackoff(), 0),
        }
        options.update(client_options)
        client = redis_module.Redis.from_url(url, **options)
        store = cls(client, prefix=prefix)
        store._owns_client = True
        return store

    def __repr__(self) -> str:
        return f"RedisStore(client={self._client!r}, prefix={self._prefix!r})"

    # -- plumbing -------------------------------------------------------------------
    def _keys(self, profile_id: str) -> _Keys:
        keys = self._keys_cache.get(profile_id)
        if keys is None:
            if len(self._keys_cache) >= _KEYS_CACHED:  # ids from callers: keep it bounded
                self._keys_cache.clear()
            keys = self._keys_cache[profile_id] = _Keys(self._prefix, _hex(profile_id))
        return keys

    def _owner_key(self, number: str) -> str:
        # Its own slot (no hash tag): one key per number, as the Memory store's owner dict.
        return f"{self._prefix}:own:{_hex(number)}"

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        return StoreUnavailable(f"Redis is unavailable: {type(exc).__name__}: {exc}")

    def _is_transient(self, exc: Exception) -> bool:
        if isinstance(exc, self._transient):
            return True
        return isinstance(exc, self._response_error) and str(exc).startswith(_TRANSIENT)

    def _eval(self, script: _Script, keys: Sequence[str], args: Sequence[str]) -> Any:  # noqa: ANN401 - a script's reply
        """Run one script by SHA (loading it on NOSCRIPT, e.g. after a restart). 1 round trip."""
        client = self._client
        try:
            try:
                reply = client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            except self._noscript:
                self._load_scripts()
                reply = client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        except self._down as exc:
            raise self._unavailable(exc) from exc
        except self._response_error as exc:
            if self._is_transient(exc):
                raise self._unavailable(exc) from exc
            raise
        return _reply(reply)

    def _load_scripts(self) -> None:
        """Register every script (SCRIPT LOAD), in one pipeline: after a NOSCRIPT reply.

        The server forgets scripts when it restarts (or on SCRIPT FLUSH); loading them
        all at the first miss spares each script its own miss. Connection errors
        propagate to the caller, which maps them.
        """
        client = self._client
        if hasattr(client, "get_nodes"):  # a RedisCluster client loads on every primary
            for script in self._s.values():
                client.script_load(script.source)
            return
        pipe = client.pipeline(transaction=False)
        for script in self._s.values():
            pipe.script_load(script.source)
        pipe.execute()

    def _command(self, *args: str) -> Any:  # noqa: ANN401 - a command's reply
        """One plain command. 1 round trip."""
        try:
            return _reply(self._client.execute_command(*args))
        except self._down as exc:
            raise self._unavailable(exc) from exc
        except self._response_error as exc:
            if self._is_transient(exc):
                raise self._unavailable(exc) from exc
            raise

    def _pipeline(self, ops: Sequence[tuple[_Script | None, Sequence[str]]]) -> list[Any]:
        """Commands and scripts in one non-transactional pipeline: 1 round trip.

        Each op is ``(script, keys + args)`` with ``keys`` counted first in the
        sequence as ``(numkeys, *keys, *args)``, or ``(None, command)``. Scripts the
        server does not know (NOSCRIPT: they did not run) are loaded and run again.
        """
        if not ops:
            return []
        try:
            results = self._run_pipeline(ops)
            missing = [i for i, r in enumerate(results) if isinstance(r, self._noscript)]
            if missing:
                self._load_scripts()
                again = self._run_pipeline([ops[i] for i in missing])
                for i, r in zip(missing, again, strict=True):
                    results[i] = r
        except self._down as exc:
            raise self._unavailable(exc) from exc
        for r in results:
            if isinstance(r, Exception):
                if isinstance(r, self._down) or self._is_transient(r):
                    raise self._unavailable(r) from r
                raise r
        return [_reply(r) for r in results]

    def _run_pipeline(self, ops: Sequence[tuple[_Script | None, Sequence[str]]]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for script, args in ops:
            if script is None:
                pipe.execute_command(*args)
            else:
                pipe.execute_command("EVALSHA", script.sha, *args)
        return list(pipe.execute(raise_on_error=False))

    @staticmethod
    def _call(keys: Sequence[str], *args: str) -> list[str]:
        """``numkeys, *keys, *args`` for a pipelined EVALSHA."""
        return [str(len(keys)), *keys, *args]

    def _remember(self, profile_id: str, reply: Sequence[str], at: int) -> _Cached:
        """Cache the settings and pool a script appended at ``reply[at:]`` (version first)."""
        cached = _Cached(
            reply[at],
            PoolSettings.from_dict(json.loads(reply[at + 1])),
            _parse_pool(reply[at + 2 :]),
        )
        self._cache[profile_id] = cached
        return cached

    def _current(
        self, profile_id: str, reply: Sequence[str], at: int, cached: _Cached | None
    ) -> _Cached:
        """The cache entry a reply refers to: new data if it carried some, else ``cached``."""
        if len(reply) > at + 1:
            return self._remember(profile_id, reply, at)
        assert cached is not None, "a reply without data answers a cached version"
        return cached

    # -- profiles -------------------------------------------------------------------
    def create_profile(self, profile_id: str, settings: PoolSettings) -> None:
        """Create an empty profile. 1 round trip (the profile set is written around it)."""
        k = self._keys(profile_id)
        base = str(secrets.randbelow(1 << 50) + 1)
        add = (None, ("SADD", self._profiles_key, k.hex))
        create = (
            self._s["create_profile"],
            self._call(k.k4, k.hex, *_settings_args(settings), base),
        )
        # SADD before (a crash leaves at most a ghost id, which profiles() filters out) and
        # after (so a racing delete_profile's SREM cannot drop a profile that exists).
        reply = self._pipeline([add, create, add])[1]
        if reply == "e":
            msg = f"profile {profile_id!r} already exists"
            raise ProfileExists(msg)

    def delete_profile(self, profile_id: str, now: float) -> int:
        """Delete a profile, its pool and mappings; return the live ones. 2 round trips, O(n + p).

        The profile's own slot is deleted in one script (the commit point); then its
        numbers' owner keys are released and its id leaves the profile set. If that second
        step fails, the leftovers are harmless: an owner key naming a deleted profile counts
        as free, and profiles() skips ids whose profile is gone.
        """
        k = self._keys(profile_id)
        reply = self._eval(self._s["delete_profile"], k.k8, (_f(now),))
        if reply[0] == "u":
            raise _unknown_profile(profile_id)
        live, inc, evicted, numbers = int(reply[1]), reply[2], reply[3], reply[4:]
        self._cache.pop(profile_id, None)
        me = f"{inc}:{k.hex}"
        release = self._s["own_release"]
        ops: list[tuple[_Script | None, Sequence[str]]] = [
            (release, self._call((self._owner_key(n),), me)) for n in numbers
        ]
        ops += [
            (None, ("INCRBY", self._evicted_key, evicted or "0")),
            (None, ("SREM", self._profiles_key, k.hex)),
            (None, ("EXISTS", k.meta)),
        ]
        try:
            results = self._pipeline(ops)
            if results[-1]:  # created again meanwhile: keep it listed
                self._command("SADD", self._profiles_key, k.hex)
        except StoreUnavailable:
            pass  # deleted already; what is left over heals itself (see the docstring)
        return live

    def settings(self, profile_id: str) -> PoolSettings:
        """A profile's settings. 1 round trip."""
        return self._info(profile_id).settings

    def _info(self, profile_id: str) -> _Cached:
        cached = self._cache.get(profile_id)
        reply = self._eval(
            self._s["info"], self._keys(profile_id).k4, (cached.version_text if cached else "",)
        )
        if reply[0] == "u":
            raise _unknown_profile(profile_id)
        return self._current(profile_id, reply, 1, cached)

    def replace_settings(self, profile_id: str, old: PoolSettings, new: PoolSettings) -> bool:
        """Compare-and-set the settings. 1 round trip; O(k) when a longer ttl evicts k."""
        reply = self._eval(
            self._s["replace_settings"],
            self._keys(profile_id).k7,
            (_settings_json(old), *_settings_args(new)),
        )
        if reply == "u":
            raise _unknown_profile(profile_id)
        return bool(reply == "1")

    def profiles(self) -> list[str]:
        """Every profile id, sorted. 2 round trips, O(P log P)."""
        hexes = sorted(self._command("SMEMBERS", self._profiles_key))
        exists = self._pipeline([(None, ("EXISTS", self._keys_hex(h).meta)) for h in hexes])
        return sorted(_unhex(h) for h, e in zip(hexes, exists, strict=True) if e)

    def _keys_hex(self, hex_id: str) -> _Keys:
        return _Keys(self._prefix, hex_id)

    # -- pools ----------------------------------------------------------------------
    def add_number(
        self, profile_id: str, number: str, number_type: NumberType, *, healthy: bool
    ) -> None:
        """Add a number to a pool. 3 round trips (5 when an owner key is stale).

        The pool (the profile's slot) and the number's owner key (its own slot) cannot
        change in one script on a cluster, so: (1) record a pending claim in the pool's
        slot, (2) take the owner key, checking in the named profile's slot that a stale
        owner key is really free (and revoking that profile's pending claim), (3) add the
        number if the claim still stands. See docs/redis.md.
        """
        k = self._keys(profile_id)
        token = secrets.token_hex(8)
        entry = _TYPE_CODE[number_type] + ("1" if healthy else "0")
        owner_key = self._owner_key(number)
        for attempt in range(_ADD_ATTEMPTS):
            inc = self._eval(self._s["add_claim"], k.k8, (number, token))
            if inc == "u":
                raise _unknown_profile(profile_id)
            if inc == "i":
                raise NumberInUse(f"number {number!r} is already in profile {profile_id!r}")
            me = f"{inc}:{k.hex}"
            self._take_owner(k, number, token, owner_key, me, inc)
            outcome = self._eval(self._s["add_commit"], k.k8, (number, token, entry, inc))
            if outcome == "ok":
                return
            if outcome == "i":
                raise NumberInUse(f"number {number!r} is already in profile {profile_id!r}")
            if outcome == "u":
                self._eval(self._s["own_release"], (owner_key,), (me,))
                raise _unknown_profile(profile_id)
            # revoked by a rival add of the same number: back off and start over
            time.sleep(random.uniform(0, 0.001 * (attempt + 1)))  # noqa: S311 - jitter
        msg = f"number {number!r} is being added to another profile at the same time"
        raise NumberInUse(msg)

    def _take_owner(
        self, k: _Keys, number: str, token: str, owner_key: str, me: str, inc: str
    ) -> None:
        """Make the owner key ours, or raise NumberInUse (after withdrawing our claim)."""
        checked = ""
        while True:
            current = self._eval(self._s["own"], (owner_key,), (me, k.hex, inc, checked))
            if current == "ok":
                return
            other_inc, _, other_hex = current.partition(":")
            other = self._keys_hex(other_hex)
            if self._eval(self._s["own_check"], other.k8, (number, other_inc)) == "i":
                self._eval(self._s["withdraw"], k.k8, (number, token))
                msg = f"number {number!r} is already in profile {_unhex(other_hex)!r}"
                raise NumberInUse(msg)
            checked = current

    def remove_number(self, profile_id: str, number: str, now: float) -> int:
        """Remove a number and its mappings; return the live ones. 2 round trips, O(k log n).

        The script in the profile's slot is the commit point; releasing the owner key
        follows, and if it fails the stale owner key counts as free.
        """
        k = self._keys(profile_id)
        reply = self._eval(self._s["remove_number"], k.k7, (number, _f(now)))
        if reply[0] == "u":
            raise _unknown_profile(profile_id)
        if reply[0] == "n":
            raise _not_in_pool(number, profile_id)
        # Removed already: if releasing the owner key fails, the stale key heals itself.
        with contextlib.suppress(StoreUnavailable):
            self._eval(
                self._s["own_release"], (self._owner_key(number),), (f"{reply[2]}:{k.hex}",)
            )
        return int(reply[1])

    def set_health(self, number: str, *, healthy: bool) -> None:
        """Set a pooled number's health. 2 round trips: the owner key, then its pool."""
        owner_key = self._owner_key(number)
        current = self._command("GET", owner_key)
        while current is not None:
            inc, _, hex_id = current.partition(":")
            done = self._eval(
                self._s["set_health"],
                self._keys_hex(hex_id).k4,
                (number, inc, "1" if healthy else "0"),
            )
            if done == "ok":
                return
            again = self._command("GET", owner_key)
            if again == current:
                break  # a stale owner key: the number is in no pool
            current = again
        msg = f"number {number!r} is in no profile"
        raise UnknownNumber(msg)

    def numbers(self, profile_id: str) -> tuple[SenderNumber, ...]:
        """A profile's pool, sorted by number. 1 round trip (cached per version)."""
        return self._info(profile_id).pool

    # -- selection ------------------------------------------------------------------
    def begin_select(
        self, profile_id: str, to: str, now: float, known_version: int
    ) -> Selection | Draw:
        """A sticky hit (refreshed) or what a fresh choice needs. 1 round trip, O(1)."""
        cached = self._cache.get(profile_id)
        reply = self._eval(
            self._s_begin,
            self._keys(profile_id).k4,
            (to, _f(now), "" if cached is None else cached.version_text),
        )
        return self._began(profile_id, to, reply, known_version, cached)

    def _began(
        self,
        profile_id: str,
        to: str,
        reply: list[str],
        known_version: int,
        cached: _Cached | None,
    ) -> Selection | Draw:
        tag = reply[0]
        if tag == "h":
            return Selection(profile_id, to, reply[1], Reason.STICKY)
        if tag == "u":
            raise _unknown_profile(profile_id)
        current = self._current(profile_id, reply, 5, cached)
        previous = (reply[2], float(reply[3])) if reply[1] == "1" else None
        pool = None if known_version == current.version else current.pool
        return Draw(current.settings, current.version, pool, previous, reply[4] == "1")

    def commit_select(
        self,
        profile_id: str,
        to: str,
        chosen: str,
        previous: StoredMapping | None,
        live: bool,  # noqa: FBT001 - the protocol's order
        version: int,
        now: float,
    ) -> Selection | Literal[True] | None:
        """Compare-and-set of a fresh choice. 1 round trip, O(log n)."""
        reply = self._eval(
            self._s_commit,
            self._keys(profile_id).k7,
            self._commit_args(to, chosen, previous, live, version, now),
        )
        return self._committed(profile_id, to, reply)

    @staticmethod
    def _commit_args(
        to: str,
        chosen: str,
        previous: StoredMapping | None,
        live: bool,  # noqa: FBT001
        version: int,
        now: float,
    ) -> tuple[str, ...]:
        if previous is None:
            has, sender, last_used = "0", "", ""
        else:
            has, sender, last_used = "1", previous[0], _f(previous[1])
        return (to, chosen, has, sender, last_used, "1" if live else "0", str(version), _f(now))

    @staticmethod
    def _committed(profile_id: str, to: str, reply: list[str]) -> Selection | Literal[True] | None:
        tag = reply[0]
        if tag == "t":
            return True
        if tag == "h":
            return Selection(profile_id, to, reply[1], Reason.STICKY)
        if tag == "n":
            return None
        if tag == "u":
            raise _unknown_profile(profile_id)
        msg = (
            f"profile {profile_id!r}: the sender chosen for {to!r} is not eligible at the pool "
            "version it was chosen at; was the Redis data replaced under a running engine?"
        )
        raise IncompatibleStore(msg)

    def begin_select_many(
        self, profile_id: str, recipients: Sequence[str], now: float, known_version: int
    ) -> list[Selection | Draw]:
        """:meth:`begin_select` for each recipient. 1 round trip, O(1) each on the server.

        One script per chunk of 256 recipients (each chunk atomic), all in one pipeline.
        """
        k = self._keys(profile_id)
        cached = self._cache.get(profile_id)
        head = (_f(now), "" if cached is None else cached.version_text)
        chunks = [recipients[i : i + _CHUNK] for i in range(0, len(recipients), _CHUNK)]
        script = self._s["begin_many"]
        replies = self._pipeline([(script, self._call(k.k4, *head, *c)) for c in chunks])
        out: list[Selection | Draw] = []
        for chunk, reply in zip(chunks, replies, strict=True):
            if reply[0] == "u":
                raise _unknown_profile(profile_id)
            # every chunk was given `cached`'s version: a reply without data refers to it
            current: _Cached | None = None
            for i, to in enumerate(chunk):
                at = 5 * i
                if reply[at] == "h":
                    out.append(Selection(profile_id, to, reply[at + 1], Reason.STICKY))
                    continue
                if current is None:
                    current = self._current(profile_id, reply, 5 * len(chunk), cached)
                previous = (reply[at + 2], float(reply[at + 3])) if reply[at + 1] == "1" else None
                pool = None if known_version == current.version else current.pool
                out.append(
                    Draw(current.settings, current.version, pool, previous, reply[at + 4] == "1")
                )
        return out

    def commit_select_many(
        self,
        profile_id: str,
        entries: Sequence[tuple[str, str, StoredMapping | None, bool, int]],
        now: float,
    ) -> list[Selection | Literal[True] | None]:
        """:meth:`commit_select` for each entry. 1 round trip, O(log n) each on the server.

        One script per chunk of 256 entries (each chunk atomic), all in one pipeline.
        """
        k = self._keys(profile_id)
        now_text = _f(now)
        chunks = [entries[i : i + _CHUNK] for i in range(0, len(entries), _CHUNK)]
        script = self._s["commit_many"]
        ops: list[tuple[_Script | None, Sequence[str]]] = []
        for chunk in chunks:
            args = [now_text]
            for to, chosen, prev, live, ver in chunk:
                args += self._commit_args(to, chosen, prev, live, ver, now)[:7]
            ops.append((script, self._call(k.k7, *args)))
        out: list[Selection | Literal[True] | None] = []
        for chunk, reply in zip(chunks, self._pipeline(ops), strict=True):
            if reply[0] == "u":
                raise _unknown_profile(profile_id)
            out += [
                self._committed(profile_id, entry[0], reply[2 * i : 2 * i + 2])
                for i, entry in enumerate(chunk)
            ]
        return out

    # -- inspection and override ----------------------------------------------------
    def mapping(self, profile_id: str, to: str, now: float) -> tuple[str, float, float] | None:
        """The live mapping of ``to`` as ``(from_number, last_used, ttl)``. 1 round trip."""
        reply = self._eval(self._s["mapping"], self._keys(profile_id).k2, (to, _f(now)))
        if reply[0] == "u":
            raise _unknown_profile(profile_id)
        if reply[0] == "n":
            return None
        return reply[1], float(reply[2]), float(reply[3])

    def recipients_of(self, profile_id: str, number: str, now: float) -> list[str]:
        """Recipients with a live mapping to ``number``, sorted. 1 round trip, O(k log n)."""
        reply = self._eval(self._s["recipients_of"], self._keys(profile_id).k7, (number, _f(now)))
        if reply[0] == "u":
            raise _unknown_profile(profile_id)
        return sorted(reply[1:])

    def pin(self, profile_id: str, to: str, number: str, now: float) -> PoolSettings:
        """Map ``to`` to ``number`` as used at ``now``, replacing any mapping. 1 round trip."""
        cached = self._cache.get(profile_id)
        reply = self._eval(
            self._s["pin"],
            self._keys(profile_id).k7,
            (to, number, _f(now), "" if cached is None else cached.version_text),
        )
        if reply[0] == "u":
            raise _unknown_profile(profile_id)
        if reply[0] == "n":
            raise _not_in_pool(number, profile_id)
        return self._current(profile_id, reply, 1, cached).settings

    def forget(self, profile_id: str, to: str, now: float) -> bool:
        """Delete the mapping of ``to``; return whether it was live. 1 round trip."""
        reply = self._eval(self._s["forget"], self._keys(profile_id).k7, (to, _f(now)))
        if reply == "u":
            raise _unknown_profile(profile_id)
        return bool(reply == "1")

    # -- housekeeping ---------------------------------------------------------------
    def evict_expired(self, now: float) -> int:
        """Remove every dead mapping; return how many. O(k log n) for k dead.

        One pipeline over every profile, repeated while a profile has more than a chunk
        of dead mappings: each script is atomic and bounded, so Redis keeps serving.
        """
        hexes = list(self._command("SMEMBERS", self._profiles_key))
        script = self._s["evict"]
        args = (_f(now), str(_EVICT_CHUNK), str(_EVICT_POPS))
        total = 0
        while hexes:
            replies = self._pipeline(
                [(script, self._call(self._keys_hex(h).k7, *args)) for h in hexes]
            )
            more = []
            for h, reply in zip(hexes, replies, strict=True):
                if reply[0] == "ok":
                    total += int(reply[1])
                    if reply[2] == 1:
                        more.append(h)
            hexes = more
        return total

    def counts(self) -> tuple[int, int]:
        """Stored mappings (live or dead), and dead ones evicted so far. 2 round trips, O(P)."""
        hexes = list(self._command("SMEMBERS", self._profiles_key))
        ops: list[tuple[_Script | None, Sequence[str]]] = [(None, ("GET", self._evicted_key))]
        for h in hexes:
            k = self._keys_hex(h)
            ops += [(None, ("HLEN", k.map)), (None, ("HGET", k.meta, "evicted"))]
        results = self._pipeline(ops)
        stored = sum(int(r) for r in results[1::2])
        evicted = sum(int(r) for r in [results[0], *results[2::2]] if r is not None)
        return stored, evicted

    def check_invariants(self, *, allow_leftovers: bool = False) -> None:
        """Assert the Redis data is consistent. Reads everything: O(keys), for tests.

        Checks, per profile: its settings fields agree with its settings; every mapping's
        sender is in its pool; the reverse index and the expiry index agree with the
        mappings (each mapping has an index entry under its index key, which is at most
        its last use; queue keys never decrease); its numbers' owner keys name it. And:
        the profile set lists exactly the profiles. With ``allow_leftovers``, what a
        crash between two steps may leave (stale owner keys, pending claims, ids of
        deleted profiles in the profile set) is allowed, as the store treats it as free.
        """
        self._check(allow_leftovers=allow_leftovers)

    def _glob(self) -> str:
        return "".join("\\" + c if c in "*?[]\\" else c for c in self._prefix)

    def _scan(self, pattern: str) -> list[str]:
        try:
            return [_text(key) for key in self._client.scan_iter(match=pattern, count=10_000)]
        except self._down as exc:
            raise self._unavailable(exc) from exc

    def _check(self, *, allow_leftovers: bool) -> None:
        prefix = self._prefix
        metas = {
            key[len(prefix) + 2 : -len("}:meta")]
            for key in self._scan(f"{self._glob()}:{{*}}:meta")
        }
        listed = set(self._command("SMEMBERS", self._profiles_key))
        assert metas <= listed, f"profiles missing from the profile set: {metas - listed}"
        if not allow_leftovers:
            assert listed <= metas, f"ids of deleted profiles in the profile set: {listed - metas}"
        owners: dict[str, str] = {}
        for hex_id in sorted(metas):
            owners.update(self._check_profile(hex_id, allow_leftovers=allow_leftovers))
        keys = sorted(
            set(self._scan(f"{self._glob()}:own:*")) | {self._owner_key(n) for n in owners}
        )
        values = dict(
            zip(keys, self._pipeline([(None, ("GET", key)) for key in keys]), strict=True)
        )
        for number, me in owners.items():
            assert values[self._owner_key(number)] == me, f"{number}: owner key is not {me}"
        for key in keys:
            number = _unhex(key[len(prefix) + 5 :])
            assert number in owners or allow_leftovers, (
                f"owner key of {number!r} ({values[key]}) names no pool holding it"
            )

    def _check_profile(self, hex_id: str, *, allow_leftovers: bool) -> dict[str, str]:
        """Check one profile; return its numbers' expected owner-key values."""
        k = self._keys_hex(hex_id)
        ver, queue_key = k.k8[3], k.k8[4]
        meta, pool_flat, table, claims, queue, late_flat, rev, version = self._pipeline(
            [
                (None, ("HGETALL", k.meta)),
                (None, ("HGETALL", k.pool)),
                (None, ("HGETALL", k.map)),
                (None, ("HGETALL", k.claims)),
                (None, ("LRANGE", queue_key, "0", "-1")),
                (None, ("ZRANGE", k.late, "0", "-1", "WITHSCORES")),
                (None, ("ZRANGE", k.rev, "0", "-1")),
                (None, ("GET", ver)),
            ]
        )
        pid = _unhex(hex_id)
        meta, pool_map, table, claims = (_as_dict(x) for x in (meta, pool_flat, table, claims))
        assert meta["id"] == hex_id, f"{pid}: meta names {meta['id']}"
        settings = PoolSettings.from_dict(json.loads(meta["settings"]))
        json_text, *fields = _settings_args(settings)
        assert meta["settings"] == json_text, f"{pid}: settings are not canonical"
        got = [meta["ttl"], meta["sticky"], meta["lw"], meta["tw"], meta["skip"]]
        assert got == fields, f"{pid}: settings fields {got} disagree with {fields}"
        assert version is not None, f"{pid}: no version"
        assert int(meta["inc"]) <= int(version), f"{pid}: incarnation after the version"
        assert all(v[0] in "LT" and v[1] in "01" and len(v) == 2 for v in pool_map.values())
        if not allow_leftovers:
            assert not claims, f"{pid}: pending claims {claims}"
        index: set[tuple[float, str]] = set()
        keys = []
        for entry in queue:
            key, _, to = entry.partition(" ")
            keys.append(float(key))
            index.add((float(key), to))
        assert keys == sorted(keys), f"{pid}: queue keys out of order"
        # redis-py may pair members with scores, or not: flatten
        flat = [
            _text(x)
            for item in late_flat
            for x in (item if isinstance(item, (list, tuple)) else [item])
        ]
        for member, score in zip(flat[::2], flat[1::2], strict=True):
            to, sep, seq = member.partition("\0")
            assert sep, f"{pid}: late member {member!r}"
            assert seq.isdigit(), f"{pid}: late member {member!r}"
            index.add((float(score), to))
        expected_rev = set()
        for to, value in table.items():
            last_used, idx, sender = value.split(" ", 2)
            assert sender in pool_map, f"{pid}: {to} maps to {sender}, not in pool"
            assert _f(float(last_used)) == last_used, f"{pid}: {to}: last_used {last_used!r}"
            assert float(idx) <= float(last_used), f"{pid}: {to} index key after last use"
            assert (float(idx), to) in index, f"{pid}: {to} missing from the expiry index"
            expected_rev.add(f"{sender}\0{to}")
        assert set(rev) == expected_rev, f"{pid}: reverse index disagrees"
        assert len(rev) == len(expected_rev)
        if "horizon" in meta:
            assert _f(float(meta["horizon"])) == meta["horizon"]
        return dict.fromkeys(pool_map, f"{meta['inc']}:{hex_id}")

    def close(self) -> None:
        """Close the client if this store created it (:meth:`from_url`)."""
        if self._owns_client:
            self._client.close()


def _as_dict(flat: Iterable[str] | dict[str, str]) -> dict[str, str]:
    """A HGETALL reply as a dict (redis-py parses it to one already)."""
    if isinstance(flat, dict):
        return {_text(k): _text(v) for k, v in flat.items()}
    items = list(flat)
    return dict(zip(items[::2], items[1::2], strict=True))
