"""The flat columns of a CSV or Parquet output, in order: the result's, then the input row's.

Each column reads its value from one output line as parsed JSON (DESIGN §5): a top-level field,
or a field inside one (`usage`, `error`, `parsed`, `row`). A new field of the output line is one
more `Column` in `RESULT_TAIL`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from batchrunner.requestfile import READ_CHUNK

Kind = Literal["string", "int", "float", "bool", "json", "parsed"]
Line = dict[str, Any]


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind  # "json": nested values, written as JSON text; "parsed": typed by the output_schema
    field: str  # the output line's field
    inner: str | None = None  # the key inside that field, if the value is there
    schema: dict[str, Any] | None = None  # for "parsed": the part of the output_schema it holds


RESULT_HEAD = (
    Column("custom_id", "string", "custom_id"),
    Column("status", "string", "status"),
    Column("text", "string", "text"),
)
RESULT_TAIL = (
    Column("error_type", "string", "error", "type"),
    Column("error_message", "string", "error", "message"),
    Column("stop_reason", "string", "stop_reason"),
    Column("input_tokens", "int", "usage", "input_tokens"),
    Column("output_tokens", "int", "usage", "output_tokens"),
    Column("batch_id", "string", "batch_id"),
    Column("attempt", "int", "attempt"),
    Column("cached", "bool", "cached"),
)
_NOTHING: dict[str, Any] = {}
_INT64 = (-(2**63), 2**63 - 1)


def reader(chosen: list[Column]) -> Callable[[bytes], list[Any]]:
    """A function from one output line to its values in the columns' order: the hot loop of
    every flat format, so one comprehension rather than a call per column."""
    paths = [(column.field, column.inner) for column in chosen]
    nothing = _NOTHING

    def values(line: bytes) -> list[Any]:
        parsed = orjson.loads(line)
        return [parsed[field] if inner is None else (parsed[field] or nothing).get(inner) for field, inner in paths]

    return values


def parsed_columns(schema: dict[str, Any] | None, *, flat: bool) -> list[Column]:
    """`parsed.<key>` per top-level property of the output_schema (`flat`, for CSV), else one
    `parsed` column; none without a schema."""
    if schema is None:
        return []
    properties = schema.get("properties")
    if flat and isinstance(properties, dict) and properties:
        return [Column(f"parsed.{key}", "parsed", "parsed", key, sub) for key, sub in properties.items()]
    return [Column("parsed", "parsed", "parsed", schema=schema)]


Kinds = dict[str, set[type]]  # each input field, in the order it first appears: the types of its values


def row_kinds(rows_path: Path) -> Kinds:
    """The kinds of the run's rows, in one pass over them."""
    kinds: Kinds = {}
    note_kinds(kinds, _rows(rows_path))
    return kinds


def note_kinds(kinds: Kinds, rows: Iterable[dict[str, Any]]) -> None:
    for row in rows:
        for name, value in row.items():
            seen = kinds.get(name)
            if seen is None:
                seen = kinds[name] = set()
            if type(value) is int and not _INT64[0] <= value <= _INT64[1]:
                seen.add(object)  # beyond 64 bits: exact only as JSON text
            elif value is not None:
                seen.add(type(value))


def row_columns(kinds: Kinds) -> list[Column]:
    """`row.<name>` for every field of the run's rows, each with the one kind its values share
    (mixed or nested values: JSON text)."""
    return [Column(f"row.{name}", _kind(seen), "row", name) for name, seen in kinds.items()]


def _kind(seen: set[type]) -> Kind:
    if seen <= {str}:
        return "string"
    if seen == {bool}:
        return "bool"
    if seen == {int}:
        return "int"
    if seen <= {int, float}:
        return "float"
    return "json"


def _rows(rows_path: Path) -> Iterator[dict[str, Any]]:
    with rows_path.open("rb", buffering=READ_CHUNK) as rows:
        for line in rows:
            yield orjson.loads(line)


def columns(schema: dict[str, Any] | None, kinds: Kinds, *, flat_parsed: bool) -> list[Column]:
    return [*RESULT_HEAD, *parsed_columns(schema, flat=flat_parsed), *RESULT_TAIL, *row_columns(kinds)]
