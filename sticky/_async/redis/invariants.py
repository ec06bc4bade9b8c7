"""The Redis store's check_invariants: reads every key of a prefix and asserts it is whole.

For tests (O(keys)); :meth:`sticky.store.redis.RedisStore.check_invariants` says what
is checked.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

from sticky import policy
from sticky._async.redis.runner import AsyncRunner
from sticky.settings import PoolSettings
from sticky.store.redis import codec
from sticky.store.redis.keys import KeyScheme, ProfileKeys, bucket_hash, bucket_of, unhex
from sticky.store.redis.scripts import BUCKET_LOAD, LAYOUT, text

__all__ = ["check"]


async def check(run: AsyncRunner, keys: KeyScheme, *, allow_leftovers: bool) -> None:
    """Assert every invariant of the data under ``keys``' prefix; AssertionError names one."""
    prefix = keys.prefix
    metas = {
        key[len(prefix) + 2 : -len("}:meta")]
        for key in await run.scan(f"{keys.glob()}:{{*}}:meta")
    }
    listed = set(await run.command("SMEMBERS", keys.profiles))
    assert metas <= listed, f"profiles missing from the profile set: {metas - listed}"
    if not allow_leftovers:
        assert listed <= metas, f"ids of deleted profiles in the profile set: {listed - metas}"
    owners: dict[str, str] = {}
    for hex_value in sorted(metas):
        owners.update(await _check_profile(run, keys, hex_value, allow_leftovers=allow_leftovers))
    owner_keys = sorted(
        set(await run.scan(f"{keys.glob()}:own:*")) | {keys.owner(n) for n in owners}
    )
    values = dict(
        zip(
            owner_keys,
            await run.pipeline([(None, ("GET", key)) for key in owner_keys]),
            strict=True,
        )
    )
    for number, me in owners.items():
        value = values[keys.owner(number)]
        assert value is not None, f"{number}: no owner key"
        assert ":".join(codec.parse_owner(value)) == me, f"{number}: owner key is not {me}"
    for key in owner_keys:
        number = unhex(key[len(prefix) + 5 :])
        assert number in owners or allow_leftovers, (
            f"owner key of {number!r} ({values[key]}) names no pool holding it"
        )


async def _check_profile(
    run: AsyncRunner, keys: KeyScheme, hex_value: str, *, allow_leftovers: bool
) -> dict[str, str]:
    """Check one profile; return its numbers' expected owner-key values."""
    k = keys.of_hex(hex_value)
    (meta, pool_flat, claims, version, choice, batch, cap, optouts, health) = await run.pipeline(
        [
            (None, ("HGETALL", k.meta)),
            (None, ("HGETALL", k.pool)),
            (None, ("HGETALL", k.claims)),
            (None, ("GET", k.ver)),
            (None, ("HGETALL", k.choice)),
            (None, ("HGETALL", k.batch)),
            (None, ("HGETALL", k.cap)),
            (None, ("SMEMBERS", k.optout)),
            (None, ("HGETALL", k.health)),
        ]
    )
    pid = unhex(hex_value)
    meta, pool_map, claims = (_as_dict(x) for x in (meta, pool_flat, claims))
    assert meta["id"] == hex_value, f"{pid}: meta names {meta['id']}"
    settings = PoolSettings.from_dict(json.loads(meta["settings"]))
    json_text, *fields = codec.settings_args(settings)
    # Settings written before a field existed lack it (read as its default), in order.
    data, canonical = json.loads(meta["settings"]), json.loads(json_text)
    older = set(data) < set(canonical) and all(canonical[k] == v for k, v in data.items())
    assert meta["settings"] == json_text or older, f"{pid}: settings are not canonical"
    got = [meta["ttl"], meta["sticky"]]
    assert got == fields, f"{pid}: settings fields {got} disagree with {fields}"
    assert version is not None, f"{pid}: no version"
    assert int(meta["inc"]) <= int(version), f"{pid}: incarnation after the version"
    _check_pool(pid, meta, pool_map, settings)
    _check_choice(pid, _as_dict(choice), version, pool_map, settings)
    _check_capacity(pid, meta, _as_dict(choice), version, pool_map, _as_dict(cap))
    _check_health(pid, pool_map, _as_dict(health), optouts)
    for token, offset in _as_dict(batch).items():  # a batch in flight, or one broken off
        assert allow_leftovers, f"{pid}: batch {token} left in the batch hash"
        assert offset.isdigit(), f"{pid}: batch {token} at offset {offset!r}"
    if not allow_leftovers:
        assert not claims, f"{pid}: pending claims {claims}"
    if meta.get("layout") == LAYOUT:
        await _check_mappings(run, k, pid, meta, pool_map)
    else:
        await _check_old_mappings(run, k, pid, pool_map)
    if "horizon" in meta:
        assert codec.float_text(float(meta["horizon"])) == meta["horizon"]
    return dict.fromkeys(pool_map, f"{meta['inc']}:{hex_value}")


