"""Streams input rows from JSONL or CSV, each with the line it starts on, never reading a file whole.

Every problem names the file and line, so a user can jump straight to it. By default the first
problem raises `RowError`; a caller that wants them all (the compiler) passes `on_problem`, and
the reader reports each bad row there and carries on with the next one.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from batchrunner.errors import Problem, RowError

SUFFIXES = (".jsonl", ".csv")

_BOM = b"\xef\xbb\xbf"
_CSV_FIELD_LIMIT = 256 * 1024 * 1024

ProblemSink = Callable[[Problem], None]
Row = dict[str, Any]


def read_rows(path: Path, on_problem: ProblemSink | None = None) -> Iterator[tuple[int, Row]]:
    """Yield `(line_no, row)` for each row of a .jsonl or .csv file, in file order."""
    return ((line_no, row) for line_no, row, _raw in read_rows_raw(path, on_problem))


def read_rows_raw(path: Path, on_problem: ProblemSink | None = None) -> Iterator[tuple[int, Row, bytes]]:
    """Like `read_rows`, plus the row as one line of JSON (the source line itself for JSONL)."""
    report = on_problem if on_problem is not None else _raise
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(path, report)
    if suffix == ".csv":
        return _read_csv(path, report)
    raise RowError([Problem(path, None, f"unsupported input type {suffix or '(no extension)'!r}: use .jsonl or .csv")])


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


def _utf8_problem(path: Path, line_no: int, line: bytes, line_offset: int) -> Problem | None:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Problem(
            path,
            line_no,
            f"invalid UTF-8 at byte {exc.start + 1} of the line (byte offset {line_offset + exc.start} in the file): "
            "save the file as UTF-8",
        )
    return None


def _read_jsonl(path: Path, report: ProblemSink) -> Iterator[tuple[int, Row, bytes]]:
    with open(path, "rb") as f:
        line_no = 0
        offset = 0
        seen_any = False
        for raw in f:
            line_no += 1
            line_offset = offset
            offset += len(raw)
            if line_no == 1 and raw.startswith(_BOM):
                raw = raw[3:]
                line_offset += 3
            text = raw.strip()
            if not text:
                continue
            seen_any = True
            try:
                row = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                lead = len(raw) - len(raw.lstrip())
                bad_utf8 = _utf8_problem(path, line_no, raw, line_offset)
                report(bad_utf8 or Problem(
                    path,
                    line_no,
                    f"not valid JSON ({exc.msg} at column {exc.colno + lead}): each line must be one JSON object",
                ))
                continue
            if type(row) is not dict:
                report(Problem(
                    path, line_no, f"expected a JSON object like {{\"id\": ..., \"text\": ...}}, got {_json_kind(row)}"
                ))
                continue
            yield line_no, row, text
        if not seen_any:
            report(Problem(path, 1, "the file has no rows: add one JSON object per line"))


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


class _Lines:
    """Decodes a binary file line by line for the csv module, keeping count and reporting bad UTF-8."""

    def __init__(self, path: Path, f: Any, report: ProblemSink) -> None:
        self.path = path
        self.f = f
        self.report = report
        self.line_no = 0
        self.offset = 0

    def __iter__(self) -> Iterator[str]:
        for raw in self.f:
            self.line_no += 1
            line_offset = self.offset
            self.offset += len(raw)
            if self.line_no == 1 and raw.startswith(_BOM):
                raw = raw[3:]
                line_offset += 3
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                problem = _utf8_problem(self.path, self.line_no, raw, line_offset)
                assert problem is not None
                self.report(problem)
                yield raw.decode("utf-8", errors="replace")


def _read_csv(path: Path, report: ProblemSink) -> Iterator[tuple[int, Row, bytes]]:
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    with open(path, "rb") as f:
        lines = _Lines(path, f, report)
        reader = csv.reader(lines, strict=True)
        header: list[str] | None = None
        header_line = 0
        records = 0
        while True:
            start = lines.line_no + 1
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                report(Problem(path, start, f"malformed CSV in the record starting here ({exc}): check its quotes"))
                return
            if not record:
                continue
            if header is None:
                header, header_line = record, start
                duplicates = sorted({name for name in header if header.count(name) > 1})
                if duplicates:
                    report(Problem(path, start, f"duplicate column name(s) in the header: {', '.join(duplicates)}"))
                    return
                continue
            records += 1
            if len(record) != len(header):
                report(Problem(
                    path,
                    start,
                    f"{len(record)} field(s), but the header on line {header_line} has {len(header)}: "
                    "quote fields that contain commas or newlines",
                ))
                continue
            row = dict(zip(header, record))
            yield start, row, orjson.dumps(row)
        if header is None:
            report(Problem(path, 1, "the file has no header and no rows: the first line names the columns"))
        elif not records:
            report(Problem(path, header_line, "the file has a header but no rows"))
