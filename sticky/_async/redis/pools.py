"""The Redis store's profiles and pools: create, settings, add, remove, health; the cache.

Eligibility is computed here, in Python (:func:`sticky.policy.is_eligible`, once per
pool version), and stored in the pool entries for the select scripts to read: every
script that changes the settings or the pool compares-and-sets on the pool version the
flags were computed at, and replies ``STALE`` with the current data otherwise. A profile
written by 0.1 (entries without the flag) is migrated on its first touch by a select or
a pool change. The number-membership protocol across slots is described in
``docs/redis.md``.
"""

from __future__ import annotations

# async: begin
import asyncio

# async: end
import contextlib
import json
import math
import random
import secrets
import threading

# sync: import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

import attrs

from sticky import geo
from sticky._async.redis.runner import AsyncRunner
from sticky.errors import (
    ExtraNotInstalled,
    InvalidSettings,
    NumberInUse,
    ProfileExists,
    StoreUnavailable,
    UnknownNumber,
    UnknownProfile,
    shown,
)
from sticky.numbers import NumberType, SenderNumber
from sticky.policy import (
    Load,
    Window,
    capacity_on,
    clears_mappings,
    clears_windows,
    health_bucket,
    recovery_rates,
)
from sticky.settings import PoolSettings
from sticky.store.redis import codec
from sticky.store.redis.keys import KeyScheme, ProfileKeys, unhex
from sticky.store.redis.scripts import Op, Script, Tag, Wrote, call, scripts
from sticky.values import Outcome

if TYPE_CHECKING:
    import redis

__all__ = ["AsyncRedisPools"]

_MIGRATE_CHUNK = 1_000
"""Mappings one migration script moves into buckets (about: HSCAN's COUNT)."""
_ADD_ATTEMPTS = 50
"""Rounds of add_number's claim protocol before giving up on a racing rival add."""
_DEFAULT_TIMEOUT = 5.0
"""Default socket and connect timeouts of :meth:`RedisStore.from_url`, in seconds."""

_UNKNOWN, _OLD, _STALE = Tag.UNKNOWN_PROFILE, Tag.OLD_LAYOUT, Tag.STALE
_f = codec.float_text
_OWNERS = 10_000
"""Numbers whose owning profile a store remembers (for record_delivery's one round trip)."""
_PLACE = {Outcome.DELIVERED: "2", Outcome.FAILED: "3", Outcome.SPAM: "4"}
"""An outcome's place in a window entry ``(bucket, delivered, failed, spam)``, from 1."""


def unknown_profile(profile_id: str) -> UnknownProfile:
    """The error for an id no profile has."""
    return UnknownProfile(f"unknown profile {shown(profile_id)}")


def not_in_pool(number: str, profile_id: str) -> UnknownNumber:
    """The error for a number that is not in this profile's pool."""
    return UnknownNumber(f"number {shown(number)} is not in profile {shown(profile_id)}")


NO_TIERS: tuple[str, ...] = ("-", "-", "-", "-")
"""The tier fields of a recipient whose tier keys are not needed (or not known)."""


class Cached:
    """A profile's settings and pool at one version (versions are never reused)."""

    __slots__ = (
        "_keys_of",
        "by_number",
        "capacity",
        "mode",
        "pool",
        "settings",
        "settings_text",
        "version",
        "version_text",
    )

    def __init__(
        self,
        version_text: str,
        settings: PoolSettings,
        pool: tuple[SenderNumber, ...],
        settings_text: str = "",
    ) -> None:
        self.settings_text = settings_text
        """The settings JSON as stored (older versions wrote fewer fields)."""
        self.version_text = version_text
        self.version = int(version_text)
        self.settings = settings
        self.pool = pool
        self.by_number = {n.number: n for n in pool}
        self.mode = codec.geo_mode(settings)
        """The geomatch mode a select tells its script it computed tier fields for."""
        self.capacity = capacity_on(pool, settings)
        """Whether capacity is on at this version (then a select passes its day)."""
        self._keys_of: Callable[[str], geo.GeoKeys] | None = None

    def tier_fields(self, to: str) -> tuple[str, ...]:
        """The choice hash's fields of ``to``'s four geomatch tiers ('-': none). O(1)."""
        if self.mode == "off":
            return NO_TIERS
        keys_of = self._keys_of
        if keys_of is None:
            keys_of = self._keys_of = geo.keys_function(self.settings.geomatch)
        return tuple(
            "-" if key is None else f"{tier}:{key}" for tier, key in enumerate(keys_of(to), 1)
        )

    def choice_args(self) -> list[str]:
        """store_choice's arguments: this version and its choice data. O(p).

        Raises ExtraNotInstalled where full geomatch needs the extra (as a Chooser does).
        """
        fields = codec.choice_fields(self.pool, self.settings, self.version)
        return [self.version_text, str(1 + len(fields)), self.mode, *fields]


