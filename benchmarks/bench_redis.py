"""The Redis store on loopback, beside ``PING`` and a naive minimal layout, in one run.

``run(quick)`` starts its own redis-server (127.0.0.1, a free port, no persistence)
and, at each size (10^5; 10^6 in full mode; 10^7 with ``huge``):

- **memory per mapping**: ``INFO memory`` ``used_memory`` before and after filling,
  divided by the mappings: first the naive minimal layout (one hash per profile, ``to ->
  "sender last_used"``) on an empty server, then beside it the store (filled through
  ``select_many`` batches), and the store per key type (``MEMORY USAGE`` of every key
  of its prefix, ``SAMPLES 0``, grouped by the key's last name: ``map``, ``rev``,
  ``due``, ...);
- **latency**: ``PING``, a ``GET`` + ``SET`` pair, the naive layout's hit and new
  recipient (each one ``EVALSHA`` of one tiny script: read, then refresh a live
  mapping or store the sender the client chose), the least a complete hit does on the
  naive layout (``complete: hit``: the opt-out check, the profile's ttl, the sender's
  flag in the pool, then the refresh), ``Engine.select`` for a hit and a new
  recipient, ``select_many`` of 100 hits and of 100 new recipients; each the median
  (with min and max) of the repeats, per select, and its ratio to ``PING``; the phases
  interleaved (each repeat runs every one of them once, in a rotated order);
- **server CPU per select**: ``INFO commandstats`` after ``CONFIG RESETSTAT``, the
  ``usec`` of every command the phase sent, divided by its selects
  (``server_us_per_op``: the scripts', whose usec includes the commands they call), and
  the scripts' usec per call.

Quick mode (10^5 only) takes well under a minute. Needs redis-server on the PATH.
Run alone: ``python -m benchmarks.bench_redis [--quick] [--huge]``.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

Row = dict[str, Any]

GROUP = "redis"
BATCH = 100
"""Selects per ``select_many`` call."""
FILL = 1_000
"""Recipients per ``select_many`` call (or per ``HSET``) while filling."""
TTL = 8 * 86_400
POOL = [f"+1312555{i:04d}" for i in range(20)]
NAIVE_KEY = "naive:{acme}"
STORE_PREFIX = "bench"

NAIVE_SELECT = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then
  local cut = string.find(v, ' ', 1, true)
  if tonumber(ARGV[2]) < tonumber(string.sub(v, cut + 1)) + tonumber(ARGV[3]) then
    redis.call('HSET', KEYS[1], ARGV[1], string.sub(v, 1, cut) .. ARGV[2])
    return string.sub(v, 1, cut - 1)
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4] .. ' ' .. ARGV[2])
return ARGV[4]
"""
"""The naive minimal select: a live mapping is refreshed and returned, else the
client's choice (ARGV[4]) is stored. KEYS: the hash; ARGV: to, now, ttl, sender."""

COMPLETE_HIT = """
if redis.call('SISMEMBER', KEYS[4], ARGV[1]) == 1 then
  return {'OPTED_OUT'}
end
local m = redis.call('HMGET', KEYS[2], 'ttl', 'sticky')
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and m[2] == '1' then
  local cut = string.find(v, ' ', 1, true)
  local sender = string.sub(v, 1, cut - 1)
  if tonumber(ARGV[2]) < tonumber(string.sub(v, cut + 1)) + tonumber(m[1]) then
    local entry = redis.call('HGET', KEYS[3], sender)
    if entry and string.byte(entry, 3) == 49 then
      redis.call('HSET', KEYS[1], ARGV[1], sender .. ' ' .. ARGV[2])
      return {'HIT', sender}
    end
  end
end
return {'MISS'}
"""
"""The least a complete sticky hit does, on the naive layout: the opt-out check, the
profile's ttl and sticky flag, the mapping, its sender's flag in the pool, the refresh.
KEYS: the hash, the profile's settings, the pool, the opt-outs; ARGV: to, now."""
COMPLETE_KEYS = (NAIVE_KEY, "meta:{acme}", "pool:{acme}", "optout:{acme}")


