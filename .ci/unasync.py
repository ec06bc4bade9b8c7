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

FILES = {"sticky/_async/engine.py": "sticky/engine.py"}
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
    (r"\bcoerce_async_store\b", "coerce_store"),
    (r"\bsticky\.store\.aio\b", "sticky.store.base"),
    (r"\basync_only\b", "sync_only"),
]
HEADER = "# Generated from {source} by .ci/unasync.py: edit the source, then run it.\n"
_ASYNC_ONLY = re.compile(r"^( *)# async: begin\n.*?^\1# async: end\n", re.MULTILINE | re.DOTALL)
_SYNC_ONLY = re.compile(r"^( *)# sync: (.*)$", re.MULTILINE)


def generate(source: str, name: str, target: str) -> str:
    """The synchronous text of an asyncio source file, formatted as ruff formats it."""
    text = _ASYNC_ONLY.sub("", source)
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
