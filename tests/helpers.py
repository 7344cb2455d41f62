"""Small readers the tests share."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def read_rows(path: Path) -> list[dict[str, Any]]:
    """An output or results JSONL file, one dict per line."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def reviews(n: int, *, start: int = 1, text: str = "Works fine, arrived on time.") -> list[dict[str, Any]]:
    return [{"id": f"r-{i}", "text": f"{text} #{i}"} for i in range(start, start + n)]


def benchmark(name: str) -> ModuleType:
    """A module under benchmarks/, so a CI slice runs the same code as the long sweep it samples."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


def announced_url(log: Path, process: subprocess.Popen[Any], pattern: str, *, within: float = 30) -> re.Match[str]:
    """Wait (`within` seconds at most) for the line a starting `serve` prints on stderr, and match it."""
    found = None
    deadline = time.monotonic() + within
    while found is None and time.monotonic() < deadline and process.poll() is None:
        found = re.search(pattern, log.read_text())
        time.sleep(0.05)
    assert found, log.read_text()
    return found
