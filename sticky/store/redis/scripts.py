"""The Redis store's Lua scripts: reading, constants, SHA, loading, and running them.

The scripts are files in ``lua/`` (package data, read with :mod:`importlib.resources`);
``common.lua``, the helpers (one per rule of docs/semantics.md), is prepended to each.
``{{NAME}}`` placeholders in them are replaced when they are read by the constants
defined here once for both languages: the reply tags (:class:`Tag`), the amortised
eviction step of :mod:`sticky.policy` and the layout version. A placeholder with no
constant, or one left unsubstituted, fails the load, never a reply.

:class:`Runner` runs scripts by SHA (loading them all again after a NOSCRIPT reply),
plain commands and pipelines, and maps connection errors and "not now" replies to
:class:`~sticky.StoreUnavailable`. Nothing here imports redis-py at import time.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import logging
import re
from collections.abc import Sequence
from typing import Any, Final, NoReturn

from sticky import policy
from sticky.errors import StoreUnavailable
from sticky.values import GeoTier, Reason

__all__ = [
    "LAYOUT",
    "REASONS",
    "SCRIPT_NAMES",
    "TIERS",
    "ClosedRunner",
    "Runner",
    "Script",
    "Tag",
    "constants",
    "scripts",
]

_log = logging.getLogger("sticky.store.redis")

LAYOUT: Final = "2"
"""The key layout version a profile's ``meta`` names. 0.1 wrote none (layout 1: pool
entries without the eligibility flag); such a profile is migrated on first touch."""


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


REASONS: Final = (None, Reason.STICKY, Reason.REASSIGNED, Reason.EXPIRED, Reason.NEW, Reason.POOL)
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
    out["STEP_EVICTIONS"] = str(policy.STEP_EVICTIONS)
    out["STEP_LOOKS"] = str(policy.STEP_LOOKS)
    out["LAYOUT"] = f"'{LAYOUT}'"
    for reason in REASONS[1:]:
        assert reason is not None
        out[f"R_{reason.name}"] = str(REASONS.index(reason))
    out["TIER_NONE"] = str(TIERS.index(GeoTier.NONE))
    return out


SCRIPT_NAMES: Final = (
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
    "migrate",
    "own",
    "own_check",
    "own_release",
    "pin",
    "recipients_of",
    "remove_number",
    "replace_settings",
    "select",
    "select_many",
    "set_health",
    "store_choice",
    "withdraw",
)
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


class Script:
    """One Lua script, constants substituted: the shared helpers, then its own body."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


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
def scripts() -> dict[str, Script]:
    """Every script, read once from the package, constants substituted."""
    root = importlib.resources.files("sticky.store.redis.lua")
    values = constants()
    common = substitute("common", root.joinpath("common.lua").read_text("utf-8"), values)
    return {
        name: Script(
            name,
            common
            + "\n"
            + substitute(name, root.joinpath(f"{name}.lua").read_text("utf-8"), values),
        )
        for name in SCRIPT_NAMES
    }


