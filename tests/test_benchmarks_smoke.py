"""The benchmark harness runs end to end in its tiny mode and writes what it promises.

Not a timing test: it checks the files and the rows, never a figure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.harness import PAIRED_REPEATS

ROOT = Path(__file__).resolve().parent.parent
SIZE = 2_000


def test_smoke_run_writes_json_markdown_and_rows(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "PASS" in done.stdout or "MISS" in done.stdout

    data = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert {"meta", "rows", "targets", "notes"} <= data.keys()
    assert data["meta"]["mode"] == "smoke"
    assert data["meta"]["machine"]["python"]
    keys = {
        "group",
        "name",
        "size",
        "ns_per_op",
        "ns_min",
        "ns_max",
        "ops_per_s",
        "ratio_to_floor",
    }
    for row in data["rows"]:
        assert keys <= row.keys(), row
    rows = {(r["design"], r["op"]): r for r in data["rows"]}

    designs = ["floor", "engine", "ordereddict"]
    if importlib.util.find_spec("cachetools") is not None:
        designs.append("ttlcache")
    for design in designs:
        for op in (
            "select hit",
            "select miss",
            "select mix",
            "evict_expired",
            "remove_number cascade",
        ):
            r = rows[design, op]
            assert r["size"] == SIZE
            assert r["ns_min"] <= r["ns_per_op"] <= r["ns_max"]
            assert r["ratio_to_floor"] > 0
        assert rows[design, "memory"]["bytes_per_mapping"] > 0
    for op in (
        "select sticky off",
        "select miss, geomatch=off",
        "select miss, geomatch=area_code",
    ):
        assert rows["engine", op]["ns_per_op"] > 0
    for op in ("select miss, none dead", "select miss, table dead"):
        assert rows["engine", op]["ns_per_op"] > 0
    assert ("engine", "select miss, geomatch=full") in rows  # measured, or marked missing
    assert rows["floor", "select hit"]["ratio_to_floor"] == 1.0

    # The minimal complete design: a second reference for hit, miss, mix and memory.
    for op in ("select hit", "select miss", "select mix"):
        r = rows["minimal", op]
        assert r["ns_min"] <= r["ns_per_op"] <= r["ns_max"]
        assert r["ratio_to_floor"] > 0
        assert r["ratio_to_minimal"] == 1.0
        assert rows["engine", op]["ratio_to_minimal"] > 0
    assert rows["minimal", "memory"]["bytes_per_mapping"] > 0
    assert rows["engine", "memory"]["ratio_to_minimal"] > 0
    assert ("minimal", "evict_expired") not in rows  # it runs the select group alone
    # Side by side: both designs' repeats alternated, twice as many; the #10 targets read them.
    for op in ("select hit, paired", "select miss, paired", "select mix, paired"):
        ours, theirs = rows["engine", op], rows["minimal", op]
        assert ours["group"] == theirs["group"] == "paired"
        assert ours["repeats"] == theirs["repeats"] == PAIRED_REPEATS * data["meta"]["repeats"]
        assert theirs["ratio_to_minimal"] == 1.0
        assert ours["ratio_to_minimal"] == ours["ns_per_op"] / theirs["ns_per_op"]
        assert ours["ratio_to_floor"] > 0

    statuses = {(t["target"], t["issue"]): t["status"] for t in data["targets"]}
    assert len(statuses) >= 7
    assert set(statuses.values()) <= {"PASS", "MISS", "N/A"}
    assert statuses["select hit", "10"] in {"PASS", "MISS"}  # measured in smoke mode too
    assert statuses["select miss", "10"] in {"PASS", "MISS"}
    miss = next(t for t in data["targets"] if t["target"] == "select miss" and t["issue"] == "10")
    assert miss["value"] == rows["engine", "select miss, paired"]["ratio_to_minimal"]
    assert statuses["Redis select new", "10"] == "N/A"  # backends are skipped in smoke mode

    table = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert "| select hit |" in table
    assert "| engine / minimal |" in table
    assert "Targets" in table
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "growth.png").read_bytes().startswith(b"\x89PNG")


def test_only_runs_the_chosen_group(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--smoke",
            "--only",
            "memory",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    groups = {r["group"] for r in data["rows"]}
    assert groups == {"memory", "select"}  # the floor's select rows always run
    assert {r["design"] for r in data["rows"] if r["group"] == "select"} == {"floor"}
    assert {r["design"] for r in data["rows"] if r["group"] == "memory"} >= {"floor", "minimal"}


def test_capacity_rows_pair_on_with_off_on_every_store() -> None:
    from benchmarks import bench_capacity, report  # noqa: PLC0415 - the benchmarks package

    rows = bench_capacity.run(True, size=300, ops=100, repeats=1)
    ops = [
        f"select {kind}, capacity {state}" for kind in ("hit", "miss") for state in ("off", "on")
    ]
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == {f"{store}: {op}" for store in bench_capacity.STORES for op in ops}
    for op in ops:  # the memory store keeps capacity: measured, never missing
        r = by_name[f"memory: {op}"]
        assert r["ns_min"] <= r["ns_per_op"] <= r["ns_max"]
        assert r["ratio_to_floor"] > 0
        assert r["group"] == "capacity"
    assert by_name["memory: select hit, capacity off"]["ratio_to_floor"] == 1.0
    for r in rows:  # another store: measured, or marked missing with the reason
        assert r["ns_per_op"] is not None or r["note"].startswith("missing: ")
        assert "/" not in r.get("note", "")  # no file or URL of this run in the results
    for store in ("redis",):
        r = by_name[f"{store}: select hit, capacity on"]
        if r["ns_per_op"] is not None:
            assert r["commands_per_op"] > 0
            assert r["server_us_per_op"] > 0
    checks = {t["target"]: t for t in report.capacity_targets(rows)}
    assert checks["memory select hit, capacity on"]["status"] in {"PASS", "MISS"}
    assert checks["memory select miss, capacity on"]["status"] in {"PASS", "MISS"}
    assert {t["issue"] for t in checks.values()} == {"11"}
    assert set(checks) <= {t["target"] for t in report.targets(rows, 300, (300,))}
    assert "| memory | select miss, capacity on |" in bench_capacity.table(rows)


def test_transfer_rows_measure_export_and_import(tmp_path: Path) -> None:
    pytest.importorskip("redis")
    from benchmarks import bench_transfer  # noqa: PLC0415 - the benchmarks package
    from sticky.testing.redis_server import RedisServer  # noqa: PLC0415

    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server")
    server = RedisServer()
    server.start()
    try:
        rows = bench_transfer.transfer(server, 300, 1, tmp_path)
        rows += bench_transfer.before_after(server, 2, sample=300)
    finally:
        server.stop()
    assert [r["operation"] for r in rows][:2] == ["export (SQLite)", "import (Redis)"]
    assert all(r["per_second"] > 0 for r in rows)
    assert all(r["maxrss_mib"] > 0 for r in rows[:2])
    text = bench_transfer.markdown(rows, "python -m benchmarks.bench_transfer")
    assert "| import (Redis) | 300 |" in text
    assert "/" not in json.dumps(rows)  # no file or URL of this run in the rows


def test_cluster_benchmark_smoke_writes_its_rows(tmp_path: Path) -> None:
    """The cluster benchmark in its tiny mode, on the cluster it starts: files and rows."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        if os.environ.get("STICKY_REQUIRE_REDIS", "") == "1":
            pytest.fail("redis-server and redis-cli are needed (STICKY_REQUIRE_REDIS=1)")
        pytest.skip("redis-server or redis-cli is not installed")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_cluster", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "cluster.json").read_text(encoding="utf-8"))
    assert data["meta"]["mode"] == "smoke"
    rows = {r["name"]: r for r in data["rows"]}
    for name in (
        "select hit",
        "select new",
        "select_many hit x100",
        "select_many new x100",
        "select new, min_replicas=1",
    ):
        r = rows[name]
        assert r["ns_min"] <= r["ns_per_op"] <= r["ns_max"]
        assert r["ratio_to_floor"] > 0
    assert rows["PING (primary of the slot)"]["ratio_to_floor"] == 1.0
    assert rows["memory per mapping (primary of the slot)"]["bytes_per_mapping"] > 0
    for phase in ("select new", "select hit", "select_many new x100"):
        assert rows[f"one core: {phase}, 2 processes"]["selects_per_core_s"] > 0
    table = (tmp_path / "cluster.md").read_text(encoding="utf-8")
    assert "| select new, min_replicas=1 |" in table
    assert "selects/s of one busy core" in table


