"""The README's quickstart runs as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

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


def test_the_number_life_example_runs(capsys: object) -> None:
    text = README.read_text()
    section = text[text.index("## A number's life") :]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    exec(compile(code.group(1), "README.md", "exec"), {})


def test_the_asyncio_example_runs(
    capsys: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # it opens sqlite:///sticky.db in the working directory
    text = README.read_text()
    section = text[text.index("## asyncio") :]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    exec(compile(code.group(1), "README.md", "exec"), {"__name__": "readme"})
    assert (tmp_path / "sticky.db").exists()
