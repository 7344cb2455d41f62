"""The output as CSV: a header, then one record per input row, in the order of `columns.py`.

Empty cells are nulls; true and false are written as JSON writes them; a nested value (a list or
object) is one cell of JSON text. The standard library's csv module, so no extra is needed.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from batchrunner.output.columns import columns


class CsvWriter:
    def __init__(self, out: BinaryIO, rows_path: Path, schema: dict[str, Any] | None) -> None:
        self.text = io.TextIOWrapper(out, encoding="utf-8", newline="")
        self.columns = columns(schema, rows_path, flat_parsed=True)
        self.getters = [column.get for column in self.columns]
        self.records = csv.writer(self.text)
        self.records.writerow([column.name for column in self.columns])

    def write(self, line: bytes) -> None:
        parsed = orjson.loads(line)
        self.records.writerow([_cell(get(parsed)) for get in self.getters])

    def close(self) -> None:
        self.text.flush()
        self.text.detach()  # the file itself is the publisher's to sync and close


def _cell(value: Any) -> Any:
    if value is None or type(value) is str or type(value) is int:
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is float:
        return value
    return orjson.dumps(value).decode()
