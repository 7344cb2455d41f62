"""Writes a run's output in the format its path names: `.jsonl` (DESIGN §5), `.csv` or `.parquet`.

Every format is fed the same thing, one output line of JSON per input row in input order, and
writes it through `publish.publishing`, the one place a finished output becomes visible.
CSV and Parquet flatten each line into the columns of `columns.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from batchrunner.paths import suffix_of

SUFFIXES = (".jsonl", ".csv", ".parquet")


class Writer(Protocol):
    """One output format: writes every output line (JSON, newline included), in order, as one file."""

    def write(self, lines: Iterable[bytes]) -> None: ...


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
