"""Generate the synchronous code from its asyncio source, or check it is up to date.

The engine is written once, as asyncio code in ``sticky/_async/``; the synchronous
``sticky/engine.py`` is generated from it by the token substitutions below (as
encode/httpcore does for its sync and async halves), so the two cannot drift apart.
Run ``python .ci/unasync.py`` after changing the source, and CI runs it with ``--check``.
"""

from __future__ import annotations

import difflib
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FILES = {
    "sticky/_async/engine.py": "sticky/engine.py",
    "sticky/_async/redis/runner.py": "sticky/store/redis/runner.py",
    "sticky/_async/redis/pools.py": "sticky/store/redis/pools.py",
    "sticky/_async/redis/store.py": "sticky/store/redis/store.py",
    "sticky/_async/redis/scan.py": "sticky/store/redis/scan.py",
    "sticky/_async/redis/invariants.py": "sticky/store/redis/invariants.py",
}
"""Each asyncio source and the synchronous module generated from it."""

SUBSTITUTIONS = [
    (r"\basync def\b", "def"),
    (r"\bawait ", ""),
    (r"\basync for\b", "for"),
    (r"\basync with\b", "with"),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\bAsyncIterator\b", "Iterator"),
    (r"\bAsyncEngine\b", "Engine"),
    (r"\bAsyncOneStepBatchStore\b", "OneStepBatchStore"),
    (r"\bAsyncOneStepStore\b", "OneStepStore"),
    (r"\bAsyncBatchStore\b", "BatchStore"),
    (r"\bAsyncBulkImportStore\b", "BulkImportStore"),
    (r"\baimport_by_pin\b", "import_by_pin"),
    (r"\bAsyncMappingScanStore\b", "MappingScanStore"),
    (r"\bAsyncStore\b", "Store"),
    (r"\bascan_by_sender\b", "scan_by_sender"),
    (r"\bsticky\._async\.redis\b", "sticky.store.redis"),
    (r"\bAsyncRedisStore\b", "RedisStore"),
    (r"\bAsyncRedisPools\b", "RedisPools"),
    (r"\bAsyncClosedRunner\b", "ClosedRunner"),
    (r"\bAsyncRunner\b", "Runner"),
    (r"\bcoerce_async_store\b", "coerce_store"),
    (r"\bsticky\.store\.aio\b", "sticky.store.base"),
    (r"\basync_only\b", "sync_only"),
]
HEADER = "# Generated from {source} by .ci/unasync.py: edit the source, then run it.\n"
_ASYNC_ONLY = re.compile(r"^( *)# async: begin\n.*?^\1# async: end\n", re.MULTILINE | re.DOTALL)
_GROUPED_AWAIT = re.compile(r"\(\s*await\s+")
_SYNC_ONLY = re.compile(r"^( *)# sync: (.*)$", re.MULTILINE)


def _unwrap_awaits(text: str) -> str:
    """``(await f(x))[0]`` becomes ``f(x)[0]``: parentheses that were there for ``await``."""
    out, i, pos = [], 0, 0
    while (found := _GROUPED_AWAIT.search(text, pos)) is not None:
        start = found.start()
        pos = start + 1
        before = text[start - 1] if start else " "
        if before.isalnum() or before in "_)]":  # a call's parenthesis, not a group's
            continue
        depth, j = 0, start
        while True:  # the matching parenthesis (the sources put none inside strings)
            char = text[j]
            depth += (char == "(") - (char == ")")
            if depth == 0:
                break
            j += 1
        if text[j + 1 : j + 2] not in {"[", ".", "("}:  # a group for more than await
            continue
        out += [text[i:start], text[found.end() : j].rstrip()]
        i = pos = j + 1
    return "".join(out) + text[i:]


def generate(source: str, name: str, target: str) -> str:
    """The synchronous text of an asyncio source file, formatted as ruff formats it."""
    text = _unwrap_awaits(_ASYNC_ONLY.sub("", source))
    text = _SYNC_ONLY.sub(r"\1\2", text)
    for pattern, replacement in SUBSTITUTIONS:
        text = re.sub(pattern, replacement, text)
    text = HEADER.format(source=name) + text
    # Imports renamed into one module, and lines the substitutions shortened: sort and
    # format as CI checks them.
    for command in (["check", "--select", "I", "--fix", "--quiet"], ["format"]):
        text = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--stdin-filename", target, "-"],
            input=text,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
    return text


def main(argv: list[str]) -> int:
    """Write each generated file, or with ``--check`` show what is stale and fail."""
    check = "--check" in argv
    stale = []
    for source, target in FILES.items():
        want = generate((ROOT / source).read_text(), source, target)
        path = ROOT / target
        have = path.read_text() if path.exists() else ""
        if have == want:
            continue
        if check:
            stale.append(target)
            sys.stdout.writelines(
                difflib.unified_diff(
                    have.splitlines(keepends=True), want.splitlines(keepends=True), target, source
                )
            )
        else:
            path.write_text(want)
            print(f"wrote {target}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python .ci/unasync.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
