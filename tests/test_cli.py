"""The operating commands (``sticky profiles|show|lookup|export|import|evict|stats``)."""

from __future__ import annotations

import io
import itertools
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from sticky import Engine, InvalidSettings, PoolSettings, UnknownProfile
from sticky.cli import main
from sticky.cli.progress import Progress
from sticky.cli.transfer import write_export
from sticky.store import MemoryStore, Store
from sticky.store.redis import RedisStore
from sticky.store.sqlite import SQLiteStore
from sticky.testing.redis_server import RedisServer

T = 1_767_225_600.0
NOW = T + 10_000
LONG = ["+13125550001", "+13125550002"]
TOLL = "+18005550003"
_dbs = itertools.count(1)


def _fill(engine: Engine, recipients: int = 30) -> None:
    engine.create_profile("acme", PoolSettings(toll_free_weight=2, skip_unhealthy=True))
    for n in LONG:
        engine.add_number("acme", n)
    engine.add_number("acme", TOLL, "toll_free", healthy=False)
    engine.create_profile("beta", PoolSettings(ttl=3_600))
    engine.add_number("beta", "+14155550009")
    for i in range(recipients):
        engine.select("acme", f"+1646555{i:04d}", now=T + i)
    engine.select("beta", "+16465550000", now=T)  # dead at NOW (ttl one hour)
    engine.select("beta", "+16465550001", now=NOW - 10)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status: int | str | None = main(list(argv))
    except SystemExit as exc:  # argparse, on a bad argument
        status = exc.code
    out, err = capsys.readouterr()
    assert isinstance(status, int)
    return status, out, err


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'source.db'}"
    with Engine(store=url, seed=1) as engine:
        _fill(engine)
    return url


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A Redis database of its own (the CLI uses the store's default prefix), emptied."""
    db = next(_dbs) % 16
    url = f"redis://127.0.0.1:{redis_server.port}/{db}"
    redis_server.client(db=db).flushdb()
    return url


def _world(engine: Engine, now: float) -> dict[str, Any]:
    """Everything an export carries, read through the engine."""
    out = {}
    for pid in engine.profiles():
        mappings = sorted(
            (m.to, m.from_number, m.last_used, m.expires_at)
            for page in engine.iter_mappings(pid, now=now)
            for m in page
        )
        out[pid] = (engine.settings(pid), engine.numbers(pid), mappings)
    return out


# -- inspection -----------------------------------------------------------------------
def test_profiles_show_lookup_and_stats(
    capsys: pytest.CaptureFixture[str], sqlite_url: str
) -> None:
    status, out, _ = _cli(capsys, "profiles", "--store", sqlite_url)
    assert status == 0
    assert out.split() == ["acme", "3", "numbers", "beta", "1", "numbers"]
    status, out, _ = _cli(capsys, "profiles", "--store", sqlite_url, "--json")
    assert json.loads(out) == [{"id": "acme", "numbers": 3}, {"id": "beta", "numbers": 1}]

    status, out, _ = _cli(capsys, "show", "acme", "--store", sqlite_url, "--now", str(NOW))
    assert status == 0
    assert "toll_free_weight  2.0" in out
    assert "ttl               691200.0 (8d 00h 00m)" in out
    assert "+18005550003      toll_free  unhealthy             not eligible" in out
    assert "live mappings: 30 at" in out
    status, out, _ = _cli(
        capsys, "show", "acme", "--store", sqlite_url, "--json", "--now", str(NOW)
    )
    shown = json.loads(out)
    assert shown["settings"] == PoolSettings(toll_free_weight=2, skip_unhealthy=True).to_dict()
    assert [n["live_mappings"] for n in shown["numbers"]] == [
        sum(1 for _ in range(30) if True) - shown["numbers"][1]["live_mappings"],
        shown["numbers"][1]["live_mappings"],
        0,
    ]
    assert shown["live_mappings"] == 30
    assert [n["eligible"] for n in shown["numbers"]] == [True, True, False]

    status, out, _ = _cli(
        capsys,
        "lookup",
        "acme",
        "+16465550004",
        "--store",
        sqlite_url,
        "--json",
        "--now",
        str(NOW),
    )
    found = json.loads(out)
    assert status == 0
    assert found["last_used"] == T + 4
    assert found["expires_at"] == T + 4 + 691_200
    assert found["age"] == NOW - (T + 4)
    status, out, _ = _cli(
        capsys, "lookup", "acme", "+16465550004", "--store", sqlite_url, "--now", str(NOW)
    )
    assert "expires   2026-01-09T00:00:04Z (in 7d 21h 13m)" in out
    status, out, _ = _cli(
        capsys, "lookup", "beta", "+16465550000", "--store", sqlite_url, "--now", str(NOW)
    )
    assert status == 1
    assert "no live mapping" in out
    status, out, _ = _cli(
        capsys,
        "lookup",
        "acme",
        "+16465550000",
        "--store",
        sqlite_url,
        "--json",
        "--now",
        "2026-01-01T00:00:00",
    )
    assert status == 0  # an ISO time: T
    assert json.loads(out)["age"] == 0.0

    status, out, _ = _cli(capsys, "stats", "--store", sqlite_url, "--json")
    assert json.loads(out) == {
        "store": sqlite_url,
        "profiles": 2,
        "numbers": 4,
        "mappings": 31,
        "evicted": 1,  # beta's dead mapping, by the amortised step of its second select
    }
    status, out, _ = _cli(capsys, "stats", "--store", sqlite_url)
    assert "mappings: 31 stored" in out


def test_evict_prints_how_many(capsys: pytest.CaptureFixture[str], sqlite_url: str) -> None:
    later = str(NOW + 3_600)  # beta's second mapping is dead by then
    status, out, err = _cli(capsys, "evict", "--store", sqlite_url, "--now", later, "--json")
    assert status == 0
    assert json.loads(out)["evicted"] == 1
    assert err == ""  # piped: no progress
    status, out, _ = _cli(capsys, "evict", "--store", sqlite_url, "--now", later)
    assert out.startswith("evicted 0 dead mappings in ")
    status, _, err = _cli(capsys, "evict", "--store", sqlite_url, "--progress")
    assert status == 0
    assert "evict: removing dead mappings..." in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", "nope"], "error: unknown profile 'nope'"),
        (["lookup", "acme", "12"], "error: invalid recipient"),
        (["export", "--store", "bogus://"], "error: unknown store URL scheme 'bogus'"),
        (["show", "acme", "--batch", "0"], "error: argument --batch: must be >= 1, not 0"),
        (["show", "acme", "--batch", "x"], "error: argument --batch: not an integer"),
        (["evict", "--now", "nan"], "error: argument --now: must be a finite number"),
        (["evict", "--now", "yesterday"], "error: argument --now: not seconds since the epoch"),
        (["import", "/nonexistent/file.jsonl"], "error: [Errno 2]"),
        (["frobnicate"], "error: argument COMMAND: invalid choice"),
    ],
)
def test_errors_are_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, argv: list[str], message: str
) -> None:
    if "--store" not in argv and argv[0] != "frobnicate":
        argv = [*argv, "--store", sqlite_url]
    status, out, err = _cli(capsys, *argv)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1, err
    assert message in err, err