def text(value: object) -> str:
    """A reply element as str, whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _reply(value: Any) -> Any:  # noqa: ANN401 - redis-py replies are untyped
    """A reply as str (or a list of str), whether or not the client decodes responses."""
    if isinstance(value, (list, set)):  # SMEMBERS gives a set
        return [text(v) if isinstance(v, bytes) else v for v in value]
    if isinstance(value, bytes):
        return value.decode()
    return value


_TRANSIENT = ("READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "LOADING", "BUSY", "OOM")
"""Error replies that mean "not now" rather than "wrong": raised as StoreUnavailable."""

Op = tuple[Script | None, Sequence[str]]
"""A pipelined op: ``(script, [numkeys, *keys, *args])`` or ``(None, command)``."""


class Runner:
    """Scripts and commands on one redis-py client, with redis-py's errors mapped.

    Every method is 1 round trip (2 when the server had forgotten the scripts: they are
    all loaded again in one pipeline, then the call is repeated).
    """

    __slots__ = (
        "_client",
        "_down",
        "_noscript",
        "_not_redis",
        "_response_error",
        "_scripts",
        "_transient",
    )

    def __init__(self, client: Any, redis_module: Any) -> None:  # noqa: ANN401 - untyped
        self._client = client
        self._scripts = scripts()
        errors = redis_module.exceptions
        # InvalidResponse: what answered does not speak Redis' protocol (not a Redis server).
        self._not_redis: type[Exception] = errors.InvalidResponse
        self._down: tuple[type[Exception], ...] = (
            errors.ConnectionError,
            errors.TimeoutError,
            self._not_redis,
        )
        self._noscript: type[Exception] = errors.NoScriptError
        self._response_error: type[Exception] = errors.ResponseError
        # redis-py strips the code of the replies it has a class for: match on the class
        self._transient: tuple[type[Exception], ...] = tuple(
            getattr(errors, name)
            for name in ("ReadOnlyError", "OutOfMemoryError", "ClusterDownError", "TryAgainError")
            if hasattr(errors, name)
        )

    def unavailable(self, exc: Exception) -> StoreUnavailable:
        """The StoreUnavailable a caller raises ``from exc`` (logged: a store fault)."""
        if isinstance(exc, self._not_redis):
            error = StoreUnavailable(
                f"Redis is unavailable: the server's reply is not Redis' protocol "
                f"(is it a Redis server?): {type(exc).__name__}: {exc}"
            )
        else:
            error = StoreUnavailable(f"Redis is unavailable: {type(exc).__name__}: {exc}")
        _log.warning("%s", error, extra={"store": "redis", "fault": type(exc).__name__})
        return error

    def _is_transient(self, exc: Exception) -> bool:
        if isinstance(exc, self._transient):
            return True
        return isinstance(exc, self._response_error) and str(exc).startswith(_TRANSIENT)

    def eval(self, script: Script, keys: Sequence[str], args: Sequence[str]) -> Any:  # noqa: ANN401 - a script's reply
        """Run one script by SHA (loading every script on NOSCRIPT, e.g. after a restart)."""
        client = self._client
        try:
            try:
                reply = client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            except self._noscript:
                self.load_all()
                reply = client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        except self._down as exc:
            raise self.unavailable(exc) from exc
        except self._response_error as exc:
            if self._is_transient(exc):
                raise self.unavailable(exc) from exc
            raise
        return _reply(reply)

    def load_all(self) -> None:
        """Register every script (SCRIPT LOAD) in one pipeline: after a NOSCRIPT reply.

        The server forgets scripts when it restarts (or on SCRIPT FLUSH); loading them
        all at the first miss spares each script its own miss. Connection errors
        propagate to the caller, which maps them.
        """
        client = self._client
        if hasattr(client, "get_nodes"):  # a RedisCluster client loads on every primary
            for script in self._scripts.values():
                client.script_load(script.source)
            return
        pipe = client.pipeline(transaction=False)
        for script in self._scripts.values():
            pipe.script_load(script.source)
        pipe.execute()

    def command(self, *args: str) -> Any:  # noqa: ANN401 - a command's reply
        """One plain command."""
        try:
            return _reply(self._client.execute_command(*args))
        except self._down as exc:
            raise self.unavailable(exc) from exc
        except self._response_error as exc:
            if self._is_transient(exc):
                raise self.unavailable(exc) from exc
            raise

    def pipeline(self, ops: Sequence[Op]) -> list[Any]:
        """Commands and scripts in one non-transactional pipeline.

        Scripts the server did not know (NOSCRIPT: they did not run) are loaded and run
        again.
        """
        if not ops:
            return []
        try:
            results = self._run(ops)
            missing = [i for i, r in enumerate(results) if isinstance(r, self._noscript)]
            if missing:
                self.load_all()
                again = self._run([ops[i] for i in missing])
                for i, r in zip(missing, again, strict=True):
                    results[i] = r
        except self._down as exc:
            raise self.unavailable(exc) from exc
        for r in results:
            if isinstance(r, Exception):
                if isinstance(r, self._down) or self._is_transient(r):
                    raise self.unavailable(r) from r
                raise r
        return [_reply(r) for r in results]

    def _run(self, ops: Sequence[Op]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for script, args in ops:
            if script is None:
                pipe.execute_command(*args)
            else:
                pipe.execute_command("EVALSHA", script.sha, *args)
        return list(pipe.execute(raise_on_error=False))

    def scan(self, pattern: str) -> list[str]:
        """Every key matching ``pattern`` (SCAN: one round trip per 10,000 keys)."""
        try:
            return [text(key) for key in self._client.scan_iter(match=pattern, count=10_000)]
        except self._down as exc:
            raise self.unavailable(exc) from exc


class ClosedRunner(Runner):
    """The runner of a closed store: every call raises StoreUnavailable, nothing is sent."""

    __slots__ = ()

    def __init__(self) -> None:  # no client, nothing to map: nothing is ever run
        pass

    def _closed(self, *_args: object, **_kwargs: object) -> NoReturn:
        msg = "Redis store is closed"
        raise StoreUnavailable(msg)

    eval = command = pipeline = scan = load_all = _closed


def call(keys: Sequence[str], *args: str) -> list[str]:
    """``numkeys, *keys, *args``: a pipelined EVALSHA's arguments."""
    return [str(len(keys)), *keys, *args]
