"""The output as CSV: a header, then one record per input row, in the order of `columns.py`.

Empty cells are nulls; true and false are written as JSON writes them; a nested value (a list or
object) is one cell of JSON text. With pyarrow installed, a row group at a time through its CSV
writer (several times faster); without it, through the standard library's csv module.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from batchrunner.output.columns import columns, reader


class CsvWriter:
    def __init__(self, out: BinaryIO, rows_path: Path, schema: dict[str, Any] | None) -> None:
        self.text = io.TextIOWrapper(out, encoding="utf-8", newline="")
        chosen = columns(schema, rows_path, flat_parsed=True)
        self.values = reader(chosen)
        self.converted = [i for i, column in enumerate(chosen) if column.kind not in ("string", "int")]
        self.records = csv.writer(self.text)
        self.records.writerow([column.name for column in chosen])

    def write(self, line: bytes) -> None:
        record = self.values(line)
        for i in self.converted:  # the rest are already str, int or None, as csv writes them
            record[i] = _cell(record[i])
        self.records.writerow(record)

    def close(self) -> None:
        self.text.flush()
        self.text.detach()  # the file itself is the publisher's to sync and close


class ArrowCsvWriter:
    """The same records through pyarrow, from the Parquet output's row groups made flat."""

    def __init__(self, out: BinaryIO, rows_path: Path, schema: dict[str, Any] | None) -> None:
        import pyarrow.csv

        from batchrunner.output.parquet import ArrowRows

        self.rows = ArrowRows(rows_path, schema, flat=True)
        self.file = pyarrow.csv.CSVWriter(out, self.rows.schema)

    def write(self, line: bytes) -> None:
        table = self.rows.add(line)
        if table is not None:
            self.file.write_table(table)

    def close(self) -> None:
        table = self.rows.rest()
        if table is not None:
            self.file.write_table(table)
        self.file.close()


def _cell(value: Any) -> Any:
    if value is None or type(value) is str or type(value) is int:
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is float:  # 1.0 as "1", as pyarrow writes it
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    return orjson.dumps(value).decode()
