"""Rough edges a new user meets: typed errors, short messages, closed stores, the CLI."""

from __future__ import annotations

import inspect
import itertools
import json
import re
import socketserver
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from sticky import (
    Engine,
    InvalidNumber,
    InvalidProfileId,
    InvalidSettings,
    InvalidTime,
    PoolSettings,
    ProfileExists,
    StickyError,
    StoreUnavailable,
    UnknownNumber,
    UnknownProfile,
    open_store,
)
from sticky.__main__ import main
from sticky.errors import shown
from sticky.numbers import check_e164
from sticky.simulate import DAY, PREFIX, START
from sticky.store import MemoryStore, Store
from sticky.store.redis import RedisStore
from sticky.store.sqlite import SQLiteStore
from sticky.testing.redis_server import RedisServer

README = Path(__file__).resolve().parent.parent / "README.md"
LONG = ["+13125550001", "+13125550002"]
TO = "+14155550123"
T = 1_000.0
HUGE = 1_000_000
_prefixes = itertools.count()


# -- stores of each kind -------------------------------------------------------------
def _memory(_request: pytest.FixtureRequest, _tmp: Path) -> Store:
    return MemoryStore()


def _sqlite(_request: pytest.FixtureRequest, tmp: Path) -> Store:
    return SQLiteStore(tmp / "edges.db")


def _redis(request: pytest.FixtureRequest, _tmp: Path) -> Store:
    server: RedisServer = request.getfixturevalue("redis_server")
    return RedisStore.from_url(server.url, prefix=f"edges{next(_prefixes)}")


