"""The Redis store against a real redis-server (see conftest.py's ``redis_server``).

The contract suite and a Memory-vs-Redis differential state machine, then what only a
shared store has: several OS processes, a server that dies and comes back, keys that
survive any id, one round trip per batch, and the optional extra.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.resources
import itertools
import math
import multiprocessing
import os
import random
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from sticky import (
    Engine,
    ExtraNotInstalled,
    GeoTier,
    InvalidSettings,
    ManualClock,
    MemoryStore,
    NoEligibleSender,
    NumberInUse,
    NumberType,
    OptedOut,
    Outcome,
    PoolSettings,
    Reason,
    Selection,
    SenderNumber,
    StoreUnavailable,
    UnknownNumber,
    UnknownProfile,
    open_store,
    policy,
)
from sticky.settings import DEFAULT_TTL
from sticky.store.base import Miss, OneStepBatchStore, Store
from sticky.store.redis import RedisStore, codec
from sticky.store.redis.keys import bucket_hash, bucket_of
from sticky.store.redis.runner import Packer, Runner
from sticky.store.redis.scripts import (
    BUCKET_LOAD,
    LAYOUT,
    SCRIPT_NAMES,
    STEP_BUCKETS,
    Tag,
    constants,
    library,
    scripts,
    substitute,
)
from sticky.testing import StickyMachine, StoreContract
from sticky.testing.stateful import comparable

try:  # the redis extra; without it these tests skip, or fail where Redis is required
    import redis
    from redis.crc import key_slot
    from redis_workers import (
        LIFE_SETTINGS,
        capacity_worker,
        chaos_worker,
        life_step,
        life_world,
        select_worker,
    )

    from sticky.testing.redis_server import RedisServer, free_port
except ImportError as exc:
    if os.environ.get("STICKY_REQUIRE_REDIS", "") == "1":
        raise
    pytest.skip(f"the redis package is missing: {exc}", allow_module_level=True)

T0 = 1_700_000_000.0
LONG = ["+13125550001", "+13125550002", "+14155550003"]
_prefixes = itertools.count()


NO_SERVER = {
    "test_without_the_redis_package",
    "test_the_packed_fcall_is_redis_pys",
    "test_a_bool_or_none_argument_is_refused",
}
"""Tests that need no server (they run where redis-server is missing)."""


@pytest.fixture(autouse=True)
def clean_db(request: pytest.FixtureRequest) -> None:
    """Each test starts on an empty database."""
    if request.node.name in NO_SERVER:
        return
    redis_server: RedisServer = request.getfixturevalue("redis_server")
    client = redis_server.client()
    client.flushdb()
    client.close()


def new_store(server: RedisServer, **options: Any) -> RedisStore:
    """A store with a prefix no other store of the session uses."""
    return RedisStore.from_url(server.url, prefix=f"t{next(_prefixes)}", **options)


class RoundTrips:
    """Counts what redis-py writes to its sockets: one write per command or pipeline."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = redis.connection.AbstractConnection.send_packed_command

        def counting(conn: Any, command: Any, check_health: bool = True) -> None:
            self.count += 1
            original(conn, command, check_health)

        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)

    @contextlib.contextmanager
    def measure(self) -> Iterator[list[int]]:
        out: list[int] = []
        start = self.count
        yield out
        out.append(self.count - start)


# -- the contract suite ------------------------------------------------------------------
class TestRedisStore(StoreContract):
    state_machine_examples = 100

    @pytest.fixture(autouse=True)
    def _server(self, redis_server: RedisServer) -> None:
        self.server = redis_server

    def make_store(self) -> Store:
        return new_store(self.server)


