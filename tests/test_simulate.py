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


LIMITED = [
    *["--profiles", "1", "--numbers", "4", "--toll-free", "1", "--recipients", "3000"],
    *["--messages-per-day", "40000", "--days", "2", "--no-progress"],
    *["--long-code-rate", "0.25", "--toll-free-rate", "1", "--daily-new", "400"],
]


def test_the_default_run_says_capacity_is_off(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", *SMALL, "--json"]) == 0
    capacity = json.loads(capsys.readouterr().out)["capacity"]
    assert capacity["on"] is False
    assert capacity["waited"] == capacity["overflowed"] == 0
    assert capacity["limits_broken"] is False
    assert main(["simulate", *SMALL]) == 0
    assert "capacity:    off" in capsys.readouterr().out


def test_a_run_with_limits_never_breaks_them(capsys: pytest.CaptureFixture[str]) -> None:
    flags = ["--max-wait", "30", "--max-queue", "120", "--choice-wait", "1", "--burst", "2"]
    assert main(["simulate", *LIMITED, *flags, "--segments", "1:0.8,2:0.15,3:0.05", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    c = report["capacity"]
    assert c["on"] is True
    assert c["limits"]["long_code_rate"] == 0.25
    assert c["limits"]["burst"] == 2
    assert c["segments"] == pytest.approx({"1": 0.8, "2": 0.15, "3": 0.05})
    # The traffic is more than the pool may carry: selects wait, overflow, are refused.
    assert 0 < c["waited"] < 1
    assert c["overflowed"] > 0
    assert c["refused"]["exhausted"] > 0
    assert c["refused"]["busy"] > 0
    assert c["selects"] == 80_000
    assert report["failed_pool_exhausted"] + report["failed_pool_busy"] + report["messages"] == (
        80_000
    )
    assert report["reasons"]["overflow"] > 0
    assert 0 <= c["wait"]["median"] <= c["wait"]["p99"] <= c["wait"]["max"] <= 120
    assert c["wait"]["max"] > 30
    assert 0 < c["peak_share_of_limit"]["max"] <= 1
    assert c["new_recipients_busiest_day"]["max"] <= 400
    assert c["numbers_over_rate"] == c["number_days_over_budget"] == 0
    assert c["limits_broken"] is False


def test_the_readable_report_has_the_capacity_lines(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", *LIMITED, "--segments", "2"]) == 0
    out = capsys.readouterr().out
    for word in ("capacity:", "wait:", "selects:", "peak rate:", "new/day:"):
        assert word in out
    assert "limits:      never broken" in out
    assert "segments 2: 100%" in out


def test_the_rate_check_sees_a_schedule_that_breaks_it() -> None:
    from sticky.simulate import _rate_load  # noqa: PLC0415 - a private helper, tested alone

    assert _rate_load([(0.0, 1), (1.0, 1), (2.0, 1)], 1.0, 1) == (2, True)
    assert _rate_load([(0.0, 1), (0.5, 1)], 1.0, 1)[1] is False
    assert _rate_load([(0.0, 3), (2.0, 1)], 1.0, 1)[1] is False  # 3 segments need 3 s
    assert _rate_load([(0.0, 3), (3.0, 1)], 1.0, 1) == (2, True)
    assert _rate_load([(0.0, 1), (0.0, 1), (1.0, 1)], 1.0, 2) == (3, True)


@pytest.mark.parametrize(
    "flag",
    [
        ["--segments", "0"],
        ["--segments", "1:0.5"],
        ["--segments", "1:0.5,1:0.5"],
        ["--segments", "1:x"],
        ["--segments", "2:1.0,3:0"],
        ["--long-code-rate", "0"],
        ["--toll-free-rate", "nan"],
        ["--burst", "0"],
        ["--daily-new", "-1"],
        ["--max-wait", "-1"],
        ["--choice-wait", "inf"],
        ["--max-queue", "soon"],
    ],
)
def test_bad_capacity_flags_exit_2_with_one_line(
    flag: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["simulate", *flag])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert flag[0] in err
