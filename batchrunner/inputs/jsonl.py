"""JSONL rows (optionally gzipped), one JSON object per line; the source line is kept as the row's raw JSON."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from batchrunner.errors import Problem
from batchrunner.inputs.common import BOM, ProblemSink, Row, source_lines, utf8_problem


def read_jsonl(path: Path, report: ProblemSink) -> Iterator[tuple[int, Row, bytes]]:
    with source_lines(path, report) as f:
        line_no = 0
        offset = 0
        seen_any = False
        for raw in f:
            line_no += 1
            line_offset = offset
            offset += len(raw)
            if line_no == 1 and raw.startswith(BOM):
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
                bad_utf8 = utf8_problem(path, line_no, raw, line_offset)
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
