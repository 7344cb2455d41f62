"""Writes a run's output in the format its path names: `.jsonl` (DESIGN §5), `.csv` or `.parquet`.

Every format is fed the same output, one line of JSON per input row in input order, and writes
it through `publish.publishing`, the one place a finished output becomes visible. JSONL writes
the lines; CSV and Parquet build the columns of `columns.py` from blocks of the ledger's rows and
of the rows file, parsing each distinct result once per block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from batchrunner.paths import suffix_of

SUFFIXES = (".jsonl", ".csv", ".parquet")


Result = tuple[str, str, int | None, bytes | None, str | None, int | None]
"""One row of the ledger's ordered scan (`Ledger.output_rows`): custom_id, status, the batch's pk,
the result fragment (the line's fields from `text` to `error`, without braces; None while
pending), and the batch id and attempt a cached answer came from."""

Shared = tuple[str, int | None, bytes | None, str | None, int | None]
"""A `Result` without its custom_id: what rows with the same output but for the custom_id and the
row have in common (a classification run has a few hundred, whatever its rows)."""


class Output(Protocol):
    """The output in input order, once: as JSON lines (newline included), or as blocks of the
    ledger's rows, with the JSON of what each block's distinct `Shared` values hold."""

    def lines(self) -> Iterator[bytes]: ...

    def results(self, size: int) -> Iterator[list[Result]]: ...

    def shared(self, key: Shared) -> bytes:
        """`{"status":...,` the fragment, the tail: the line's fields but custom_id and row, as a
        JSON object and a newline."""
        ...


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