def _server() -> Any:
    """A throwaway redis-server (the test kit's), started."""
    from sticky.testing.redis_server import RedisServer  # noqa: PLC0415 - the redis extra

    server = RedisServer()
    server.start()
    return server


def _recipients(tag: int) -> Iterator[str]:
    """Distinct recipients, never those of another ``tag`` (0-99)."""
    i = 0
    while True:
        yield f"+1{2_000_000_000 + tag * 10_000_000 + i}"
        i += 1


def _used(client: Any) -> int:
    return int(client.info("memory")["used_memory"])


_SCRIPTS = ("cmdstat_fcall", "cmdstat_evalsha")
"""A select's commands: the store's functions, and the naive layout's script."""


def _cpu(client: Any) -> tuple[float, float | None]:
    """Server usec since the last reset, and the scripts' usec per call.

    A script's usec includes the commands it calls, which ``INFO commandstats`` lists
    under their own names too: when scripts ran, the server time is theirs alone (the
    phases send nothing else), so nothing is counted twice.
    """
    stats = client.info("commandstats")
    ran = [stats[k] for k in _SCRIPTS if k in stats]
    if not ran:
        return sum(float(v["usec"]) for k, v in stats.items() if k != "cmdstat_info"), None
    usec = sum(float(v["usec"]) for v in ran)
    return usec, usec / sum(int(v["calls"]) for v in ran)


def _row(name: str, size: int, **fields: Any) -> Row:
    return {
        "group": GROUP,
        "name": name,
        "design": name.split(": ", 1)[0] if ": " in name else "redis",
        "op": name.split(": ", 1)[-1],
        "size": size,
        "ns_per_op": None,
        "ns_min": None,
        "ns_max": None,
        "ops_per_s": None,
        "ratio_to_floor": None,
        **fields,
    }


def _key_kind(key: str) -> str:
    """A key's type by name: what follows the hash tag (``map``, ``rev``...) or its head."""
    if "}:" in key:
        return key.rsplit("}:", 1)[1].split(":", 1)[0]
    return key.split(":", 2)[1] if key.count(":") >= 1 else key


def _per_kind(client: Any) -> dict[str, int]:
    """``MEMORY USAGE`` (every element counted) of every key of the store, summed by key type."""
    kinds: dict[str, int] = defaultdict(int)
    for key in client.scan_iter(match=f"{STORE_PREFIX}*", count=1_000):
        kinds[_key_kind(key)] += int(client.memory_usage(key, samples=0) or 0)
    return dict(kinds)


