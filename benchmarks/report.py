"""Targets, and the results as JSON, a Markdown table and a growth plot."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Row = dict[str, Any]
Check = tuple[str, float | None, float, str, str]
"""A target: its name, the measured value (None: not measured), limit, unit and issue."""

GROUPS = ("select", "geomatch", "cascade", "evict", "memory")
OWN = (*GROUPS, "paired")
"""The harness's own groups: those one can ask for, and the paired rows ``select`` adds."""
"""The groups the harness measures itself; any other group is a plug-in backend's."""
DESIGNS = ("floor", "minimal", "engine", "ordereddict", "ttlcache")
COLOURS = {
    "floor": "black",
    "minimal": "tab:gray",
    "engine": "tab:blue",
    "ordereddict": "tab:orange",
    "ttlcache": "tab:green",
}
MANY = 100
"""Selects per ``select_many`` call in the backends' batch rows."""
STRING_BYTES = 64 + 8
"""A 12-character recipient string and its slot in the workload's list."""


def machine() -> dict[str, Any]:
    """CPU model, cores, Python and OS of this run."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": platform.platform(),
    }


def machine_line() -> str:
    m = machine()
    return f"{m['cpu']}, {m['cores']} cores; {m['implementation']} {m['python']}; {m['os']}"


def own(rows: Sequence[Row]) -> list[Row]:
    """The harness's own rows (not a backend's, whose designs and ops have other meanings)."""
    return [r for r in rows if r.get("group") in OWN]


def find(rows: Sequence[Row], design: str, op: str, size: int) -> Row | None:
    """The harness's row for this design, operation and size."""
    for r in own(rows):
        if (r["design"], r["op"], r["size"]) == (design, op, size):
            return r
    return None


def backend(rows: Sequence[Row], group: str, name: str) -> Row | None:
    """A backend's row of this name at the largest size it was measured at."""
    found = [r for r in rows if r.get("group") == group and r.get("name") == name]
    return max(found, key=lambda r: r["size"]) if found else None


def huge_note(rows: Sequence[Row], huge: int, *, included: bool) -> str:
    """What ``huge`` mappings need in memory, from the bytes per mapping measured here."""
    measured = [r for r in own(rows) if r["op"] == "memory" and r.get("bytes_per_mapping")]
    if measured:
        largest = max(measured, key=lambda r: r["bytes_per_mapping"])
        per, source = largest["bytes_per_mapping"], f"{largest['design']}, measured"
    else:
        per, source = 450.0, "estimated"
    need = huge * (per + STRING_BYTES) * 1.2 / 2**30  # one design at a time, plus 20%
    state = "included (--huge)" if included else "not run; add --huge to include it"
    return (
        f"{huge:,} mappings: about {need:.1f} GiB at peak ({per:.0f} B per mapping, {source}, "
        f"plus {STRING_BYTES} B per recipient string, one design alive at a time): {state}"
    )


