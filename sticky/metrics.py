"""Prometheus metrics: a collector the application registers (``sticky-sender[prometheus]``).

No metric lives at module level (they would collide when the module is imported twice,
and a library must not choose the registry): :class:`StickyCollector` reads the engine
and its store at each scrape. ``prometheus_client`` is imported when a collector is made.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final, cast

from sticky.engine import Engine
from sticky.errors import ExtraNotInstalled, InvalidSettings, StickyError, shown
from sticky.values import GeoTier, Reason

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector, CollectorRegistry

__all__ = ["DEFAULT_REGISTRY", "StickyCollector"]

_log = logging.getLogger(__name__)


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT_REGISTRY"


DEFAULT_REGISTRY: Final[Any] = _Default()
"""``registry=``'s default: ``prometheus_client.REGISTRY``, the process's global one."""

_TIER_FIELDS = {
    GeoTier.AREA_CODE: "tier_area_code",
    GeoTier.OVERLAY: "tier_overlay",
    GeoTier.REGION: "tier_region",
    GeoTier.COUNTRY: "tier_country",
    GeoTier.NONE: "tier_none",
}


class StickyCollector:
    """Exports an engine's counters and its store's counts at each scrape.

    Metrics (``namespace`` prefixes each, ``sticky`` by default):

    - ``sticky_selections_total{reason}``: this engine's selects by reason;
    - ``sticky_geomatch_choices_total{tier}``: fresh choices with geomatch on, by tier;
    - ``sticky_mappings``: mappings the store holds (live, or dead and not yet evicted);
    - ``sticky_evicted_total``: dead mappings the store removed;
    - ``sticky_store_up``: 1 when the store answered the scrape, else 0 (the store's
      metrics are then left out, and the fault is logged);
    - ``sticky_capacity_events_total{kind}``: this engine's selects that waited for a
      slot (``waited``) or were refused (``exhausted``, ``busy``);
    - ``sticky_opted_out_refusals_total``: this engine's selects refused for an
      opted-out recipient;
    - with ``per_profile=True``, ``sticky_pool_numbers{profile, type, healthy,
      draining}`` (one series per profile, type, health and drain: mind the
      cardinality; ``healthy`` is the caller's word and the delivery reports'), and per
      number
      ``sticky_number_load{profile, number}`` (the share of today's budget of new
      recipients used, 0 without a budget: :meth:`number_load`) and
      ``sticky_number_backlog_seconds{profile, number}`` (how far its next free slot
      is: the wait a message would get now).

    ``registry`` is where the collector registers (``prometheus_client.REGISTRY`` by
    default; None registers nowhere, for :meth:`collect` by hand or a registry of the
    caller's). A scrape costs one ``stats()`` (2 round trips on Redis, O(P)), and with
    ``per_profile`` one ``numbers()`` and one ``capacity()`` per profile. Raises
    ExtraNotInstalled without ``prometheus_client``.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        registry: CollectorRegistry | None = DEFAULT_REGISTRY,
        namespace: str = "sticky",
        per_profile: bool = False,
    ) -> None:
        try:
            import prometheus_client  # noqa: PLC0415 - the optional extra, on demand
            from prometheus_client import core  # noqa: PLC0415
        except ImportError as exc:
            raise ExtraNotInstalled(
                "prometheus", "prometheus_client", "the Prometheus collector"
            ) from exc
        if not isinstance(engine, Engine):
            msg = f"invalid engine {shown(engine)}: expected an Engine"
            raise InvalidSettings(msg)
        if not isinstance(namespace, str) or not namespace.isidentifier():
            msg = f"invalid namespace {shown(namespace)}: expected a metric name prefix"
            raise InvalidSettings(msg)
        if not isinstance(per_profile, bool):
            msg = f"invalid per_profile {shown(per_profile)}: expected True or False"
            raise InvalidSettings(msg)
        self._engine = engine
        self._ns = namespace
        self._per_profile = per_profile
        self._counter = core.CounterMetricFamily
        self._gauge = core.GaugeMetricFamily
        if registry is DEFAULT_REGISTRY:
            registry = prometheus_client.REGISTRY
        if registry is not None:
            registry.register(cast("Collector", self))

    def number_load(self) -> Iterable[tuple[str, str, float, float]]:
        """Each number as ``(profile, number, load, backlog)``, with ``per_profile``.

        ``load`` is the share of today's budget of new recipients used (0 without a
        budget), ``backlog`` the seconds to its next free slot. Empty without
        ``per_profile``. One ``capacity()`` per profile.
        """
        if not self._per_profile:
            return []
        now = self._engine.clock.now()
        out = []
        for pid in self._engine.profiles():
            for c in self._engine.capacity(pid, now=now):
                budget = c.daily_new_recipients
                load = 0.0 if budget is None else c.new_today / budget
                out.append((pid, c.number, load, max(0.0, c.next_slot - now)))
        return out

    def describe(self) -> Iterator[Metric]:
        """The metric families without samples: registering reads no store."""
        yield from self._families()

    def _families(self) -> list[Any]:
        ns, counter, gauge = self._ns, self._counter, self._gauge
        out = [
            counter(f"{ns}_selections", "Selects of this engine, by reason.", labels=["reason"]),
            counter(
                f"{ns}_geomatch_choices",
                "Fresh choices with geomatch on, by tier.",
                labels=["tier"],
            ),
            gauge(f"{ns}_mappings", "Mappings in the store (live, or dead and not yet evicted)."),
            counter(f"{ns}_evicted", "Dead mappings the store removed."),
            gauge(f"{ns}_store_up", "1 when the store answered this scrape, else 0."),
            counter(
                f"{ns}_capacity_events",
                "Selects that waited for a slot, or were refused for capacity, by kind.",
                labels=["kind"],
            ),
            counter(f"{ns}_opted_out_refusals", "Selects refused for an opted-out recipient."),
        ]
        if self._per_profile:
            out += [
                gauge(
                    f"{ns}_pool_numbers",
                    "Numbers in each profile's pool, by type, health and drain.",
                    labels=["profile", "type", "healthy", "draining"],
                ),
                gauge(
                    f"{ns}_number_load",
                    "Each number's share of today's budget of new recipients used.",
                    labels=["profile", "number"],
                ),
                gauge(
                    f"{ns}_number_backlog_seconds",
                    "Seconds to each number's next free slot.",
                    labels=["profile", "number"],
                ),
            ]
        return out

    def collect(self) -> Iterator[Metric]:
        """Read the engine and its store; yield the metrics. A store fault gives ``up`` 0."""
        families = self._families()
        selections, tiers, mappings, evicted, up, events, opted = families[:7]
        engine = self._engine
        try:
            stats = engine.stats()
            pools = (
                [(pid, engine.numbers(pid)) for pid in engine.profiles()]
                if self._per_profile
                else []
            )
            loads = list(self.number_load())
        except StickyError as exc:
            _log.warning("metrics: the store did not answer: %s", exc, extra={"fault": str(exc)})
            up.add_metric([], 0)
            yield up
            return
        for reason in Reason:
            selections.add_metric([reason.value], getattr(stats, reason.name.lower()))
        for tier, field in _TIER_FIELDS.items():
            tiers.add_metric([tier.value], getattr(stats, field))
        mappings.add_metric([], stats.mappings)
        evicted.add_metric([], stats.evicted)
        up.add_metric([], 1)
        for kind in ("waited", "exhausted", "busy"):
            events.add_metric([kind], getattr(stats, kind))
        opted.add_metric([], stats.opted_out)
        yield from (selections, tiers, mappings, evicted, up, events, opted)
        if self._per_profile:
            sizes: dict[tuple[str, str, str, str], int] = {}
            for pid, pool in pools:
                for n in pool:
                    key = (pid, n.type.value, _flag(n.is_healthy), _flag(n.draining))
                    sizes[key] = sizes.get(key, 0) + 1
            numbers = families[7]
            for labels, size in sorted(sizes.items()):
                numbers.add_metric(list(labels), size)
            load, backlog = families[8], families[9]
            for pid, number, share, wait in loads:
                load.add_metric([pid, number], share)
                backlog.add_metric([pid, number], wait)
            yield from (numbers, load, backlog)


def _flag(value: bool) -> str:  # noqa: FBT001
    return "true" if value else "false"
