"""The output as JSON lines (DESIGN §5): each line is written exactly as collect built it."""

from __future__ import annotations

from typing import BinaryIO


class JsonlWriter:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out

    def write(self, line: bytes) -> None:
        self.out.write(line)

    def close(self) -> None:
        """Nothing to finish: a JSONL file is complete after its last line."""
