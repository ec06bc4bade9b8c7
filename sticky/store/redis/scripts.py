"""The Redis store's Lua scripts: reading, constants, the function library, running them.

The scripts are files in ``lua/`` (package data, read with :mod:`importlib.resources`);
``common.lua`` holds the helpers (one per rule of docs/semantics.md). They run as one
Redis Functions library (:func:`library`): the helpers once, then each script's body as
a function of its own, so a call runs its body alone (an ``EVALSHA`` of the helpers and a
body would define every helper again on every call: most of a select's server time).
``{{NAME}}`` placeholders in them are replaced when they are read by the constants
defined here once for both languages: the reply tags (:class:`Tag`), the Redis store's
amortised eviction step, the table's bucket load and the layout version. A placeholder
with no constant, or one left unsubstituted, fails the load, never a reply.

:class:`~sticky.store.redis.runner.Runner` runs them. Nothing here imports redis-py at
import time.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, Final

from sticky import policy
from sticky.store.redis import keys
from sticky.values import GeoTier, Reason, ReplyAction

__all__ = [
    "BUCKET_LOAD",
    "LAYOUT",
    "REASONS",
    "SCRIPT_NAMES",
    "STEP_BUCKETS",
    "TIERS",
    "TOPOLOGY",
    "TRANSIENT",
    "Library",
    "Op",
    "Script",
    "Tag",
    "Wrote",
    "call",
    "constants",
    "library",
    "reply_text",
    "scripts",
]

_log = logging.getLogger("sticky.store.redis")

LAYOUT: Final = "3"
"""The key layout version a profile's ``meta`` names: 3, mappings in buckets. 0.1 wrote
none (layout 1: pool entries without the eligibility flag), 2 kept one hash of mappings
with a sorted-set reverse index and a list expiry index; a profile of either is migrated
on its first touch (``migrate``, then ``migrate_map`` a chunk a round trip)."""

BUCKET_LOAD: Final = 32
"""Mappings per bucket before the table grows by one bucket: small enough that a bucket
(about 2 x this before it splits) stays a listpack under Redis's default
``hash-max-listpack-entries`` 128, large enough that a bucket's key costs little per
mapping."""

STEP_BUCKETS: Final = 1
"""Buckets whose expiry score is dead a write that stores a mapping cleans: the Redis
store's amortised step (the memory and SQLite stores' is ``policy.STEP_EVICTIONS``)."""


class Tag:
    """The first element of a script's reply: one name per meaning, one place to edit.

    Lua spells each as ``{{NAME}}``; Python compares replies with these attributes.
    """

    OK: Final = "ok"
    UNKNOWN_PROFILE: Final = "u"
    HIT: Final = "h"
    """A sticky hit (or, in a commit, another select's live mapping), refreshed."""
    MISS: Final = "d"
    """Not a sticky hit: what a fresh choice needs follows."""
    STORED: Final = "t"
    START_OVER: Final = "n"
    """A compare-and-set found something changed: read again."""
    NOT_ELIGIBLE: Final = "x"
    """A commit's chosen sender is not eligible at the version it was chosen at."""
    MAPPING: Final = "m"
    NO_MAPPING: Final = "z"
    RECIPIENTS: Final = "r"
    NOT_IN_POOL: Final = "p"
    EXISTS: Final = "e"
    IN_POOL: Final = "i"
    REVOKED: Final = "k"
    """add_number's claim was revoked by a rival add: start over."""
    OWNER_MOVED: Final = "w"
    """The owner key named a profile (incarnation) whose pool does not hold the number."""
    FREE: Final = "f"
    STALE: Final = "s"
    """The caller's pool version is not current: the current data follows, try again."""
    SETTINGS_CHANGED: Final = "c"
    OLD_LAYOUT: Final = "v"
    """The profile was written by 0.1: migrate it, then try again."""
    CHOSEN: Final = "o"
    """A one-step select's fresh choice (stored unless sticky is off): it used the draw."""
    NO_ELIGIBLE: Final = "g"
    """A fresh choice found no eligible number: nothing written, no draw used."""
    SKIPPED: Final = "b"
    """A batch chunk whose predecessor in the pipeline did not finish: it did nothing."""
    EXHAUSTED: Final = "y"
    """Capacity: every eligible number is at its daily budget (PoolExhausted); nothing written."""
    BUSY: Final = "q"
    """Capacity: no slot within max_queue (PoolBusy); nothing written."""
    CAPACITY: Final = "a"
    """begin_select of a profile with capacity on: a Miss with the loads, nothing written."""
    OPTED_OUT: Final = "j"
    """The recipient is opted out: nothing written, no draw used."""


REASONS: Final = (
    None,
    Reason.STICKY,
    Reason.REASSIGNED,
    Reason.EXPIRED,
    Reason.NEW,
    Reason.POOL,
    Reason.OVERFLOW,
)
"""A select script's reason codes: the reason is ``REASONS[code]``."""
TIERS: Final = (
    None,
    GeoTier.AREA_CODE,
    GeoTier.OVERLAY,
    GeoTier.REGION,
    GeoTier.COUNTRY,
    GeoTier.NONE,
)
"""A select script's tier codes (0: geomatch off), in :class:`sticky.policy.Chooser`'s
tier order: a fresh choice's tier is ``TIERS[code]``."""


def _tags() -> dict[str, str]:
    tags = {name: value for name, value in vars(Tag).items() if name.isupper()}
    assert len(set(tags.values())) == len(tags), f"two reply tags share a value: {tags}"
    return tags


def constants() -> dict[str, str]:
    """Every placeholder's Lua text: tags as string literals, numbers as integers."""
    out = {name: f"'{value}'" for name, value in _tags().items()}
    out["KEY_NAMES"] = ", ".join(f"'{name}'" for name in (*keys.ORDER, *keys.OLD))
    out["BUCKET_LOAD"] = str(BUCKET_LOAD)
    out["STEP_BUCKETS"] = str(STEP_BUCKETS)
    out["HEALTH_BUCKETS"] = str(policy.HEALTH_BUCKETS)
    out["LAYOUT"] = f"'{LAYOUT}'"
    for reason in REASONS[1:]:
        assert reason is not None
        out[f"R_{reason.name}"] = str(REASONS.index(reason))
    out["TIER_NONE"] = str(TIERS.index(GeoTier.NONE))
    for action in ReplyAction:
        out[f"A_{action.name}"] = f"'{action.value}'"
    return out


SCRIPT_NAMES: Final = (
    "add_claim",
    "add_evicted",
    "add_commit",
    "begin_many",
    "begin_select",
    "capacity",
    "commit_many",
    "commit_select",
    "create_profile",
    "delete_profile",
    "evict",
    "forget",
    "health",
    "import_mappings",
    "info",
    "mapping",
    "migrate",
    "migrate_map",
    "opt_in",
    "opt_out",
    "opted_out",
    "own",
    "own_check",
    "own_release",
    "pin",
    "recipients_of",
    "record_delivery",
    "record_reply",
    "remove_number",
    "replace_settings",
    "select",
    "select_many",
    "set_health",
    "store_choice",
    "withdraw",
)
_OWN_KEYS: Final = frozenset({"add_evicted", "own", "own_release"})
"""The scripts given keys of their own (global ones), not one profile's meta key."""
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


class Script:
    """One script: its body (constants substituted) and the function that runs it."""

    __slots__ = ("body", "function", "name")

    def __init__(self, name: str, body: str, library: str) -> None:
        self.name = name
        self.body = body
        self.function = f"{library}_{name}"
        """Its name in the library (``FCALL`` it)."""


class Library:
    """The function library: its name (with a digest of its code) and its code."""

    __slots__ = ("code", "name")

    def __init__(self, name: str, code: str) -> None:
        self.name = name
        self.code = code


def substitute(name: str, text: str, values: dict[str, str]) -> str:
    """``text`` with each ``{{NAME}}`` replaced; raises ValueError for an unknown one."""

    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            msg = f"{name}.lua: placeholder {{{{{key}}}}} names no constant"
            raise ValueError(msg)
        return values[key]

    out = _PLACEHOLDER.sub(one, text)
    left = _PLACEHOLDER.search(out)
    if left is not None:  # a constant whose text is itself a placeholder
        msg = f"{name}.lua: placeholder {left.group(0)} left unsubstituted"
        raise ValueError(msg)
    return out


@functools.cache
def _read() -> tuple[Library, dict[str, Script]]:
    root = importlib.resources.files("sticky.store.redis.lua")
    values = constants()
    common = substitute("common", root.joinpath("common.lua").read_text("utf-8"), values)
    bodies = {
        name: substitute(name, root.joinpath(f"{name}.lua").read_text("utf-8"), values)
        for name in SCRIPT_NAMES
    }
    whole = "\n".join([common, *bodies.values()]).encode()
    # the digest names the code: processes of two versions on one server never share one
    name = "sticky_" + hashlib.sha1(whole, usedforsecurity=False).hexdigest()[:12]
    made = {n: Script(n, body, name) for n, body in bodies.items()}
    # The helpers read KEYS and ARGV as an EVAL script's globals; a function gets them
    # as arguments, so each function sets the library's two upvalues first (a profile's
    # script names its keys from its one key, meta). Redis runs one function at a time:
    # no call sees another's.
    code = [f"#!lua name={name}\nlocal KEYS, ARGV\n", common]
    code += [
        f"\nredis.register_function('{script.function}', function(keys, args)\n"
        f"KEYS, ARGV = {'keys' if n in _OWN_KEYS else 'profile_keys(keys[1])'}, args\n"
        f"{script.body}\nend)\n"
        for n, script in made.items()
    ]
    return Library(name, "".join(code)), made


def scripts() -> dict[str, Script]:
    """Every script, read once from the package, constants substituted."""
    return _read()[1]


def library() -> Library:
    """The function library of every script (``FUNCTION LOAD`` it), built once."""
    return _read()[0]


def text(value: object) -> str:
    """A reply element as str, whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else str(value)


def reply_text(value: Any) -> Any:  # noqa: ANN401 - redis-py replies are untyped
    """A reply as str (or a list of str), whether or not the client decodes responses."""
    if isinstance(value, (list, set)):  # SMEMBERS gives a set
        return [text(v) if isinstance(v, bytes) else v for v in value]
    if isinstance(value, bytes):
        return value.decode()
    return value


TRANSIENT = ("READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "LOADING", "BUSY", "OOM")
"""Error replies that mean "not now" rather than "wrong": raised as StoreUnavailable."""
TOPOLOGY = (
    "Redis Cluster cannot be connected",
    "All slots are not covered",
    "startup_nodes could not agree",
)
"""redis-py's cluster-client errors that mean "the cluster is not reachable now"."""

Op = tuple[Script | None, Sequence[str]]
"""A pipelined op: ``(script, [numkeys, *keys, *args])`` or ``(None, command)``."""

Wrote = Callable[[Any], bool]
"""Whether a reply says its script created or replaced a mapping (then ``WAIT``)."""


def call(keys: Sequence[str], *args: str) -> list[str]:
    """``numkeys, *keys, *args``: a pipelined FCALL's arguments."""
    return [str(len(keys)), *keys, *args]
