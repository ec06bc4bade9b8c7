"""Redis Cluster plumbing: the cluster URL, the client, and sending without re-sends.

redis-py's cluster pipeline groups commands by node (so commands for different slots
lose their order) and sends a command again, one by one, when its node timed out,
whatever the retry setting: a script that ran and whose reply was lost would then run
twice. So the store never uses it: :func:`send` groups the calls by node itself, sends
each node's calls on one connection of that node, once, and follows only the
redirections that say a call did not run (``MOVED``, ``ASK``). The same one-connection
send carries ``WAIT`` for :class:`~sticky.store.redis.RedisStore`'s ``min_replicas``:
``WAIT`` counts the replicas that acknowledged *this connection's* writes.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode
from redis.retry import Retry

from sticky.errors import InvalidSettings, shown

__all__ = ["SCHEMES", "durability_options", "make_cluster", "send"]

SCHEMES = ("redis+cluster", "rediss+cluster")
"""The URL schemes of a cluster: ``redis+cluster://host:port[,host:port...][?opts]``."""

_REDIRECTS = 5
"""MOVED and ASK redirections one call follows before it reports the cluster unavailable."""

Call = Sequence[Any]
"""One command as redis-py sends it: name, then arguments."""


def durability_options(query: dict[str, list[str]], url: str) -> dict[str, Any]:
    """``min_replicas`` and ``replica_timeout`` from a URL's query, removed from it."""
    out: dict[str, Any] = {}
    for name, parse in (("min_replicas", int), ("replica_timeout", float)):
        if name in query:
            values = query.pop(name)
            try:
                out[name] = parse(values[-1])
            except ValueError as exc:
                msg = f"invalid {name} {shown(values[-1])} in Redis URL {shown(url)}"
                raise InvalidSettings(msg) from exc
    return out


def make_cluster(url: str, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A ``RedisCluster`` for a cluster URL, and the URL's durability options.

    ``options`` (the store's safe defaults, then the caller's) go to every node's
    connections; the cluster client never retries a command on its own (``retry``
    with 0 retries): a failed call raises, and the store maps it.
    """
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    durable = durability_options(query, url)
    nodes: list[ClusterNode] = []
    node: Any = ClusterNode  # untyped in redis-py
    for hostport in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            msg = f"invalid Redis Cluster URL {shown(url)}: expected host:port[,host:port...]"
            raise InvalidSettings(msg)
        nodes.append(node(host.strip("[]"), int(port)))
    if parts.path not in {"", "/", "/0"}:
        msg = f"invalid Redis Cluster URL {shown(url)}: a cluster has only database 0"
        raise InvalidSettings(msg)
    kwargs = dict(options)
    kwargs.pop("retry", None)  # the node connections' own retries are off in cluster mode
    if parts.username:
        kwargs.setdefault("username", urllib.parse.unquote(parts.username))
    if parts.password:
        kwargs.setdefault("password", urllib.parse.unquote(parts.password))
    if parts.scheme == "rediss+cluster":
        kwargs.setdefault("ssl", True)
    for name, values in query.items():  # plain redis-py options: socket_timeout=...
        kwargs.setdefault(name, _option(values[-1]))
    try:
        client = redis.RedisCluster(startup_nodes=nodes, retry=Retry(NoBackoff(), 0), **kwargs)
    except redis.exceptions.RedisClusterException as exc:
        msg = f"cannot open the Redis Cluster {shown(url)}: {exc}"
        raise InvalidSettings(msg) from exc
    return client, durable


def _option(text: str) -> object:
    """A URL query value as redis-py wants it: a number when it reads as one."""
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


def _node_client(client: Any, key: str) -> Any:  # noqa: ANN401 - redis-py is untyped here
    """The plain client of the primary serving ``key``'s slot (as the client knows it)."""
    node = client.nodes_manager.get_node_from_slot(client.keyslot(key))
    return client.get_redis_connection(node)


def _on_one_connection(
    node: Any,  # noqa: ANN401
    calls: Sequence[Call],
    asking: Sequence[bool],
    then: Callable[[list[Any]], Call | None] | None,
) -> list[Any]:
    """``calls`` on one connection, once, error replies as values; then ``then``'s call.

    The reply of ``then``'s call (``WAIT``) is appended. A connection error or timeout
    propagates (the connection is dropped: its replies are not read).
    """
    pool = node.connection_pool
    conn = pool.get_connection()
    clean = False
    try:
        packed: list[Call] = []
        for call, ask in zip(calls, asking, strict=True):
            if ask:  # ASKING lets the importing node run the next command only
                packed.append(("ASKING",))
            packed.append(call)
        conn.send_packed_command(conn.pack_commands(packed))
        out: list[Any] = []
        for call, ask in zip(calls, asking, strict=True):
            if ask:
                node.parse_response(conn, "ASKING")
            try:
                out.append(node.parse_response(conn, call[0]))
            except redis.exceptions.ResponseError as exc:
                out.append(exc)
        extra = then(out) if then is not None else None
        if extra is not None:
            conn.send_command(*extra)
            out.append(node.parse_response(conn, extra[0]))
        clean = True
        return out
    finally:
        if not clean:
            conn.disconnect()
        pool.release(conn)


def send(
    client: Any,  # noqa: ANN401
    calls: Sequence[Call],
    keys: Sequence[str],
    then: Callable[[list[Any]], Call | None] | None = None,
    *,
    cluster: bool,
) -> tuple[list[Any], list[Any]]:
    """Send each call once to the node of its key; the replies, and ``then``'s replies.

    On a cluster the calls are grouped by node (in order within a node, hence within a
    slot), one connection per node; a call answered ``MOVED`` (the slot table is
    patched) or ``ASK`` (sent again with ``ASKING``) did not run and is sent again, at
    most :data:`_REDIRECTS` times. ``then`` is called with each node's replies and may
    name one more call for that connection (``WAIT``). 1 round trip per node involved
    (2 with ``then``'s call); error replies are returned as values.
    """
    results: list[Any] = [None] * len(calls)
    extras: list[Any] = []
    pending = list(range(len(calls)))
    ask_at: dict[int, Any] = {}
    for _ in range(_REDIRECTS):
        groups: dict[int, tuple[Any, list[int]]] = {}
        for i in pending:
            node = ask_at.get(i) or (_node_client(client, keys[i]) if cluster else client)
            groups.setdefault(id(node), (node, []))[1].append(i)
        pending = []
        for node, idx in groups.values():
            replies = _on_one_connection(
                node, [calls[i] for i in idx], [i in ask_at for i in idx], then
            )
            extras += replies[len(idx) :]
            for i, reply in zip(idx, replies, strict=False):
                results[i] = reply
                ask_at.pop(i, None)
                if not cluster:
                    continue
                if isinstance(reply, redis.exceptions.MovedError):
                    client.nodes_manager.move_slot(reply)
                    pending.append(i)
                elif isinstance(reply, redis.exceptions.AskError):
                    target = client.get_node(host=reply.host, port=reply.port)
                    if target is not None:
                        ask_at[i] = client.get_redis_connection(target)
                        pending.append(i)
        if not pending:
            break
    return results, extras
