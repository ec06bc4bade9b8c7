"""The main job: ``python -m sticky simulate``."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from typing import Any

import attrs
import pytest

from sticky.__main__ import main
from sticky.engine import Engine
from sticky.values import Keyword, Reply, ReplyAction

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


# -- a number's life ---------------------------------------------------------------------
LIFE = [
    *["--profiles", "1", "--numbers", "6", "--toll-free", "1", "--recipients", "1500"],
    *["--messages-per-day", "2000", "--days", "8", "--no-progress"],
]
ALL_OF_LIFE = [
    *["--delivery-reports", "0.5", "--bad-numbers", "1", "--reply-rate", "0.05"],
    *["--opt-out-rate", "0.05", "--drain-day", "3", "--drain-grace", "86400"],
    "--skip-unhealthy",
]


def _run(capsys: pytest.CaptureFixture[str], *flags: str) -> dict[str, Any]:
    assert main(["simulate", *flags, "--json"]) == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return report


def test_a_run_without_the_new_flags_has_no_life(capsys: pytest.CaptureFixture[str]) -> None:
    report = _run(capsys, *LIFE)
    assert report["failed_opted_out"] == 0
    assert report["reassigned_by_cause"] == dict.fromkeys(
        ["unhealthy_caller", "unhealthy_reports", "drain_grace_ended", "other"], 0
    )
    assert report["delivery"]["reports"] == 0
    assert report["delivery"]["measured_unhealthy_by_day"] == []
    assert report["replies"]["replies"] == 0
    assert report["opt_outs"]["honoured"] is True
    assert report["drain"] is None
    assert main(["simulate", *LIFE]) == 0
    out = capsys.readouterr().out
    for word in ("reassigned: ", "delivery:", "health:", "replies:", "opt-outs:", "drain:"):
        assert word not in out


def test_the_new_flags_make_the_new_report_parts(capsys: pytest.CaptureFixture[str]) -> None:
    report = _run(capsys, *LIFE, *ALL_OF_LIFE)
    d = report["delivery"]
    assert 0.45 < d["share_of_messages"] < 0.55
    assert sum(d["outcomes"].values()) == pytest.approx(1.0)
    assert d["outcomes"]["delivered"] > 0.5
    assert d["outcomes"]["failed"] > 0
    assert d["outcomes"]["spam"] > 0
    assert len(d["bad_numbers"]) == 1
    assert d["good_numbers"] == 5
    assert len(d["measured_unhealthy_by_day"]) == 8
    r = report["replies"]
    assert r["replies"] == sum(r["actions"].values()) > 0
    assert r["actions"]["refreshed"] > 0
    assert r["keywords"]["opt_out"] > 0
    assert report["opt_outs"]["honoured"] is True
    assert report["failed_opted_out"] == report["opt_outs"]["refused_selects"] > 0
    assert report["drain"]["day"] == 3
    assert sum(report["reassigned_by_cause"].values()) == round(
        report["reasons"]["reassigned"] * report["messages"]
    )
    assert report["reassigned_by_cause"]["other"] == 0
    assert report["capacity"]["selects"] == 2000 * 8
    assert main(["simulate", *LIFE, *ALL_OF_LIFE]) == 0
    out = capsys.readouterr().out
    for word in ("reassigned: ", "delivery:", "health:", "replies:", "drain:"):
        assert word in out
    assert "opt-outs:    never a sender for a recipient opted out at the time" in out


def test_opt_outs_are_honoured(capsys: pytest.CaptureFixture[str]) -> None:
    flags = ["--reply-rate", "0.2", "--opt-out-rate", "0.3", "--opt-in-rate", "0.5"]
    report = _run(capsys, *LIFE, *flags, "--opt-in-delay", "3600")
    o, k = report["opt_outs"], report["replies"]["keywords"]
    assert k["opt_out"] > 0
    assert k["opt_in"] > 0  # some came back, and got senders again
    assert report["replies"]["actions"]["opted_out"] >= k["opt_out"]
    assert o["refused_selects"] > 0
    assert 0 < o["opted_out_at_end"] < k["opt_out"]
    assert o["sent_while_opted_out"] == o["refused_not_opted_out"] == 0
    assert o["honoured"] is True


def test_the_opt_out_check_sees_an_engine_that_ignores_stop(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Engine.record_reply

    def deaf(self: Engine, profile_id: str, to: str, number: str, **kw: Any) -> Reply:
        if kw.get("body") != "STOP":
            return real(self, profile_id, to, number, **kw)
        kw["body"] = None  # the STOP is lost, but said to be applied
        reply = real(self, profile_id, to, number, **kw)
        return attrs.evolve(reply, keyword=Keyword.OPT_OUT, action=ReplyAction.OPTED_OUT)

    monkeypatch.setattr(Engine, "record_reply", deaf)
    flags = ["--reply-rate", "0.2", "--opt-out-rate", "0.3", "--opt-in-rate", "0"]
    o = _run(capsys, *LIFE, *flags)["opt_outs"]
    assert o["sent_while_opted_out"] > 0
    assert o["refused_selects"] == 0
    assert o["honoured"] is False
    assert main(["simulate", *LIFE, *flags]) == 0
    assert "opt-outs:    BROKEN:" in capsys.readouterr().out


def test_events_without_delay_happen_at_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    flags = ["--report-delay", "0", "--reply-delay", "0", "--opt-in-delay", "0"]
    report = _run(capsys, *LIFE, *ALL_OF_LIFE, *flags, "--opt-in-rate", "1")
    k = report["replies"]["keywords"]
    assert k["opt_out"] == k["opt_in"] > 0  # each STOP was taken back at once
    assert report["opt_outs"]["opted_out_at_end"] == 0
    assert report["opt_outs"]["honoured"] is True


@pytest.mark.parametrize("grace", [None, "86400"])
def test_a_drained_number_only_loses_recipients(
    grace: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--drain-day", "3", "--ttl-days", "2", "--unhealthy-per-day", "0"]
    report = _run(capsys, *LIFE, *flags, *([] if grace is None else ["--drain-grace", grace]))
    drain = report["drain"]
    assert drain["day"] == 3
    assert drain["grace"] == (None if grace is None else 86400)
    left = drain["recipients_after_day"]
    assert len(left) == 8 - 2  # the drain's day and every day after it
    assert drain["recipients_at_drain"] > 0
    assert all(a >= b for a, b in itertools.pairwise([drain["recipients_at_drain"], *left]))
    assert drain["fresh_choices_onto_it"] == 0
    causes = report["reassigned_by_cause"]
    assert causes["other"] == causes["unhealthy_caller"] == causes["unhealthy_reports"] == 0
    # Without a grace its active recipients stay on it; with one, they move at their next
    # message once it ends, and the quiet ones' mappings die within the ttl after that.
    assert (causes["drain_grace_ended"] > 0) == (grace is not None)
    assert (left[-1] == 0) == (grace is not None)


def test_bad_numbers_get_measured_unhealthy(capsys: pytest.CaptureFixture[str]) -> None:
    flags = ["--delivery-reports", "1", "--bad-numbers", "2", "--bad-failure-rate", "0.95"]
    report = _run(capsys, *LIFE, *flags, "--unhealthy-per-day", "0", "--skip-unhealthy")
    d = report["delivery"]
    assert d["bad_measured_unhealthy"] == 2
    assert d["good_measured_unhealthy"] == 0
    assert sorted(d["first_day_measured_unhealthy"]) == d["bad_numbers"]
    assert d["measured_unhealthy_by_day"][-1] == 2  # no report clears them: they send no more
    causes = report["reassigned_by_cause"]
    assert causes["unhealthy_reports"] > 0
    assert causes["other"] == causes["unhealthy_caller"] == causes["drain_grace_ended"] == 0
    assert main(["simulate", *LIFE, *flags, "--unhealthy-per-day", "0"]) == 0
    out = capsys.readouterr().out
    assert "health:      2 of 2 bad numbers measured unhealthy (first on day 1)" in out


@pytest.mark.parametrize(
    "flag",
    [
        ["--delivery-reports", "1.5"],
        ["--reply-rate", "nan"],
        ["--opt-out-rate", "-0.1"],
        ["--bad-failure-rate", "x"],
        ["--bad-numbers", "-1"],
        ["--drain-day", "0"],
        ["--drain-grace", "-1"],
        ["--report-delay", "inf"],
    ],
)
def test_bad_life_flags_exit_2_with_one_line(
    flag: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["simulate", *flag])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert flag[0] in err
