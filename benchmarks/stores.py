"""What the side-by-side store benchmarks share: their pools, recipients, engines, rows.

``bench_capacity`` and ``bench_life`` run the same cases on every store in turn; this
module opens the stores alike, fills them with the same numbers and recipients, reads a
Redis server's statistics, and builds their rows in one format.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import harness
from sticky import Engine, ManualClock, NumberType

__all__ = ["FILL", "NPAS", "T0", "RedisStats", "Row", "open_engine", "pool", "recipients", "row"]

Row = dict[str, Any]
T0 = 1_800_000_000.0
NPAS = ("212", "312", "415", "617", "713", "305", "404", "206", "303", "702")
"""The area codes of a pool's long codes: one each."""
FILL = 1_000
"""Recipients per ``select_many`` call while filling a table."""


def pool(tag: int) -> list[tuple[str, NumberType]]:
    """Ten long codes in ten area codes and two toll-free numbers; distinct per ``tag``."""
    return [
        *((f"+1{npa}5550{tag}{i:02d}", NumberType.LONG_CODE) for i, npa in enumerate(NPAS)),
        (f"+1800555{tag}{10:03d}", NumberType.TOLL_FREE),
        (f"+1888555{tag}{11:03d}", NumberType.TOLL_FREE),
    ]


def recipients(n: int, seed: int) -> list[str]:
    """``n`` distinct recipients, the same for the same seed."""
    return [f"+1646{i:07d}" for i in random.Random(seed).sample(range(10**7), n)]


class RedisStats:
    """A throwaway redis-server and a client to read its statistics."""

    def __init__(self) -> None:
        from sticky.testing.redis_server import RedisServer  # noqa: PLC0415 - the redis extra

        self.server = RedisServer()
        self.server.start()
        self.client = self.server.client()

    def reset(self) -> None:
        self.client.config_resetstat()

    def usage(self) -> tuple[float, int]:
        """Server usec and commands since the last reset (``INFO`` itself not counted)."""
        stats = self.client.info("commandstats")
        mine = [v for k, v in stats.items() if k not in {"cmdstat_info", "cmdstat_config"}]
        return sum(float(v["usec"]) for v in mine), sum(int(v["calls"]) for v in mine)

    def close(self) -> None:
        self.client.close()
        self.server.stop()


def open_engine(store: str, db: Path, redis: RedisStats | None) -> Engine:
    """An engine on a ManualClock at T0: in memory, on the SQLite file ``db``, or on Redis."""
    clock = ManualClock(T0)
    if store == "memory":
        return Engine(clock=clock, seed=1)
    if store == "sqlite":
        return Engine(clock=clock, seed=1, store=f"sqlite:///{db}")
    assert redis is not None  # a server of its own: nothing else in it
    return Engine(clock=clock, seed=1, store=redis.server.url)


def row(
    group: str, store: str, op: str, size: int, samples: Sequence[float], **fields: Any
) -> Row:
    """:func:`benchmarks.harness.row`, named ``store: op``, with ``fields``."""
    out = harness.row(group, store, op, size, samples)
    del out["ratio_to_minimal"]  # these rows have no minimal design to compare with
    return {**out, "name": f"{store}: {op}", **fields}
