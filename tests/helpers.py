"""Small readers the tests share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson


def read_rows(path: Path) -> list[dict[str, Any]]:
    """An output or results JSONL file, one dict per line."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def reviews(n: int, *, start: int = 1, text: str = "Works fine, arrived on time.") -> list[dict[str, Any]]:
    return [{"id": f"r-{i}", "text": f"{text} #{i}"} for i in range(start, start + n)]