def test_the_store_defaults_to_STICKY_STORE(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STICKY_STORE", sqlite_url)
    status, out, _ = _cli(capsys, "profiles")
    assert (status, out.split()[0]) == (0, "acme")
    monkeypatch.delenv("STICKY_STORE")
    assert _cli(capsys, "profiles")[1] == "no profiles\n"  # a new memory store


# -- export and import ----------------------------------------------------------------
def test_export_is_json_lines_of_every_profile_pool_and_live_mapping(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path
) -> None:
    status, out, err = _cli(capsys, "export", "--store", sqlite_url, "--now", str(NOW))
    assert status == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0] == {
        "format": "sticky-export",
        "version": 2,
        "exported_at": NOW,
        "sticky": "0.1.0",
    }
    kinds = [line.get("kind") for line in lines[1:]]
    assert kinds.count("profile") == 2
    assert kinds.count("number") == 4
    assert kinds.count("mapping") == 31  # beta's first mapping is dead at NOW
    mapping = next(line for line in lines if line.get("to") == "+16465550004")
    assert mapping == {
        "kind": "mapping",
        "profile": "acme",
        "to": "+16465550004",
        "from": mapping["from"],
        "last_used": T + 4,
        "age": NOW - T - 4,
    }
    assert err.startswith("exported 2 profiles, 4 numbers and 31 live mappings to stdout")
    path = tmp_path / "beta.jsonl"
    status, _, err = _cli(
        capsys,
        "export",
        "--store",
        sqlite_url,
        "--profile",
        "beta",
        "-o",
        str(path),
        "--json",
        "--now",
        str(NOW),
    )
    assert json.loads(err)["mappings"] == 1
    assert path.read_text().count("\n") == 1 + 1 + 1 + 1