@pytest.fixture(params=[_memory, _sqlite, _redis], ids=["memory", "sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """A function that opens a new store of the parametrised kind."""
    return lambda: request.param(request, tmp_path)


# -- unknown settings ----------------------------------------------------------------
def test_an_unknown_setting_is_named() -> None:
    with pytest.raises(InvalidSettings, match="skip_unhealty") as info:
        PoolSettings(skip_unhealty=True)  # type: ignore[call-arg]
    assert not isinstance(info.value, TypeError)
    assert "did you mean 'skip_unhealthy'?" in str(info.value)
    with pytest.raises(InvalidSettings, match=r"unknown settings 'a', 'b'"):
        PoolSettings(ttl=5, b=1, a=2)  # type: ignore[call-arg]
    with pytest.raises(InvalidSettings, match="ttll"):
        PoolSettings().evolve(ttll=5)
    with pytest.raises(InvalidSettings, match="colour"):
        PoolSettings.from_dict({**PoolSettings().to_dict(), "colour": "red"})


def test_known_settings_still_construct_as_before() -> None:
    s = PoolSettings(True, 60, toll_free_weight=2)
    assert (s.sticky_sender, s.ttl, s.toll_free_weight) == (True, 60.0, 2.0)
    assert s.evolve(ttl=30) == PoolSettings(ttl=30, toll_free_weight=2)
    assert PoolSettings.from_dict(s.to_dict()) == s
    with pytest.raises(InvalidSettings, match="invalid ttl"):
        PoolSettings(ttl=-1)
    with pytest.raises(TypeError):  # too many positional values is a call error, as before
        PoolSettings(True, 60, 1, 1, False, "off", 7)  # type: ignore[call-arg]


# -- what the engine is given as a store ---------------------------------------------
@pytest.mark.parametrize("store", [42, object(), b"memory://", ["memory://"]])
def test_a_store_that_is_neither_a_store_nor_a_url(store: object) -> None:
    with pytest.raises(InvalidSettings, match="invalid store"):
        Engine(store=store)  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["bogus://", "memory", "", "http://example.com/"])
def test_an_unknown_store_url(url: str) -> None:
    with pytest.raises(InvalidSettings):
        open_store(url)
    with pytest.raises(InvalidSettings):
        Engine(store=url)


@pytest.mark.parametrize(
    "url", ["redis://host:notaport/0", "redis://127.0.0.1:6379/0?socket_timeout=soon"]
)
def test_a_malformed_redis_url(url: str) -> None:
    with pytest.raises(InvalidSettings, match="invalid Redis URL") as info:
        open_store(url)
    assert isinstance(info.value.__cause__, ValueError)


class _Garbage(socketserver.BaseRequestHandler):
    """Answers whatever it is sent with something that is not Redis' protocol."""

    def handle(self) -> None:
        self.request.recv(65536)
        self.request.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


@pytest.fixture
def not_redis() -> Iterator[str]:
    """The URL of a TCP server on 127.0.0.1 that is not Redis."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Garbage)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{server.server_address[1]}/0"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_redis_url_where_something_else_answers(not_redis: str) -> None:
    e = Engine(store=not_redis)  # opening connects to nothing yet
    for call in (
        lambda: e.create_profile("p"),
        lambda: e.select("p", TO),
        e.profiles,
        e.stats,
        lambda: e.select_many("p", [TO, "+14155550124"]),
    ):
        with pytest.raises(StoreUnavailable, match="not Redis' protocol") as info:
            call()
        assert isinstance(info.value.__cause__, redis.exceptions.InvalidResponse)
    e.close()


# -- messages that name a huge value --------------------------------------------------
def _short(exc: BaseException, value: str) -> None:
    text = str(exc)
    # Short whatever the value's size: its start, its length, and (for an unknown
    # setting) the names of the settings, about 200 characters of them.
    assert len(text) < 400, len(text)
    assert f"{len(value):,} characters" in text
    assert repr(value[:20])[:-1] in text  # the value's start, recognisable


def test_shown_keeps_short_values_whole_and_cuts_long_ones() -> None:
    assert shown("+1415") == "'+1415'"
    assert shown(3.5) == "3.5"
    assert shown(None) == "None"
    cut = shown("x" * HUGE)
    assert cut.startswith("'xxxx")
    assert cut.endswith("... (1,000,000 characters)")
    assert len(cut) < 100
    listed = shown(list(range(HUGE // 10)))
    assert len(listed) < 100
    assert "a list of repr length" in listed


def test_a_huge_value_gives_a_short_message() -> None:
    huge_to = "+1" + "5" * HUGE
    with pytest.raises(InvalidNumber) as info:
        check_e164(huge_to)
    _short(info.value, huge_to)
    e = Engine(seed=1)
    e.create_profile("p")
    e.add_number("p", LONG[0])
    calls: list[tuple[type[StickyError], Callable[[str], object], str]] = [
        (InvalidNumber, lambda v: e.select("p", v), huge_to),
        (InvalidNumber, lambda v: e.select_many("p", [TO, v]), huge_to),
        (InvalidNumber, lambda v: e.add_number("p", v), huge_to),
        (InvalidNumber, lambda v: e.mapping("p", v), huge_to),
        (UnknownProfile, lambda v: e.select(v, TO), "p" * HUGE),
        (UnknownProfile, lambda v: e.add_number(v, LONG[1]), "p" * HUGE),
        (InvalidSettings, lambda v: e.add_number("p", LONG[1], v), "t" * HUGE),
        (InvalidSettings, lambda v: PoolSettings(ttl=v), "8" * HUGE),  # type: ignore[arg-type]
        (InvalidSettings, lambda v: PoolSettings(geomatch=v), "g" * HUGE),  # type: ignore[arg-type]
        (InvalidSettings, lambda v: PoolSettings(**{v: 1}), "s" * HUGE),  # type: ignore[arg-type]
        (InvalidSettings, lambda v: Engine(store=v), "bogus://" + "x" * HUGE),
        (InvalidTime, lambda v: e.select("p", TO, now=v), "1" * HUGE),  # type: ignore[arg-type]
    ]
    for error, call, value in calls:
        with pytest.raises(error) as info:
            call(value)
        _short(info.value, value)
    with pytest.raises(InvalidProfileId) as pid_info:
        e.select(["p"] * HUGE, TO)  # type: ignore[arg-type]
    assert len(str(pid_info.value)) < 300


def test_stores_name_a_huge_profile_id_briefly(make_store: Callable[[], Store]) -> None:
    pid = "q" * HUGE
    with Engine(seed=1, store=make_store()) as e:
        with pytest.raises(UnknownProfile) as unknown:
            e.select(pid, TO, now=T)
        _short(unknown.value, pid)
        e.create_profile(pid)
        with pytest.raises(ProfileExists) as exists:
            e.create_profile(pid)
        _short(exists.value, pid)
        with pytest.raises(UnknownNumber) as missing:
            e.remove_number(pid, LONG[0], now=T)
        _short(missing.value, pid)
        e.delete_profile(pid, now=T)


# -- after close() ---------------------------------------------------------------------
def test_every_call_after_close_raises_store_unavailable(
    make_store: Callable[[], Store],
) -> None:
    store = make_store()
    e = Engine(seed=1, store=store)
    e.create_profile("p")
    e.add_number("p", LONG[0])
    e.select("p", TO, now=T)
    e.close()
    e.close()  # idempotent
    store.close()
    calls: list[Callable[[], object]] = [
        lambda: e.select("p", TO, now=T),
        lambda: e.select("p", "+14155550999", now=T),
        lambda: e.select_many("p", [TO, "+14155550124"], now=T),
        lambda: e.create_profile("q"),
        lambda: e.create_profile("p", exist_ok=True),
        lambda: e.delete_profile("p", now=T),
        lambda: e.settings("p"),
        lambda: e.update_settings("p", ttl=60),
        e.profiles,
        lambda: e.add_number("p", LONG[1]),
        lambda: e.remove_number("p", LONG[0], now=T),
        lambda: e.set_health(LONG[0], False),
        lambda: e.numbers("p"),
        lambda: e.mapping("p", TO, now=T),
        lambda: e.recipients_of("p", LONG[0], now=T),
        lambda: e.pin("p", TO, LONG[0], now=T),
        lambda: e.forget("p", TO, now=T),
        lambda: e.evict_expired(now=T),
        e.stats,
        store.check_invariants,
        lambda: store.begin_select("p", TO, T, -1),
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable, match="closed"):
            call()


def test_closing_a_redis_store_on_a_client_it_was_given(redis_server: RedisServer) -> None:
    client = redis_server.client()
    store = RedisStore(client, prefix=f"edges{next(_prefixes)}")
    store.create_profile("p", PoolSettings())
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.profiles()
    assert client.ping()  # the caller's client stays the caller's to close
    client.close()


# -- create_profile(exist_ok=True) -------------------------------------------------------
def test_create_profile_exist_ok(make_store: Callable[[], Store]) -> None:
    with Engine(seed=1, store=make_store()) as e:
        assert e.create_profile("p", PoolSettings(ttl=60)) is True
        e.add_number("p", LONG[0])
        assert e.select("p", TO, now=T).from_number == LONG[0]
        with pytest.raises(ProfileExists):
            e.create_profile("p")
        # An existing profile is left as it is: its settings, pool and mappings.
        assert e.create_profile("p", PoolSettings(ttl=999), exist_ok=True) is False
        assert e.settings("p") == PoolSettings(ttl=60)
        assert [n.number for n in e.numbers("p")] == [LONG[0]]
        assert e.mapping("p", TO, now=T) is not None
        assert e.create_profile("new", exist_ok=True) is True
        assert e.profiles() == ["new", "p"]
        with pytest.raises(InvalidSettings):
            e.create_profile("x", exist_ok="yes")  # type: ignore[arg-type]
        with pytest.raises(InvalidProfileId):
            e.create_profile("", exist_ok=True)


# -- lazy imports --------------------------------------------------------------------
def test_the_stores_are_importable_lazily() -> None:
    code = """
import sys
import sticky, sticky.store
assert "redis" not in sys.modules, "importing sticky imported redis-py"
assert "sticky.store.sqlite" not in sys.modules and "sticky.store.redis" not in sys.modules
from sticky import RedisStore, SQLiteStore
from sticky.store import RedisStore as R, SQLiteStore as S
from sticky.store.redis import RedisStore as R2
from sticky.store.sqlite import SQLiteStore as S2
assert RedisStore is R is R2 and SQLiteStore is S is S2
assert "redis" not in sys.modules, "naming RedisStore imported redis-py"
for name in ("RedisStore", "SQLiteStore"):
    assert name in sticky.__all__ and name in sticky.store.__all__
try:
    sticky.NoSuchThing
except AttributeError as exc:
    assert "NoSuchThing" in str(exc)
else:
    raise AssertionError("sticky.NoSuchThing exists")
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


# -- the command line ----------------------------------------------------------------
def _console_script() -> Path:
    script = Path(sys.executable).parent / "sticky"
    assert script.exists(), f"the console script is not installed beside {sys.executable}"
    return script


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=120)


def test_the_usage_line_names_how_it_was_run() -> None:
    script = str(_console_script())
    assert _run(script, "--help").stdout.startswith("usage: sticky ")
    assert _run(script, "simulate", "--help").stdout.startswith("usage: sticky simulate ")
    bad = _run(script, "simulate", "--days", "-1")
    assert bad.returncode == 2
    assert bad.stderr.startswith("sticky simulate: error: argument --days")
    module = _run(sys.executable, "-m", "sticky", "--help")
    assert module.stdout.startswith("usage: python -m sticky ")
    bad = _run(sys.executable, "-m", "sticky", "simulate", "--days", "-1")
    assert bad.stderr.startswith("python -m sticky simulate: error: argument --days")
    for version in (_run(script, "--version"), _run(sys.executable, "-m", "sticky", "--version")):
        assert re.fullmatch(r"sticky \d+\.\d+\.\d+\S*\n", version.stdout)


def _simulate(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``simulate`` in this process: exit status, stdout, stderr."""
    try:
        status: int | str | None = main(["simulate", "--no-progress", *argv])
    except SystemExit as exc:  # argparse exits on a bad argument
        status = exc.code
    out, err = capsys.readouterr()
    assert isinstance(status, int)
    return status, out, err


@pytest.mark.parametrize(
    "argv",
    [
        ["--recipients", "0"],
        ["--profiles", "0"],
        ["--numbers", "0"],
        ["--days", "-1"],
        ["--days", "0"],
        ["--ttl-days", "-3"],
        ["--ttl-days", "nan"],
        ["--messages-per-day", "0"],
        ["--toll-free", "-1"],
        ["--toll-free", "30"],
        ["--unhealthy-per-day", "-1"],
        ["--recipients", "many"],
        ["--long-code-weight", "-1"],
        ["--long-code-weight", "0", "--toll-free-weight", "0"],
        ["--store", "bogus://"],
        ["--store", "redis://host:notaport/0"],
    ],
)
def test_simulate_refuses_bad_arguments_in_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    status, out, err = _simulate(capsys, "--recipients", "20", "--days", "1", *argv)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith("python -m sticky simulate: error: ")
    assert "Traceback" not in err


def test_simulate_reports_a_store_that_is_down_in_one_line(
    capsys: pytest.CaptureFixture[str], not_redis: str
) -> None:
    status, _, err = _simulate(capsys, "--recipients", "20", "--days", "1", "--store", not_redis)
    assert status == 2
    assert err.count("\n") == 1
    assert "Redis is unavailable" in err


SMALL = ["--recipients", "200", "--messages-per-day", "100", "--days", "10", "--json"]


def _own_live(e: Engine, prefix: str, days: int = 10, per_day: int = 100) -> int:
    """Live mappings of the profiles with ``prefix``, at the simulation's last instant."""
    end = START + (days - 1) * DAY + (per_day - 1) * DAY / per_day
    return sum(
        len(e.recipients_of(pid, n.number, now=end))
        for pid in e.profiles()
        if pid.startswith(prefix)
        for n in e.numbers(pid)
    )


def _users_world(e: Engine) -> tuple[object, ...]:
    return (
        e.settings("acme"),
        e.numbers("acme"),
        e.mapping("acme", TO, now=START),
        e.recipients_of("acme", LONG[0], now=START),
    )


def test_simulate_keeps_to_its_own_profiles_on_sqlite(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with Engine(seed=1, store=url) as user:
        user.create_profile("acme", PoolSettings(ttl=30 * DAY))
        user.add_number("acme", LONG[0])
        for i in range(50):
            user.pin("acme", f"+1415555{i:04d}", LONG[0], now=START)
        before = _users_world(user)
    prefixes = []
    for _ in range(2):  # twice on one file: no ProfileExists, no NumberInUse
        status, out, _ = _simulate(capsys, *SMALL, "--store", url)
        assert status == 0
        report = json.loads(out)
        prefixes.append(report["profile_prefix"])
        with Engine(store=url) as look:
            assert report["live_mappings_at_end"] == _own_live(look, report["profile_prefix"])
            assert 0 < report["live_mappings_at_end"] <= 200
            assert _users_world(look) == before
    assert prefixes[0] != prefixes[1]
    assert all(p.startswith(f"{PREFIX}1-") for p in prefixes)
    with Engine(store=url) as look:
        assert len([p for p in look.profiles() if p.startswith(PREFIX)]) == 6
    status, out, _ = _simulate(capsys, *SMALL, "--store", url, "--reset")
    assert status == 0
    prefix = json.loads(out)["profile_prefix"]
    with Engine(store=url) as look:
        assert look.profiles() == ["acme", *(f"{prefix}profile-{k}" for k in (1, 2, 3))]
        assert _users_world(look) == before


def test_simulate_keeps_to_its_own_profiles_on_redis(
    capsys: pytest.CaptureFixture[str], redis_server: RedisServer
) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/7"  # a database of its own
    client = redis.Redis.from_url(url)
    client.flushdb()
    with Engine(seed=1, store=url) as user:  # the default key prefix, as simulate's
        user.create_profile("acme", PoolSettings(ttl=30 * DAY))
        user.add_number("acme", LONG[0])
        for i in range(30):
            user.pin("acme", f"+1415555{i:04d}", LONG[0], now=START)
        before = _users_world(user)
        stored_before = user.stats().mappings
    status, out, _ = _simulate(capsys, *SMALL, "--store", url)
    assert status == 0
    report = json.loads(out)
    with Engine(store=url) as look:
        assert report["live_mappings_at_end"] == _own_live(look, report["profile_prefix"])
        assert _users_world(look) == before
        assert look.stats().mappings >= stored_before + report["live_mappings_at_end"]
    client.flushdb()
    client.close()


def test_simulate_gives_the_same_outcomes_for_the_same_seed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    runs = []
    for _ in range(2):
        status, out, _ = _simulate(capsys, *SMALL)
        assert status == 0
        report = json.loads(out)
        runs.append(
            {k: v for k, v in report.items() if k not in {"profile_prefix", "selects_per_second"}}
        )
    assert runs[0] == runs[1]


# -- the README says what is true ----------------------------------------------------------
def test_the_readme_names_the_methods_that_take_now() -> None:
    text = README.read_text()
    paragraph = next(p for p in text.split("\n\n") if "take `now=`" in p)
    named = set(re.findall(r"`(\w+)`", paragraph)) - {"now", "ManualClock"}
    takes_now = {
        name
        for name, method in inspect.getmembers(Engine, inspect.isfunction)
        if not name.startswith("_") and "now" in inspect.signature(method).parameters
    }
    assert named == takes_now


def test_the_readme_installs_the_distribution_by_its_name() -> None:
    text = README.read_text()
    installs = re.findall(r"pip install '([^']+)'", text)
    assert installs, "the README shows no install line"
    assert all(i.startswith("sticky-sender[") for i in installs), installs
    assert "pip install 'sticky[" not in text