def targets(rows: Sequence[Row], size: int, cascade_sizes: Sequence[int]) -> list[Row]:
    """The targets of issues 3, 5, 10 and 11 at ``size``: PASS, MISS or N/A.

    The backends' (issues 10 and 11) are read from their rows at the largest size they
    measured.
    """

    def ns(design: str, op: str, at: int = size) -> float | None:
        r = find(rows, design, op, at)
        return None if r is None else r.get("ns_per_op")

    def ratio(design: str, op: str) -> float | None:
        r = find(rows, design, op, size)
        return None if r is None else r.get("ratio_to_floor")

    def quotient(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else a / b

    def to_minimal(op: str) -> float | None:
        """Read from the paired rows (side by side), else from the designs' own turns."""
        r = find(rows, "engine", f"{op}, paired", size) or find(rows, "engine", op, size)
        return None if r is None else r.get("ratio_to_minimal")

    def of(group: str, name: str, field: str) -> float | None:
        r = backend(rows, group, name)
        return None if r is None else r.get(field)

    alternatives = [
        v for v in (ns("ordereddict", "select mix"), ns("ttlcache", "select mix")) if v
    ]
    small, large = (cascade_sizes[-2], cascade_sizes[-1]) if len(cascade_sizes) > 1 else (0, 0)
    memory = find(rows, "engine", "memory", size)
    # issue 10 asks for the memory at 10^7: the largest size measured (10^7 with --huge)
    largest = max(
        (r for r in own(rows) if (r["design"], r["op"]) == ("engine", "memory")),
        key=lambda r: r["size"],
        default=None,
    )
    off = ns("engine", "select miss, geomatch=off")
    checks: list[Check] = [
        ("select hit", ratio("engine", "select hit"), 2.0, "x floor", "3"),
        ("select miss", ratio("engine", "select miss"), 3.0, "x floor", "3"),
        ("select mix (80% hits)", ratio("engine", "select mix"), 2.5, "x floor", "3"),
        (
            "mix faster than both alternatives",
            quotient(ns("engine", "select mix"), min(alternatives))
            if len(alternatives) == 2
            else None,
            1.0,
            "x the faster alternative",
            "3",
        ),
        ("evict_expired per evicted mapping", ns("engine", "evict_expired"), 1000.0, "ns", "3"),
        (
            f"cascade per mapping flat, {large:,} vs {small:,}",
            quotient(
                ns("engine", "remove_number cascade", large),
                ns("engine", "remove_number cascade", small),
            ),
            1.5,
            "x",
            "3",
        ),
        (
            "memory per mapping",
            None if memory is None else memory.get("ratio_to_floor"),
            2.0,
            "x floor",
            "3",
        ),
        (
            "geomatch=area_code miss",
            quotient(ns("engine", "select miss, geomatch=area_code"), off),
            1.5,
            "x geomatch off",
            "5",
        ),
        (
            "geomatch=full miss",
            quotient(ns("engine", "select miss, geomatch=full"), off),
            1.5,
            "x geomatch off",
            "5",
        ),
        ("select hit", to_minimal("select hit"), 1.25, "x minimal", "10"),
        ("select miss", to_minimal("select miss"), 1.25, "x minimal", "10"),
        (
            "memory per mapping"
            + ("" if largest is None or largest["size"] == size else f" at {largest['size']:,}"),
            None if largest is None else largest.get("ratio_to_floor"),
            1.3,
            "x floor",
            "10",
        ),
        (
            "Redis bytes per mapping",
            quotient(
                of("redis", "store: memory", "bytes_per_mapping"),
                of("redis", "naive: memory", "bytes_per_mapping"),
            ),
            1.0,
            "x naive",
            "10",
        ),
        (
            "Redis select new",
            of("redis", "store: select new", "ratio_to_floor"),
            1.6,
            "x PING",
            "10",
        ),
        (
            "Redis select hit",
            of("redis", "store: select hit", "ratio_to_floor"),
            1.3,
            "x PING",
            "10",
        ),
        (
            "Redis server CPU per new recipient",
            of("redis", "store: select new", "server_us_per_op"),
            30.0,
            "us",
            "10",
        ),
        (
            f"Redis select_many new x{MANY}",
            of("redis", f"store: select_many new x{MANY}", "ops_per_s"),
            60_000.0,
            "selects/s at least",
            "10",
        ),
        (
            "SQLite new recipient",
            of("sqlite", "sqlite: miss", "ratio_to_floor"),
            1.5,
            "x floor",
            "10",
        ),
        (
            "SQLite file bytes per mapping",
            of("sqlite", "sqlite: file bytes", "ratio_to_floor"),
            2.0,
            "x floor",
            "10",
        ),
    ]
    return _judge([*checks, *_capacity_checks(rows)], size)


CAPACITY = "capacity"
"""The group of ``benchmarks/bench_capacity.py``: capacity on against off, per store."""


def _capacity_checks(rows: Sequence[Row]) -> list[Check]:
    """Issue 11's targets: capacity on at most 1.3x off on memory and SQLite (hit and
    miss); on Redis the same commands (round trips) and at most 1.3x the server's CPU."""

    def of(store: str, op: str, field: str) -> float | None:
        r = backend(rows, CAPACITY, f"{store}: {op}, capacity on")
        return None if r is None else r.get(field)

    checks: list[Check] = []
    for store, label in (("memory", "memory"), ("sqlite", "SQLite")):
        checks += [
            (
                f"{label} select {op}, capacity on",
                of(store, f"select {op}", "ratio_to_floor"),
                1.3,
                "x capacity off",
                "11",
            )
            for op in ("hit", "miss")
        ]
    for op in ("hit", "miss"):
        checks += [
            (
                f"Redis select {op}, capacity on: commands",
                of("redis", f"select {op}", "commands_ratio"),
                1.0,
                "x capacity off",
                "11",
            ),
            (
                f"Redis select {op}, capacity on: server CPU",
                of("redis", f"select {op}", "server_us_ratio"),
                1.3,
                "x capacity off",
                "11",
            ),
        ]
    return checks


def capacity_targets(rows: Sequence[Row]) -> list[Row]:
    """Issue 11's targets alone, from the capacity group's rows (PASS, MISS or N/A)."""
    sizes = [r["size"] for r in rows if r.get("group") == CAPACITY]
    return _judge(_capacity_checks(rows), max(sizes, default=0))


def _judge(checks: Sequence[Check], size: int) -> list[Row]:
    """Each check as a row: PASS within its limit, MISS beyond it, N/A unmeasured."""
    out = []
    for name, value, limit, unit, issue in checks:
        strict = name.startswith("mix faster")
        if value is None:
            status = "N/A"
        elif unit.endswith("at least"):
            status = "PASS" if value >= limit else "MISS"
        elif value < limit or (value == limit and not strict):
            status = "PASS"
        else:
            status = "MISS"
        out.append(
            {
                "target": name,
                "value": value,
                "limit": limit,
                "unit": unit,
                "status": status,
                "issue": issue,
                "size": size,
            }
        )
    return out


# -- formatting -----------------------------------------------------------------------
def _n(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _cell(r: Row | None) -> str:
    if r is None:
        return ""
    if r["op"] == "memory":
        value = f"{_n(r.get('bytes_per_mapping'))} B"
    elif r.get("ns_per_op") is None:
        return "missing"
    else:
        value = f"{_n(r['ns_per_op'])} ns"
    ratio = r.get("ratio_to_floor")
    return value if ratio is None or r["design"] == "floor" else f"{value} ({ratio:.2f}x)"


def targets_table(checks: Sequence[Row]) -> str:
    lines = ["| target (issue) | measured | limit | status |", "|---|---|---|---|"]
    for t in checks:
        value = "-" if t["value"] is None else f"{t['value']:,.2f}"
        lines.append(
            f"| {t['target']} (#{t['issue']}) | {value} | {t['limit']:g} {t['unit']} | {t['status']} |"
        )
    return "\n".join(lines)


def _to_minimal(r: Row | None) -> str:
    ratio = None if r is None else r.get("ratio_to_minimal")
    return "" if ratio is None else f"{ratio:.2f}x"


def summary_table(rows: Sequence[Row], size: int) -> str:
    """Operations by design at one size: ns/op (or bytes) and the ratio to the floor,
    then the engine's ratio to the minimal complete design."""
    mine = [r for r in own(rows) if r["size"] == size]
    ops = list(dict.fromkeys(r["op"] for r in mine))
    lines = [
        "| operation | " + " | ".join(DESIGNS) + " | engine / minimal |",
        "|---|" + "---|" * (len(DESIGNS) + 1),
    ]
    lines += [
        "| "
        + op
        + " | "
        + " | ".join(_cell(find(mine, d, op, size)) for d in DESIGNS)
        + f" | {_to_minimal(find(mine, 'engine', op, size))} |"
        for op in ops
    ]
    return "\n".join(lines)


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def rows_table(rows: Sequence[Row], *, backends: bool = False) -> str:
    """Every row; the backends' table has their processes and server CPU per operation
    instead of the ratio to the minimal complete design."""
    extra = ("processes", "server us/op") if backends else ("x minimal",)
    head = (
        "| group | operation | design | size | ns/op (median) | min | max | ops/s | x floor "
        "| bytes/mapping | " + " | ".join(extra) + " |"
    )
    lines = [head, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(extra)]
    for r in rows:
        cells = (
            (str(r.get("processes", "-")), _n(r.get("server_us_per_op"), 1))
            if backends
            else (_x(r.get("ratio_to_minimal")),)
        )
        lines.append(
            f"| {r['group']} | {r['op']} | {r['design']} | {r['size']:,} | {_n(r.get('ns_per_op'))} "
            f"| {_n(r.get('ns_min'))} | {_n(r.get('ns_max'))} | {_n(r.get('ops_per_s'))} "
            f"| {_x(r.get('ratio_to_floor'))} | {_n(r.get('bytes_per_mapping'), 1)} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def summary(rows: Sequence[Row], checks: Sequence[Row], notes: Sequence[str]) -> str:
    size = checks[0]["size"] if checks else 0
    parts = [f"\nTargets at {size:,} mappings", targets_table(checks)]
    parts += [f"\nSummary at {size:,} mappings", summary_table(rows, size)]
    parts += ["\nNotes"] + [f"- {n}" for n in notes]
    return "\n".join(parts)


def markdown(
    meta: dict[str, Any], rows: Sequence[Row], checks: Sequence[Row], notes: Sequence[str]
) -> str:
    m = meta["machine"]
    size = checks[0]["size"] if checks else 0
    sizes = sorted({r["size"] for r in own(rows)})
    backends = [r for r in rows if r.get("group") not in OWN]
    return "\n".join(
        [
            "# sticky benchmarks: results",
            "",
            f"- command: `{meta['command']}` ({meta['mode']} mode), {meta['date']}",
            f"- machine: {m['cpu']}, {m['cores']} cores; {m['implementation']} {m['python']}; {m['os']}",
            (
                f"- method: median of {meta['repeats']} timed repeats after {meta['warmup']} "
                "warm-up, garbage collector on, recipients in random order; see benchmarks/README.md"
            ),
            "",
            f"## Targets at {size:,} mappings",
            "",
            targets_table(checks),
            "",
            *(
                s
                for at in reversed(sizes)
                for s in (f"## Summary at {at:,} mappings", "", summary_table(rows, at), "")
            ),
            "## Every row",
            "",
            rows_table(own(rows)),
            "",
            *(
                (
                    "## Backends (each against its own floor)",
                    "",
                    rows_table(backends, backends=True),
                    "",
                )
                if backends
                else ()
            ),
            "## Notes",
            "",
            *(f"- {n}" for n in notes),
            "",
        ]
    )


PANELS: tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...] = (
    *(
        (op, tuple((d, d, op) for d in DESIGNS))
        for op in ("select hit", "select miss", "select mix")
    ),
    *(
        (op, tuple((d, d, op) for d in DESIGNS))
        for op in ("evict_expired", "remove_number cascade")
    ),
    (
        "engine: select variants",
        tuple(
            (op.removeprefix("select "), "engine", op)
            for op in (
                "select hit",
                "select miss",
                "select sticky off",
                "select miss, geomatch=area_code",
                "select miss, geomatch=full",
            )
        ),
    ),
    (
        "misses while none / all of the table is dead",
        tuple(
            (f"{d}, {state}", d, f"select miss, {state}")
            for d in ("engine", "ordereddict")
            for state in ("none dead", "table dead")
        ),
    ),
)
"""Each panel of the growth plot: a title and its lines as (label, design, operation)."""


def _panels(rows: Sequence[Row]) -> list[tuple[str, list[tuple[str, list[tuple[int, float]]]]]]:
    """The panels with data: the fixed ones, then one per backend group (a line per row name)."""
    own_series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    backends: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for r in sorted(rows, key=lambda r: r["size"]):
        if r.get("ns_per_op") is None:
            continue
        point = (r["size"], r["ns_per_op"])
        if r["group"] in OWN:
            own_series.setdefault((r["design"], r["op"]), []).append(point)
        else:
            backends.setdefault(r["group"], {}).setdefault(r["name"], []).append(point)
    panels = [
        (title, [(label, own_series[d, op]) for label, d, op in lines if (d, op) in own_series])
        for title, lines in PANELS
    ]
    panels += [(group, list(lines.items())) for group, lines in backends.items()]
    return [(title, lines) for title, lines in panels if lines]


def _decade(low: float, high: float) -> tuple[float, float]:
    """Axis limits around ``low..high`` spanning at least a decade, with a margin."""
    middle = (low * high) ** 0.5
    half = max(high / low, 10.0) ** 0.5 * 1.25
    return middle / half, middle * half


def plot(path: Path, rows: Sequence[Row]) -> str | None:
    """Log-log ns/op against size, one panel per operation; a note if matplotlib is missing."""
    try:
        import matplotlib as mpl  # noqa: PLC0415 - the bench extra

        mpl.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
        from matplotlib.ticker import NullFormatter  # noqa: PLC0415
    except ImportError:
        return "growth plot skipped: matplotlib is not installed (pip install -e '.[bench]')"
    panels = _panels(rows)
    cols = 3
    n_rows = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(n_rows, cols, figsize=(5.4 * cols, 3.9 * n_rows), squeeze=False)
    for ax, (title, lines) in zip(axes.flat, panels, strict=False):
        for label, points in lines:
            xs, ys = zip(*points, strict=True)
            design = label.partition(",")[0]
            style = "--" if label.endswith("none dead") else "-"
            ax.plot(xs, ys, style, marker="o", color=COLOURS.get(design), label=label)
        xs_all = [x for _, pts in lines for x, _ in pts]
        ys_all = [y for _, pts in lines for _, y in pts]
        ax.set_xlim(*_decade(min(xs_all), max(xs_all)))
        ax.set_ylim(*_decade(min(ys_all), max(ys_all)))  # so that flat looks flat
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("live mappings")
        ax.set_ylabel("ns per operation")
        ax.grid(visible=True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle("sticky: median cost per operation against table size (log-log)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def write(
    out: Path,
    command: str,
    mode: str,
    rows: list[Row],
    checks: list[Row],
    notes: list[str],
    repeats: int,
    warmup: int,
) -> list[Path]:
    """Write results.json, results.md and growth.png into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": command,
        "mode": mode,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "argv": sys.argv,
        "repeats": repeats,
        "warmup": warmup,
    }
    png = out / "growth.png"
    skipped = plot(png, rows)
    if skipped is not None:
        notes.append(skipped)
    data = {"meta": meta, "targets": checks, "rows": rows, "notes": notes}
    (out / "results.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    (out / "results.md").write_text(markdown(meta, rows, checks, notes), encoding="utf-8")
    return [out / "results.json", out / "results.md"] + ([] if skipped else [png])
