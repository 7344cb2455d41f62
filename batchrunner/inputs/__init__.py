"""Streams input rows from JSONL, CSV or Parquet (the text ones optionally gzipped), each with the
line it starts on (a Parquet row: its number), never reading a file whole.

Every problem names the file and line, so a user can jump straight to it. By default the first
problem raises `RowError`; a caller that wants them all (the compiler) passes `on_problem`, and
the reader reports each bad row there and carries on with the next one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

from batchrunner.errors import Problem, RowError
from batchrunner.inputs.common import ProblemSink, Row

SUFFIXES = (".jsonl", ".csv", ".parquet", ".jsonl.gz", ".csv.gz")
SUFFIXES_TEXT = ".jsonl, .csv or .parquet (.jsonl.gz and .csv.gz too)"

Reader = Callable[[Path, ProblemSink], Iterator[tuple[int, Row, bytes]]]


def input_suffix(path: Path) -> str | None:
    """The kind of rows file a path names (`.csv.gz` counts as one suffix), or None."""
    name = path.name.lower()
    return next((suffix for suffix in SUFFIXES if name.endswith(suffix)), None)


def read_rows(path: Path, on_problem: ProblemSink | None = None) -> Iterator[tuple[int, Row]]:
    """Yield `(line_no, row)` for each row of an input file, in file order."""
    return ((line_no, row) for line_no, row, _raw in read_rows_raw(path, on_problem))


def read_rows_raw(path: Path, on_problem: ProblemSink | None = None) -> Iterator[tuple[int, Row, bytes]]:
    """Like `read_rows`, plus the row as one line of JSON (the source line itself for JSONL)."""
    report = on_problem if on_problem is not None else _raise
    suffix = input_suffix(path)
    if suffix is None:
        raise RowError([Problem(path, None, f"unsupported input type {path.name!r}: use {SUFFIXES_TEXT}")])
    return _reader(suffix)(path, report)


def _reader(suffix: str) -> Reader:
    if suffix.startswith(".jsonl"):
        from batchrunner.inputs.jsonl import read_jsonl

        return read_jsonl
    if suffix.startswith(".csv"):
        from batchrunner.inputs.csv import read_csv

        return read_csv
    from batchrunner.inputs.parquet import read_parquet

    return read_parquet


class ExactFloat(float):
    """A float that `exact_row` read as one: in the input it was a float, not a rounded integer."""


def exact_row(raw: bytes) -> Row:
    """A JSONL row read again by the standard library, which keeps integers beyond 64 bits exact.

    orjson (the fast path for every row) reads such integers as floats; a consumer that meets a
    float where one may hide (an id, a template value) asks for the line again through here.
    """
    row: Row = json.loads(raw, parse_float=ExactFloat)
    return row


def _raise(problem: Problem) -> None:
    raise RowError([problem])