class AsyncRedisPools:
    """Profiles and pools on Redis, and the per-version cache the selects rely on.

    The base of :class:`~sticky.store.redis.RedisStore` (its selects, look-ups and
    housekeeping are in :mod:`sticky.store.redis.store`); see its docstring.
    """

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        *,
        prefix: str = "sticky",
        min_replicas: int = 0,
        replica_timeout: float = 1.0,
    ) -> None:
        try:
            import redis as redis_module  # noqa: PLC0415 - the optional extra, on demand
        except ImportError as exc:
            raise ExtraNotInstalled("redis", "redis", "the Redis store") from exc
        if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
            msg = f"invalid key prefix {shown(prefix)}: expected a non-empty string without braces"
            raise InvalidSettings(msg)
        if isinstance(min_replicas, bool) or not isinstance(min_replicas, int) or min_replicas < 0:
            msg = f"invalid min_replicas {shown(min_replicas)}: expected an int >= 0"
            raise InvalidSettings(msg)
        if (
            isinstance(replica_timeout, bool)
            or not isinstance(replica_timeout, (int, float))
            or not 0 < replica_timeout < math.inf
        ):
            msg = f"invalid replica_timeout {shown(replica_timeout)}: expected seconds > 0"
            raise InvalidSettings(msg)
        # async: begin
        import redis.asyncio as aredis  # noqa: PLC0415 - the optional extra, on demand

        given: object = client  # the annotation names the sync client: test the object
        if not isinstance(given, aredis.Redis) or min_replicas:
            msg = (
                "the asyncio Redis store takes a redis.asyncio.Redis client (one server),"
                " without min_replicas: give AsyncEngine a RedisStore for a cluster or"
                " for min_replicas (it runs in a worker thread)"
            )
            raise InvalidSettings(msg)
        # async: end
        self._client: Any = client  # redis-py leaves some methods untyped
        self._prefix = prefix
        self._owns_client = False
        self._keys = KeyScheme(prefix)
        self._run = AsyncRunner(
            client, redis_module, min_replicas=min_replicas, replica_timeout=replica_timeout
        )
        s = scripts()
        self._s = s
        self._s_begin = s["begin_select"]
        self._s_commit = s["commit_select"]
        self._s_select = s["select"]
        self._s_many = s["select_many"]
        self._cache: dict[str, Cached] = {}
        self._owners: dict[str, str] = {}
        """Each number's owner key as last read (``<incarnation>:<hex id>``): a hint only,
        which the scripts check."""
        self._counts_lock = threading.Lock()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "sticky",
        min_replicas: int | None = None,
        replica_timeout: float | None = None,
        **client_options: Any,  # noqa: ANN401
    ) -> Self:
        """Open a Redis URL with redis-py; the client is closed by :meth:`close`.

        ``redis://``, ``rediss://`` or ``unix://`` open one server;
        ``redis+cluster://host:port[,host:port...]`` (or ``rediss+cluster://``) a
        Redis Cluster (``redis.RedisCluster``, discovering the other nodes). The query
        may carry ``min_replicas`` and ``replica_timeout`` (seconds), as the keywords
        do. Defaults: 5 s socket and connect timeouts, decoded replies, and no
        automatic retries (a retried script could apply twice; a failed call raises
        StoreUnavailable instead). ``client_options`` go to redis-py. The asyncio
        store keeps at most ``max_connections`` (default 50) connections: a task waits
        for a free one.
        """
        try:
            # async: begin
            import redis.asyncio as aredis  # noqa: PLC0415 - the optional extra, on demand
            from redis.asyncio.retry import Retry  # noqa: PLC0415 - redis-py 8 warns at a sync one

            # async: end
            # sync: import redis as redis_module  # noqa: PLC0415 - the optional extra, on demand
            # sync: from redis.retry import Retry  # noqa: PLC0415
            from redis.backoff import NoBackoff  # noqa: PLC0415

            from sticky.store.redis import cluster  # noqa: PLC0415
        except ImportError as exc:
            raise ExtraNotInstalled("redis", "redis", "the Redis store") from exc
        options: dict[str, Any] = {
            "socket_timeout": _DEFAULT_TIMEOUT,
            "socket_connect_timeout": _DEFAULT_TIMEOUT,
            "decode_responses": True,
            "retry": Retry(NoBackoff(), 0),
        }
        options.update(client_options)
        parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
        client: Any
        try:
            if parts is not None and parts.scheme.lower() in cluster.SCHEMES:
                client, durable = cluster.make_cluster(url, options)
            else:
                query = urllib.parse.parse_qs(parts.query) if parts is not None else {}
                durable = cluster.durability_options(query, url)
                if durable and parts is not None:
                    url = parts._replace(query=urllib.parse.urlencode(query, doseq=True)).geturl()
                # async: begin
                # Tasks wait for one of a bounded set of connections (50 unless
                # max_connections says otherwise) rather than fail when all are busy.
                options.setdefault("max_connections", 50)
                pool = aredis.BlockingConnectionPool.from_url(url, **options)
                client = aredis.Redis.from_pool(pool)  # the client closes the pool
                # async: end
                # sync: client = redis_module.Redis.from_url(url, **options)
        except ValueError as exc:  # redis-py's word for a bad port, db or option in the URL
            msg = f"invalid Redis URL {shown(url)}: {exc}"
            raise InvalidSettings(msg) from exc
        if min_replicas is not None:
            durable["min_replicas"] = min_replicas
        if replica_timeout is not None:
            durable["replica_timeout"] = replica_timeout
        try:
            store = cls(client, prefix=prefix, **durable)
        except InvalidSettings:
            # sync: client.close()
            raise
        store._owns_client = True
        return store

    def __repr__(self) -> str:
        return f"{type(self).__name__}(client={self._client!r}, prefix={self._prefix!r})"

    # -- the per-version cache, and the migration of 0.1 profiles -------------------
    def _remember(self, profile_id: str, reply: Sequence[str], at: int) -> Cached:
        """Cache the settings and pool a script appended at ``reply[at:]`` (version first)."""
        cached = Cached(
            reply[at],
            PoolSettings.from_dict(json.loads(reply[at + 1])),
            codec.parse_pool(reply[at + 2 :]),
            reply[at + 1],
        )
        self._cache[profile_id] = cached
        return cached

    def _current(
        self, profile_id: str, reply: Sequence[str], at: int, cached: Cached | None
    ) -> Cached:
        """The cache entry a reply refers to: new data if it carried some, else ``cached``."""
        if len(reply) > at + 1:
            return self._remember(profile_id, reply, at)
        assert cached is not None, "a reply without data answers a cached version"
        return cached

    def _next_version(
        self, profile_id: str, cached: Cached | None, pool: Sequence[SenderNumber]
    ) -> None:
        """Cache ``pool`` as the version after ``cached``'s: a script changed an entry.

        Only for a script that compared-and-set on ``cached``'s version and changed the
        entry (so incremented it once): versions are never reused, so the next one is
        this pool.
        """
        if cached is not None:
            self._cache[profile_id] = Cached(
                str(cached.version + 1), cached.settings, tuple(pool), cached.settings_text
            )

    async def _info(self, profile_id: str, *, fresh: bool = False) -> Cached:
        """The profile's settings and pool, current. 1 round trip (the data only if stale)."""
        cached = None if fresh else self._cache.get(profile_id)
        reply = await self._run.eval(
            self._s["info"],
            self._keys.of(profile_id).script,
            (cached.version_text if cached else "",),
        )
        if reply[0] == _UNKNOWN:
            raise unknown_profile(profile_id)
        return self._current(profile_id, reply, 1, cached)

    async def _migrate(self, profile_id: str) -> None:
        """Bring a profile of an older layout to this one. 2+ round trips, then one a chunk.

        A profile written by 0.1 first gets its eligibility flags (layout 2): computed
        from the settings and pool of one version, and stored only if that version is
        still current. Then its mappings move into buckets (layout 3), about
        ``_MIGRATE_CHUNK`` a script, each atomic: the other scripts refuse the profile
        until the last chunk, so nothing changes between two, and a migration that
        stops half-way (a client gone, a timeout) is taken up where it stopped by the
        next touch, from any client.
        """
        k = self._keys.of(profile_id)
        script, args = self._s["migrate_map"], (str(_MIGRATE_CHUNK),)
        while True:
            reply = await self._run.eval(script, k.script, args)
            if reply[0] == _UNKNOWN:
                raise unknown_profile(profile_id)
            if reply[0] == _OLD:
                await self._migrate_flags(profile_id)
            elif reply[1] == "1":
                return

    async def _migrate_flags(self, profile_id: str) -> None:
        """A profile written by 0.1 to layout 2: its pool entries' flags. 2+ round trips."""
        k = self._keys.of(profile_id)
        current = await self._info(profile_id, fresh=True)
        while True:
            reply = await self._run.eval(
                self._s["migrate"],
                k.script,
                (
                    current.version_text,
                    *codec.choice_args(current.pool, current.settings, current.version),
                    *codec.flat_entries(current.pool, current.settings),
                ),
            )
            if reply[0] == Tag.OK:
                return
            if reply[0] == _UNKNOWN:
                raise unknown_profile(profile_id)
            current = self._remember(profile_id, reply, 1)

    async def _eval_current(
        self,
        profile_id: str,
        script: Script,
        keys: Sequence[str],
        args: Sequence[str],
        wrote: Wrote | None = None,
    ) -> Any:  # noqa: ANN401 - a script's reply
        """Run a script that needs this layout. 1 round trip.

        A profile it refuses as of an older layout (OLD_LAYOUT) is migrated, and the script
        run again; UNKNOWN_PROFILE raises UnknownProfile.
        """
        reply = await self._run.eval(script, keys, args, wrote)
        if reply[0] == _OLD:
            await self._migrate(profile_id)
            reply = await self._run.eval(script, keys, args, wrote)
        if reply[0] == _UNKNOWN:
            raise unknown_profile(profile_id)
        return reply

    # -- profiles -------------------------------------------------------------------
    async def create_profile(self, profile_id: str, settings: PoolSettings) -> None:
        """Create an empty profile. 1 round trip on one server, 3 on a cluster.

        Three steps, in order (see :meth:`AsyncRunner.in_order`): list the id in the profile
        set, create the profile in its slot (the commit point), list it again. The
        first makes a crash after the commit harmless (a listed id whose profile is
        missing is skipped by ``profiles()``); the last makes a racing
        ``delete_profile`` of the same id unable to unlist a profile that exists (see
        its repair step). The script carries a token, so a re-sent create answers OK
        for the profile it made, not ``ProfileExists``.
        """
        k = self._keys.of(profile_id)
        base = str(secrets.randbelow(1 << 50) + 1)
        add: Op = (None, ("SADD", self._keys.profiles, k.hex))
        create: Op = (
            self._s["create_profile"],
            call(k.script, k.hex, *codec.settings_args(settings), base, secrets.token_hex(8)),
        )
        reply = (await self._run.in_order([add, create, add]))[1]
        if reply == Tag.EXISTS:
            msg = f"profile {shown(profile_id)} already exists"
            raise ProfileExists(msg)

    async def delete_profile(self, profile_id: str, now: float) -> int:
        """Delete a profile, its pool and mappings; return the live ones. O(n + p).

        2 round trips on one server, 4 or more on a cluster; never a ``WAIT``. The
        profile's own slot is deleted in one script (the commit point); then its numbers'
        owner keys are released and its evicted count is added to the store's counter
        (each step idempotent, in any order: the count is added once per incarnation)
        and its id leaves the profile set, and the repair step: if the profile exists
        again by then (a racing create), the id is listed again. If a step after the
        commit fails, the leftovers are harmless: an owner key naming a deleted
        profile counts as free, and profiles() skips ids whose profile is gone (the
        count is then lost, never doubled).
        """
        k = self._keys.of(profile_id)
        reply = await self._eval_current(
            profile_id, self._s["delete_profile"], k.script, (_f(now),)
        )
        live, inc, evicted, numbers = int(reply[1]), reply[2], reply[3], reply[4:]
        self._cache.pop(profile_id, None)
        me = f"{inc}:{k.hex}"  # any attempt's value: none can commit to a deleted profile
        release = self._s["own_release"]
        ops: list[Op] = [(release, call((self._keys.owner(n),), me, "0")) for n in numbers]
        # one script, keyed by the incarnation: a re-sent pipeline adds the count once
        moved = (self._keys.evicted, self._keys.moved)
        ops.append((self._s["add_evicted"], call(moved, k.hex, inc or "", evicted or "0")))
        unlist: list[Op] = [
            (None, ("SREM", self._keys.profiles, k.hex)),
            (None, ("EXISTS", k.meta)),
        ]
        try:
            await self._run.pipeline(ops)
            if (await self._run.in_order(unlist))[1]:  # created again meanwhile: keep it listed
                await self._run.command("SADD", self._keys.profiles, k.hex)
        except StoreUnavailable:
            pass  # deleted already; what is left over heals itself (see the docstring)
        return live

    async def settings(self, profile_id: str) -> PoolSettings:
        """A profile's settings. 1 round trip."""
        return (await self._info(profile_id)).settings

    async def replace_settings(
        self, profile_id: str, old: PoolSettings, new: PoolSettings
    ) -> bool:
        """Compare-and-set the settings, and the eligibility flags they change.

        1 round trip with the pool cached at its current version (``settings()`` leaves
        it so), 2 otherwise; O(p), and O(k) more when a longer ttl evicts k, or O(n) when
        :func:`~sticky.policy.clears_mappings` (in the same script; as are the windows
        :func:`~sticky.policy.clears_windows` drops).
        """
        k = self._keys.of(profile_id)
        current = self._cache.get(profile_id) or await self._info(profile_id)
        while True:
            # A profile written before a settings field existed stores fewer fields: its
            # text is the old settings too.
            as_stored = current.settings_text if current.settings == old else ""
            head = (codec.settings_json(old), as_stored, *codec.settings_args(new))
            changed: list[str] = []
            for n in current.pool:
                entry = codec.entry(n, new)
                if entry != codec.entry(n, current.settings):
                    changed += (n.number, entry)
            choice = codec.choice_args(current.pool, new, current.version)
            clear = "1" if clears_mappings(old, new) else "0"
            windows = "1" if clears_windows(old, new) else "0"
            reply = await self._run.eval(
                self._s["replace_settings"],
                k.script,
                (*head, current.version_text, clear, windows, *choice, *changed),
            )
            tag = reply[0]
            if tag == Tag.OK:
                return True
            if tag == Tag.SETTINGS_CHANGED:
                return False
            if tag == _UNKNOWN:
                raise unknown_profile(profile_id)
            if tag == _OLD:
                await self._migrate(profile_id)
                current = await self._info(profile_id)
            else:
                current = self._remember(profile_id, reply, 1)

    async def profiles(self) -> list[str]:
        """Every profile id, sorted. 2 round trips, O(P log P)."""
        hexes = sorted(await self._run.command("SMEMBERS", self._keys.profiles))
        exists = await self._run.pipeline(
            [(None, ("EXISTS", self._keys.of_hex(h).meta)) for h in hexes]
        )
        return sorted(unhex(h) for h, e in zip(hexes, exists, strict=True) if e)

    # -- pools ----------------------------------------------------------------------
    async def add_number(
        self,
        profile_id: str,
        number: str,
        number_type: NumberType,
        *,
        healthy: bool,
        rate: float | None = None,
        daily_new_recipients: int | None = None,
    ) -> None:
        """Add a number, with its own limits if given. 3 round trips (5: a stale owner key).

        The pool (the profile's slot) and the number's owner key (its own slot) cannot
        change in one script on a cluster, so: (1) record a pending claim in the pool's
        slot, (2) take the owner key, checking in the named profile's slot that a stale
        owner key is really free (and revoking that profile's pending claim), (3) add the
        number, with its eligibility under the settings of the version it read, if the
        claim still stands and that version is current. See docs/redis.md.
        """
        k = self._keys.of(profile_id)
        owner_key = self._keys.owner(number)
        new = SenderNumber(number, number_type, healthy, rate, daily_new_recipients)
        for attempt in range(_ADD_ATTEMPTS):
            # new for each attempt: a rival that checked an earlier one cannot take over
            token = secrets.token_hex(8)
            cached = self._cache.get(profile_id)
            reply = await self._run.eval(
                self._s["add_claim"],
                k.script,
                (number, token, cached.version_text if cached else ""),
            )
            if reply[0] == _UNKNOWN:
                raise unknown_profile(profile_id)
            if reply[0] == Tag.IN_POOL:
                raise NumberInUse(
                    f"number {shown(number)} is already in profile {shown(profile_id)}"
                )
            inc = reply[1]
            current = self._current(profile_id, reply, 2, cached)
            me = codec.owner_value(inc, k.hex, token)
            await self._take_owner(k, number, token, owner_key, me, inc)
            while True:
                outcome = await self._run.eval(
                    self._s["add_commit"],
                    k.script,
                    (
                        number,
                        token,
                        codec.entry(new, current.settings),
                        inc,
                        current.version_text,
                        *codec.choice_args((*current.pool, new), current.settings, 0),
                    ),
                )
                if outcome[0] == _STALE:
                    current = self._remember(profile_id, outcome, 1)
                elif outcome[0] == _OLD:
                    await self._migrate(profile_id)
                    current = await self._info(profile_id)
                else:
                    break
            tag = outcome[0]
            if tag == Tag.OK:
                return
            if tag == Tag.IN_POOL:
                raise NumberInUse(
                    f"number {shown(number)} is already in profile {shown(profile_id)}"
                )
            if tag == _UNKNOWN:
                await self._run.eval(self._s["own_release"], (owner_key,), (me, "1"))
                raise unknown_profile(profile_id)
            # revoked by a rival add of the same number: back off and start over
            # async: begin
            await asyncio.sleep(random.uniform(0, 0.001 * (attempt + 1)))  # noqa: S311 - jitter
            # async: end
            # sync: time.sleep(random.uniform(0, 0.001 * (attempt + 1)))  # noqa: S311 - jitter
        msg = f"number {shown(number)} is being added to another profile at the same time"
        raise NumberInUse(msg)

    async def _take_owner(
        self, k: ProfileKeys, number: str, token: str, owner_key: str, me: str, inc: str
    ) -> None:
        """Make the owner key ours, or raise NumberInUse (after withdrawing our claim)."""
        checked = ""
        while True:
            current = await self._run.eval(self._s["own"], (owner_key,), (me, k.hex, inc, checked))
            if current == Tag.OK:
                return
            other_inc, other_hex = codec.parse_owner(current)
            other = self._keys.of_hex(other_hex)
            if (
                await self._run.eval(self._s["own_check"], other.script, (number, other_inc))
                == Tag.IN_POOL
            ):
                await self._run.eval(self._s["withdraw"], k.script, (number, token))
                msg = f"number {shown(number)} is already in profile {shown(unhex(other_hex))}"
                raise NumberInUse(msg)
            checked = current

    async def remove_number(self, profile_id: str, number: str, now: float) -> int:
        """Remove a number and its mappings; return the live ones. 3 round trips, O(k log n).

        The owner key is read first; the script in the profile's slot is the commit
        point; releasing the owner key follows, only if it still holds the value read,
        and if that fails the stale owner key counts as free. Read before, so that an add
        of the number to this profile again, between the commit and the release, keeps
        the key it wrote. The other numbers' eligibility does not depend on this one, so
        no flag changes.
        """
        k = self._keys.of(profile_id)
        owner_key = self._keys.owner(number)
        owner = await self._run.command("GET", owner_key)
        cached = self._cache.get(profile_id)
        choice = ["", "0"]  # no pool cached: the next fresh choice has the data computed
        if cached is not None and number in cached.by_number:
            rest = [n for n in cached.pool if n.number != number]
            choice = [
                cached.version_text,
                *codec.choice_args(rest, cached.settings, cached.version),
            ]
        args = (number, _f(now), *choice)
        reply = await self._eval_current(profile_id, self._s["remove_number"], k.script, args)
        if reply[0] == Tag.NOT_IN_POOL:
            raise not_in_pool(number, profile_id)
        # Removed already: if releasing the owner key fails, the stale key heals itself.
        if owner is not None and codec.parse_owner(owner) == (reply[2], k.hex):
            with contextlib.suppress(StoreUnavailable):
                await self._run.eval(self._s["own_release"], (owner_key,), (owner, "1"))
        return int(reply[1])

    async def set_health(self, number: str, *, healthy: bool) -> None:
        """Set a pooled number's health, and its eligibility under its profile's settings.

        ``healthy=True`` also resets its delivery verdict and drops its window, in the
        same script. 2 round trips: the owner key, then its pool (3 when this store has
        not cached that pool at its current version).
        """
        if healthy:
            await self._set_entry(number, {"healthy": True, "delivery_healthy": True}, drop=True)
        else:
            await self._set_entry(number, {"healthy": False})

    async def set_drain(
        self, profile_id: str, number: str, since: float | None, grace: float | None
    ) -> SenderNumber:
        """Start or end a number's drain; return it. A changed number is a new pool version.

        1 round trip with the pool cached at its current version, 2 otherwise (the
        set_health script, given the profile: it checks the number is in this pool).
        """
        done = await self._set_entry_in(
            profile_id, number, "", {"draining_since": since, "drain_grace": grace}
        )
        if done is None:
            raise not_in_pool(number, profile_id)
        return done

    async def record_delivery(self, number: str, outcome: Outcome, now: float) -> SenderNumber:
        """Add a delivery report to the number's window and judge it; return the number.

        One script, compared-and-set on the cached pool version, adds the outcome and
        judges the window (``judge_health``'s twin in common.lua, from the settings and
        the verdict of that version), and writes a changed verdict with it: the window
        and the verdict change together. 1 round trip when this store knows the
        number's owner and its pool at the current version; the owner key costs one more
        the first time, a stale cached pool one more. A changed verdict is a new pool
        version without choice data: the next fresh choice costs one more. The report
        carries a token: the same report sent again (a reply lost) is not counted
        twice. O(1) on the server.
        """
        token = secrets.token_hex(8)
        place = _PLACE[outcome]
        owner_key = self._keys.owner(number)
        owner = self._owners.get(number)
        seen: set[str] = set()
        while True:
            if owner is None:
                owner = await self._run.command("GET", owner_key)
                if owner is None or owner in seen:  # a stale owner key: in no pool
                    self._owners.pop(number, None)
                    msg = f"number {shown(number)} is in no profile"
                    raise UnknownNumber(msg)
            seen.add(owner)
            inc, hex_id = codec.parse_owner(owner)
            done = await self._record_in(unhex(hex_id), number, inc, place, now, token)
            if done is not None:
                if len(self._owners) >= _OWNERS:
                    self._owners.clear()
                self._owners[number] = owner
                return done
            self._owners.pop(number, None)
            owner = None

    async def _record_in(
        self, profile_id: str, number: str, inc: str, place: str, now: float, token: str
    ) -> SenderNumber | None:
        """record_delivery in one profile (incarnation); None if its pool does not hold it."""
        k = self._keys.of(profile_id)
        cached = self._cache.get(profile_id)
        while True:
            args: tuple[str, ...] = (number, inc, "", "0", place, token)  # the reply: the pool
            known = None if cached is None else cached.by_number.get(number)
            other = None
            if cached is not None and known is not None:
                s = cached.settings
                other = attrs.evolve(known, delivery_healthy=not known.delivery_healthy)
                args = (
                    number,
                    inc,
                    cached.version_text,
                    str(health_bucket(now, s.health_window)),
                    place,
                    token,
                    "1" if known.delivery_healthy else "0",
                    codec.entry(other, s),
                    str(s.min_samples),
                    repr(s.min_delivery_rate),
                    repr(s.max_spam_rate),
                    *map(repr, recovery_rates(s)),
                    "0",
                )
            reply = await self._run.eval(self._s["record_delivery"], k.script, args)
            tag = reply[0]
            if tag == Tag.OK:
                assert cached is not None, "judged without a pool"
                assert known is not None
                assert other is not None
                if reply[1] != "1":
                    return known
                pool = [other if n.number == number else n for n in cached.pool]
                self._next_version(profile_id, cached, pool)
                return other
            if tag == Tag.OWNER_MOVED:
                return None
            if tag == _OLD:
                await self._migrate(profile_id)
                cached = self._cache.get(profile_id)
            else:
                cached = self._remember(profile_id, reply, 1)

    async def health(self, profile_id: str) -> tuple[tuple[SenderNumber, ...], dict[str, Window]]:
        """The pool and each number's delivery window, in one read. 1 round trip, O(p)."""
        cached = self._cache.get(profile_id)
        reply = await self._run.eval(
            self._s["health"],
            self._keys.of(profile_id).script,
            (cached.version_text if cached else "",),
        )
        if reply[0] == _UNKNOWN:
            raise unknown_profile(profile_id)
        n = int(reply[1])
        windows = {reply[i]: codec.parse_window(reply[i + 1]) for i in range(2, 2 + n, 2)}
        current = self._current(profile_id, reply, 2 + n, cached)
        return current.pool, windows

    async def set_limits(
        self, number: str, changes: Mapping[str, float | int | None]
    ) -> SenderNumber:
        """Set a pooled number's own limits; return it. Its capacity state is kept.

        Round trips as :meth:`set_health` (the same script: a new pool entry, compared and
        set on the pool version, so a re-sent call changes nothing more).
        """
        return await self._set_entry(number, changes)

    async def _set_entry(
        self, number: str, changes: Mapping[str, object], *, drop: bool = False
    ) -> SenderNumber:
        """Change a pooled number's fields in its owner's pool; return it as it is now.

        ``drop``: also drop its delivery window, in the same script.
        """
        owner_key = self._keys.owner(number)
        current = await self._run.command("GET", owner_key)
        while current is not None:
            inc, hex_id = codec.parse_owner(current)
            done = await self._set_entry_in(unhex(hex_id), number, inc, changes, drop=drop)
            if done is not None:
                return done
            again = await self._run.command("GET", owner_key)
            if again == current:
                break  # a stale owner key: the number is in no pool
            current = again
        msg = f"number {shown(number)} is in no profile"
        raise UnknownNumber(msg)

    async def _set_entry_in(
        self,
        profile_id: str,
        number: str,
        inc: str,
        changes: Mapping[str, object],
        *,
        drop: bool = False,
    ) -> SenderNumber | None:
        """_set_entry in one profile; None if its pool does not hold it.

        ``inc`` is the incarnation the owner key named, or ``""`` for the profile named
        by the caller (then UnknownProfile when there is none).
        """
        k = self._keys.of(profile_id)
        cached = self._cache.get(profile_id)
        while True:
            entry = version = ""  # no cached pool holding it: the script sends the pool
            choice = ["0"]
            known = None if cached is None else cached.by_number.get(number)
            new = None
            if cached is not None and known is not None:
                new = attrs.evolve(known, **changes)  # type: ignore[arg-type]
                entry, version = codec.entry(new, cached.settings), cached.version_text
                pool = [new if n.number == number else n for n in cached.pool]
                choice = codec.choice_args(pool, cached.settings, cached.version)
            reply = await self._run.eval(
                self._s["set_health"],
                k.script,
                (number, inc, entry, version, "1" if drop else "0", *choice),
            )
            tag = reply[0]
            if tag == Tag.OK:
                assert new is not None, "a set_health without an entry is never OK"
                if cached and known and entry != codec.entry(known, cached.settings):
                    self._next_version(profile_id, cached, pool)  # the script changed it
                return new
            if tag == Tag.OWNER_MOVED:
                return None
            if tag == _UNKNOWN:
                raise unknown_profile(profile_id)
            if tag == _OLD:
                await self._migrate(profile_id)
                cached = self._cache.get(profile_id)
            else:
                cached = self._remember(profile_id, reply, 1)

    async def capacity_state(
        self, profile_id: str
    ) -> tuple[PoolSettings, tuple[SenderNumber, ...], dict[str, Load]]:
        """The settings, the pool and each number's capacity state. 1 round trip, O(p)."""
        cached = self._cache.get(profile_id)
        reply = await self._run.eval(
            self._s["capacity"],
            self._keys.of(profile_id).script,
            (cached.version_text if cached else "",),
        )
        if reply[0] == _UNKNOWN:
            raise unknown_profile(profile_id)
        n = int(reply[1])
        loads = {reply[i]: codec.parse_load(reply[i + 1]) for i in range(2, 2 + n, 2)}
        current = self._current(profile_id, reply, 2 + n, cached)
        return current.settings, current.pool, loads

    async def numbers(self, profile_id: str) -> tuple[SenderNumber, ...]:
        """A profile's pool, sorted by number. 1 round trip (cached per version)."""
        return (await self._info(profile_id)).pool
