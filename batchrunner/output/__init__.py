"""Writes a run's output in the format its path names: `.jsonl` (DESIGN §5), `.csv` or `.parquet`.

Every format is fed the same output, one line of JSON per input row in input order, and writes
it through `publish.publishing`, the one place a finished output becomes visible. JSONL writes
the lines; CSV and Parquet flatten each into the columns of `columns.py`, reading the line's
parts so they parse only what differs from row to row.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from batchrunner.paths import suffix_of

SUFFIXES = (".jsonl", ".csv", ".parquet")


Part = tuple[str, str, bytes, bytes, bytes]
"""One output line in the pieces it is joined from: custom_id, status, the row (JSON), the
result fragment (the line's fields from `text` to `error`, without braces) and the tail (`,`
the fields from `batch_id` on, `}` and the newline). The fragment and the tail repeat across rows."""


class Output(Protocol):
    """The output in input order, once: as JSON lines (newline included), or as their parts."""

    def lines(self) -> Iterator[bytes]: ...

    def parts(self) -> Iterator[Part]: ...


class Writer(Protocol):
    """One output format: writes every output row, in order, as one file."""

    def write(self, output: Output) -> None: ...


def output_suffix(location: Path | str) -> str | None:
    suffix = suffix_of(location)
    return suffix if suffix in SUFFIXES else None


@contextmanager
def open_writer(path: Path | str, *, rows_path: Path, schema: dict[str, Any] | None, site: str) -> Iterator[Writer]:
    """A writer for `path`'s format; the file appears whole when the block ends, or not at all.
    `rows_path` (the run's rows file) gives CSV and Parquet their `row.<name>` columns."""
    from batchrunner.output.publish import publishing

    suffix = output_suffix(path)
    with publishing(path, site=site) as out:
        writer: Writer
        if suffix == ".csv":
            from batchrunner.extras import has_pyarrow
            from batchrunner.output.csv import ArrowCsvWriter, CsvWriter

            writer = (ArrowCsvWriter if has_pyarrow() else CsvWriter)(out, rows_path, schema)
        elif suffix == ".parquet":
            from batchrunner.output.parquet import ParquetWriter

            writer = ParquetWriter(out, rows_path, schema)
        else:
            from batchrunner.output.jsonl import JsonlWriter

            writer = JsonlWriter(out)
        yield writer