@pytest.mark.parametrize("source", ["memory", "sqlite"])
def test_a_round_trip_into_redis_keeps_everything_and_runs_again_safely(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, redis_url: str, source: str
) -> None:
    store: Store = MemoryStore() if source == "memory" else SQLiteStore(tmp_path / "s.db")
    engine = Engine(store=store, seed=3)
    _fill(engine, recipients=300)
    path = tmp_path / "export.jsonl"
    with path.open("w") as out:
        counts = write_export(engine, out, now=NOW, batch=7)
    assert counts == {"profiles": 2, "numbers": 4, "mappings": 301, "opt_outs": 0}

    status, out, _ = _cli(
        capsys, "import", str(path), "--store", redis_url, "--now", str(NOW), "--json"
    )
    assert status == 0
    assert json.loads(out) | {"seconds": 0} == {
        "profiles_created": 2,
        "profiles_kept": 0,
        "numbers_added": 4,
        "numbers_kept": 0,
        "mappings_written": 301,
        "mappings_kept": 0,
        "mappings_expired": 0,
        "opt_outs": 0,
        "checked_only": False,
        "seconds": 0,
    }
    with Engine(store=redis_url) as target:
        assert _world(target, NOW) == _world(engine, NOW)
        # the same expiry: at the source's expiry time the mapping is gone on both
        assert target.mapping("acme", "+16465550004", now=T + 4 + 691_200) is None
        assert target.mapping("acme", "+16465550004", now=T + 4 + 691_199) is not None
    status, out, _ = _cli(capsys, "import", str(path), "--store", redis_url, "--now", str(NOW))
    assert status == 0
    assert "profiles 0 created, 2 existing; numbers 0 added, 4 existing" in out
    assert "mappings 0 written, 301 kept" in out
    with Engine(store=redis_url) as target:
        assert _world(target, NOW) == _world(engine, NOW)
    engine.close()


