"""The README's quickstart runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_quickstart_runs(capsys: object) -> None:
    text = README.read_text()
    quickstart = text[text.index("## Quickstart") :]
    code = re.search(r"```python\n(.*?)```", quickstart, re.DOTALL)
    assert code is not None
    exec(compile(code.group(1), "README.md", "exec"), {})


def test_the_capacity_example_runs(capsys: object) -> None:
    text = README.read_text()
    section = text[text.index("## Capacity") :]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    exec(compile(code.group(1), "README.md", "exec"), {})
