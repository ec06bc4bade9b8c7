"""Running the Redis store's scripts and commands on a redis-py client, errors mapped.

:class:`Runner` runs scripts as functions of one library (``FCALL``; loading the library
again when the server does not know the function: after a restart, a flush, a new node),
plain commands and pipelines, and maps connection errors and "not now" replies to
:class:`~sticky.StoreUnavailable`. Nothing here imports redis-py at import time.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any, NoReturn

from sticky.errors import StoreUnavailable
from sticky.store.redis.scripts import (
    TOPOLOGY,
    TRANSIENT,
    Op,
    Script,
    Wrote,
    call,
    library,
    reply_text,
    text,
)

__all__ = ["AsyncClosedRunner", "AsyncRunner"]

_log = logging.getLogger("sticky.store.redis")


_MISSING = "Function not found"
"""The error of an ``FCALL`` the server has no such function for: it did not run."""


def _command(op: Op) -> list[Any]:
    script, args = op
    return list(args) if script is None else ["FCALL", script.function, *args]


def _first_key(op: Op) -> str:
    """The key that routes an op: a script's first key, a command's first argument."""
    return str(op[1][1])


_HEADS_MAX = 4096
"""Packed heads kept (one per function and key tuple: a profile's script); past it the
cache starts again, so that a store of many profiles holds a bounded amount."""


class Packer:
    """The RESP bytes of ``FCALL`` commands, UTF-8 encoded, packed here.

    redis-py's packer costs about 400 ns an argument on a small machine (a select sends
    ten); here the function, the key count and the keys are packed once per key tuple
    (the head) and each argument costs one encode and one format. O(len(args)).
    """

    __slots__ = ("_heads",)

    def __init__(self) -> None:
        self._heads: dict[tuple[str, tuple[str, ...]], tuple[int, bytes]] = {}

    def fcall(self, function: str, keys: Sequence[str], args: Sequence[str]) -> bytes:
        """``FCALL function len(keys) *keys *args`` as RESP."""
        key = (function, tuple(keys))
        head = self._heads.get(key)
        if head is None:
            if len(self._heads) >= _HEADS_MAX:
                self._heads.clear()
            items = ("FCALL", function, len(keys), *keys)
            head = self._heads[key] = (len(items), b"".join(_bulk(x) for x in items))
        count, packed = head
        parts = [b"*%d\r\n" % (count + len(args)), packed]
        parts += [_bulk(arg) for arg in args]
        return b"".join(parts)


def _bulk(value: object) -> bytes:
    """One argument as a RESP bulk string, encoded as redis-py's encoder would."""
    if value.__class__ is str:
        data = value.encode()
    elif isinstance(value, bytes):
        data = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        data = repr(value).encode()
    else:
        msg = f"cannot send {type(value).__name__} {value!r} to Redis"
        raise TypeError(msg)
    return b"$%d\r\n%s\r\n" % (len(data), data)