def _interleaved(
    client: Any, phases: Sequence[tuple[str, Callable[[int], None], int, int, bool]], repeats: int
) -> dict[str, dict[str, Any]]:
    """Each phase ``(name, op, calls, selects per call, cpu)`` timed ``repeats`` times,
    the phases interleaved (each repeat runs every phase once, in a rotated order), so
    that a noisy neighbour burdens all of them alike: median, min and max ns per select,
    and for ``cpu`` phases the server usec per select and the scripts' usec per call.
    """
    times: dict[str, list[float]] = defaultdict(list)
    usec: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    per_script: dict[str, list[float]] = defaultdict(list)
    for _, op, n, _, _ in phases:
        op(max(1, n // 10))  # warm-up, untimed and uncounted
    for rep in range(repeats):
        turn = rep % len(phases)
        for name, op, n, per_call, cpu in (*phases[turn:], *phases[:turn]):
            client.config_resetstat()
            t0 = time.perf_counter_ns()
            op(n)
            times[name].append((time.perf_counter_ns() - t0) / (n * per_call))
            if cpu:
                spent, script = _cpu(client)
                usec[name] += spent
                calls[name] += n * per_call
                if script is not None:
                    per_script[name].append(script)
    out: dict[str, dict[str, Any]] = {}
    for name, _, _, _, cpu in phases:
        t = times[name]
        median = statistics.median(t)
        fields: dict[str, Any] = {"ns_per_op": median, "ns_min": min(t), "ns_max": max(t)}
        fields["ops_per_s"] = 1e9 / median
        if cpu:
            fields["server_us_per_op"] = usec[name] / calls[name]
            scripts = per_script[name]
            fields["script_usec_per_call"] = statistics.median(scripts) if scripts else None
        out[name] = fields
    return out


def bench_size(
    server: Any,
    size: int,
    ops: int,
    batches: int,
    repeats: int,
    tag: int,
) -> list[Row]:
    """Every row at one size: both layouts filled on an empty server, then timed, interleaved."""
    import redis  # noqa: PLC0415 - the optional extra

    from sticky import Engine  # noqa: PLC0415
    from sticky.store.redis import RedisStore  # noqa: PLC0415

    client = redis.Redis.from_url(server.url, decode_responses=True)
    rows: list[Row] = []
    fresh = _recipients(tag)
    mapped = [next(fresh) for _ in range(size)]
    cursor = [0]

    def stride(n: int) -> Iterator[str]:
        i = cursor[0]
        for _ in range(n):
            yield mapped[i % size]
            i += 7919  # a prime stride: spread over the whole table
        cursor[0] = i

    engine = None
    try:
        # -- the naive minimal layout, filled first ----------------------------------
        client.flushall()
        before = _used(client)
        t0 = time.time()
        pipe = client.pipeline(transaction=False)
        for i in range(0, size, FILL):
            chunk = mapped[i : i + FILL]
            pipe.hset(
                NAIVE_KEY, mapping={to: f"{POOL[j % 20]} {t0:.6f}" for j, to in enumerate(chunk)}
            )
            if len(pipe) >= 50:
                pipe.execute()
        pipe.execute()
        per = (_used(client) - before) / size
        rows.append(_row("naive: memory", size, op="memory", bytes_per_mapping=per))
        sha = client.script_load(NAIVE_SELECT)
        complete_sha = client.script_load(COMPLETE_HIT)
        client.hset(COMPLETE_KEYS[1], mapping={"ttl": repr(float(TTL)), "sticky": "1"})
        client.hset(COMPLETE_KEYS[2], mapping=dict.fromkeys(POOL, "L111"))
        client.sadd(COMPLETE_KEYS[3], "+10000000000")
        choose = random.Random(1).choice
        evalsha = client.evalsha

        # -- the store, beside it (its own keys: the deltas are its alone) --------------
        before = _used(client)
        engine = Engine(seed=1, store=RedisStore.from_url(server.url, prefix=STORE_PREFIX))
        engine.create_profile("p")
        for number in POOL:
            engine.add_number("p", number)
        for i in range(0, size, FILL):
            engine.select_many("p", mapped[i : i + FILL])
        stored = engine.stats().mappings
        rows.append(
            _row(
                "store: memory",
                stored,
                op="memory",
                bytes_per_mapping=(_used(client) - before) / stored,
            )
        )
        kinds = _per_kind(client)
        for kind, used in sorted(kinds.items(), key=lambda kv: -kv[1]):
            rows.append(
                _row(
                    f"store: memory, {kind} keys",
                    stored,
                    op=f"memory, {kind} keys",
                    bytes_per_mapping=used / stored,
                )
            )
        select, select_many = engine.select, engine.select_many

        def naive_hit(n: int) -> None:
            for to in stride(n):
                evalsha(sha, 1, NAIVE_KEY, to, time.time(), TTL, choose(POOL))

        def complete_hit(n: int) -> None:
            for to in stride(n):
                evalsha(complete_sha, 4, *COMPLETE_KEYS, to, repr(time.time()))

        def naive_new(n: int) -> None:
            for _ in range(n):
                evalsha(sha, 1, NAIVE_KEY, next(fresh), time.time(), TTL, choose(POOL))

        def ping(n: int) -> None:
            for _ in range(n):
                client.ping()

        def get_set(n: int) -> None:
            for i in range(n):
                key = f"floor:{i % 1000}"
                client.get(key)
                client.set(key, POOL[0])

        def hit(n: int) -> None:
            for to in stride(n):
                select("p", to)

        def new(n: int) -> None:
            for _ in range(n):
                select("p", next(fresh))

        def many_hits(n: int) -> None:
            for _ in range(n):
                select_many("p", list(stride(BATCH)))

        def many_new(n: int) -> None:
            for _ in range(n):
                select_many("p", [next(fresh) for _ in range(BATCH)])

        phases = (
            ("PING", ping, ops, 1, False),
            ("GET+SET", get_set, ops, 1, False),
            ("naive: hit", naive_hit, ops, 1, True),
            ("naive: new", naive_new, ops, 1, True),
            ("complete: hit", complete_hit, ops, 1, True),
            ("store: select hit", hit, ops, 1, True),
            ("store: select new", new, ops, 1, True),
            (f"store: select_many hit x{BATCH}", many_hits, batches, BATCH, True),
            (f"store: select_many new x{BATCH}", many_new, batches, BATCH, True),
        )
        for name, fields in _interleaved(client, phases, repeats).items():
            rows.append(_row(name, stored if name.startswith("store") else size, **fields))
    finally:
        if engine is not None:
            engine.close()
        client.close()
    ping_ns = next(r["ns_per_op"] for r in rows if r["name"] == "PING")
    for r in rows:
        if r["ns_per_op"] is not None:
            r["ratio_to_floor"] = r["ns_per_op"] / ping_ns
    naive = next(r for r in rows if r["name"] == "naive: memory")["bytes_per_mapping"]
    for r in rows:
        if r["op"].startswith("memory") and r["design"] == "store":
            r["ratio_to_naive"] = r["bytes_per_mapping"] / naive
    return rows


def run(quick: bool, huge: bool = False) -> list[Row]:
    """The rows at 10^5 (quick), 10^5 and 10^6 (full), and 10^7 too with ``huge``."""
    sizes = (10**5,) if quick else (10**5, 10**6, *((10**7,) if huge else ()))
    repeats = 5 if quick else 9
    ops = 2_000 if quick else 3_000
    batches = 20 if quick else 60
    server = _server()
    try:
        rows: list[Row] = []
        for tag, size in enumerate(sizes):
            rows += bench_size(server, size, ops, batches, repeats, tag)
        return rows
    finally:
        server.stop()


def _print(rows: Sequence[Row]) -> None:
    print(
        f"{'name':34} {'size':>10} {'us/op':>8} {'min':>7} {'max':>7} {'ops/s':>8}"
        f" {'x PING':>6} {'srv us':>7} {'B/map':>7}"
    )
    for r in rows:
        ns = r["ns_per_op"]
        cells = (
            f"{ns / 1e3:8.1f} {r['ns_min'] / 1e3:7.1f} {r['ns_max'] / 1e3:7.1f}"
            f" {r['ops_per_s']:8,.0f} {r['ratio_to_floor']:6.2f}"
            if ns is not None
            else f"{'':8} {'':7} {'':7} {'':8} {'':6}"
        )
        cpu = r.get("server_us_per_op")
        per = r.get("bytes_per_mapping")
        print(
            f"{r['name']:34} {r['size']:>10,} {cells}"
            f" {'' if cpu is None else f'{cpu:7.1f}':>7} {'' if per is None else f'{per:7.1f}':>7}"
        )


def main(argv: Sequence[str]) -> int:
    started = time.perf_counter()
    _print(run(quick="--quick" in argv, huge="--huge" in argv))
    print(f"{time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
