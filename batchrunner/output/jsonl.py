"""The output as JSON lines (DESIGN §5): each line is written exactly as collect built it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO


class JsonlWriter:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out

    def write(self, lines: Iterable[bytes]) -> None:
        self.out.writelines(lines)
