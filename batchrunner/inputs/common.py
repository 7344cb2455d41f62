"""What every row reader shares: the row and problem types, the UTF-8 check, and gzip."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from batchrunner.errors import Problem

BOM = b"\xef\xbb\xbf"
READ_BUFFER = 1 << 20

ProblemSink = Callable[[Problem], None]
Row = dict[str, Any]


def utf8_problem(path: Path, line_no: int, line: bytes, line_offset: int) -> Problem | None:
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


@contextmanager
def source_lines(path: Path, report: ProblemSink) -> Iterator[Iterable[bytes]]:
    """The file's lines as bytes; a `.gz` file is decompressed as it streams, and a damaged one
    is reported where it breaks off (the lines before it are still read)."""
    if not path.name.lower().endswith(".gz"):
        with open(path, "rb", buffering=READ_BUFFER) as plain:
            yield plain
        return
    with gzip.open(path, "rb") as packed:
        yield _unpacked(path, packed, report)


def _unpacked(path: Path, packed: Iterable[bytes], report: ProblemSink) -> Iterator[bytes]:
    line_no = 0
    try:
        for line in packed:
            line_no += 1
            yield line
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        where = "not a gzip file" if line_no == 0 else f"the gzip stream breaks off after line {line_no}"
        report(Problem(path, line_no + 1, f"{where} ({exc}): compress the file again with gzip"))