async def _check_mappings(
    run: AsyncRunner, k: ProfileKeys, pid: str, meta: dict[str, str], pool_map: dict[str, str]
) -> None:
    """Check the bucketed table (layout 3).

    Each mapping is in its bucket, under a pooled sender's id; ``n`` counts them; ``due``
    scores each non-empty bucket at most its least last_used; each sender's reverse-index
    bit is set for every bucket holding it; no stray key.
    """
    nb, n = int(meta["nb"]), int(meta["n"])
    assert nb >= 1, f"{pid}: {nb} buckets"
    ids_flat, due_flat, *buckets = await run.pipeline(
        [
            (None, ("HGETALL", k.ids)),
            (None, ("ZRANGE", k.due, "0", "-1", "WITHSCORES")),
            *((None, ("HGETALL", k.bucket(b))) for b in range(nb)),
        ]
    )
    ids = _as_dict(ids_flat)
    sids = {f: v for f, v in ids.items() if f[:1] != "#"}
    names = {f[1:]: v for f, v in ids.items() if f[:1] == "#" and len(f) > 1}
    assert names == {v: f for f, v in sids.items()}, f"{pid}: sender ids are not one to one"
    assert set(sids) <= set(pool_map), f"{pid}: ids of numbers not in the pool"
    assert all(int(sid) <= int(ids.get("#", "0")) for sid in names), f"{pid}: an id past '#'"
    flat = [
        text(x) for item in due_flat for x in (item if isinstance(item, (list, tuple)) else [item])
    ]
    due = {int(b): float(score) for b, score in zip(flat[::2], flat[1::2], strict=True)}
    held: set[tuple[str, int]] = set()
    total = 0
    for b, bucket in enumerate(buckets):
        table = _as_dict(bucket)
        total += len(table)
        least = math.inf
        for to, value in table.items():
            sid, last_used = value.split(" ")
            assert sid in names, f"{pid}: {to} maps to id {sid}, which names no number"
            assert names[sid] in pool_map, f"{pid}: {to} maps to {names[sid]}, not in pool"
            assert codec.float_text(float(last_used)) == last_used, f"{pid}: {to}: {last_used!r}"
            assert bucket_of(bucket_hash(to), nb) == b, f"{pid}: {to} in bucket {b}"
            least = min(least, float(last_used))
            held.add((sid, b))
        if table:
            assert b in due, f"{pid}: bucket {b} not in the expiry index"
            assert due[b] <= least, f"{pid}: bucket {b} scored after its oldest mapping"
    assert set(due) <= set(range(nb)), f"{pid}: the expiry index names buckets past {nb}"
    assert all(buckets[b] for b in due), f"{pid}: the expiry index names an empty bucket"
    assert total == n, f"{pid}: n = {n}, the buckets hold {total}"
    assert n <= max(nb, 2) * BUCKET_LOAD, f"{pid}: {n} mappings in {nb} buckets"
    ordered = sorted(held)
    bits = await run.pipeline([(None, ("GETBIT", k.rev_of(sid), str(b))) for sid, b in ordered])
    for (sid, b), bit in zip(ordered, bits, strict=True):
        assert int(bit) == 1, f"{pid}: bucket {b} holds id {sid}, its reverse index says not"
    strays = await run.scan(f"{k.map}:*") + await run.scan(f"{k.rev}:*")
    for key in strays:
        kind, _, rest = key[len(k.map) - 3 :].partition(":")
        if kind == "map":
            assert int(rest) < nb, f"{pid}: stray bucket {key}"
        else:
            assert rest in names, f"{pid}: a reverse index of no sender: {key}"
    old = await run.pipeline([(None, ("EXISTS", key)) for key in (k.queue, k.late, k.map, k.rev)])
    assert not any(int(x) for x in old), f"{pid}: a key of layout 2 left behind"


async def _check_old_mappings(
    run: AsyncRunner, k: ProfileKeys, pid: str, pool_map: dict[str, str]
) -> None:
    """Check a table of layout 2 (or 0.1) not migrated yet: senders pooled, reverse index whole."""
    table, rev = await run.pipeline(
        [(None, ("HGETALL", k.map)), (None, ("ZRANGE", k.rev, "0", "-1"))]
    )
    expected = set()
    for to, value in _as_dict(table).items():
        _, _, sender = value.split(" ", 2)
        assert sender in pool_map, f"{pid}: {to} maps to {sender}, not in pool"
        expected.add(f"{sender}\0{to}")
    assert set(rev) == expected, f"{pid}: reverse index disagrees"


