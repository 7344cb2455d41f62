"""The output as JSON lines (DESIGN §5): each line is written exactly as collect built it."""

from __future__ import annotations

from typing import BinaryIO

from batchrunner.output import Output


class JsonlWriter:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out

    def write(self, output: Output) -> None:
        self.out.writelines(output.lines())
