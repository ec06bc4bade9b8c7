"""The Prometheus collector: what a scrape exports, capacity included, and a store fault."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from sticky import (
    Engine,
    InvalidSettings,
    ManualClock,
    PoolExhausted,
    PoolSettings,
    StoreUnavailable,
)
from sticky.metrics import StickyCollector

T0 = 1_767_225_600.0


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in registry.collect()
        for s in metric.samples
    }


def test_a_scrape_exports_selects_capacity_and_each_numbers_load() -> None:
    e = Engine(clock=ManualClock(T0), seed=1)
    e.create_profile("p", PoolSettings(long_code_rate=1.0, daily_new_recipients=4))
    e.add_number("p", "+13125550001")
    for i in range(4):
        e.select("p", f"+1212555000{i}")
    with pytest.raises(PoolExhausted):
        e.select("p", "+12125550009")
    registry = CollectorRegistry()
    StickyCollector(e, registry=registry, per_profile=True)
    got = _samples(registry)
    assert got["sticky_selections_total", (("reason", "new"),)] == 4
    assert got["sticky_capacity_events_total", (("kind", "waited"),)] == 3
    assert got["sticky_capacity_events_total", (("kind", "exhausted"),)] == 1
    labels = (("number", "+13125550001"), ("profile", "p"))
    assert got["sticky_number_load", labels] == 1.0  # 4 of 4 new recipients today
    assert got["sticky_number_backlog_seconds", labels] == 4.0  # four 1 s slots ahead
    assert got["sticky_mappings", ()] == 4
    assert got["sticky_store_up", ()] == 1


def test_without_per_profile_no_number_series() -> None:
    e = Engine(clock=ManualClock(T0))
    e.create_profile("p", PoolSettings(long_code_rate=1.0))
    e.add_number("p", "+13125550001")
    registry = CollectorRegistry()
    collector = StickyCollector(e, registry=registry)
    assert list(collector.number_load()) == []
    assert not [k for k in _samples(registry) if k[0].startswith("sticky_number")]


def test_a_store_fault_reports_down_and_nothing_else() -> None:
    e = Engine(clock=ManualClock(T0))
    registry = CollectorRegistry()
    StickyCollector(e, registry=registry)
    e.close()
    assert _samples(registry) == {("sticky_store_up", ()): 0.0}
    with pytest.raises(StoreUnavailable):
        e.stats()


def test_bad_arguments_are_refused() -> None:
    e = Engine()
    with pytest.raises(InvalidSettings):
        StickyCollector("engine", registry=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidSettings):
        StickyCollector(e, registry=None, namespace="not a name")
    with pytest.raises(InvalidSettings):
        StickyCollector(e, registry=None, per_profile="yes")  # type: ignore[arg-type]


def test_a_scrape_exports_opt_out_refusals_and_pool_numbers_by_health_and_drain() -> None:
    e = Engine(clock=ManualClock(T0), seed=1)
    e.create_profile("p", PoolSettings(min_samples=1))
    for n in ("+13125550001", "+13125550002", "+13125550003"):
        e.add_number("p", n)
    e.drain("p", "+13125550001")
    e.record_delivery("+13125550002", "spam")  # one sample, all spam: measured unhealthy
    e.opt_out("p", "+12125550000")
    e.select_many("p", ["+12125550000", "+12125550001"])
    registry = CollectorRegistry()
    StickyCollector(e, registry=registry, per_profile=True)
    got = _samples(registry)
    assert got["sticky_opted_out_refusals_total", ()] == 1
    sizes = {k[1]: v for k, v in got.items() if k[0] == "sticky_pool_numbers"}
    base = (("profile", "p"), ("type", "long_code"))
    assert sizes == {
        (("draining", "true"), ("healthy", "true"), *base): 1,
        (("draining", "false"), ("healthy", "false"), *base): 1,
        (("draining", "false"), ("healthy", "true"), *base): 1,
    }