def test_an_import_keeps_the_targets_newer_mappings_and_skips_expired_ones(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "e.jsonl"
    assert (
        _cli(capsys, "export", "--store", sqlite_url, "-o", str(path), "--now", str(NOW))[0] == 0
    )
    target_url = f"sqlite:///{tmp_path / 'target.db'}"
    with Engine(store=target_url, seed=9) as target:
        target.create_profile("acme", PoolSettings(ttl=100_000))  # other settings: kept
        target.add_number("acme", LONG[0])
        target.add_number("acme", LONG[1])
        target.pin("acme", "+16465550010", LONG[1], now=NOW)  # newer than the export's
    later = T + 4 + 100_000  # +16465550004 and older expire under the target's ttl
    status, out, err = _cli(
        capsys, "import", str(path), "--store", target_url, "--now", str(later), "--json"
    )
    assert status == 0
    counts = json.loads(out)
    assert "profile 'acme' exists with other settings: kept as it is" in err
    assert counts["profiles_created"] == 1
    assert counts["numbers_added"] == 2  # acme's toll-free number and beta's
    assert counts["mappings_kept"] == 1
    assert counts["mappings_expired"] == 6  # +1646555000{0..4}, and beta's (ttl one hour)
    assert counts["mappings_written"] == 31 - 6 - 1
    with Engine(store=target_url) as target:
        assert target.settings("acme").ttl == 100_000
        assert target.mapping("acme", "+16465550010", now=later).from_number == LONG[1]
        assert target.mapping("acme", "+16465550004", now=later) is None
        assert target.mapping("acme", "+16465550005", now=later).last_used == T + 5


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 3: not JSON"),
        (
            '{"kind": "mapping", "profile": "zeta", "to": "+16465550001", "from": "+13125550001", "last_used": 1}',
            "profile 'zeta' has no profile line before it",
        ),
        (
            '{"kind": "mapping", "profile": "acme", "to": "+1", "from": "+13125550001", "last_used": 1}',
            "line 3: invalid recipient '+1'",
        ),
        (
            '{"kind": "mapping", "profile": "acme", "to": "+16465550001", "from": "+13125550001", "last_used": "x"}',
            "'last_used' is 'x'",
        ),
        (
            '{"kind": "number", "profile": "acme", "number": "+13125550001", "type": "fax", "healthy": true}',
            "unknown number type 'fax'",
        ),
        ('{"kind": "profile", "id": "b", "settings": {"ttl": -1}}', "line 3: invalid ttl"),
        ('{"kind": "widget"}', "unknown kind 'widget'"),
    ],
)
def test_a_bad_export_line_is_named_and_a_file_import_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, line: str, message: str
) -> None:
    header = '{"format": "sticky-export", "version": 1, "exported_at": 0}'
    profile = '{"kind": "profile", "id": "acme", "settings": {}}'
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{header}\n{profile}\n{line}\n")
    url = f"sqlite:///{tmp_path / 'target.db'}"
    status, _out, err = _cli(capsys, "import", str(path), "--store", url)
    assert status == 2
    assert err.count("\n") == 1
    assert message in err, err
    assert _cli(capsys, "profiles", "--store", url)[1] == "no profiles\n"


def test_an_import_from_a_pipe_stops_at_a_bad_line_and_checks_the_header(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'target.db'}"
    header = '{"format": "sticky-export", "version": 1, "exported_at": 0}'
    monkeypatch.setattr(
        sys,
        "stdin",
        io.StringIO(f'{header}\n{{"kind": "profile", "id": "a", "settings": {{}}}}\noops\n'),
    )
    status, _, err = _cli(capsys, "import", "--store", url)
    assert status == 2
    assert "line 3: not JSON" in err
    assert _cli(capsys, "profiles", "--store", url)[1].split()[0] == "a"  # the lines before
    for text, message in [
        ("", "not a sticky-export header"),
        ('{"format": "sticky-export", "version": 9}', "version 9, expected 1 or 2"),
    ]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(text))
        status, _, err = _cli(capsys, "import", "-", "--store", url)
        assert status == 2
        assert message in err


