"""Small readers the tests share."""

from __future__ import annotations

import importlib
import sys
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