class AsyncRunner:
    """Scripts and commands on one redis-py client, with redis-py's errors mapped.

    Every method is 1 round trip (2 when the server did not know the library: it is
    loaded, then the call is repeated; on a cluster, 1 per
    node a pipeline touches). With ``min_replicas``, a call given ``wrote`` sends
    ``WAIT`` on the same connection when a reply says it stored a mapping: 1 more.
    """

    __slots__ = (
        "_client",
        "_cluster",
        "_down",
        "_library",
        "_min_replicas",
        "_not_redis",
        "_packer",
        "_redirect",
        "_redis_errors",
        "_replica_ms",
        "_response_error",
        "_send",
        "_topology",
        "_transient",
    )

    def __init__(
        self,
        client: Any,  # noqa: ANN401 - untyped
        redis_module: Any,  # noqa: ANN401
        *,
        min_replicas: int = 0,
        replica_timeout: float = 1.0,
    ) -> None:
        from sticky.store.redis import cluster  # noqa: PLC0415 - needs redis-py

        self._client = client
        self._cluster = isinstance(client, redis_module.RedisCluster)
        self._send = cluster.send
        self._min_replicas = min_replicas
        self._replica_ms = max(1, round(replica_timeout * 1000))
        self._library = library()
        # FCALL packed here and sent on a pooled connection (see Packer): not for a client
        # with one connection of its own, nor one whose encoding is not UTF-8.
        pool_options = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
        one = ("single_connection_client", "_single_connection_client", "connection")
        own = not self._cluster and not any(getattr(client, name, None) for name in one)
        utf8 = pool_options.get("encoding", "utf-8").lower().replace("_", "-") in {"utf-8", "utf8"}
        strict = pool_options.get("encoding_errors", "strict") == "strict"
        self._packer = Packer() if own and utf8 and strict else None
        errors = redis_module.exceptions
        # InvalidResponse: what answered does not speak Redis' protocol (not a Redis server).
        self._not_redis: type[Exception] = errors.InvalidResponse
        # ClusterError: the cluster is down, or redirections ran out ("TTL exhausted");
        # SlotNotCoveredError: no node serves the slot now (a failover in progress).
        self._down: tuple[type[Exception], ...] = (
            errors.ConnectionError,
            errors.TimeoutError,
            self._not_redis,
            errors.ClusterError,
            errors.SlotNotCoveredError,
        )
        self._topology: type[Exception] = errors.RedisClusterException
        self._redis_errors = (errors.RedisError, errors.RedisClusterException)
        self._redirect: type[Exception] = errors.AskError  # MOVED is an ASK: not run
        self._response_error: type[Exception] = errors.ResponseError
        # redis-py strips the code of the replies it has a class for: match on the class
        self._transient: tuple[type[Exception], ...] = tuple(
            getattr(errors, name)
            for name in (
                "ReadOnlyError",
                "OutOfMemoryError",
                "ClusterDownError",
                "TryAgainError",
                "AskError",
            )
            if hasattr(errors, name)
        )

    @property
    def waits(self) -> bool:
        """Whether writes of mappings wait for replicas (``min_replicas`` > 0)."""
        return self._min_replicas > 0

    def unavailable(self, exc: Exception) -> StoreUnavailable:
        """The StoreUnavailable a caller raises ``from exc`` (logged: a store fault)."""
        if isinstance(exc, self._not_redis):
            error = StoreUnavailable(
                f"Redis is unavailable: the server's reply is not Redis' protocol "
                f"(is it a Redis server?): {type(exc).__name__}: {exc}"
            )
        elif isinstance(exc, self._redirect) and not self._cluster:
            error = StoreUnavailable(
                f"Redis is unavailable: a cluster node redirected the call (open the store "
                f"with a redis+cluster:// URL or a RedisCluster client): {exc}"
            )
        else:
            error = StoreUnavailable(f"Redis is unavailable: {type(exc).__name__}: {exc}")
        _log.warning("%s", error, extra={"store": "redis", "fault": type(exc).__name__})
        return error

    def _mapped(self, exc: BaseException) -> StoreUnavailable | None:
        """The StoreUnavailable an error means, or None for an error that means a bug."""
        if not isinstance(exc, Exception):
            return None
        if isinstance(exc, self._down):
            if self._cluster and not isinstance(exc, self._not_redis):
                self._refresh()
            return self.unavailable(exc)
        if isinstance(exc, self._transient) or (
            isinstance(exc, self._response_error) and str(exc).startswith(TRANSIENT)
        ):
            return self.unavailable(exc)
        if isinstance(exc, self._topology) and str(exc).startswith(TOPOLOGY):
            return self.unavailable(exc)
        return None

    def _refresh(self) -> None:
        """Read the cluster's slot table again (a node failed: a replica may take over)."""
        with contextlib.suppress(*self._redis_errors):
            self._client.nodes_manager.initialize()

    async def eval(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[str],
        wrote: Wrote | None = None,
    ) -> Any:  # noqa: ANN401 - a script's reply
        """Run one script: ``FCALL`` of its function (the library loaded first if missing)."""
        if self._cluster or (wrote is not None and self._min_replicas):
            return (await self.pipeline([(script, call(keys, *args))], wrote))[0]
        try:
            try:
                reply = await self._fcall(script.function, keys, args)
            except self._response_error as exc:
                if not self._missing(exc):
                    raise
                await self.load_all()
                reply = await self._fcall(script.function, keys, args)
        except self._redis_errors as exc:
            mapped = self._mapped(exc)
            if mapped is not None:
                raise mapped from exc
            raise
        return reply_text(reply)

    async def _fcall(self, function: str, keys: Sequence[str], args: Sequence[str]) -> Any:  # noqa: ANN401
        """One ``FCALL`` on one server, its reply parsed: 1 round trip.

        Packed by :class:`Packer` and sent on a connection of the client's pool, read
        as redis-py's ``execute_command`` reads it (no retries: the store's client has
        none). A connection whose reply was not read whole (an error, a timeout, a
        cancelled task) is disconnected, never given back with a reply pending.
        """
        client = self._client
        packer = self._packer
        if packer is None:
            return await client.execute_command("FCALL", function, len(keys), *keys, *args)
        packed = packer.fcall(function, keys, args)
        pool = client.connection_pool
        conn = await pool.get_connection()
        clean = False
        try:
            await conn.send_packed_command([packed])
            try:
                reply = await client.parse_response(conn, "FCALL")
            except self._response_error:
                clean = True  # an error reply, read whole
                raise
            clean = True
        finally:
            if not clean:
                await conn.disconnect()
            await pool.release(conn)
        return reply

    def _missing(self, reply: object) -> bool:
        """Whether a reply says the server has no such function (the call did not run)."""
        return isinstance(reply, self._response_error) and str(reply).startswith(_MISSING)

    async def load_all(self) -> None:
        """Load the library (``FUNCTION LOAD REPLACE``): after a call of a missing function.

        A server keeps its functions across restarts only when it persists (RDB, AOF), and
        a node that joins a cluster has none. Loading is idempotent; on a cluster it goes
        to every primary (replicas get it by replication). Connection errors propagate
        to the caller, which maps them.
        """
        await self._client.function_load(self._library.code, replace=True)

    async def command(self, *args: str) -> Any:  # noqa: ANN401 - a command's reply
        """One plain command."""
        if self._cluster:
            return (await self.pipeline([(None, args)]))[0]
        try:
            return reply_text(await self._client.execute_command(*args))
        except self._redis_errors as exc:
            mapped = self._mapped(exc)
            if mapped is not None:
                raise mapped from exc
            raise

    async def pipeline(self, ops: Sequence[Op], wrote: Wrote | None = None) -> list[Any]:
        """Commands and scripts in one non-transactional pipeline, each sent once.

        Scripts whose function the server did not know (they did not run) are run again
        after the library is loaded. On a cluster the ops are grouped by node (see
        :mod:`.cluster`): no order is kept between slots. With ``wrote`` and
        ``min_replicas``, each connection whose replies include a stored mapping sends
        ``WAIT``; too few replicas raise StoreUnavailable (the writes stand on the primary).
        """
        if not ops:
            return []
        short: list[int] = []
        try:
            results = await self._run(ops, wrote, short)
            missing = [i for i, r in enumerate(results) if self._missing(r)]
            if missing:
                await self.load_all()
                again = await self._run([ops[i] for i in missing], wrote, short)
                for i, r in zip(missing, again, strict=True):
                    results[i] = r
        except self._redis_errors as exc:
            mapped = self._mapped(exc)
            if mapped is not None:
                raise mapped from exc
            raise
        for r in results:
            if isinstance(r, Exception):
                mapped = self._mapped(r)
                if mapped is not None:
                    raise mapped from r
                raise r
        if short:
            msg = (
                f"Redis is unavailable: {min(short)} of {self._min_replicas} replicas "
                f"acknowledged the write within {self._replica_ms} ms (WAIT); the write "
                "stands on the primary"
            )
            raise StoreUnavailable(msg)
        return [reply_text(r) for r in results]

    async def in_order(self, ops: Sequence[Op]) -> list[Any]:
        """Ops that must run in this order, each sent once.

        One pipeline on one server (which keeps its order), one call after another on
        a cluster (whose pipelines keep no order across slots). 1 round trip, or 1 per
        op on a cluster.
        """
        if not self._cluster:
            return await self.pipeline(ops)
        return [(await self.pipeline([op]))[0] for op in ops]

    async def _run(self, ops: Sequence[Op], wrote: Wrote | None, short: list[int]) -> list[Any]:
        waits = wrote is not None and self._min_replicas > 0
        if not self._cluster and not waits:
            pipe = self._client.pipeline(transaction=False)
            for op in ops:
                pipe.execute_command(*_command(op))
            return list(await pipe.execute(raise_on_error=False))
        then = None
        if waits:
            assert wrote is not None
            wait = ("WAIT", str(self._min_replicas), str(self._replica_ms))

            def then(replies: list[Any]) -> Sequence[str] | None:
                stored = any(
                    not isinstance(r, Exception) and wrote(reply_text(r)) for r in replies
                )
                return wait if stored else None

        # async: begin
        # The asyncio store is built only for one server without min_replicas (see
        # AsyncRedisPools): the sends below, per node or with WAIT, are the sync store's.
        msg = "per-node sends and WAIT need the synchronous Redis store"
        raise NotImplementedError(msg)
        # async: end
        results, acks = self._send(
            self._client,
            [_command(op) for op in ops],
            [_first_key(op) for op in ops],
            then,
            cluster=self._cluster,
        )
        short += [int(a) for a in acks if int(a) < self._min_replicas]
        return results

    async def scan(self, pattern: str) -> list[str]:
        """Every key matching ``pattern`` (SCAN: one round trip per 10,000 keys per node)."""
        try:
            return [text(key) async for key in self._client.scan_iter(match=pattern, count=10_000)]
        except self._redis_errors as exc:
            mapped = self._mapped(exc)
            if mapped is not None:
                raise mapped from exc
            raise


class AsyncClosedRunner(AsyncRunner):
    """The runner of a closed store: every call raises StoreUnavailable, nothing is sent."""

    __slots__ = ()

    def __init__(self) -> None:  # no client, nothing to map: nothing is ever run
        pass

    def _closed(self, *_args: object, **_kwargs: object) -> NoReturn:
        msg = "Redis store is closed"
        raise StoreUnavailable(msg)

    eval = command = pipeline = in_order = scan = load_all = _closed
