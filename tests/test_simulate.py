"""The main job: ``python -m sticky simulate``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sticky.__main__ import main

SMALL = ["--recipients", "2000", "--messages-per-day", "1500", "--days", "20", "--no-progress"]


def test_simulate_reports_in_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", *SMALL, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["messages"] == 1500 * 20
    assert sum(report["reasons"].values()) == pytest.approx(1.0)
    assert report["reasons"]["sticky"] > 0.5
    assert report["reasons"]["pool"] == 0
    assert 0.9 < report["stickiness"] <= 1.0
    assert report["load"]["min"] <= report["load"]["median"] <= report["load"]["max"]
    assert report["evicted"] > 0  # recipients went quiet for longer than the ttl
    assert report["live_mappings_at_end"] <= 2000
    assert report["selects_per_second"] > 0


def test_simulate_with_sticky_off_keeps_no_mappings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", *SMALL, "--no-sticky", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["reasons"]["pool"] == 1.0
    assert report["live_mappings_at_end"] == 0
    assert report["stickiness"] < 0.5


def test_simulate_prints_a_readable_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", *SMALL, "--geo", "--geomatch", "area_code"]) == 0
    out = capsys.readouterr().out
    for word in ("reasons:", "stickiness:", "sender load:", "evicted:", "live:", "throughput:"):
        assert word in out
    assert "area_code" in out


def test_the_module_runs_from_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sticky", "simulate", *SMALL[:4], "--days", "2", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(done.stdout)["messages"] == 3000
    bad = subprocess.run(
        [sys.executable, "-m", "sticky", "frobnicate"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2
    assert "invalid choice" in bad.stderr