def test_life_rows_measure_every_case_against_its_floor() -> None:
    from benchmarks import bench_life  # noqa: PLC0415 - the benchmarks package

    rows = bench_life.run(True, size=300, ops=20, repeats=1)
    by_name = {r["name"]: r for r in rows}
    memory = [r for r in rows if r["design"] == "memory"]
    assert len(memory) >= 9
    for r in memory:  # the memory store always runs: measured, never missing
        assert r["ns_min"] <= r["ns_per_op"] <= r["ns_max"]
        assert r["ratio_to_floor"] > 0
    assert any("record_delivery" in name for name in by_name)
    assert any("record_reply" in name for name in by_name)
    for r in rows:  # another store: measured, or marked missing with the reason
        assert r["ns_per_op"] is not None or r["note"].startswith("missing: ")
        assert "/" not in r.get("note", "")
    assert "| memory |" in bench_life.table(rows)


def test_alternate_reverses_the_order_each_round_and_drops_a_turn_that_raises() -> None:
    from benchmarks.harness import MODES, alternate  # noqa: PLC0415 - the benchmarks package

    order: list[str] = []
    undone: list[str] = []

    def run(name: str) -> int:
        order.append(name)
        if name == "c" and order.count("c") == 2:
            msg = "broke midway"
            raise RuntimeError(msg)
        return 1

    def turn(name: str) -> tuple[str, Any, Any, Any]:
        return (name, lambda: run(name), None, lambda: undone.append(name))

    cfg = MODES["smoke"]  # one warm-up round
    samples, failed = alternate([turn("a"), turn("b"), turn("c")], cfg, 3)
    assert order == ["c", "b", "a", "a", "b", "c", "b", "a", "a", "b"]
    assert set(failed) == {"c"}
    assert str(failed["c"]) == "broke midway"
    assert undone.count("c") == 2  # after its first batch, and after the one that raised
    assert [len(samples[n]) for n in "abc"] == [3, 3, 0]  # the warm-up round is not kept