# -- Memory and Redis side by side -------------------------------------------------------
def test_memory_and_redis_agree_step_by_step(redis_server: RedisServer) -> None:
    reasons: Counter[Reason] = Counter()

    class MemoryVsRedis(StickyMachine):
        def make_stores(self) -> list[Store]:
            client = redis_server.client()
            client.flushdb()
            client.close()
            return [MemoryStore(), RedisStore.from_url(redis_server.url, prefix="diff")]

        def teardown(self) -> None:
            reasons.update(self.counts)
            super().teardown()

    # Each batch's examples are random: a batch short of the floors below (one in about
    # five had a single expiry) is followed by another, three at most, so that the
    # floors check that the machine crosses the ttl, not one batch's luck.
    for _ in range(3):
        run_state_machine_as_test(
            MemoryVsRedis,
            settings=settings(
                max_examples=100,
                stateful_step_count=60,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
        if reasons[Reason.EXPIRED] >= 2 and reasons[Reason.STICKY] >= 1:
            break
    # The machine drives the clock across the 8-day boundary: expiry was really exercised.
    print(f"differential run: {dict(reasons)}")
    # With capacity and a number's life on Redis too, their steps take part of the run,
    # and many profiles have sticky sender off: fewer expiries and sticky hits (runs have
    # seen 6 to 40 expiries and 8 to 120 hits in 100 examples), but some of each, every run.
    assert reasons[Reason.EXPIRED] >= 2, reasons
    assert reasons[Reason.STICKY] >= 1, reasons


# -- several processes on one Redis ------------------------------------------------------
def _check_observations(seen: list[Any], actions: list[Any]) -> None:
    """Every sticky answer names the sender the recipient's mapping had during the call."""
    removed_at = {n: t1 for what, n, _, t1 in actions if what == "removed"}
    by_to: dict[str, list[Any]] = {}
    for obs in seen:
        by_to.setdefault(obs[0], []).append(obs)
    for to, history in by_to.items():
        fresh = [o for o in history if o[2] != "sticky"]
        assert fresh, f"{to}: only sticky answers"
        for _, sender, _, a, b, worker in (o for o in history if o[2] == "sticky"):
            assert removed_at.get(sender, float("inf")) > a, (
                f"{to}: worker {worker} got {sender} after it was removed"
            )
            ok = False
            for f in fresh:
                if f[1] != sender or f[3] >= b:
                    continue
                # no other assignment certainly happened between that one and this call
                if not any(g[1] != sender and f[4] < g[3] and g[4] < a for g in fresh):
                    ok = True
                    break
            assert ok, f"{to}: worker {worker} got {sender} at {a}, no live mapping to it"
        # a recipient gets "new" again only when a removal deleted its mapping meanwhile
        removals = [(t0, t1) for what, _, t0, t1 in actions if what == "removed"]
        fresh.sort(key=lambda o: o[4])
        for second in (o for o in fresh if o[2] == "new"):
            before = [f for f in fresh if f[4] < second[3]]
            if before:
                last = before[-1]
                assert any(r0 < second[4] and r1 > last[3] for r0, r1 in removals), (
                    f"{to}: {second} follows {last} without a removal between"
                )


@pytest.mark.slow
def test_processes_agree_on_one_sender(redis_server: RedisServer) -> None:
    prefix, pid = "mp", "shared"
    stable = [f"+1312555{i:04d}" for i in range(3)]
    flippable = [f"+1415555{i:04d}" for i in range(4)]
    removable = [f"+1646555{i:04d}" for i in range(4)]
    recipients = [f"+1212555{i:04d}" for i in range(30)]
    setup = Engine(store=RedisStore.from_url(redis_server.url, prefix=prefix))
    setup.create_profile(pid, PoolSettings(skip_unhealthy=True))
    for n in stable + flippable + removable:
        setup.add_number(pid, n)
    workers = 4
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0  # after every process has started and imported
    with ctx.Pool(workers + 1) as pool:
        chaos = pool.apply_async(
            chaos_worker,
            (redis_server.url, prefix, pid, flippable, removable, 1.0, start_at),
        )
        selects = [
            pool.apply_async(
                select_worker, (redis_server.url, prefix, pid, recipients, 25, k, start_at)
            )
            for k in range(workers)
        ]
        seen = [obs for s in selects for obs in s.get(timeout=120)]
        actions = chaos.get(timeout=120)
    assert len(seen) == workers * 25 * len(recipients)
    assert {a[0] for a in actions} >= {"healthy", "unhealthy", "removed"}
    reasons = Counter(o[2] for o in seen)
    assert reasons["new"] >= len(recipients), reasons
    assert reasons["reassigned"] > 0, reasons  # health flips were seen
    _check_observations(seen, actions)
    # the final state: one sender per recipient, none of them removed
    store = setup.store
    store.check_invariants()
    assert {n.number for n in setup.numbers(pid)} == set(stable + flippable)
    for n in removable:
        assert setup.recipients_of(pid, n) == []
    listed = Counter(to for n in stable + flippable for to in setup.recipients_of(pid, n))
    assert all(c == 1 for c in listed.values()), listed
    for to in recipients:
        m = setup.mapping(pid, to)
        # none when the last removal took its sender after its last select
        assert listed[to] == (m is not None)
        assert m is None or m.from_number not in removable
    setup.close()


# -- faults --------------------------------------------------------------------------------
def _expect_unavailable(call: Callable[[], object]) -> None:
    with pytest.raises(StoreUnavailable) as info:
        call()
    assert isinstance(info.value.__cause__, (redis.ConnectionError, redis.TimeoutError))


@pytest.mark.slow
def test_server_dies_and_comes_back() -> None:
    server = RedisServer(persist=True)  # its own server: this one gets killed
    server.start()
    try:
        store = RedisStore.from_url(server.url, socket_timeout=2.0, socket_connect_timeout=1.0)
        clock = ManualClock(T0)
        e = Engine(clock=clock, seed=3, store=store)
        e.create_profile("p")
        for n in LONG:
            e.add_number("p", n)
        before = {
            f"+1212555{i:04d}": e.select("p", f"+1212555{i:04d}").from_number for i in range(20)
        }
        # a run of selects during which the server dies
        stop = threading.Event()
        outcomes: Counter[str] = Counter()
        errors: list[BaseException] = []

        def traffic() -> None:
            i = 0
            while not stop.is_set():
                to = f"+1212555{i % 40:04d}"
                try:
                    sel = e.select("p", to)
                    assert to not in before or sel.from_number == before[to]
                    outcomes["ok"] += 1
                except StoreUnavailable as exc:
                    outcomes["unavailable" if exc.__cause__ is not None else "no cause"] += 1
                except BaseException as exc:
                    errors.append(exc)
                i += 1

        worker = threading.Thread(target=traffic)
        worker.start()
        time.sleep(0.3)
        server.kill()
        time.sleep(0.3)
        # every kind of call fails the same way while it is down
        for call in (
            lambda: e.select("p", "+12125550000"),
            lambda: e.select("p", "+19175550000"),
            lambda: e.select_many("p", ["+19175550001", "+19175550002"]),
            lambda: e.pin("p", "+19175550003", LONG[0]),
            lambda: e.forget("p", "+12125550000"),
            lambda: e.mapping("p", "+12125550000"),
            lambda: e.recipients_of("p", LONG[0]),
            lambda: e.add_number("p", "+13125559999"),
            lambda: e.remove_number("p", LONG[0]),
            lambda: e.set_health(LONG[0], False),
            lambda: e.update_settings("p", ttl=3600),
            lambda: e.create_profile("q"),
            lambda: e.delete_profile("p"),
            lambda: e.numbers("p"),
            e.profiles,
            e.evict_expired,
            e.stats,
        ):
            _expect_unavailable(call)
        server.start()  # the same port and data directory
        time.sleep(0.3)
        stop.set()
        worker.join()
        assert not errors, errors
        assert outcomes["unavailable"] > 0
        assert outcomes["no cause"] == 0
        assert outcomes["ok"] > 0
        # the same engine works again, with every write made before the crash
        store.check_invariants()
        assert [n.number for n in e.numbers("p")] == LONG
        for to, sender in before.items():
            sel = e.select("p", to)
            assert (sel.reason, sel.from_number) == (Reason.STICKY, sender)
        for to in ("+19175550000", "+19175550001", "+19175550002", "+19175550003"):
            assert e.mapping("p", to) is None  # those calls failed: nothing was written
        assert e.select("p", "+19175559999").reason is Reason.NEW
        e.add_number("p", "+13125559999")
        e.set_health(LONG[0], False)
        store.check_invariants()
        e.close()
    finally:
        server.stop()


def test_unreachable_server_raises_store_unavailable() -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    e = Engine(store=store)
    _expect_unavailable(lambda: e.select("p", "+12125550000"))
    _expect_unavailable(lambda: e.create_profile("p"))
    e.close()


def test_the_library_is_loaded_again_after_a_function_flush(redis_server: RedisServer) -> None:
    e = Engine(seed=1, store=new_store(redis_server))
    e.create_profile("p")
    e.add_number("p", LONG[0])
    first = e.select("p", "+12125550000").from_number
    client = redis_server.client()
    assert [lib[1] for lib in client.function_list()] == [library().name]  # name, value pairs
    client.function_flush()  # as a restart without persistence, or a new node
    assert e.select("p", "+12125550000").from_number == first
    client.function_flush()
    many = e.select_many("p", ["+12125550000", "+12125550001"])
    assert [s.from_number for s in many] == [first, LONG[0]]
    client.close()
    e.close()


# -- keys ----------------------------------------------------------------------------------
NASTY = [
    "p",
    "{",
    "}",
    "{}",
    "}{",
    "a{b}c",
    "{a}",
    ":",
    "a:b",
    "a:b:",
    " ",
    "a b",
    "p{3}: ü",
    "ü",
    "😀",
    "\x00",
    "\ud800",
    "7b7d",
    "meta",
    "x" * 500,
]


def test_every_key_of_a_profile_shares_one_slot(redis_server: RedisServer) -> None:
    store = new_store(redis_server)
    e = Engine(seed=1, clock=ManualClock(T0), store=store)
    for i, pid in enumerate(NASTY):
        e.create_profile(pid)
        e.add_number(pid, f"+1312555{i:04d}")
        e.add_number(pid, f"+1800555{i:04d}", NumberType.TOLL_FREE)
        e.select(pid, "+12125550000")
        e.pin(pid, "+12125550001", f"+1312555{i:04d}")
        e.select(pid, "+12125550002", now=T0 - 10)  # out of order: into the late index
        e.update_settings(pid, ttl=DEFAULT_TTL * 2)
    store.check_invariants()
    assert e.profiles() == sorted(NASTY)
    tags = {}
    for pid in NASTY:
        keys = store._keys.of(pid).every
        slots = {key_slot(k.encode()) for k in keys}
        assert len(slots) == 1, (pid, keys)
        tags[pid] = keys[0].split("{", 1)[1].split("}", 1)[0]
    assert len(set(tags.values())) == len(NASTY)  # no two ids share keys
    # every key in Redis belongs to one profile (by its tag), or is global or an owner key
    client = redis_server.client()
    by_tag = {tag: pid for pid, tag in tags.items()}
    for key in client.scan_iter(count=1000):
        if key == store._keys.moved:  # global, in the evicted counter's slot
            assert key_slot(key.encode()) == key_slot(store._keys.evicted.encode())
        elif "{" in key:
            tag = key.split("{", 1)[1].split("}", 1)[0]
            assert tag in by_tag, key
            assert key_slot(key.encode()) == key_slot(store._keys.of(by_tag[tag]).meta.encode())
            k = store._keys.of(by_tag[tag])
            # a bucket of the table, a sender's reverse index, or a key of its own
            assert key in k.every or key.startswith((f"{k.map}:", f"{k.rev}:")), key
        else:
            assert key.startswith((f"{store._prefix}:own:", f"{store._prefix}:profiles")), key
    # profiles whose ids differ only by the characters a naive scheme would mangle
    for pid in NASTY:
        m = e.mapping(pid, "+12125550001")
        assert m is not None
        assert m.from_number == f"+1312555{NASTY.index(pid):04d}"
    for pid in NASTY:
        assert e.delete_profile(pid) == 3
    store.check_invariants()
    # what stays: the version keys (never reused, see docs/redis.md) and the counter's
    assert sorted(client.scan_iter()) == sorted(
        [f"{store._prefix}:{{{tag}}}:ver" for tag in tags.values()]
        + [f"{store._prefix}:evicted", store._keys.moved]
    )
    client.close()
    e.close()


def test_delete_profile_re_sent_counts_its_evicted_mappings_once(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that re-sends the steps after the commit (a lost reply) adds nothing twice."""
    from sticky.store.redis.runner import Runner  # noqa: PLC0415

    store = new_store(redis_server)
    e = Engine(store=store, clock=ManualClock(T0), seed=3)
    for pid in ("a", "b"):
        e.create_profile(pid, PoolSettings(ttl=60))
        e.add_number(pid, LONG[0] if pid == "a" else LONG[1])
        for i in range(5):
            e.select(pid, f"+1212555{i:04d}", now=T0)
    # the dead mappings are evicted and counted in each profile's meta
    assert e.evict_expired(now=T0 + 120) == 10
    evicted = e.stats().evicted
    pipeline = Runner.pipeline

    def twice(self: Runner, ops: Any, wrote: Any = None) -> list[Any]:
        pipeline(self, ops, wrote)  # as if the reply was lost and the client sent it again
        return pipeline(self, ops, wrote)

    monkeypatch.setattr(Runner, "pipeline", twice)
    assert e.delete_profile("a", now=T0 + 120) == 0
    monkeypatch.undo()
    assert e.stats().evicted == evicted  # moved from the meta to the counter, once
    assert e.profiles() == ["b"]
    e.create_profile("a", PoolSettings(ttl=60))  # a new incarnation counts its own
    e.add_number("a", LONG[0])
    e.select("a", "+12125550000", now=T0 + 120)
    assert e.evict_expired(now=T0 + 240) == 1
    e.delete_profile("a", now=T0 + 240)
    assert e.stats().evicted == evicted + 1
    store.check_invariants()
    e.close()


def test_numbers_with_any_characters_are_safe_in_keys(redis_server: RedisServer) -> None:
    # The engine only lets E.164 through; the store itself must not care.
    store = new_store(redis_server)
    store.create_profile("a", PoolSettings())
    store.create_profile("b", PoolSettings())
    odd = ["{x}", "x}", "a:b", "ü ü", "😀", "+1{2}"]
    for n in odd:
        store.add_number("a", n, NumberType.LONG_CODE, healthy=True)
    for n in odd:
        with pytest.raises(NumberInUse, match="'a'"):
            store.add_number("b", n, NumberType.LONG_CODE, healthy=True)
        store.set_health(n, healthy=False)
    assert [x.healthy for x in store.numbers("a")] == [False] * len(odd)
    store.check_invariants()
    for n in odd:
        assert store.remove_number("a", n, T0) == 0
        store.add_number("b", n, NumberType.TOLL_FREE, healthy=True)
    assert {x.number for x in store.numbers("b")} == set(odd)
    store.check_invariants()
    store.close()


def test_a_prefix_with_braces_is_refused(redis_server: RedisServer) -> None:
    client = redis_server.client()
    for bad in ("a{b", "}", ""):
        with pytest.raises(InvalidSettings, match="prefix"):
            RedisStore(client, prefix=bad)
    client.close()


def test_prefixes_separate_stores(redis_server: RedisServer) -> None:
    a, b = new_store(redis_server), new_store(redis_server)
    a.create_profile("p", PoolSettings())
    b.create_profile("p", PoolSettings())
    a.add_number("p", LONG[0], NumberType.LONG_CODE, healthy=True)
    b.add_number("p", LONG[0], NumberType.LONG_CODE, healthy=True)  # another world
    assert a.profiles() == b.profiles() == ["p"]
    a.check_invariants()
    b.check_invariants()
    a.close()
    b.close()


# -- the number-owner protocol across slots -----------------------------------------------
def test_a_stale_owner_key_counts_as_free(redis_server: RedisServer) -> None:
    store = new_store(redis_server)
    store.create_profile("a", PoolSettings())
    store.create_profile("b", PoolSettings())
    store.add_number("a", LONG[0], NumberType.LONG_CODE, healthy=True)
    # a process died between removing the number and releasing its owner key
    client = redis_server.client()
    owner_key = store._keys.owner(LONG[0])
    stale = client.get(owner_key)
    store.remove_number("a", LONG[0], T0)
    client.set(owner_key, stale)
    with pytest.raises(AssertionError, match="names no pool"):
        store.check_invariants()
    store.check_invariants(allow_leftovers=True)
    with pytest.raises(UnknownNumber):
        store.set_health(LONG[0], healthy=False)
    store.add_number("b", LONG[0], NumberType.LONG_CODE, healthy=True)
    store.check_invariants()
    # and an owner key naming a deleted profile (a crash inside delete_profile)
    stale = client.get(owner_key)
    store.delete_profile("b", T0)
    client.set(owner_key, stale)
    store.create_profile("b", PoolSettings())  # the same id, a new incarnation
    store.add_number("b", LONG[0], NumberType.LONG_CODE, healthy=True)
    store.check_invariants()
    client.close()
    store.close()


def test_a_rival_add_revokes_a_claim_in_flight(redis_server: RedisServer) -> None:
    store = new_store(redis_server)
    store.create_profile("a", PoolSettings())
    store.create_profile("b", PoolSettings())
    # "a" is halfway through add_number: claimed and owner key taken, not committed
    ka, s, run = store._keys.of("a"), store._s, store._run
    claimed = run.eval(s["add_claim"], ka.script, (LONG[0], "tok", ""))
    assert claimed[0] == Tag.OK
    inc, version = claimed[1], claimed[2]
    owner = store._keys.owner(LONG[0])
    assert run.eval(s["own"], (owner,), (f"{inc}:{ka.hex}", ka.hex, inc, "")) == Tag.OK
    store.add_number("b", LONG[0], NumberType.LONG_CODE, healthy=True)  # takes it over
    commit = (LONG[0], "tok", "L11", inc, version)
    assert run.eval(s["add_commit"], ka.script, commit) == [Tag.REVOKED]
    with pytest.raises(NumberInUse, match="'b'"):
        store.add_number("a", LONG[0], NumberType.LONG_CODE, healthy=True)
    assert [n.number for n in store.numbers("b")] == [LONG[0]]
    assert store.numbers("a") == ()
    store.check_invariants()
    store.close()


def test_a_rival_that_checked_a_revoked_attempt_cannot_take_its_retry(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner key's ABA: "a" owns; "b" checks "a" (FREE: a's claim revoked); "a" starts
    over and owns again; "b" then tries its compare-and-set on the value it checked."""
    a = new_store(redis_server)
    b = RedisStore.from_url(redis_server.url, prefix=a._prefix)
    a.create_profile("a", PoolSettings())
    a.create_profile("b", PoolSettings())
    ka, kb, s, run = a._keys.of("a"), b._keys.of("b"), b._s, b._run
    owner = a._keys.owner(LONG[0])
    client = redis_server.client()
    owned: list[str] = []
    rival: list[object] = []
    b_inc: list[str] = []
    real = Runner.eval

    def hooked(self: Runner, script: Any, keys: Sequence[str], *args: Any) -> Any:
        reply = real(self, script, keys, *args)
        if self is a._run and script is a._s["own"] and reply == Tag.OK:
            owned.append(client.get(owner))
            if len(owned) == 1:  # b: claim, find a's value, check a: FREE, a's claim revoked
                claimed = run.eval(s["add_claim"], kb.script, (LONG[0], "tok", ""))
                b_inc.append(claimed[1])
                b_me = codec.owner_value(claimed[1], kb.hex, "tok")
                rival.append(b_me)
                assert run.eval(s["own"], (owner,), (b_me, kb.hex, claimed[1], "")) == owned[0]
                a_inc = codec.parse_owner(owned[0])[0]
                assert run.eval(s["own_check"], ka.script, (LONG[0], a_inc)) == Tag.FREE
            elif len(owned) == 2:  # a's retry owns; b's compare-and-set must now fail
                b_me = str(rival[0])
                rival.append(run.eval(s["own"], (owner,), (b_me, kb.hex, b_inc[0], owned[0])))
        return reply

    monkeypatch.setattr(Runner, "eval", hooked)
    a.add_number("a", LONG[0], NumberType.LONG_CODE, healthy=True)
    monkeypatch.undo()
    assert len(owned) == 2
    assert rival[1] == owned[1], "the value checked named the first attempt only"
    assert owned[0] != owned[1], "each attempt writes a value of its own"
    assert client.get(owner) == owned[1]
    with pytest.raises(NumberInUse, match="'a'"):
        b.add_number("b", LONG[0], NumberType.LONG_CODE, healthy=True)
    assert [n.number for n in a.numbers("a")] == [LONG[0]]
    assert a.numbers("b") == ()
    a.check_invariants()
    client.close()
    a.close()
    b.close()


def test_an_add_between_a_remove_and_its_release_keeps_the_owner_key(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = new_store(redis_server)
    b = RedisStore.from_url(redis_server.url, prefix=a._prefix)
    a.create_profile("p", PoolSettings())
    a.create_profile("q", PoolSettings())
    a.add_number("p", LONG[0], NumberType.LONG_CODE, healthy=True)
    real = Runner.eval

    def hooked(self: Runner, script: Any, keys: Sequence[str], *args: Any) -> Any:
        if self is a._run and script is a._s["own_release"]:  # removed, then added again
            b.add_number("p", LONG[0], NumberType.LONG_CODE, healthy=True)
        return real(self, script, keys, *args)

    monkeypatch.setattr(Runner, "eval", hooked)
    assert a.remove_number("p", LONG[0], T0) == 0
    monkeypatch.undo()
    assert [n.number for n in a.numbers("p")] == [LONG[0]]
    a.check_invariants()  # the owner key names "p" still
    with pytest.raises(NumberInUse, match="'p'"):
        a.add_number("q", LONG[0], NumberType.LONG_CODE, healthy=True)
    a.close()
    b.close()


def test_racing_adds_of_one_number_leave_it_in_one_pool(redis_server: RedisServer) -> None:
    stores = [new_store(redis_server)]
    stores += [RedisStore.from_url(redis_server.url, prefix=stores[0]._prefix) for _ in range(3)]
    for k in range(4):
        stores[0].create_profile(f"p{k}", PoolSettings())
    for round_ in range(15):
        number = f"+1312555{round_:04d}"
        wins: list[int] = []
        errors: list[BaseException] = []

        def add(
            k: int,
            number: str = number,
            wins: list[int] = wins,
            errors: list[BaseException] = errors,
        ) -> None:
            try:
                stores[k].add_number(f"p{k}", number, NumberType.LONG_CODE, healthy=True)
                wins.append(k)
            except NumberInUse:
                pass
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=add, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert len(wins) == 1, wins
        stores[0].check_invariants()
    for s in stores:
        s.close()


def test_a_profile_created_again_never_reuses_a_pool_version(redis_server: RedisServer) -> None:
    store = new_store(redis_server)
    e = Engine(seed=1, store=store)
    e.create_profile("p")
    e.add_number("p", LONG[0])
    assert e.select("p", "+12125550000").from_number == LONG[0]
    e.delete_profile("p")
    e.create_profile("p")
    e.add_number("p", LONG[1])  # the engine's cached pool must not be taken for this one
    assert e.select("p", "+12125550001").from_number == LONG[1]
    # and when the data is lost under a running engine
    client = redis_server.client()
    client.flushdb()
    e.create_profile("p")
    e.add_number("p", LONG[2])
    assert e.select("p", "+12125550002").from_number == LONG[2]
    client.close()
    e.close()


# -- exact numbers -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "now", [T0 + 0.1, 0.1 + 0.2, 1e-300, 123456789.123456789, T0 + 2**-20, 2.0**40 + 0.5]
)
def test_times_round_trip_exactly(redis_server: RedisServer, now: float) -> None:
    e = Engine(seed=1, store=new_store(redis_server))
    e.create_profile("p", PoolSettings(ttl=1.0 / 3))
    e.add_number("p", LONG[0])
    e.select("p", "+12125550000", now=now)
    m = e.mapping("p", "+12125550000", now=now)
    assert m is not None
    assert m.last_used == now
    assert m.expires_at == now + 1.0 / 3
    assert e.mapping("p", "+12125550000", now=now + 1.0 / 3) is None
    later = now + 1.0 / 7
    assert e.select("p", "+12125550000", now=later).reason is Reason.STICKY
    m = e.mapping("p", "+12125550000", now=later)
    assert m is not None
    assert m.last_used == later
    e.store.check_invariants()
    e.close()


def test_settings_with_odd_floats_round_trip(redis_server: RedisServer) -> None:
    e = Engine(store=new_store(redis_server))
    s = PoolSettings(ttl=0.1 + 0.2, long_code_weight=1e-300, toll_free_weight=-0.0)
    e.create_profile("p", s)
    assert e.settings("p") == s
    assert e.update_settings("p", toll_free_weight=0.0) == s  # -0.0 == 0.0: the same settings
    e.close()


# -- the compare-and-set, step by step, on both stores -------------------------------------
def _cas_script(store: Store) -> list[object]:
    """Raw protocol calls around commit_select's compare-and-set; returns every outcome."""
    out: list[object] = []
    store.create_profile("p", PoolSettings(skip_unhealthy=True))
    for n in LONG:
        store.add_number("p", n, NumberType.LONG_CODE, healthy=True)
    to, other = "+12125550000", "+12125550001"
    for i in range(2):  # older mappings: the amortised eviction step takes these two first
        store.pin("p", f"+1646555000{i}", LONG[2], T0 - 5)
    store.pin("p", to, LONG[0], T0)
    store.set_health(LONG[0], healthy=False)
    draw = store.begin_select("p", to, T0 + 10, -1)  # live, its sender not eligible
    assert isinstance(draw, Miss)
    out.append(draw)
    # another write at a later time moves the horizon past the mapping's expiry
    store.pin("p", other, LONG[1], T0 + DEFAULT_TTL + 1)
    out.append(store.commit_select("p", to, LONG[1], draw, T0 + 10))
    draw = store.begin_select("p", to, T0 + 10, -1)  # now: dead at the horizon
    assert isinstance(draw, Miss)
    out.append((draw.previous, draw.live))
    # a stale version
    store.set_health(LONG[2], healthy=False)
    out.append(store.commit_select("p", to, LONG[1], draw, T0 + 10))
    draw = store.begin_select("p", to, T0 + 10, -1)
    assert isinstance(draw, Miss)
    # a rival commit wins first: the loser gets the winner's sticky selection
    out.append(store.commit_select("p", to, LONG[1], draw, T0 + 10))
    out.append(store.commit_select("p", to, LONG[2], draw, T0 + 11))
    out.append(store.mapping("p", to, T0 + 11))
    # a previous mapping that changed (pinned elsewhere meanwhile)
    draw2 = store.begin_select("p", other, T0 + DEFAULT_TTL + 2, -1)
    out.append(draw2)
    store.pin("p", to, LONG[1], T0 + 12)
    changed = Miss(draw.settings, draw.version, None, (LONG[0], T0), live=False, now=T0 + 12)
    out.append(store.commit_select("p", to, LONG[2], changed, T0 + 12))
    out.append(store.mapping("p", to, T0 + 12))
    out.append(store.counts())
    store.check_invariants()
    return out


def test_compare_and_set_agrees_with_memory(redis_server: RedisServer) -> None:
    def comparable(outcomes: list[object]) -> list[object]:
        # Versions differ by design; a dead previous mapping may be evicted already or not
        # (each store has its own expiry index); the counts say the same.
        out: list[object] = []
        for o in outcomes[:-1]:
            if isinstance(o, Miss):
                out.append((o.settings, o.pool, o.previous if o.live else None, o.live))
            elif isinstance(o, tuple) and len(o) == 2 and o[1] is False:
                out.append((None, False))
            else:
                out.append(o)
        return out

    redis_store = new_store(redis_server)
    memory = comparable(_cas_script(MemoryStore()))
    assert memory == comparable(_cas_script(redis_store))
    assert memory[1] is None  # dead at commit time: the compare-and-set fails
    redis_store.close()


# -- batches -------------------------------------------------------------------------------
def test_round_trips(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    e = Engine(seed=5, store=new_store(redis_server))
    assert isinstance(e.store, OneStepBatchStore)
    e.create_profile("p")
    for n in LONG:
        e.add_number("p", n)
    trips = RoundTrips(monkeypatch)
    e.select("p", "+12125559990")  # scripts loaded
    e.store.remove_number("p", LONG[2], 0.0)  # type: ignore[attr-defined]
    e.add_number("p", LONG[2])
    with trips.measure() as first_choice:  # the pool changes stored their choice data
        e.select("p", "+12125559999")
    with trips.measure() as hit:
        e.select("p", "+12125559999")
    with trips.measure() as new:
        e.select("p", "+12125559998")
    batch = [f"+1646555{i:04d}" for i in range(100)]
    with trips.measure() as fresh_batch:
        first = e.select_many("p", batch)
    with trips.measure() as hit_batch:  # repeats start a second run of the batch: 1 more
        again = e.select_many("p", batch + batch[:10])
    mixed = [*batch[:50], *(f"+1718555{i:04d}" for i in range(50))]
    with trips.measure() as mixed_batch:
        assert {s.reason for s in e.select_many("p", mixed)} == {Reason.STICKY, Reason.NEW}
    big = [f"+1917555{i:04d}" for i in range(600)]  # more than one script's chunk
    with trips.measure() as big_fresh:
        e.select_many("p", big)
    with trips.measure() as big_hits:
        assert {s.reason for s in e.select_many("p", big)} == {Reason.STICKY}
    assert (first_choice, hit, new) == ([1], [1], [1])
    assert (fresh_batch, hit_batch, mixed_batch) == ([1], [2], [1])
    assert (big_fresh, big_hits) == ([1], [1])
    assert {s.reason for s in first} == {Reason.NEW}
    assert {s.reason for s in again} == {Reason.STICKY}
    assert [s.from_number for s in again] == [s.from_number for s in first + first[:10]]
    # another engine turns geomatch on: this store's cached mode is stale, one more trip
    other = Engine(store=RedisStore.from_url(redis_server.url, prefix=e.store._prefix))  # type: ignore[attr-defined]
    other.update_settings("p", geomatch="area_code")
    with trips.measure() as stale_new:
        assert e.select("p", "+13125557777").tier is GeoTier.AREA_CODE
    with trips.measure() as cached_new:
        assert e.select("p", "+13125557778").tier is GeoTier.AREA_CODE
    other.add_number("p", "+13125550009")
    with trips.measure() as new_version:  # a stale cached version, of the same mode
        many = e.select_many("p", [f"+1312666{i:04d}" for i in range(300)])
    assert {s.tier for s in many} == {GeoTier.AREA_CODE}
    client = redis_server.client()
    client.delete(e.store._keys.of("p").choice)  # type: ignore[attr-defined]
    with trips.measure() as rebuilt:  # no choice data: computed and stored, then the select
        e.select("p", "+13125557779")
    client.delete(e.store._keys.of("p").choice)  # type: ignore[attr-defined]
    with trips.measure() as rebuilt_batch:
        e.select_many("p", [f"+1312777{i:04d}" for i in range(300)])
    # data of another mode at the current version (an `auto` host with the other
    # installation wrote it): computed again with this host's mode, not a loop
    choice_key = e.store._keys.of("p").choice  # type: ignore[attr-defined]
    client.hset(choice_key, "mode", "full")
    with trips.measure() as other_mode:
        assert e.select("p", "+13125557780").tier is GeoTier.AREA_CODE
    assert client.hget(choice_key, "mode") == "area_code"
    assert other_mode == [2]
    client.close()
    assert (stale_new, cached_new, new_version, rebuilt, rebuilt_batch) == (
        [2],
        [1],
        [1],
        [2],
        [2],
    )
    e.store.check_invariants()
    other.close()
    e.close()


def test_select_many_equals_one_by_one(redis_server: RedisServer) -> None:
    def world(store: Store) -> Engine:
        e = Engine(clock=ManualClock(T0), seed=11, store=store)
        e.create_profile("p", PoolSettings(skip_unhealthy=True))
        for n in LONG:
            e.add_number("p", n)
        e.add_number("p", "+18005550004", NumberType.TOLL_FREE)
        return e

    batch = [f"+1646555{i % 37:04d}" for i in range(80)]  # with repeats
    one_memory, one_redis, many_redis = (
        world(MemoryStore()),
        world(new_store(redis_server)),
        world(new_store(redis_server)),
    )
    for step in range(4):
        if step == 2:
            for e in (one_memory, one_redis, many_redis):
                e.set_health(LONG[0], False)  # some mappings are reassigned
                e.clock.advance(DEFAULT_TTL / 2)  # type: ignore[attr-defined]
        if step == 3:
            for e in (one_memory, one_redis, many_redis):
                e.clock.advance(DEFAULT_TTL)  # type: ignore[attr-defined]
        a = [one_memory.select("p", to) for to in batch]
        b = [one_redis.select("p", to) for to in batch]
        c = many_redis.select_many("p", batch)
        key = [
            (s.to, s.from_number, s.reason if s.reason is not Reason.EXPIRED else Reason.NEW)
            for s in a
        ]
        assert key == [
            (s.to, s.from_number, s.reason if s.reason is not Reason.EXPIRED else Reason.NEW)
            for s in b
        ]
        assert key == [
            (s.to, s.from_number, s.reason if s.reason is not Reason.EXPIRED else Reason.NEW)
            for s in c
        ]
    for e in (one_redis, many_redis):
        e.store.check_invariants()
        e.close()


def test_lua_bucket_hash_equals_python_bucket_hash(redis_server: RedisServer) -> None:
    """common.lua's hash_of and bucket_of place a recipient where keys.py says it is."""
    root = importlib.resources.files("sticky.store.redis.lua")
    common = substitute("common", root.joinpath("common.lua").read_text("utf-8"), constants())
    lua = (
        common
        + """
local out = {}
for i = 2, #ARGV do
  local h = hash_of(ARGV[i])
  out[#out + 1] = string.format('%d %d', h, bucket_of(h, tonumber(ARGV[1]), LOW))
end
return out
"""
    )
    client = redis_server.client()
    rng = random.Random(11)
    tos = ["", "+", "+1", "+12125550000", "\u00e9\u6f22\U0001f600", "+" + "9" * 40, "+1e5"]
    tos += ["+999999999999999", "+9999999999999999", "+0012", " +12", "+12 ", "+\u0663\u0663"]
    tos += [f"+1{rng.randrange(10**9, 10**10)}" for _ in range(200)]
    for nb in (1, 2, 3, 5, 8, 31, 32, 33, 1000, 31250):
        low = 1 << (nb.bit_length() - 1)
        script = lua.replace("LOW", str(low))
        got = client.eval(script, 0, str(nb), *tos)
        want = [f"{bucket_hash(to)} {bucket_of(bucket_hash(to), nb)}" for to in tos]
        assert got == want, nb
    # the low bits spread: 10,000 numbers over 64 buckets, none far from the mean
    counts = Counter(
        bucket_of(bucket_hash(f"+1212{rng.randrange(10**7):07d}"), 64) for _ in range(10_000)
    )
    assert len(counts) == 64
    assert max(counts.values()) < 2 * 10_000 / 64


def test_lua_pick_equals_python_pick(redis_server: RedisServer) -> None:
    """common.lua's pick gives Chooser's number for the same draw, whatever the group."""
    values = constants()
    root = importlib.resources.files("sticky.store.redis.lua")
    common = substitute("common", root.joinpath("common.lua").read_text("utf-8"), values)
    lua = (
        common
        + """
local out = {}
for i = 4, #ARGV do
  out[#out + 1] = pick(ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[i]))
end
return out
"""
    )
    client = redis_server.client()
    rng = random.Random(7)
    weights = [1.0, 0.1, 3.7, 10.0, 1e-300, 1e300, 0.1 + 0.2, 2.0**40 + 0.5, 1 / 3]
    clamps = 0
    for _ in range(120):
        w_long, w_toll = rng.choice(weights), rng.choice(weights)
        n_long, n_toll = rng.randrange(0, 7), rng.randrange(0, 7)
        if n_long + n_toll == 0:
            n_long = 1
        pool = [SenderNumber(f"+1312555{i:04d}", NumberType.LONG_CODE) for i in range(n_long)]
        pool += [
            SenderNumber(f"+1800555{i:0{rng.randrange(4, 8)}d}", NumberType.TOLL_FREE)
            for i in range(n_toll)
        ]
        chooser = policy.Chooser(
            pool, PoolSettings(long_code_weight=w_long, toll_free_weight=w_toll), 0
        )
        (longs, tolls), _ = chooser.groups()
        split = len(longs) * w_long
        total = split + len(tolls) * w_toll
        # random draws, the ends of [0, 1), and the floats around each boundary
        draws = [rng.random() for _ in range(40)] + [0.0, 1 - 2**-53, 1 - 2**-52]
        for k in range(1, len(longs) + len(tolls) + 1):
            edge = (k * w_long if k <= len(longs) else split + (k - len(longs)) * w_toll) / total
            draws += [
                d for d in (math.nextafter(edge, 0), edge, math.nextafter(edge, 1)) if 0 <= d < 1
            ]
        for r in draws:  # the raw index rounds up to the count: Python clamps, Lua must too
            x = r * total
            raw = int(x / w_long) if x < split else int((x - split) / w_toll)
            clamps += raw == (len(longs) if x < split else len(tolls))
        expected = [chooser.choose("p", "+12125550000", r)[0] for r in draws]
        got = client.eval(
            lua, 0, codec.group_text(longs, tolls), repr(w_long), repr(w_toll), *map(repr, draws)
        )
        assert got == expected, (longs, tolls, w_long, w_toll)
    assert clamps > 0  # the clamp at the last element was exercised
    client.close()


def test_batches_draw_as_one_by_one_selects_across_chunks(redis_server: RedisServer) -> None:
    """Chunks of a pipeline take their draws where the one before left off."""

    def world(store: Store) -> Engine:
        e = Engine(clock=ManualClock(T0), seed=3, store=store)
        e.create_profile("p", PoolSettings(geomatch="area_code"))
        for n in [*LONG, "+12125550007", "+16465550008"]:
            e.add_number("p", n)
        return e

    one, many = world(MemoryStore()), world(new_store(redis_server))
    first = [f"+1212555{i:04d}" for i in range(0, 900, 3)]
    batch = [f"+1212555{i:04d}" for i in range(1, 700, 2)] + first
    random.Random(1).shuffle(batch)
    for e in (one, many):
        for to in first[::2]:  # hits mixed with fresh choices in every chunk
            e.select("p", to)
    a = [one.select("p", to) for to in batch]
    b = many.select_many("p", batch)
    assert [(s.to, s.from_number, s.reason, s.tier) for s in a] == [
        (s.to, s.from_number, s.reason, s.tier) for s in b
    ]
    assert one.select("p", "+19175550000") == many.select("p", "+19175550000")  # draws agree
    assert one.stats() == many.stats()
    many.store.check_invariants()
    many.close()


def test_a_batch_without_an_eligible_sender_changes_nothing(redis_server: RedisServer) -> None:
    """A hit needs an eligible sender, so the batch stops at its first recipient."""

    def world(store: Store) -> Engine:
        e = Engine(clock=ManualClock(T0), seed=3, store=store)
        e.create_profile("p", PoolSettings(skip_unhealthy=True))
        e.add_number("p", LONG[0])
        e.add_number("p", LONG[1])
        return e

    one, many = world(MemoryStore()), world(new_store(redis_server))
    mapped = [f"+1212555{i:04d}" for i in range(400)]
    for e in (one, many):
        e.select_many("p", mapped)
        e.set_health(LONG[0], False)
        e.set_health(LONG[1], False)
        e.clock.advance(10)  # type: ignore[attr-defined]
        with pytest.raises(NoEligibleSender):
            e.select_many("p", [*mapped[:299], "+19175550000", *mapped[299:]])
        e.set_health(LONG[0], True)
        e.set_health(LONG[1], True)
    assert {m.last_used for to in mapped if (m := many.mapping("p", to))} == {T0}
    # no draw was used by the failed batch: the next choices agree with memory's
    after = [*mapped[:5], "+19175550001"]
    assert many.select_many("p", after) == one.select_many("p", after)
    assert one.stats() == many.stats()
    many.store.check_invariants()
    many.close()


def test_racing_batches_agree(redis_server: RedisServer) -> None:
    store = new_store(redis_server)
    engines = [
        Engine(
            seed=k,
            store=store if k == 0 else RedisStore.from_url(redis_server.url, prefix=store._prefix),
        )
        for k in range(4)
    ]
    engines[0].create_profile("p")
    for n in LONG:
        engines[0].add_number("p", n)
    batch = [f"+1646555{i:04d}" for i in range(200)]
    results: dict[int, list[str]] = {}

    def run(k: int) -> None:
        results[k] = [s.from_number for s in engines[k].select_many("p", batch)]

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0] == results[1] == results[2] == results[3]
    store.check_invariants()
    for e in engines:
        e.close()


# -- the optional extra --------------------------------------------------------------------
def test_without_the_redis_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis now raises ImportError
    for name in [n for n in sys.modules if n.startswith("sticky.store.redis")]:
        monkeypatch.delitem(sys.modules, name)  # the package and its modules, afresh
    module = importlib.import_module("sticky.store.redis")  # importing still works
    for call in (
        lambda: module.RedisStore.from_url("redis://127.0.0.1:1/0"),
        lambda: module.RedisStore(object()),
        lambda: open_store("redis://127.0.0.1:1/0"),
        lambda: Engine(store="redis://127.0.0.1:1/0"),
    ):
        with pytest.raises(ExtraNotInstalled, match=r"sticky-sender\[redis\]") as info:
            call()
        assert info.value.extra == "redis"


def test_open_store_and_engine_take_a_url(redis_server: RedisServer) -> None:
    store = open_store(redis_server.url)
    assert isinstance(store, RedisStore)
    store.close()
    with Engine(store=redis_server.url) as e:
        e.create_profile("p")
        e.add_number("p", LONG[0])
        assert e.select("p", "+12125550000").from_number == LONG[0]
    assert "p" in RedisStore.from_url(redis_server.url).profiles()


def _sticky_on(client: Any, prefix: str) -> tuple[Engine, RedisStore, Selection]:
    """An engine on ``client``'s store with a pool and one select, checked sticky."""
    store = RedisStore(client, prefix=prefix)
    e = Engine(seed=2, store=store)
    e.create_profile("p")
    for n in LONG:
        e.add_number("p", n)
    first = e.select("p", "+12125550000")
    assert e.select("p", "+12125550000").from_number == first.from_number
    return e, store, first


def test_a_client_without_decoded_replies(redis_server: RedisServer) -> None:
    client = redis.Redis(host="127.0.0.1", port=redis_server.port)  # bytes replies
    e, store, first = _sticky_on(client, "bytes")
    assert e.select_many("p", ["+12125550000", "+12125550001"])[0].from_number == first.from_number
    assert e.profiles() == ["p"]
    store.check_invariants()
    e.close()  # the client is the caller's: still open
    assert client.ping()
    client.close()


@pytest.mark.parametrize(
    "options",
    [{"single_connection_client": True}, {"encoding": "latin-1"}],
    ids=["one-connection", "latin-1"],
)
def test_clients_the_store_does_not_pack_for(redis_server: RedisServer, options: Any) -> None:
    # FCALL goes through redis-py's own execute_command for these: same answers
    client = redis.Redis(
        host="127.0.0.1", port=redis_server.port, decode_responses=True, **options
    )
    _, store, _ = _sticky_on(client, f"t{next(_prefixes)}")
    assert store._run._packer is None
    store.check_invariants()
    client.close()


@given(
    function=st.text(min_size=1, max_size=20),
    keys=st.lists(st.text(max_size=30), max_size=3),
    args=st.lists(
        st.one_of(
            st.text(max_size=40),
            st.binary(max_size=20),
            st.integers(),
            st.floats(allow_nan=False),
        ),
        max_size=12,
    ),
)
def test_the_packed_fcall_is_redis_pys(function: str, keys: list[str], args: list[Any]) -> None:
    packer = Packer()
    mine = packer.fcall(function, keys, args)
    assert packer.fcall(function, tuple(keys), args) == mine  # the cached head
    theirs = redis.connection.PythonRespSerializer(
        65536, redis.connection.Encoder("utf-8", "strict", decode_responses=False).encode
    ).pack("FCALL", function, len(keys), *keys, *args)
    assert mine == b"".join(theirs)


def test_a_bool_or_none_argument_is_refused() -> None:
    for bad in (True, None):
        with pytest.raises(TypeError, match="cannot send"):
            Packer().fcall("f", ["k"], ["a", bad])  # type: ignore[list-item]


def test_a_select_that_times_out_leaves_its_connection_behind(redis_server: RedisServer) -> None:
    # The server runs a timed-out select once it can: its reply must never be read as
    # the answer of a later call (the connection is dropped), nor the select run twice.
    store = new_store(redis_server, socket_timeout=0.3)
    e = Engine(clock=ManualClock(T0), seed=4, store=store)
    e.create_profile("p")
    for n in LONG:
        e.add_number("p", n)
    known = {f"+1212555{i:04d}": e.select("p", f"+1212555{i:04d}").from_number for i in range(6)}
    admin = redis.Redis(host="127.0.0.1", port=redis_server.port)
    admin.execute_command("CLIENT", "PAUSE", "1000", "ALL")
    try:
        with pytest.raises(StoreUnavailable) as info:
            e.select("p", "+13125559999")
        assert isinstance(info.value.__cause__, redis.TimeoutError)
    finally:
        time.sleep(1.1)  # the pause ends: the server runs the select it was sent
    # a client gone before its command ran: the server dropped it (else it ran once)
    late = e.mapping("p", "+13125559999")
    for to, sender in known.items():  # each call reads its own reply
        sel = e.select("p", to)
        assert (sel.from_number, sel.reason) == (sender, Reason.STICKY)
        assert e.mapping("p", to).from_number == sender  # type: ignore[union-attr]
    again = e.select("p", "+13125559999")
    if late is None:
        assert again.reason is Reason.NEW
    else:
        assert (again.from_number, again.reason) == (late.from_number, Reason.STICKY)
    assert e.stats().mappings == 7
    store.check_invariants()
    admin.close()
    e.close()


# -- one rule, one place: the Lua helpers, the constants, eligibility as data --------------
WRITES = (
    "hset",
    "hdel",
    "hincrby",
    "zadd",
    "zrem",
    "zremrangebylex",
    "rpush",
    "lpop",
    "incr",
    "incrby",
    "set",
    "del",
    "unlink",
)
"""Every write command a script of the store issues."""


def _writes(client: Any) -> int:
    """Write commands the server ran since the last CONFIG RESETSTAT (scripts' included)."""
    stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in WRITES)


def test_a_sticky_hit_writes_one_field_and_leaves_the_horizon(redis_server: RedisServer) -> None:
    store = new_store(redis_server)
    e = Engine(seed=1, clock=ManualClock(T0), store=store)
    e.create_profile("p")
    e.add_number("p", LONG[0])
    to = "+12125550000"
    assert e.select("p", to).reason is Reason.NEW
    client = redis_server.client()
    meta = store._keys.of("p").meta
    assert client.hget(meta, "horizon") == repr(T0)  # a fresh choice moved it

    def hit(now: float) -> int:
        client.config_resetstat()
        assert e.select("p", to, now=now).reason is Reason.STICKY
        return _writes(client)

    assert hit(T0 + 10) == 1  # last_used moves: one HSET of the mapping
    assert hit(T0 + 10) == 0  # it would not change: nothing written
    assert hit(T0 + 5) == 0  # never younger
    assert client.hget(meta, "horizon") == repr(T0)  # no hit moved it
    m = e.mapping("p", to, now=T0)
    assert m is not None
    assert m.last_used == T0 + 10
    # a batch of hits: one HSET per hit whose last_used changes
    e.select_many("p", ["+12125550001", "+12125550002"], now=T0 + 10)
    client.config_resetstat()
    many = e.select_many("p", [to, "+12125550001", "+12125550002"], now=T0 + 20)
    assert {s.reason for s in many} == {Reason.STICKY}
    assert _writes(client) == 3
    assert client.hget(meta, "horizon") == repr(T0 + 10)
    # the hit of a commit that lost the race to another select: no horizon either
    other = "+12125550009"
    miss = store.begin_select("p", other, T0 + 30, -1)
    assert isinstance(miss, Miss)
    assert store.commit_select("p", other, LONG[0], miss, T0 + 30) is True
    client.config_resetstat()
    won = store.commit_select("p", other, LONG[0], miss, T0 + 40)
    assert isinstance(won, Selection)
    assert won.reason is Reason.STICKY
    assert _writes(client) == 1
    assert client.hget(meta, "horizon") == repr(T0 + 30)
    store.check_invariants()
    client.close()
    e.close()


def test_scripts_spell_out_no_rule_and_no_tag() -> None:
    root = importlib.resources.files("sticky.store.redis.lua")
    sources = {f.name: f.read_text("utf-8") for f in root.iterdir() if f.name.endswith(".lua")}
    assert len(sources) == len(SCRIPT_NAMES) + 1  # every script, and common.lua
    for name, source in sources.items():
        code = "\n".join(line.split("--", 1)[0] for line in source.splitlines())
        # liveness is is_live's alone; the horizon judged_at's; eligibility a stored flag
        plus_ttl = re.findall(r"\+\s*(?:p\.)?ttl\b", code)
        assert plus_ttl == ([] if name != "common.lua" else ["+ ttl"]), (name, plus_ttl)
        if name != "migrate.lua":  # which deletes 0.1's copies of the weights
            assert "'lw'" not in code, name
            assert "'skip'" not in code, name
        assert "math.max" not in code, name
        # every reply tag is a placeholder: no quoted one-letter or 'ok' literal is returned
        for line in code.splitlines():
            if re.search(r"\breturn\b", line):
                assert not re.search(r"'(?:[a-z]|ok)'", line), (name, line)
        assert not re.search(r"evict\(p, [\w.]+, \d", code), name  # the step is named


def test_constants_are_substituted_or_the_load_fails() -> None:
    values = constants()
    assert values["STEP_BUCKETS"] == str(STEP_BUCKETS)
    assert values["BUCKET_LOAD"] == str(BUCKET_LOAD)
    tags = {name: value for name, value in vars(Tag).items() if name.isupper()}
    assert len(set(tags.values())) == len(tags)  # one meaning per tag
    for name, script in scripts().items():
        assert "{{" not in script.body, name
        assert script.function == f"{library().name}_{name}"
    assert "{{" not in library().code
    assert f"local STEP_BUCKETS = {STEP_BUCKETS}" in library().code
    assert substitute("x", "return {{HIT}}", values) == f"return '{Tag.HIT}'"
    with pytest.raises(ValueError, match=r"x\.lua: placeholder \{\{NOPE\}\} names no constant"):
        substitute("x", "return {{NOPE}}", values)
    with pytest.raises(ValueError, match="left unsubstituted"):
        substitute("x", "return {{A}}", {"A": "{{B}}"})


def test_eligibility_flags_are_computed_for_the_current_version(
    redis_server: RedisServer,
) -> None:
    """Writers whose cached pool is stale get the current one and compute the flags again."""
    a = new_store(redis_server)
    b = RedisStore.from_url(redis_server.url, prefix=a._prefix)
    a.create_profile("p", PoolSettings())
    a.add_number("p", LONG[0], NumberType.LONG_CODE, healthy=True)
    a.add_number("p", "+18005550001", NumberType.TOLL_FREE, healthy=True)
    assert len(a.numbers("p")) == len(b.numbers("p")) == 2  # both cache this version
    # b turns toll-free off and skips unhealthy numbers; a's cache is stale now
    assert b.replace_settings(
        "p", PoolSettings(), PoolSettings(toll_free_weight=0.0, skip_unhealthy=True)
    )
    a.set_health(LONG[0], healthy=False)  # ineligible under b's settings, not a's
    a.add_number("p", "+18005550002", NumberType.TOLL_FREE, healthy=True)
    a.check_invariants()
    # b's cache is stale now: its settings change computes the flags on a's pool
    assert b.replace_settings(
        "p",
        PoolSettings(toll_free_weight=0.0, skip_unhealthy=True),
        PoolSettings(long_code_weight=0.0),
    )
    a.check_invariants()
    pool = dict(redis_server.client().hgetall(a._keys.of("p").pool))
    assert pool == {LONG[0]: "L0001", "+18005550001": "T1111", "+18005550002": "T1111"}
    assert not b.replace_settings("p", PoolSettings(), PoolSettings())  # not the old ones
    a.close()
    b.close()


# A profile exactly as sticky 0.1 left it in Redis (prefix "old", profile id "a", hex 61):
# recorded from 0.1's scripts after create_profile("a", skip_unhealthy=True,
# toll_free_weight=0), adding +13125550001, +13125550002 and +18005550003 (toll-free),
# selects of +12125550000 at T0 and T0 + 5 and of +12125550001 at T0 + 5, then
# set_health(+13125550002, unhealthy). Pool entries have no eligibility flag; meta keeps
# the weights and the skip flag that 0.1's scripts read.
V01_OWNER = "980890258644643:61"
V01 = {
    "old:profiles": ("set", ["61"]),
    "old:own:2b3133313235353530303031": ("string", V01_OWNER),
    "old:own:2b3133313235353530303032": ("string", V01_OWNER),
    "old:own:2b3138303035353530303033": ("string", V01_OWNER),
    "old:{61}:ver": ("string", "980890258644647"),
    "old:{61}:meta": (
        "hash",
        {
            "id": "61",
            "settings": '{"sticky_sender":true,"ttl":691200.0,"long_code_weight":1.0,'
            '"toll_free_weight":0.0,"skip_unhealthy":true,"geomatch":"off"}',
            "ttl": "691200.0",
            "sticky": "1",
            "lw": "1.0",
            "tw": "0.0",
            "skip": "1",
            "inc": "980890258644643",
            "seq": "0",
            "evicted": "0",
            "horizon": "1700000005.0",
        },
    ),
    "old:{61}:pool": ("hash", {"+13125550001": "L1", "+13125550002": "L0", "+18005550003": "T1"}),
    "old:{61}:map": (
        "hash",
        {
            "+12125550000": "1700000005.0 1700000000.0 +13125550001",
            "+12125550001": "1700000005.0 1700000005.0 +13125550002",
        },
    ),
    "old:{61}:queue": ("list", ["1700000000.0 +12125550000", "1700000005.0 +12125550001"]),
    "old:{61}:rev": (
        "zset",
        {"+13125550001\x00+12125550000": 0.0, "+13125550002\x00+12125550001": 0.0},
    ),
}


def _write_v01(client: Any) -> None:
    for key, (kind, value) in V01.items():
        if kind == "set":
            client.sadd(key, *value)
        elif kind == "string":
            client.set(key, value)
        elif kind == "hash":
            client.hset(key, mapping=value)
        elif kind == "list":
            client.rpush(key, *value)
        else:
            client.zadd(key, value)


@pytest.mark.parametrize(
    "first_touch",
    ["mapping", "select", "select_many", "set_health", "update_settings", "add_number"],
)
def test_a_profile_written_by_0_1_is_migrated_on_first_touch(
    redis_server: RedisServer, first_touch: str
) -> None:
    client = redis_server.client()
    _write_v01(client)
    store = RedisStore.from_url(redis_server.url, prefix="old")
    store.check_invariants()  # a 0.1 profile is consistent as it is
    e = Engine(seed=1, clock=ManualClock(T0 + 10), store=store)
    healthy, unhealthy, toll_free = "+13125550001", "+13125550002", "+18005550003"
    # the pool's reads need no migration
    assert e.profiles() == ["a"]
    assert [(n.number, n.type, n.healthy) for n in e.numbers("a")] == [
        (healthy, NumberType.LONG_CODE, True),
        (unhealthy, NumberType.LONG_CODE, False),
        (toll_free, NumberType.TOLL_FREE, True),
    ]
    assert "layout" not in client.hgetall("old:{61}:meta")
    if first_touch == "mapping":  # a read of the mappings migrates, and changes nothing
        m = e.mapping("a", "+12125550000")
        assert m is not None
        assert (m.from_number, m.last_used) == (healthy, T0 + 5)
        assert e.recipients_of("a", unhealthy) == ["+12125550001"]
    elif first_touch == "select":
        sel = e.select("a", "+12125550000")
        assert (sel.reason, sel.from_number) == (Reason.STICKY, healthy)
    elif first_touch == "select_many":
        many = e.select_many("a", ["+12125550000", "+12125550001"])
        assert [(s.reason, s.from_number) for s in many] == [
            (Reason.STICKY, healthy),
            (Reason.REASSIGNED, healthy),
        ]
    elif first_touch == "set_health":
        e.set_health(unhealthy, True)
    elif first_touch == "update_settings":
        e.update_settings("a", ttl=DEFAULT_TTL * 2)
    else:
        e.add_number("a", "+13125550004")
    meta = client.hgetall("old:{61}:meta")
    assert meta["layout"] == LAYOUT
    assert not {"lw", "tw", "skip", "seq", "due"} & meta.keys()
    old_keys = ("old:{61}:map", "old:{61}:rev", "old:{61}:queue", "old:{61}:late")
    assert client.exists(*old_keys) == 0  # layout 2's table and indexes are gone
    store.check_invariants()
    m = e.mapping("a", "+12125550000")  # every mapping and age survived
    assert m is not None
    used = T0 + 10 if first_touch in {"select", "select_many"} else T0 + 5  # or was refreshed
    assert (m.from_number, m.last_used) == (healthy, used)
    if first_touch in {"mapping", "update_settings", "add_number"}:  # not reassigned
        assert e.recipients_of("a", unhealthy) == ["+12125550001"]
    # every mapping and age survived, and the rules hold with the stored flags
    sel = e.select("a", "+12125550000")
    assert (sel.reason, sel.from_number) == (Reason.STICKY, healthy)
    fresh = e.select("a", "+12125559999")
    assert fresh.from_number in {healthy, unhealthy, "+13125550004"} - (
        set() if first_touch == "set_health" else {unhealthy}
    )
    again = e.select("a", "+12125550001")
    if first_touch == "set_health":  # healthy again: its mapping is honoured
        assert (again.reason, again.from_number) == (Reason.STICKY, unhealthy)
    else:
        assert again.reason in {Reason.REASSIGNED, Reason.STICKY}
        assert again.from_number != unhealthy
    assert e.recipients_of("a", toll_free) == []
    store.check_invariants()
    client.close()
    e.close()


def _as_layout_2(client: Any, store: RedisStore, pid: str) -> dict[str, tuple[str, float]]:
    """Rewrite a profile's table as layout 2 kept it (one hash, a sorted-set reverse index,
    a list expiry index); return its mappings."""
    k = store._keys.of(pid)
    names = {f[1:]: v for f, v in client.hgetall(k.ids).items() if f[:1] == "#" and f != "#"}
    table: dict[str, tuple[str, float]] = {}
    for b in range(int(client.hget(k.meta, "nb"))):
        for to, value in client.hgetall(k.bucket(b)).items():
            sid, used = value.split(" ")
            table[to] = (names[sid], float(used))
    client.delete(k.due, k.ids, *client.keys(f"{k.map}:*"), *client.keys(f"{k.rev}:*"))
    client.hdel(k.meta, "n", "nb")
    ordered = sorted(table.items(), key=lambda item: item[1][1])
    client.hset(
        k.map, mapping={to: f"{used!r} {used!r} {sender}" for to, (sender, used) in ordered}
    )
    client.zadd(k.rev, {f"{sender}\0{to}": 0 for to, (sender, _) in ordered})
    client.rpush(k.queue, *(f"{used!r} {to}" for to, (_, used) in ordered))
    client.hset(k.meta, mapping={"layout": "2", "seq": "0", "due": repr(ordered[0][1][1])})
    return table


def test_a_profile_of_layout_2_moves_into_buckets_a_chunk_a_round_trip(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = new_store(redis_server)
    e = Engine(seed=2, clock=ManualClock(T0), store=store)
    e.create_profile("p")
    for n in LONG:
        e.add_number("p", n)
    recipients = [f"+1646{i:07d}" for i in range(2_500)]
    e.select_many("p", recipients)
    client = redis_server.client()
    table = _as_layout_2(client, store, "p")
    assert len(table) == 2_500
    store.check_invariants()  # a layout 2 profile is consistent as it is
    k = store._keys.of("p")
    trips = RoundTrips(monkeypatch)
    with trips.measure() as first:  # the first touch migrates, a chunk a round trip
        m = e.mapping("p", recipients[7])
    assert m is not None
    assert (m.from_number, m.last_used) == table[recipients[7]]
    assert first[0] >= 4  # the refused read, 3 or more chunks of about 1,000, the read
    meta = client.hgetall(k.meta)
    assert meta["layout"] == LAYOUT
    assert int(meta["n"]) == 2_500
    assert not {"mcur", "seq", "due"} & meta.keys()
    assert client.exists(k.map, k.rev, k.queue, k.late) == 0
    store.check_invariants()
    with trips.measure() as again:  # migrated once: one round trip now
        assert e.mapping("p", recipients[8]) is not None
    assert again[0] == 1
    for to, (sender, used) in table.items():  # every mapping and age survived
        got = e.mapping("p", to)
        assert got is not None
        assert (got.from_number, got.last_used) == (sender, used), to
    by_sender = {n: sorted(t for t, (s, _) in table.items() if s == n) for n in LONG}
    assert {n: e.recipients_of("p", n) for n in LONG} == by_sender
    assert e.select("p", recipients[0]).reason is Reason.STICKY
    client.close()
    e.close()


def test_a_migration_broken_off_is_taken_up_where_it_stopped(redis_server: RedisServer) -> None:
    store = new_store(redis_server)
    e = Engine(seed=3, clock=ManualClock(T0), store=store)
    e.create_profile("p")
    e.add_number("p", LONG[0])
    recipients = [f"+1718{i:07d}" for i in range(1_500)]
    e.select_many("p", recipients)
    client = redis_server.client()
    table = _as_layout_2(client, store, "p")
    k = store._keys.of("p")
    script = scripts()["migrate_map"]
    # one chunk, then the client goes away: the profile stays refused, half moved
    reply = store._run.eval(script, k.script, ("500",))
    assert reply == [Tag.OK, "0"]
    meta = client.hgetall(k.meta)
    assert (meta["layout"], meta["mcur"] != "0") == ("2", True)
    assert 0 < int(meta["n"]) < 1_500
    assert client.hlen(k.map) == 1_500  # the old table stays whole until the last chunk
    # any client's next touch finishes it
    same = RedisStore.from_url(redis_server.url, prefix=store._prefix)
    other = Engine(seed=3, clock=ManualClock(T0 + 1), store=same)
    assert other.stats().mappings == 1_500
    assert other.select("p", recipients[3]).reason is Reason.STICKY
    assert client.hget(k.meta, "layout") == LAYOUT
    store.check_invariants()
    assert sorted(e.recipients_of("p", LONG[0])) == sorted(table)
    client.close()
    e.close()
    other.close()


# -- capacity --------------------------------------------------------------------------
def _within_the_rate(send_at: list[float], rate: float, burst: int, label: str) -> None:
    """No window of length w (1 s and 5 s) holds more than ``r * w + b`` one-segment sends."""
    times = sorted(send_at)
    for w in (1.0, 5.0):
        j = 0
        for i, start in enumerate(times):  # the sends in [start, start + w]
            j = max(j, i)
            while j + 1 < len(times) and times[j + 1] <= start + w:
                j += 1
            assert j - i + 1 <= rate * w + burst + 1e-9, (label, w, times[i : j + 1])


def test_two_engines_share_each_number_schedule(redis_server: RedisServer) -> None:
    """Two stores (clients) on one server: one schedule per number, kept by the server."""
    settings = PoolSettings(long_code_rate=2.0, burst=2, daily_new_recipients=50)
    prefix = f"t{next(_prefixes)}"
    clock = ManualClock(T0)
    engines = [
        Engine(clock=clock, seed=k, store=RedisStore.from_url(redis_server.url, prefix=prefix))
        for k in range(2)
    ]
    engines[0].create_profile("p", settings)
    for n in LONG[:2]:
        engines[0].add_number("p", n)
    rng = random.Random(3)
    sent: dict[str, list[float]] = {n: [] for n in LONG[:2]}
    recipients: set[str] = set()
    for i in range(120):
        e = engines[rng.randrange(2)]
        to = f"+1646555{rng.randrange(40):04d}"
        if rng.random() < 0.3:
            clock.advance(rng.choice([0.1, 0.7, -0.5]))  # a clock that goes back too
        batch = [to, f"+1718555{i:04d}"] if i % 10 == 9 else [to]
        out = e.select_many("p", batch) if len(batch) > 1 else [e.select("p", to)]
        for sel in out:
            sent[sel.from_number].append(sel.send_at)
            recipients.add(sel.to)
    for n, times in sent.items():
        _within_the_rate(times, 2.0, 2, n)
    # either engine reads the same state, and a third client started later too
    late = Engine(clock=clock, store=RedisStore.from_url(redis_server.url, prefix=prefix))
    views = [e.capacity("p") for e in (*engines, late)]
    assert views[0] == views[1] == views[2]
    assert sum(c.new_today for c in views[0]) == len(recipients)  # each counted once
    for e in (*engines, late):
        e.store.check_invariants()
        e.close()


@pytest.mark.slow
def test_processes_keep_each_rate_and_budget(redis_server: RedisServer) -> None:
    """Processes selecting as fast as they can: no rate or budget is ever exceeded."""
    prefix, pid = "mpcap", "shared"
    numbers = [f"+1312555{i:04d}" for i in range(3)]
    rate, burst, budget = 5.0, 1, 40
    setup = Engine(store=RedisStore.from_url(redis_server.url, prefix=prefix))
    setup.create_profile(
        pid, PoolSettings(long_code_rate=rate, burst=burst, daily_new_recipients=budget)
    )
    for n in numbers:
        setup.add_number(pid, n)
    recipients = [f"+1212555{i:04d}" for i in range(150)]  # more than the budgets hold
    workers = 3
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0  # after every process has started and imported
    with ctx.Pool(workers) as pool:
        jobs = [
            pool.apply_async(
                capacity_worker, (redis_server.url, prefix, pid, recipients, k, start_at)
            )
            for k in range(workers)
        ]
        seen = [obs for j in jobs for obs in j.get(timeout=120)]
    assert len(seen) == workers * len(recipients)
    by_number: dict[str, list[float]] = {n: [] for n in numbers}
    new: Counter[str] = Counter()
    for _, sender, reason, send_at in seen:
        if sender:
            by_number[sender].append(send_at)
            new[sender] += reason == "new"
        else:
            assert reason == "PoolExhausted", reason
    for n, times in by_number.items():
        _within_the_rate(times, rate, burst, n)
    assert all(new[n] <= budget for n in numbers), new
    assert sum(new.values()) == len(numbers) * budget  # every budget used, none exceeded
    capacity = {c.number: c for c in setup.capacity(pid)}
    assert all(capacity[n].new_today == budget for n in numbers)
    setup.store.check_invariants()
    setup.close()


def _scripted(store: Store) -> list[object]:
    """A scenario with rates, budgets, max_wait, segments and a clock that goes back."""
    clock = ManualClock(T0)
    e = Engine(clock=clock, seed=21, store=store)
    e.create_profile(
        "p",
        PoolSettings(
            long_code_rate=1.0,
            toll_free_rate=4.0,
            burst=2,
            daily_new_recipients=6,
            max_wait=3.0,
            choice_wait=1.5,
            max_queue=30.0,
            geomatch="area_code",
        ),
    )
    for n in LONG:
        e.add_number("p", n)
    e.add_number("p", "+18005550004", NumberType.TOLL_FREE, daily_new_recipients=9)
    e.add_number("p", "+18885550005", NumberType.TOLL_FREE, rate=0.25)
    out: list[object] = []
    rng = random.Random(5)
    recipients = [f"+1{rng.choice(['312', '415', '212'])}555{i:04d}" for i in range(25)]
    for step in range(140):
        to = rng.choice(recipients)
        segments = rng.choice([1, 1, 2, 3])
        if step % 17 == 16:
            clock.advance(-7.0)
        elif step % 5 == 0:
            clock.advance(rng.choice([0.3, 2.5, 11.0]))
        if step == 60:
            e.set_limits(LONG[1], rate=3.0)
        if step == 90:
            e.pin("p", recipients[0], LONG[2])
        if step == 100:
            clock.advance(86_400.0)  # a new day: budgets start afresh
        try:
            if step % 9 == 8:
                got = e.select_many("p", [to, rng.choice(recipients)], segments=segments)
            else:
                got = [e.select("p", to, segments=segments)]
            out += [(s.to, s.from_number, s.reason, s.tier, repr(s.send_at)) for s in got]
        except NoEligibleSender as exc:
            out.append((type(exc).__name__, repr(getattr(exc, "retry_at", None)), str(exc)))
    out.append(e.capacity("p"))
    out.append(e.stats())
    return out


def test_capacity_selects_equal_the_memory_store(redis_server: RedisServer) -> None:
    """The same seed and calls give the same selections, send_at floats included."""
    memory = _scripted(MemoryStore())
    store = new_store(redis_server)
    redis_side = _scripted(store)
    kinds = Counter(x[2] for x in memory if isinstance(x, tuple) and len(x) == 5)
    assert kinds[Reason.STICKY], kinds
    assert kinds[Reason.NEW], kinds
    assert kinds[Reason.OVERFLOW], kinds
    assert redis_side == memory
    store.check_invariants()
    store.close()


def test_capacity_round_trips(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """With capacity on, a sticky hit and a new recipient still cost one round trip each."""
    e = Engine(clock=ManualClock(T0), seed=5, store=new_store(redis_server))
    e.create_profile("p", PoolSettings(long_code_rate=1.0, daily_new_recipients=1000))
    for n in LONG:
        e.add_number("p", n)
    trips = RoundTrips(monkeypatch)
    e.select("p", "+12125559990")  # scripts loaded, choice data and settings cached
    with trips.measure() as new:
        e.select("p", "+12125559999")
    with trips.measure() as hit:
        assert e.select("p", "+12125559999").reason is Reason.STICKY
    with trips.measure() as batch:
        assert len(e.select_many("p", [f"+1646555{i:04d}" for i in range(300)])) == 300
    with trips.measure() as pinned:
        e.pin("p", "+12125559998", LONG[0])
    with trips.measure() as state:
        e.capacity("p")
    with trips.measure() as limits:  # the owner key, then its pool
        e.set_limits(LONG[0], rate=2.0)
    assert (new, hit, batch, pinned, state, limits) == ([1], [1], [1], [1], [1], [2])
    # another store's cache is empty: its select assumes UTC days, which is the zone here
    url, prefix = redis_server.url, e.store._prefix  # type: ignore[attr-defined]
    other = Engine(clock=e.clock, seed=5, store=RedisStore.from_url(url, prefix=prefix))
    other.store.counts()  # its connection made
    with trips.measure() as cold:
        other.select("p", "+12125559997")
    with trips.measure() as warm:
        other.select("p", "+12125559996")
    assert (cold, warm) == ([1], [1])
    e.update_settings("p", timezone="America/New_York")
    with trips.measure() as other_zone:  # its cached zone is stale: told so, one more
        other.select("p", "+12125559995")
    assert other_zone == [2]
    e.store.check_invariants()
    other.close()
    e.close()


def test_a_begin_of_a_capacity_profile_writes_nothing(redis_server: RedisServer) -> None:
    store = new_store(redis_server)
    e = Engine(clock=ManualClock(T0), seed=1, store=store)
    e.create_profile("p", PoolSettings(long_code_rate=1.0))
    e.add_number("p", LONG[0])
    e.select("p", "+12125550000")
    client = redis_server.client()
    before = {k: client.dump(k) for k in client.keys(f"{store._prefix}:*")}
    began = store.begin_select("p", "+12125550000", T0 + 5, -1)
    assert isinstance(began, Miss)
    assert began.sticky == LONG[0]
    assert began.loads == {LONG[0]: (T0 + 1, T0, began.loads[LONG[0]][2], 1)}  # type: ignore[index]
    many = store.begin_select_many("p", ["+12125550000", "+12125550001"], T0 + 5, -1)
    assert [m.sticky for m in many] == [LONG[0], None]  # type: ignore[union-attr]
    assert {k: client.dump(k) for k in client.keys(f"{store._prefix}:*")} == before
    client.close()
    store.close()


def test_data_written_before_capacity_reads_as_idle(redis_server: RedisServer) -> None:
    """A profile without the capacity fields (an older version wrote it) has no limits."""
    store = new_store(redis_server)
    e = Engine(clock=ManualClock(T0), seed=1, store=store)
    e.create_profile("p")
    e.add_number("p", LONG[0])
    e.select("p", "+12125550000")
    keys = store._keys.of("p")
    client = redis_server.client()
    client.hdel(keys.meta, "cap")
    client.hdel(keys.choice, "cap", "tz", "lim")
    reopened = Engine(
        clock=e.clock, seed=1, store=RedisStore.from_url(redis_server.url, prefix=store._prefix)
    )
    assert reopened.select("p", "+12125550000").send_at == T0
    assert reopened.select("p", "+12125550001").send_at == T0
    assert client.hget(keys.meta, "cap") == "0"
    assert reopened.capacity("p")[0].next_slot == T0
    store.check_invariants()
    reopened.update_settings("p", long_code_rate=1.0)  # capacity on from here
    assert [reopened.select("p", f"+1646555000{i}").send_at for i in range(3)] == [
        T0,
        T0 + 1,
        T0 + 2,
    ]
    store.check_invariants()
    client.close()
    for x in (e, reopened):
        x.close()


# -- bulk import ---------------------------------------------------------------------
def test_import_mappings_in_chunks_keeps_the_indexes(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """600 entries: 3 scripts in 1 round trip; the newer and the dead skipped; indexes whole."""
    store = new_store(redis_server)
    store.create_profile("p", PoolSettings())
    for n in LONG:
        store.add_number("p", n, NumberType.LONG_CODE, healthy=True)
    store.pin("p", "+16465550000", LONG[0], T0)  # newer than its import entry: kept
    rng = random.Random(5)
    recipients = [f"+1646555{i:04d}" for i in range(600)]
    entries = [(to, LONG[i % 3], T0 - rng.uniform(0, 1000)) for i, to in enumerate(recipients)]
    entries[1] = (recipients[1], LONG[1], T0 - DEFAULT_TTL)  # dead at T0
    before = store.counts()
    with pytest.raises(UnknownNumber):  # checked by every chunk: nothing written
        store.import_mappings("p", [*entries, ("+16465559999", "+19995550009", T0)], T0)
    assert store.counts() == before
    trips = RoundTrips(monkeypatch)
    with trips.measure() as spent:
        assert store.import_mappings("p", entries, T0) == 598
    assert spent == [1]
    assert store.mapping("p", recipients[0], T0) == (LONG[0], T0, DEFAULT_TTL)
    assert store.mapping("p", recipients[1], T0) is None
    _, sender, used = entries[7]
    assert store.mapping("p", recipients[7], T0) == (sender, used, DEFAULT_TTL)
    assert recipients[7] in store.recipients_of("p", sender, T0)
    store.check_invariants()
    assert store.import_mappings("p", entries, T0) == 0  # re-running writes nothing more
    assert store.evict_expired(T0 + DEFAULT_TTL) == 599  # every key is indexed (and the pin)
    store.check_invariants()
    with pytest.raises(UnknownProfile):
        store.import_mappings("nope", entries[:3], T0)
    store.close()


# -- a number's life: drains, delivery health, opt-outs, replies --------------------------
@pytest.mark.parametrize("capacity", [False, True])
def test_a_numbers_life_agrees_with_memory(redis_server: RedisServer, capacity: bool) -> None:
    """Drains, reports, opt-outs and replies at random: Redis answers as memory does."""
    settings = LIFE_SETTINGS[capacity]
    stores = [MemoryStore(), new_store(redis_server)]
    engines = [life_world(Engine(seed=11, store=s), settings) for s in stores]
    rngs = [random.Random(3) for _ in engines]
    now = T0
    for step in range(600):
        now += rngs[0].choice([0.0, 0.5, 3.0, 20.0])
        rngs[1].choice([0.0, 0.5, 3.0, 20.0])
        got = [life_step(e, rng, now) for e, rng in zip(engines, rngs, strict=True)]
        assert comparable(got[0]) == comparable(got[1]), f"step {step}: {got}"
        if step % 50 == 0:
            assert engines[0].health("p", now=now) == engines[1].health("p", now=now)
            assert engines[0].opt_outs("p") == engines[1].opt_outs("p")
            engines[1].store.check_invariants()
    assert engines[0].numbers("p") == engines[1].numbers("p")
    assert stores[0].health("p") == stores[1].health("p")
    engines[1].store.check_invariants()
    for e in engines:
        e.close()


def test_a_numbers_life_on_the_asyncio_store_agrees_with_memory(redis_server: RedisServer) -> None:
    import asyncio  # noqa: PLC0415

    from sticky.aio import AsyncEngine, AsyncRedisStore  # noqa: PLC0415

    class Sync:  # the asyncio engine's methods, run to completion one by one
        def __init__(self, engine: AsyncEngine, loop: asyncio.AbstractEventLoop) -> None:
            self.engine, self.loop = engine, loop

        def __getattr__(self, name: str) -> Any:
            method = getattr(self.engine, name)
            return lambda *a, **k: self.loop.run_until_complete(method(*a, **k))

    loop = asyncio.new_event_loop()
    try:
        store = AsyncRedisStore.from_url(redis_server.url, prefix=f"t{next(_prefixes)}")
        settings = LIFE_SETTINGS[True]
        async_side = life_world(Sync(AsyncEngine(seed=11, store=store), loop), settings)
        memory_side = life_world(Engine(seed=11, store=MemoryStore()), settings)
        rngs = [random.Random(4), random.Random(4)]
        now = T0
        for step in range(300):
            now += rngs[0].choice([0.0, 3.0, 20.0])
            rngs[1].choice([0.0, 3.0, 20.0])
            got = [
                life_step(e, r, now) for e, r in zip((memory_side, async_side), rngs, strict=True)
            ]
            assert got[0] == got[1], f"step {step}: {got}"
        assert memory_side.health("p", now=now) == async_side.health("p", now=now)
        loop.run_until_complete(store.check_invariants())
        loop.run_until_complete(store.close())
    finally:
        loop.close()


def test_entries_written_before_drains_still_parse(redis_server: RedisServer) -> None:
    store = new_store(redis_server)
    e = Engine(seed=1, store=store)
    e.create_profile("p", PoolSettings(skip_unhealthy=True))
    e.add_number("p", LONG[0])
    e.add_number("p", LONG[1], rate=1.5)
    e.add_number("p", LONG[2])
    e.set_health(LONG[2], healthy=False)
    first = e.select("p", "+12125550000")
    client = redis_server.client()
    pool_key = store._keys.of("p").pool
    # the entries as the layout wrote them before a number's life: one flag for both
    client.hset(pool_key, mapping={LONG[0]: "L11", LONG[1]: "L11 1.5 -", LONG[2]: "L00"})
    fresh = RedisStore.from_url(redis_server.url, prefix=store._prefix)
    assert fresh.numbers("p") == (
        SenderNumber(LONG[0], NumberType.LONG_CODE, True),
        SenderNumber(LONG[1], NumberType.LONG_CODE, True, 1.5),
        SenderNumber(LONG[2], NumberType.LONG_CODE, False),
    )
    fresh.check_invariants()
    again = Engine(seed=1, store=fresh)
    assert again.select("p", "+12125550000").from_number == first.from_number  # kept
    drained = again.drain("p", first.from_number, grace=10.0, now=T0)
    assert drained.draining_since == T0
    assert drained.drain_grace == 10.0
    entry = client.hget(pool_key, first.from_number)
    assert entry.endswith(f" {T0!r} 10.0 @{T0 + 10.0!r}")
    assert entry[2:4] == "10"  # kept, not eligible for a fresh choice
    assert again.select("p", "+12125550000", now=T0 + 9).reason is Reason.STICKY
    moved = again.select("p", "+12125550000", now=T0 + 10)
    assert moved.reason is Reason.REASSIGNED
    assert moved.from_number != first.from_number
    assert client.hget(pool_key, LONG[2]) == "L00"  # untouched entries keep their layout
    fresh.check_invariants()
    client.close()
    e.close()
    again.close()


def test_opt_outs_survive_a_new_store_and_go_with_the_profile(redis_server: RedisServer) -> None:
    store = new_store(redis_server)
    e = Engine(store=store)
    e.create_profile("p")
    e.add_number("p", LONG[0])
    e.select("p", "+12125550001")
    assert e.opt_out("p", "+12125550001")
    assert not e.opt_out("p", "+12125550001")
    e.opt_out("p", "+12125550000")
    e.close()
    other = Engine(store=RedisStore.from_url(redis_server.url, prefix=store._prefix))
    assert other.opt_outs("p") == ["+12125550000", "+12125550001"]
    assert other.is_opted_out("p", "+12125550001")
    assert other.mapping("p", "+12125550001") is None
    with pytest.raises(OptedOut):
        other.select("p", "+12125550001")
    assert other.evict_expired(now=time.time() + 10 * DEFAULT_TTL) == 0
    assert other.opt_outs("p") == ["+12125550000", "+12125550001"]  # never evicted
    assert other.opt_in("p", "+12125550000")
    assert not other.opt_in("p", "+12125550000")
    assert other.select("p", "+12125550000").reason is Reason.NEW
    other.record_delivery(LONG[0], "delivered")
    keys = other.store._keys.of("p")  # type: ignore[attr-defined]
    client = redis_server.client()
    assert client.exists(keys.optout, keys.health) == 2
    other.delete_profile("p")
    assert client.exists(keys.optout, keys.health) == 0
    other.create_profile("p")
    assert other.opt_outs("p") == []
    other.store.check_invariants()
    client.close()
    other.close()


def test_a_select_racing_an_opt_out(redis_server: RedisServer) -> None:
    a, b = new_store(redis_server), None
    a.create_profile("p", PoolSettings())
    a.add_number("p", LONG[0], NumberType.LONG_CODE, healthy=True)
    b = RedisStore.from_url(redis_server.url, prefix=a._prefix)
    # between a's read and its compare-and-set, b opts the recipient out
    miss = a.begin_select("p", "+12125550001", T0, -1)
    assert isinstance(miss, Miss)
    assert b.opt_out("p", "+12125550001", T0)
    with pytest.raises(OptedOut):
        a.commit_select("p", "+12125550001", LONG[0], miss, T0)
    began = a.begin_select_many("p", ["+12125550002", "+12125550001"], T0, -1)
    assert began[1] is None
    assert isinstance(began[0], Miss)
    b.opt_out("p", "+12125550002", T0)
    assert a.commit_select_many("p", [("+12125550002", LONG[0], began[0])], T0) == [None]
    assert a.mapping("p", "+12125550001", T0) is None
    assert a.mapping("p", "+12125550002", T0) is None
    # two clients at full speed: once opt_out has returned, the recipient has no
    # mapping and no select gives it one
    recipients = [f"+1646555{i:04d}" for i in range(200)]
    ea, eb = Engine(seed=1, store=a), Engine(seed=2, store=b)
    done = threading.Event()
    refused = Counter[str]()

    def selects() -> None:
        while not done.is_set():
            for to in recipients:
                try:
                    ea.select("p", to, now=T0)
                except OptedOut:
                    refused[to] += 1

    worker = threading.Thread(target=selects)
    worker.start()
    try:
        for to in recipients:
            eb.opt_out("p", to, now=T0)
            assert eb.mapping("p", to, now=T0) is None
    finally:
        done.set()
        worker.join()
    assert all(ea.mapping("p", to, now=T0) is None for to in recipients)
    assert ea.select_many("p", recipients[:10], now=T0).opted_out == tuple(recipients[:10])
    assert eb.opt_outs("p") == sorted([*recipients, "+12125550001", "+12125550002"])
    a.check_invariants()
    ea.close()
    eb.close()


def test_a_batch_skips_the_opted_out_without_using_their_draws(redis_server: RedisServer) -> None:
    def world(store: Store) -> Engine:
        e = Engine(seed=7, store=store)
        e.create_profile("p")
        for n in LONG:
            e.add_number("p", n)
        e.opt_out("p", "+12125550003", now=T0)
        return e

    batch = [f"+121255500{i:02d}" for i in range(8)] * 2
    redis_side, memory_side = world(new_store(redis_server)), world(MemoryStore())
    got, want = (
        redis_side.select_many("p", batch, now=T0),
        memory_side.select_many("p", batch, now=T0),
    )
    assert list(got) == list(want)
    assert got.opted_out == want.opted_out == ("+12125550003",)
    assert redis_side.select("p", "+19995550000", now=T0) == memory_side.select(
        "p", "+19995550000", now=T0
    )
    redis_side.close()


def test_a_verdict_changes_with_its_window_in_one_step(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = PoolSettings(min_samples=4, skip_unhealthy=True)
    a = new_store(redis_server)
    a.create_profile("p", settings)
    a.add_number("p", LONG[0], NumberType.LONG_CODE, healthy=True)
    a.add_number("p", LONG[1], NumberType.LONG_CODE, healthy=True)
    b = RedisStore.from_url(redis_server.url, prefix=a._prefix)
    for store in (a, a, b):  # both clients cache the pool; b's report is the third
        store.record_delivery(LONG[0], Outcome.FAILED, T0)
    # a's fourth failure turns the number unhealthy, and its reply is lost: the window
    # and the verdict were written together, or neither
    run = a._run
    original = type(run).eval

    def eval_(self: Any, script: Any, keys: Any, args: Any, wrote: Any = None) -> Any:
        reply = original(self, script, keys, args, wrote)
        if self is run and script.name == "record_delivery":
            msg = "the reply was lost"
            raise StoreUnavailable(msg)
        return reply

    monkeypatch.setattr(type(run), "eval", eval_)
    with pytest.raises(StoreUnavailable):
        a.record_delivery(LONG[0], Outcome.FAILED, T0)
    monkeypatch.undo()
    pool, windows = b.health("p")
    assert windows[LONG[0]] == ((policy.health_bucket(T0, 86400.0), 0, 4, 0),)
    assert [n.delivery_healthy for n in pool] == [False, True]
    # b's cached pool is stale: its report is judged with the verdict as stored (an
    # unhealthy number recovers only past the margin: 1 of 5 delivered stays unhealthy)
    assert b.record_delivery(LONG[0], Outcome.DELIVERED, T0).delivery_healthy is False
    pool, windows = a.health("p")
    assert windows[LONG[0]] == ((policy.health_bucket(T0, 86400.0), 1, 4, 0),)
    assert [n.delivery_healthy for n in pool] == [False, True]
    a.check_invariants()
    # a report sent twice (a reply lost) counts once: the same token
    monkeypatch.setattr("secrets.token_hex", lambda n: "same")
    a.record_delivery(LONG[1], Outcome.SPAM, T0)
    a.record_delivery(LONG[1], Outcome.SPAM, T0)
    monkeypatch.undo()
    assert a.health("p")[1][LONG[1]] == ((policy.health_bucket(T0, 86400.0), 0, 0, 1),)
    a.set_health(LONG[0], healthy=True)  # vouched for: the verdict and window reset
    pool, windows = a.health("p")
    assert pool[0].delivery_healthy
    assert LONG[0] not in windows
    a.remove_number("p", LONG[1], T0)
    assert a.health("p")[1] == {}
    a.check_invariants()
    a.close()
    b.close()


def test_life_round_trips(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    e = Engine(seed=5, store=new_store(redis_server))
    e.create_profile("p", PoolSettings(min_samples=2, min_delivery_rate=0.6))
    for n in LONG:
        e.add_number("p", n)
    e.select("p", "+12125559990", now=T0)  # scripts loaded, the pool cached
    e.record_delivery(LONG[0], "delivered", now=T0)  # the owner key read once
    trips = RoundTrips(monkeypatch)
    measured = {}
    with trips.measure() as measured["report"]:
        e.record_delivery(LONG[0], "delivered", now=T0)
    with trips.measure() as measured["verdict"]:  # 2 failed of 3: unhealthy, a pool change
        for _ in range(2):
            e.record_delivery(LONG[0], "failed", now=T0)
    with trips.measure() as measured["opt_out"]:
        e.opt_out("p", "+12125559990", now=T0)
    with trips.measure() as measured["reply"]:
        e.record_reply("p", "+12125559991", LONG[1], now=T0)
    with trips.measure() as measured["drain"]:
        e.drain("p", LONG[2], now=T0)
    with trips.measure() as measured["opted_out_select"], pytest.raises(OptedOut):
        e.select("p", "+12125559990", now=T0)
    assert {k: v[0] for k, v in measured.items()} == {
        "report": 1,
        "verdict": 2,  # the change is in the report's script
        "opt_out": 1,
        "reply": 2,  # the first write after a verdict has the new version's choice data stored
        "drain": 1,
        "opted_out_select": 1,
    }
    e.close()
