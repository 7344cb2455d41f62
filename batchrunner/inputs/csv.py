"""CSV rows (optionally gzipped): a header line names the columns; each row keeps the line it starts on."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from batchrunner.errors import Problem
from batchrunner.inputs.common import BOM, ProblemSink, Row, source_lines, utf8_problem

_CSV_FIELD_LIMIT = 256 * 1024 * 1024


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
            if self.line_no == 1 and raw.startswith(BOM):
                raw = raw[3:]
                line_offset += 3
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                problem = utf8_problem(self.path, self.line_no, raw, line_offset)
                assert problem is not None
                self.report(problem)
                yield raw.decode("utf-8", errors="replace")


def read_csv(path: Path, report: ProblemSink) -> Iterator[tuple[int, Row, bytes]]:
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    with source_lines(path, report) as f:
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
