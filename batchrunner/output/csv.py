"""The output as CSV: a header, then one record per input row, in the order of `columns.py`.

Empty cells are nulls; true and false are written as JSON writes them; a nested value (a list or
object) is one cell of JSON text. With pyarrow installed, a row group at a time through its CSV
writer (several times faster); without it, through the standard library's csv module.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from batchrunner.output import Output, Result, Shared
from batchrunner.output.columns import columns, reader, row_kinds


class CsvWriter:
    def __init__(self, out: BinaryIO, rows_path: Path, schema: dict[str, Any] | None) -> None:
        self.out = out
        chosen = columns(schema, row_kinds(rows_path), flat_parsed=True)
        self.names = [column.name for column in chosen]
        self.values = reader(chosen)
        self.converted = [i for i, column in enumerate(chosen) if column.kind not in ("string", "int")]

    def write(self, output: Output) -> None:
        text = io.TextIOWrapper(self.out, encoding="utf-8", newline="")
        records = csv.writer(text)
        records.writerow(self.names)
        values, converted = self.values, self.converted
        for line in output.lines():
            record = values(line)
            for i in converted:  # the rest are already str, int or None, as csv writes them
                record[i] = _cell(record[i])
            records.writerow(record)
        text.flush()
        text.detach()  # the file itself is the publisher's to sync and close


class ArrowCsvWriter:
    """The same records through pyarrow, from the Parquet output's row groups made flat."""

    def __init__(self, out: BinaryIO, rows_path: Path, schema: dict[str, Any] | None) -> None:
        self.out, self.rows_path, self.schema = out, rows_path, schema

    def write(self, output: Output) -> None:
        from batchrunner.output.parquet import write_beside

        write_beside(output, lambda blocks: self._write(blocks, output.shared))

    def _write(self, blocks: Iterator[list[Result]], shared: Callable[[Shared], bytes]) -> None:
        import pyarrow.csv

        from batchrunner.output.parquet import ArrowRows

        rows = ArrowRows(self.rows_path, self.schema, shared, flat=True)
        with pyarrow.csv.CSVWriter(self.out, rows.schema) as file:
            for table in rows.tables(blocks):
                file.write_table(table)


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