def _check_pool(
    pid: str, meta: dict[str, str], pool_map: dict[str, str], settings: PoolSettings
) -> None:
    """Entries of the profile's layout; with flags, each one policy.is_eligible's answer."""
    if "layout" not in meta:  # written by 0.1, not touched since: no flags yet
        assert all(v[0] in "LT" and v[1] in "01" and len(v) == 2 for v in pool_map.values())
        return
    # 2: flags, its table not moved into buckets yet (see _check_old_mappings)
    assert meta["layout"] in {"2", LAYOUT}, f"{pid}: layout {meta['layout']!r}"
    stale = {"lw", "tw", "skip"} & meta.keys()
    assert not stale, f"{pid}: 0.1's eligibility fields left in meta: {stale}"
    for number, value in pool_map.items():
        head = value.split(" ", 1)[0]
        assert len(head) in {3, 5}, f"{pid}: {number}: entry {value!r}"
        assert value[0] in "LT", f"{pid}: {number}: entry {value!r}"
        assert value[1] in "01", f"{pid}: {number}: entry {value!r}"
        (sender,) = codec.parse_pool([number, value])
        kept = "1" if policy.may_keep(sender, settings) else "0"
        assert value[2] == kept, f"{pid}: {number}: kept flag {value[2]}, not {kept}"
        expected = codec.entry(sender, settings)
        if len(head) == 3:  # written before drains: one flag for both
            old = expected[:3] + expected[5:]
            assert expected[2] == expected[3], f"{pid}: {number}: entry {value!r}"
            assert sender.delivery_healthy, f"{pid}: {number}: entry {value!r}"
            assert old == value, f"{pid}: {number}: entry {value!r}"
        else:
            assert expected == value, f"{pid}: {number}: entry {value!r}, not {expected!r}"


def _check_health(
    pid: str, pool_map: dict[str, str], health: dict[str, str], optouts: Iterable[str]
) -> None:
    """Delivery windows only for pooled numbers, each a policy.Window with its token.

    Opt-outs are non-empty recipients (never evicted: any number of them is fine).
    """
    assert all(isinstance(to, str) and to for to in optouts), f"{pid}: opt-outs {optouts}"
    for number, value in health.items():
        assert number in pool_map, f"{pid}: delivery window of {number}, not in the pool"
        token, _, _ = value.partition(";")
        assert token, f"{pid}: {number}: window {value!r} without a token"
        try:
            window = codec.parse_window(value)
        except ValueError:
            raise AssertionError(f"{pid}: {number}: window {value!r}") from None
        assert 0 < len(window) <= policy.HEALTH_BUCKETS, f"{pid}: {number}: window {value!r}"
        buckets = [e[0] for e in window]
        assert buckets == sorted(set(buckets)), f"{pid}: {number}: buckets out of order"
        assert buckets[0] > buckets[-1] - policy.HEALTH_BUCKETS, f"{pid}: {number}: old bucket"
        assert all(min(e[1:]) >= 0 and sum(e[1:]) > 0 for e in window), f"{pid}: {number}"


def _check_choice(
    pid: str,
    choice: dict[str, str],
    version: str,
    pool_map: dict[str, str],
    settings: PoolSettings,
) -> None:
    """The choice data, when stored for the current version, is the Chooser's of the pool."""
    if choice.get("v") != version:  # none yet, or of an older version: never read
        return
    pool = codec.parse_pool([x for number, e in pool_map.items() for x in (number, e)])
    args = codec.choice_args(pool, settings, int(version))
    expected = dict(zip(args[2::2], args[3::2], strict=True))
    expected.update(v=version, mode=args[1])
    assert choice == expected, f"{pid}: choice data is not the Chooser's of the pool"


def _check_capacity(
    pid: str,
    meta: dict[str, str],
    choice: dict[str, str],
    version: str,
    pool_map: dict[str, str],
    cap: dict[str, str],
) -> None:
    """Capacity state only for pooled numbers, each parseable; meta's flag as the choice's.

    meta's ``cap`` (when present) is the choice data's: that data is of the current
    version, and the flag is ``0`` (off) or the time zone it names.
    """
    for number, value in cap.items():
        assert number in pool_map, f"{pid}: capacity state of {number}, not in the pool"
        try:
            tat, floor, day, count = codec.parse_load(value)
        except ValueError:
            raise AssertionError(f"{pid}: {number}: capacity state {value!r}") from None
        assert day >= 0, f"{pid}: {number}: capacity state {value!r}"
        assert count >= 0, f"{pid}: {number}: capacity state {value!r}"
        assert not math.isnan(tat), f"{pid}: {number}: capacity state {value!r}"
        assert not math.isnan(floor), f"{pid}: {number}: capacity state {value!r}"
    flag = meta.get("cap")
    if flag is None:
        return
    assert choice.get("v") == version, f"{pid}: capacity flag without current choice data"
    want = "0" if choice.get("cap") == "0" else choice.get("tz")
    assert flag == want, f"{pid}: capacity flag {flag!r}, the choice data says {want!r}"


def _as_dict(flat: Iterable[str] | dict[str, str]) -> dict[str, str]:
    """A HGETALL reply as a dict (redis-py parses it to one already)."""
    if isinstance(flat, dict):
        return {text(k): text(v) for k, v in flat.items()}
    items = list(flat)
    return dict(zip(items[::2], items[1::2], strict=True))