def test_import_check_writes_nothing(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "e.jsonl"
    _cli(capsys, "export", "--store", sqlite_url, "-o", str(path))
    url = f"sqlite:///{tmp_path / 'target.db'}"
    status, out, _ = _cli(capsys, "import", str(path), "--check", "--store", url)
    assert status == 0
    assert out.startswith("the export is valid")
    assert _cli(capsys, "profiles", "--store", url)[1] == "no profiles\n"


def test_an_export_streams_in_bounded_memory(tmp_path: Path) -> None:
    """Peak memory of an export does not grow with the mappings (SQLite, 2,000 vs 20,000)."""
    peaks = []
    for n in (2_000, 20_000):
        with Engine(store=SQLiteStore(tmp_path / f"{n}.db"), seed=1) as engine:
            engine.create_profile("p")
            engine.add_number("p", LONG[0])
            for start in range(0, n, 1_000):
                engine.select_many(
                    "p", [f"+1646{k:07d}" for k in range(start, start + 1_000)], now=T
                )
            sink = _Sink()
            tracemalloc.start()
            write_export(engine, sink, now=T, batch=500)
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            assert sink.lines == n + 3
    assert peaks[1] < 2 * peaks[0], peaks


class _Sink(io.StringIO):
    """Counts the lines written and keeps none."""

    def __init__(self) -> None:
        super().__init__()
        self.lines = 0

    def write(self, text: str) -> int:
        self.lines += text.count("\n")
        return len(text)


# -- progress -------------------------------------------------------------------------
def test_the_progress_bar_draws_on_request_and_stays_quiet_when_piped(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "e.jsonl"
    _, _, err = _cli(capsys, "export", "--store", sqlite_url, "-o", str(path))
    assert "\r" not in err  # stderr is not a terminal here
    _, _, err = _cli(capsys, "export", "--store", sqlite_url, "-o", str(path), "--progress")
    assert "\rexport [" in err
    _, _, err = _cli(
        capsys, "import", str(path), "--progress", "--store", f"sqlite:///{tmp_path / 't.db'}"
    )
    assert "\rimport [" in err
    assert "100%" in err
    stream = io.StringIO()
    bar = Progress("x", 4, enabled=True, unit="items", estimate=True, stream=stream)
    bar.advance(10)
    assert bar.line() == "x [##############################] 100% 10/~4 items"
    assert Progress("y", enabled=False).line() == "y: 0"


# -- the library side of export ------------------------------------------------------
class _PlainStore:
    """A store without iter_mappings: the engine falls back to public methods."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name in {"iter_mappings", "select_in_one_step", "select_many_in_one_step"}:
            raise AttributeError(name)
        return getattr(self._inner, name)


def test_iter_mappings_without_the_store_method_gives_the_same_pages_content() -> None:
    inner = MemoryStore()
    engine = Engine(store=inner, seed=1)
    _fill(engine, recipients=25)
    plain = Engine(store=_PlainStore(inner))  # type: ignore[arg-type]
    assert not hasattr(plain.store, "iter_mappings")
    got = [len(page) for page in plain.iter_mappings("acme", now=NOW, batch=10)]
    assert got == [10, 10, 5]
    assert _world(plain, NOW) == _world(engine, NOW)
    with pytest.raises(UnknownProfile):
        plain.iter_mappings("nope")


def test_iter_mappings_validates_at_once(tmp_path: Path, redis_url: str) -> None:
    for store in (MemoryStore(), SQLiteStore(tmp_path / "v.db"), RedisStore.from_url(redis_url)):
        with Engine(store=store) as engine:
            with pytest.raises(UnknownProfile):
                engine.iter_mappings("nope")  # not at the first next()
            engine.create_profile("p")
            for bad in (0, -1, 1.5, True, "10"):
                with pytest.raises(InvalidSettings, match="invalid batch"):
                    engine.iter_mappings("p", batch=bad)  # type: ignore[arg-type]
            assert list(engine.iter_mappings("p")) == []


def test_the_console_script_and_the_module_run_the_commands(
    tmp_path: Path, sqlite_url: str
) -> None:
    script = Path(sys.executable).with_name("sticky")
    for argv in ([str(script)], [sys.executable, "-m", "sticky"]):
        done = subprocess.run(
            [*argv, "stats", "--store", sqlite_url, "--json"],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["profiles"] == 2


# -- batched import and the numbers' own limits ---------------------------------------
def test_the_numbers_own_limits_round_trip_and_old_exports_still_import(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source_url = f"sqlite:///{tmp_path / 'source.db'}"
    with Engine(store=source_url, seed=1) as source:
        source.create_profile("acme", PoolSettings())
        source.add_number("acme", LONG[0], rate=2.5, daily_new_recipients=40)
        source.add_number("acme", LONG[1], daily_new_recipients=7)
        source.add_number("acme", TOLL, "toll_free")
        for i in range(2_500):  # three batches of 1,000
            source.pin("acme", f"+1646555{i:04d}", LONG[i % 2], now=T + i)
    path = tmp_path / "e.jsonl"
    assert (
        _cli(capsys, "export", "--store", source_url, "-o", str(path), "--now", str(NOW))[0] == 0
    )
    numbers = [json.loads(x) for x in path.read_text().splitlines() if '"number"' in x[:20]]
    assert [(n.get("rate"), n.get("daily_new_recipients")) for n in numbers] == [
        (2.5, 40),
        (None, 7),
        (None, None),
    ]
    assert all("rate" not in n for n in numbers[1:])  # written only when set
    target_url = f"sqlite:///{tmp_path / 'target.db'}"
    status, out, _ = _cli(
        capsys, "import", str(path), "--store", target_url, "--now", str(NOW), "--json"
    )
    assert status == 0
    assert json.loads(out)["mappings_written"] == 2_500
    with Engine(store=source_url) as source, Engine(store=target_url) as target:
        assert target.numbers("acme") == source.numbers("acme")
        assert _world(target, NOW) == _world(source, NOW)
        # an imported mapping is no new recipient: no budget spent, no slot taken
        assert {(c.new_today, c.next_slot) for c in target.capacity("acme", now=NOW)} == {(0, NOW)}
    old = tmp_path / "old.jsonl"  # the same export without the limits, as 0.1 wrote it
    old.write_text(
        "".join(
            json.dumps(
                {
                    k: v
                    for k, v in json.loads(x).items()
                    if k not in {"rate", "daily_new_recipients"}
                }
            )
            + "\n"
            for x in path.read_text().splitlines()
        )
    )
    old_url = f"sqlite:///{tmp_path / 'old.db'}"
    assert _cli(capsys, "import", str(old), "--store", old_url, "--now", str(NOW))[0] == 0
    with Engine(store=old_url) as target:
        assert [(n.rate, n.daily_new_recipients) for n in target.numbers("acme")] == [
            (None, None)
        ] * 3
    bad = tmp_path / "bad.jsonl"
    bad.write_text(path.read_text().replace('"rate": 2.5', '"rate": -1', 1))
    status, _, err = _cli(capsys, "import", str(bad), "--store", f"sqlite:///{tmp_path / 'b.db'}")
    assert status == 2
    assert "line 3" in err
    assert "rate" in err


def test_a_pipe_import_writes_the_batch_read_before_a_bad_line(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "e.jsonl"
    _cli(capsys, "export", "--store", sqlite_url, "-o", str(path), "--now", str(NOW))
    lines = path.read_text().splitlines()
    acme = [i for i, x in enumerate(lines) if '"mapping","profile":"acme"' in x]
    cut = acme[0] + 12  # 12 of acme's mappings, then a bad line
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join([*lines[:cut], "oops", ""])))
    url = f"sqlite:///{tmp_path / 'target.db'}"
    status, _, err = _cli(capsys, "import", "--store", url, "--batch", "5", "--now", str(NOW))
    assert status == 2
    assert f"line {cut + 1}: not JSON" in err
    with Engine(store=url) as target:
        assert sum(len(p) for p in target.iter_mappings("acme", now=NOW)) == 12
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join([*lines, ""])))
    status, out, _ = _cli(capsys, "import", "--store", url, "--batch", "5", "--now", str(NOW))
    assert status == 0
    assert "mappings 19 written, 12 kept" in out  # running it again once fixed is safe


@pytest.mark.parametrize(
    "line",
    [
        '{"kind":"mapping","profile":"acme","to":"+16465550001","from":"+13125550001","last_used":1767225600.5,"age":3.25}\n',
        '{"kind":"mapping","profile":"acme","to":"+16465550001","from":"+13125550001","last_used":1767225600,"age":-1e-05}',
        '{"kind":"mapping","profile":"a\\u00e9\\"b","to":"+16465550001","from":"+13125550001","last_used":1.5e9,"age":0}',
        '{"kind":"mapping","profile":"acme","to":"+1","from":"+13125550001","last_used":1,"age":0}',
        '{"kind":"mapping","profile":"zeta","to":"+16465550001","from":"+13125550001","last_used":1,"age":0}',
        '{"kind":"mapping","profile":"acme","to":"+16465550001","from":"+13125550001","last_used":1e999,"age":0}',
        '{"kind":"mapping","profile":"acme","to":"+16465550001","from":"+13125550001","last_used":01,"age":0}',
        '{"kind":"mapping","profile":"ac\tme","to":"+16465550001","from":"+13125550001","last_used":1,"age":0}',
    ],
)
def test_the_fast_reading_of_mapping_lines_agrees_with_json(
    line: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sticky.cli import transfer  # noqa: PLC0415 - its private reader

    profiles = {"acme", 'a\u00e9"b', "ac\tme"}

    def read() -> object:
        try:
            return transfer._record(3, line, set(profiles))
        except Exception as exc:  # the error is the result compared
            return (type(exc), str(exc))

    fast = read()
    monkeypatch.setattr(transfer, "_MAPPING_LINE", lambda _text: None)
    assert fast == read()


# -- a number's life ----------------------------------------------------------------------
def _life_world(engine: Engine, now: float) -> dict[str, Any]:
    """What an export carries of a number's life, read through the engine."""
    return {
        pid: (engine.numbers(pid), engine.health(pid, now=now), engine.opt_outs(pid))
        for pid in engine.profiles()
    }


@pytest.mark.parametrize("target_kind", ["sqlite", "memory"])
def test_drains_delivery_windows_and_opt_outs_round_trip(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, target_kind: str
) -> None:
    source_url = f"sqlite:///{tmp_path / 'source.db'}"
    settings = PoolSettings(skip_unhealthy=True, min_samples=4, health_window=3_600)
    with Engine(store=source_url, seed=1) as source:
        source.create_profile("acme", settings)
        for n in (*LONG, TOLL):
            source.add_number("acme", n)
        source.drain("acme", LONG[0], grace=600, now=NOW - 100)
        for i, outcome in enumerate(["failed", "failed", "spam", "failed", "delivered"]):
            source.record_delivery(LONG[1], outcome, now=NOW - 3_000 + 400 * i)  # unhealthy
        for i, outcome in enumerate(["delivered", "delivered", "failed"]):
            source.record_delivery(TOLL, outcome, now=NOW - 2_000 + 300 * i)
        source.opt_out("acme", "+16465550001", now=NOW)
        source.opt_out("acme", "+16465550002", now=NOW)
        assert not source.numbers("acme")[1].delivery_healthy
    path = tmp_path / "life.jsonl"
    assert (
        _cli(capsys, "export", "--store", source_url, "-o", str(path), "--now", str(NOW))[0] == 0
    )
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["to"] for x in lines if x.get("kind") == "opt_out"] == [
        "+16465550001",
        "+16465550002",
    ]
    drained = next(x for x in lines if x.get("number") == LONG[0])
    assert (drained["draining_since"], drained["drain_grace"]) == (NOW - 100, 600)
    target_url = f"sqlite:///{tmp_path / 'target.db'}" if target_kind == "sqlite" else "memory://"
    if target_kind == "memory":  # the CLI's memory store lives one command: import by hand
        target = Engine(seed=1)
        from sticky.cli.transfer import _Target, read_export  # noqa: PLC0415

        with path.open() as src:
            _Target(target, NOW, sys.stderr).apply_all(read_export(src))
    else:
        status, out, err = _cli(
            capsys, "import", str(path), "--store", target_url, "--now", str(NOW), "--json"
        )
        assert status == 0, err
        assert json.loads(out)["opt_outs"] == 2
        target = Engine(store=target_url)
    with Engine(store=source_url) as source, target:
        assert _life_world(target, NOW) == _life_world(source, NOW)
        assert target.is_opted_out("acme", "+16465550001")


def test_a_version_1_export_still_imports(
    capsys: pytest.CaptureFixture[str], sqlite_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "v1.jsonl"
    assert (
        _cli(capsys, "export", "--store", sqlite_url, "-o", str(path), "--now", str(NOW))[0] == 0
    )
    text = path.read_text().replace('"version": 2', '"version": 1', 1)
    path.write_text(text)
    target = f"sqlite:///{tmp_path / 't.db'}"
    assert _cli(capsys, "import", str(path), "--store", target, "--now", str(NOW))[0] == 0
    with Engine(store=sqlite_url) as a, Engine(store=target) as b:
        assert _world(a, NOW) == _world(b, NOW)


def test_bad_life_fields_of_an_export_are_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    header = '{"format": "sticky-export", "version": 2, "exported_at": 0}'
    profile = '{"kind": "profile", "id": "a", "settings": {}}'
    number = (
        '{"kind": "number", "profile": "a", "number": "+13125550001", '
        '"type": "long_code", "healthy": true'
    )
    for extra, named in [
        (', "draining_since": "x"}', "draining_since"),
        (', "draining_since": 1, "drain_grace": -1}', "grace"),
        (', "delivery_healthy": 1}', "delivery_healthy"),
        (', "window": [[1, 2, 3]]}', "window"),
        (', "window": [[2, 1, 0, 0], [1, 1, 0, 0]]}', "window"),
    ]:
        path = tmp_path / "bad.jsonl"
        path.write_text("\n".join([header, profile, number + extra]) + "\n")
        status, _, err = _cli(capsys, "import", str(path), "--store", "memory://")
        assert status == 2
        assert "line 3" in err
        assert named in err
    opt_out = '{"kind": "opt_out", "profile": "a", "to": "x"}'
    path.write_text(f"{header}\n{profile}\n{opt_out}\n")
    status, _, err = _cli(capsys, "import", str(path), "--store", "memory://")
    assert status == 2
    assert "recipient" in err


def test_drain_undrain_opt_out_and_opt_in_commands(
    capsys: pytest.CaptureFixture[str], sqlite_url: str
) -> None:
    status, out, _ = _cli(
        capsys,
        "drain",
        "acme",
        LONG[0],
        "--grace",
        "3600",
        "--store",
        sqlite_url,
        "--now",
        str(NOW),
    )
    assert status == 0
    assert "draining since" in out
    assert "recipients still on it" in out
    status, out, _ = _cli(capsys, "show", "acme", "--store", sqlite_url, "--now", str(NOW))
    assert "draining since" in out
    status, out, _ = _cli(capsys, "show", "acme", "--store", sqlite_url, "--json")
    drained = next(n for n in json.loads(out)["numbers"] if n["number"] == LONG[0])
    assert (drained["draining_since"], drained["drain_grace"], drained["eligible"]) == (
        NOW,
        3600.0,
        False,
    )
    assert _cli(capsys, "undrain", "acme", LONG[0], "--store", sqlite_url)[0] == 0
    assert _cli(capsys, "opt-out", "acme", "+16465550003", "--store", sqlite_url)[1].endswith(
        "opted out (profile acme)\n"
    )
    assert "already" in _cli(capsys, "opt-out", "acme", "+16465550003", "--store", sqlite_url)[1]
    status, out, _ = _cli(capsys, "opt-outs", "acme", "--store", sqlite_url, "--json")
    assert json.loads(out) == ["+16465550003"]
    assert _cli(capsys, "opt-in", "acme", "+16465550003", "--store", sqlite_url)[0] == 0
    assert (
        _cli(capsys, "opt-outs", "acme", "--store", sqlite_url)[1]
        == "0 opted out of profile acme\n"
    )
    with Engine(store=sqlite_url) as engine:
        assert engine.mapping("acme", "+16465550003", now=NOW) is None  # deleted at opt-out
        assert not engine.numbers("acme")[0].draining
    status, _, err = _cli(capsys, "drain", "acme", "+19995550000", "--store", sqlite_url)
    assert status == 2
    assert "not in profile" in err
