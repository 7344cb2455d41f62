"""The row readers: JSONL and CSV, each row with the line it starts on, every problem at file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrunner.errors import Problem, RowError
from batchrunner.inputs import read_rows, read_rows_raw


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def collect(path: Path) -> tuple[list[tuple[int, dict[str, object]]], list[Problem]]:
    problems: list[Problem] = []
    return list(read_rows(path, problems.append)), problems


def test_jsonl_rows_come_with_their_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", b'{"id": 1}\n\n   \n{"id": 2, "x": [1, 2]}\n')
    assert list(read_rows(path)) == [(1, {"id": 1}), (4, {"id": 2, "x": [1, 2]})]


def test_jsonl_bom_and_crlf_are_fine(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", b'\xef\xbb\xbf{"id": "a"}\r\n\r\n{"id": "b"}\r\n')
    assert list(read_rows_raw(path)) == [(1, {"id": "a"}, b'{"id": "a"}'), (3, {"id": "b"}, b'{"id": "b"}')]


def test_jsonl_last_line_without_newline(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", b'{"id": "a"}\n{"id": "b"}')
    assert [line for line, _ in read_rows(path)] == [1, 2]


@pytest.mark.parametrize(
    ("data", "line", "fragment"),
    [
        (b'{"id": 1}\n{"id": \n', 2, "not valid JSON"),
        (b'{"id": 1}\n[1, 2]\n', 2, "expected a JSON object"),
        (b'{"id": 1}\n"text"\n', 2, "got a string"),
        (b'{"id": 1}\n\n42\n', 3, "got a number"),
        (b'{"id": 1}\n{"t": "caf\xe9"}\n', 2, "invalid UTF-8 at byte 11 of the line (byte offset 20 in the file)"),
        (b"", 1, "no rows"),
        (b"\n\n  \n", 1, "no rows"),
    ],
)
def test_jsonl_problems_name_file_and_line(tmp_path: Path, data: bytes, line: int, fragment: str) -> None:
    path = write(tmp_path, "in.jsonl", data)
    with pytest.raises(RowError) as caught:
        list(read_rows(path))
    assert caught.value.problems[0].line == line
    assert f"in.jsonl:{line}: " in caught.value.message
    assert fragment in caught.value.message


def test_jsonl_with_a_sink_reports_every_bad_line_and_keeps_the_good_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", b'{"id": 1}\nnope\n{"id": 3}\n[]\n{"id": 5}\n')
    rows, problems = collect(path)
    assert [line for line, _ in rows] == [1, 3, 5]
    assert [p.line for p in problems] == [2, 4]


def test_csv_quoted_fields_and_embedded_newlines_keep_the_starting_line(tmp_path: Path) -> None:
    data = b'\xef\xbb\xbfid,text\r\n1,"hello, world"\r\n\r\n2,"two\nlines"\r\n3,"say ""hi"""\r\n'
    path = write(tmp_path, "in.csv", data)
    assert list(read_rows(path)) == [
        (2, {"id": "1", "text": "hello, world"}),
        (4, {"id": "2", "text": "two\nlines"}),
        (6, {"id": "3", "text": 'say "hi"'}),
    ]


def test_csv_raw_is_the_row_as_json(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", b"id,text\n1,a\n")
    assert list(read_rows_raw(path)) == [(2, {"id": "1", "text": "a"}, b'{"id":"1","text":"a"}')]


@pytest.mark.parametrize(
    ("data", "line", "fragment"),
    [
        (b"id,text\n1,a\n2,b,c\n", 3, "3 field(s), but the header on line 1 has 2"),
        (b"id,text\n1,a\n2\n", 3, "1 field(s)"),
        (b'id,text\n1,"a"b\n', 2, "malformed CSV"),
        (b'id,text\n1,a\n2,"never closed\nmore\n', 3, "malformed CSV"),
        (b"id,id\n1,2\n", 1, "duplicate column name"),
        (b"id,text\n", 1, "no rows"),
        (b"", 1, "no header"),
        (b"id,text\n1,caf\xe9\n", 2, "invalid UTF-8"),
    ],
)
def test_csv_problems_name_file_and_line(tmp_path: Path, data: bytes, line: int, fragment: str) -> None:
    path = write(tmp_path, "in.csv", data)
    _, problems = collect(path)
    assert problems, "expected a problem"
    assert problems[0].line == line
    assert fragment in problems[0].message


def test_unknown_extension_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "in.txt", b"hello\n")
    with pytest.raises(RowError, match="use .jsonl, .csv or .parquet"):
        read_rows(path)


def test_reading_streams_instead_of_loading_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", b'{"id": 1}\n{"id": 2}\nbroken\n')
    rows = read_rows(path)
    assert next(rows) == (1, {"id": 1})  # the bad line further down has not been read yet
