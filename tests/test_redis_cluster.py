"""The Redis store on a live Redis Cluster (conftest.py's ``redis_cluster``: 6 nodes).

The contract suite and the Memory-vs-Redis differential machine on the cluster, then
what only a cluster has: a create/delete race across slots, a slow node (no call
applied twice), a slot migrated step by step under traffic, and a primary killed
mid-traffic (with ``min_replicas=1``, no acknowledged mapping lost). The failover test
runs last: it leaves the killed node back as a replica.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import threading
import time
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from sticky import (
    Engine,
    InvalidSettings,
    ManualClock,
    MemoryStore,
    NumberType,
    OptedOut,
    Outcome,
    PoolSettings,
    ProfileExists,
    Reason,
    ReplyAction,
    StoreUnavailable,
    UnknownNumber,
    open_store,
)
from sticky.store.base import Store
from sticky.store.redis import RedisStore
from sticky.store.redis.keys import hex_id
from sticky.testing import StickyMachine, StoreContract
from sticky.testing.stateful import comparable

try:  # the redis extra; without it these tests skip, or fail where Redis is required
    import redis
    from redis.crc import key_slot

    from sticky.testing.redis_cluster import RedisCluster
except ImportError as exc:
    if os.environ.get("STICKY_REQUIRE_REDIS", "") == "1":
        raise
    pytest.skip(f"the redis package is missing: {exc}", allow_module_level=True)

T0 = 1_700_000_000.0
LONG = ["+13125550001", "+13125550002", "+14155550003"]
_prefixes = itertools.count()


def new_store(cluster: RedisCluster, query: str = "", **options: Any) -> RedisStore:
    """A store on the cluster with a prefix no other store of the session uses."""
    return RedisStore.from_url(cluster.url + query, prefix=f"c{next(_prefixes)}", **options)


def slot_of(profile_id: str) -> int:
    return int(key_slot(hex_id(profile_id).encode()))


def fcall_calls(node_client: Any) -> int:
    stats = node_client.info("commandstats")
    return int(stats.get("cmdstat_fcall", {}).get("calls", 0))


# -- the contract suite and the differential machine -------------------------------------
class TestRedisClusterStore(StoreContract):
    state_machine_examples = 10

    @pytest.fixture(autouse=True)
    def _cluster(self, redis_cluster: RedisCluster) -> None:
        self.cluster = redis_cluster

    def make_store(self) -> Store:
        return new_store(self.cluster)


def test_memory_and_redis_cluster_agree_step_by_step(redis_cluster: RedisCluster) -> None:
    reasons: Counter[Reason] = Counter()

    class MemoryVsCluster(StickyMachine):
        def make_stores(self) -> list[Store]:
            return [MemoryStore(), new_store(redis_cluster)]

        def teardown(self) -> None:
            reasons.update(self.counts)
            super().teardown()

    run_state_machine_as_test(
        MemoryVsCluster,
        settings=settings(
            # The same examples every run: a run that met no sticky hit proved nothing.
            derandomize=True,
            max_examples=15,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    assert reasons[Reason.STICKY] > 0, reasons


# -- URLs and clients ----------------------------------------------------------------------
def test_a_cluster_url_and_a_cluster_client(redis_cluster: RedisCluster) -> None:
    e = Engine(store=redis_cluster.url, seed=1)
    assert isinstance(e.store, RedisStore)
    e.create_profile("u")
    e.add_number("u", LONG[0])
    assert e.select("u", "+12125550000").from_number == LONG[0]
    e.delete_profile("u")
    e.close()
    mine = redis_cluster.client()
    store = RedisStore(mine, prefix=f"c{next(_prefixes)}")
    e = Engine(store=store, seed=1)
    e.create_profile("u")
    assert e.profiles() == ["u"]
    store.check_invariants()
    e.close()
    mine.close()
    for bad in (
        "redis+cluster://",
        "redis+cluster://127.0.0.1:notaport",
        redis_cluster.url + "/3",
        redis_cluster.url + "?min_replicas=many",
        redis_cluster.url + "?replica_timeout=-1",
    ):
        with pytest.raises(InvalidSettings):
            open_store(bad)


def test_a_plain_client_to_one_node_raises_a_typed_error(redis_cluster: RedisCluster) -> None:
    # the profile set's key is served by another node than the one this client knows
    prefix = next(
        f"plain{i}"
        for i in range(100)
        if redis_cluster.node_of_slot(int(key_slot(f"plain{i}:profiles".encode())))
        is not redis_cluster.primaries()[0]
    )
    node = redis_cluster.primaries()[0]
    store = RedisStore.from_url(f"redis://127.0.0.1:{node.port}/0", prefix=prefix)
    e = Engine(store=store)
    with pytest.raises(StoreUnavailable, match=r"redis\+cluster://") as info:
        e.create_profile("p")
    assert isinstance(info.value.__cause__, redis.ResponseError), info.value.__cause__
    assert redis_cluster.client().exists(f"{prefix}:{{{hex_id('p')}}}:meta") == 0
    e.close()


# -- races and faults ----------------------------------------------------------------------
def test_racing_create_and_delete_lose_no_profile(redis_cluster: RedisCluster) -> None:
    store = new_store(redis_cluster)
    e = Engine(store=store)
    lost = 0
    rounds = 300
    for r in range(rounds):
        pid = f"race{r % 7}"
        with contextlib.suppress(ProfileExists):
            e.create_profile(pid)
        barrier = threading.Barrier(2)

        def create(pid: str = pid, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            with contextlib.suppress(ProfileExists):
                e.create_profile(pid)

        def delete(pid: str = pid, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            with contextlib.suppress(LookupError):
                e.delete_profile(pid)

        threads = [threading.Thread(target=create), threading.Thread(target=delete)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        exists = bool(redis_cluster.client().exists(f"{store._prefix}:{{{hex_id(pid)}}}:meta"))
        if exists != (pid in e.profiles()):
            lost += 1
    assert lost == 0
    store.check_invariants(allow_leftovers=True)
    e.close()


def test_a_slow_node_applies_nothing_twice(redis_cluster: RedisCluster) -> None:
    store = new_store(redis_cluster, socket_timeout=0.2)
    clock = ManualClock(T0)
    e = Engine(store=store, clock=clock, seed=2)
    pid = "slow"
    e.create_profile(pid)
    for n in LONG:
        e.add_number(pid, n)
    e.select(pid, "+12125550001")
    e.select(pid, "+12125550002")
    node = redis_cluster.node_of_slot(slot_of(pid))
    admin = node.client()
    calls = [
        ("forget", lambda: e.forget(pid, "+12125550001")),
        ("remove", lambda: e.remove_number(pid, LONG[2])),
        ("select", lambda: e.select(pid, "+12125550003")),
        ("batch", lambda: e.select_many(pid, ["+12125550004", "+12125550005"])),
        ("pin", lambda: e.pin(pid, "+12125550006", LONG[0])),
    ]
    for name, run in calls:
        e.mapping(pid, "+12125550001")  # a live connection: the call itself is what waits
        # A fresh pool version in the store's cache: a call the node runs late then
        # applies (a pin checks the version it planned with, and a timed-out remove
        # left the cache behind).
        e.numbers(pid)
        before = fcall_calls(admin)
        sleeper = threading.Thread(
            target=lambda: node.client().execute_command("DEBUG", "SLEEP", "0.5")
        )
        sleeper.start()
        time.sleep(0.1)  # the node is asleep: the call times out, the node runs it later
        with pytest.raises(StoreUnavailable) as info:
            run()
        assert isinstance(info.value.__cause__, redis.TimeoutError), name
        sleeper.join()
        time.sleep(0.1)
        # one script sent and run: nothing was sent again after the timeout
        assert fcall_calls(admin) - before == 1, name
    # every call was applied exactly once
    assert e.forget(pid, "+12125550001") is False
    assert [n.number for n in e.numbers(pid)] == LONG[:2]
    assert e.mapping(pid, "+12125550006").from_number == LONG[0]  # type: ignore[union-attr]
    for to in ("+12125550003", "+12125550004", "+12125550005"):
        first = e.select(pid, to)  # sticky if the timed-out select stored it, else new
        assert e.select(pid, to).from_number == first.from_number in LONG[:2]
    store.check_invariants(allow_leftovers=True)  # the timed-out remove kept its owner key
    admin.close()
    e.close()


def _node_id(node: Any) -> str:
    c = node.client()
    try:
        return str(c.execute_command("CLUSTER", "MYID"))
    finally:
        c.close()


def test_a_slot_migrates_step_by_step_under_traffic(redis_cluster: RedisCluster) -> None:
    store = new_store(redis_cluster, socket_timeout=2.0)
    pid = "moving"
    e = Engine(store=store, seed=4)
    e.create_profile(pid)
    for n in LONG:
        e.add_number(pid, n)
    slot = slot_of(pid)
    source = redis_cluster.node_of_slot(slot)
    target = next(n for n in redis_cluster.primaries() if n is not source)
    src_id, dst_id = _node_id(source), _node_id(target)
    src, dst = source.client(), target.client()
    stop = threading.Event()
    seen: dict[str, set[str]] = {}
    outcomes: Counter[str] = Counter()
    bad: list[BaseException] = []

    def traffic(k: int) -> None:
        i = 0
        while not stop.is_set():
            to = f"+1212555{(i * 7 + k) % 60:04d}"
            try:
                if i % 5 == 0:
                    sels = e.select_many(pid, [to, f"+1646555{i % 60:04d}"])
                else:
                    sels = [e.select(pid, to)]
                for sel in sels:
                    seen.setdefault(sel.to, set()).add(sel.from_number)
                outcomes["ok"] += 1
            except StoreUnavailable as exc:
                outcomes["unavailable" if exc.__cause__ is not None else "no cause"] += 1
            except BaseException as exc:  # any other error fails the test
                bad.append(exc)
            i += 1

    workers = [threading.Thread(target=traffic, args=(k,)) for k in range(2)]
    for w in workers:
        w.start()
    time.sleep(0.3)
    dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    time.sleep(0.2)  # traffic meets the slot half-open
    while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1):
        src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        time.sleep(0.02)  # one key at a time, with traffic between
    for node in redis_cluster.primaries():
        c = node.client()
        c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        c.close()
    time.sleep(0.3)
    stop.set()
    for w in workers:
        w.join()
    src.close()
    dst.close()
    assert not bad, bad
    assert outcomes["no cause"] == 0, outcomes
    assert outcomes["ok"] > 0, outcomes
    split = {to: s for to, s in seen.items() if len(s) > 1}
    assert not split, split
    assert redis_cluster.node_of_slot(slot) is target
    for to, senders in seen.items():
        assert e.select(pid, to).from_number in senders
    store.check_invariants()
    print(f"migration: {dict(outcomes)}")
    e.close()


def test_a_primary_dies_and_a_replica_takes_over(redis_cluster: RedisCluster) -> None:
    store = new_store(
        redis_cluster,
        "?min_replicas=1&replica_timeout=1",
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
    )
    pid = "failover"
    e = Engine(store=store, seed=5)
    e.create_profile(pid)
    for n in LONG:
        e.add_number(pid, n)
    victim = redis_cluster.node_of_slot(slot_of(pid))
    acknowledged: dict[str, str] = {}
    outcomes: Counter[str] = Counter()
    bad: list[BaseException] = []
    stop = threading.Event()

    def traffic() -> None:
        i = 0
        while not stop.is_set():
            to = f"+1917555{i:04d}"
            try:
                acknowledged[to] = e.select(pid, to).from_number
                outcomes["ok"] += 1
            except StoreUnavailable as exc:
                typed = exc.__cause__ is not None or "WAIT" in str(exc)
                outcomes["unavailable" if typed else "no cause"] += 1
                time.sleep(0.01)
            except BaseException as exc:  # any other error fails the test
                bad.append(exc)
            i += 1

    worker = threading.Thread(target=traffic)
    worker.start()
    time.sleep(0.3)
    before = outcomes["ok"]
    victim.kill()
    slot = slot_of(pid)
    deadline = time.monotonic() + 30
    while redis_cluster.node_of_slot(slot) is victim and time.monotonic() < deadline:
        time.sleep(0.05)  # a replica is promoted after the node timeout (1 s)
    # the new primary has no replica: writes wait in vain until the old node rejoins
    victim.start()
    ok_at_failover = outcomes["ok"]
    while outcomes["ok"] == ok_at_failover and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # some traffic after recovery
    stop.set()
    worker.join()
    assert not bad, bad
    assert outcomes["no cause"] == 0, outcomes
    assert outcomes["unavailable"] > 0, outcomes
    assert outcomes["ok"] > before, f"no recovery after the failover: {outcomes}"
    # every mapping a select returned survived the failover, with its sender
    for to, sender in acknowledged.items():
        got = e.mapping(pid, to)
        assert got is not None, f"{to}: an acknowledged mapping was lost"
        assert got.from_number == sender
    store.check_invariants()
    print(f"failover: {dict(outcomes)}, {len(acknowledged)} acknowledged")
    e.close()
    redis_cluster.wait_ok()
    redis_cluster.wait_replicas()


def test_capacity_on_a_cluster_keeps_one_schedule_per_number(
    redis_cluster: RedisCluster,
) -> None:
    """Two stores, profiles in different slots: each number's schedule is in its profile's slot."""
    prefix = f"c{next(_prefixes)}"
    clock = ManualClock(T0)
    engines = [
        Engine(clock=clock, seed=k, store=RedisStore.from_url(redis_cluster.url, prefix=prefix))
        for k in range(2)
    ]
    pids = ["cap-a", "cap-b"]
    assert slot_of(pids[0]) != slot_of(pids[1])
    pools = {pids[0]: LONG[:2], pids[1]: LONG[2:]}
    for pid in pids:
        engines[0].create_profile(pid, PoolSettings(long_code_rate=2.0, daily_new_recipients=30))
        for n in pools[pid]:
            engines[0].add_number(pid, n)
    sent: dict[str, list[float]] = {n: [] for n in LONG}
    for i in range(60):
        e, pid = engines[i % 2], pids[(i // 3) % 2]
        if i % 7 == 6:
            clock.advance(0.4)
        sel = e.select(pid, f"+1646555{i % 20:04d}")
        sent[sel.from_number].append(sel.send_at)
    for n, times in sent.items():
        times.sort()
        for i, start in enumerate(times):  # at most r * w + b in any window of w = 1 s
            assert sum(start <= t <= start + 1.0 for t in times[i:]) <= 2.0 * 1.0 + 1, n
    store = engines[1].store
    keys = store._keys.of(pids[0])  # type: ignore[attr-defined]
    assert key_slot(keys.cap.encode()) == slot_of(pids[0])
    version = store._info(pids[0]).version  # type: ignore[attr-defined]
    assert engines[1].set_limits(LONG[0], rate=4.0).rate == 4.0
    assert engines[0].set_limits(LONG[0], rate=4.0).rate == 4.0  # sent again: no change
    assert store._info(pids[0]).version == version + 1  # type: ignore[attr-defined]
    assert engines[0].capacity(pids[0]) == engines[1].capacity(pids[0])
    engines[0].remove_number(pids[0], LONG[0])
    assert set(store.capacity_state(pids[0])[2]) <= {LONG[1]}
    engines[0].delete_profile(pids[1])
    client = redis_cluster.client()
    assert not client.exists(store._keys.of(pids[1]).cap)  # type: ignore[attr-defined]
    client.close()
    store.check_invariants()
    for e in engines:
        e.close()


def test_import_mappings_on_a_cluster_is_one_script_per_chunk(redis_cluster: RedisCluster) -> None:
    """Every key of a profile is in one slot: the chunks run there, in order, indexes whole."""
    store = new_store(redis_cluster)
    store.create_profile("p", PoolSettings())
    senders = ["+13125550001", "+13125550002"]
    for n in senders:
        store.add_number("p", n, NumberType.LONG_CODE, healthy=True)
    entries = [
        (f"+1646555{i:04d}", senders[i % 2], T0 - 600 + (i * 7919) % 600) for i in range(700)
    ]
    entries.append((entries[0][0], senders[1], T0))  # the last chunk replaces the first's
    assert store.import_mappings("p", entries, T0) == 701
    assert store.mapping("p", entries[0][0], T0) == (senders[1], T0, PoolSettings().ttl)
    assert store.counts()[0] == 700
    with pytest.raises(UnknownNumber):
        store.import_mappings("p", [("+16465559999", "+19995550009", T0)], T0)
    assert store.import_mappings("p", entries, T0) == 0
    store.check_invariants()
    store.close()


# -- a number's life on a cluster ----------------------------------------------------------
def test_a_numbers_life_on_a_cluster_agrees_with_memory(redis_cluster: RedisCluster) -> None:
    from redis_workers import LIFE_SETTINGS, life_step, life_world  # noqa: PLC0415

    stores = [MemoryStore(), new_store(redis_cluster)]
    engines = [life_world(Engine(seed=11, store=s), LIFE_SETTINGS[True]) for s in stores]
    rngs = [random.Random(5), random.Random(5)]
    now = T0
    for step in range(300):
        now += rngs[0].choice([0.0, 0.5, 3.0, 20.0])
        rngs[1].choice([0.0, 0.5, 3.0, 20.0])
        got = [life_step(e, rng, now) for e, rng in zip(engines, rngs, strict=True)]
        assert comparable(got[0]) == comparable(got[1]), f"step {step}: {got}"
    assert engines[0].health("p", now=now) == engines[1].health("p", now=now)
    assert engines[0].opt_outs("p") == engines[1].opt_outs("p")
    engines[1].store.check_invariants()
    for e in engines:
        e.close()


def test_opt_outs_and_windows_on_a_cluster(redis_cluster: RedisCluster) -> None:
    store = new_store(redis_cluster)
    e = Engine(seed=3, store=store)
    e.create_profile("p", PoolSettings(min_samples=2, skip_unhealthy=True))
    e.add_number("p", LONG[0])
    e.add_number("p", LONG[1])
    keys = store._keys.of("p")
    assert {key_slot(k.encode()) for k in (keys.meta, keys.optout, keys.health)} == {slot_of("p")}
    e.select("p", "+12125550001", now=T0)
    e.opt_out("p", "+12125550001", now=T0)
    # a select racing the opt-out from another client: its compare-and-set refuses
    other = RedisStore.from_url(redis_cluster.url, prefix=store._prefix)
    miss = other.begin_select("p", "+12125550002", T0, -1)
    assert not isinstance(miss, tuple)
    e.opt_out("p", "+12125550002", now=T0)
    with pytest.raises(OptedOut):
        other.commit_select("p", "+12125550002", LONG[0], miss, T0)  # type: ignore[arg-type]
    assert Engine(store=other).opt_outs("p") == ["+12125550001", "+12125550002"]
    # two failures turn the number unhealthy (a pool change in the profile's slot, the
    # owner key read in its own); another client's stale cache is judged again
    for _ in range(2):
        e.record_delivery(LONG[0], "failed", now=T0)
    assert other.record_delivery(LONG[0], Outcome.FAILED, T0).delivery_healthy is False
    assert [n.delivery_healthy for n in e.numbers("p")] == [False, True]
    assert e.select("p", "+12125550003", now=T0).from_number == LONG[1]
    assert e.record_reply("p", "+12125550003", LONG[0], now=T0).action is ReplyAction.INELIGIBLE
    e.set_health(LONG[0], healthy=True)
    assert e.record_reply("p", "+12125550003", LONG[0], now=T0).action is ReplyAction.MOVED
    store.check_invariants()
    e.delete_profile("p")
    client = redis_cluster.client()
    assert client.exists(keys.optout, keys.health) == 0
    client.close()
    other.close()
    e.close()
