"""The output as Parquet: typed columns in the order of `columns.py`, written a row group at a time.

`parsed` is a struct (or list, or scalar) column when the output_schema maps onto Arrow types,
else JSON text; input fields whose values share one scalar type keep it, the rest are JSON text.
Memory holds a few row groups (one being read, one waiting, one being written), whatever the
number of rows.
"""

from __future__ import annotations

import array
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from itertools import accumulate, islice
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from batchrunner.output import Output, Result, Shared
from batchrunner.output.columns import Column, Kinds, columns, note_kinds
from batchrunner.requestfile import READ_CHUNK

ROW_GROUP = 32_768
KINDS_CHUNK = 1 << 20  # bytes of rows whose types pyarrow infers at once

_SCALARS = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
_SCHEMA_SCALARS = {"string": pa.string(), "integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_()}


def schema_type(schema: Any) -> pa.DataType | None:
    """The Arrow type that holds the values a JSON Schema allows, or None (then: JSON text). An
    object is a struct of its properties unless it allows others (`additionalProperties`)."""
    if not isinstance(schema, dict):
        return None
    if "enum" in schema or "const" in schema:
        values = schema.get("enum", [schema.get("const")])
        if values and all(isinstance(v, str) for v in values):
            return pa.string()
        return None
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    if kind in _SCHEMA_SCALARS:
        return _SCHEMA_SCALARS[kind]
    if kind == "array":
        item = schema_type(schema.get("items"))
        return pa.list_(item) if item is not None else None
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict) or not properties or schema.get("additionalProperties", False) is not False:
            return None
        fields = [(name, schema_type(sub)) for name, sub in properties.items()]
        if any(t is None for _, t in fields):
            return None
        return pa.struct([pa.field(name, t) for name, t in fields])
    return None


def _arrow(column: Column, flat: bool) -> tuple[pa.DataType, bool]:
    """The column's Arrow type, and whether its values are written as JSON text (`flat`, for
    CSV: every list or struct too)."""
    if column.kind == "parsed":
        found = schema_type(column.schema)
        if found is None or flat and pa.types.is_nested(found):
            return pa.string(), True
        return found, False
    if column.kind == "json":
        return pa.string(), True
    return _SCALARS[column.kind], False


class ArrowRows:
    """Output rows gathered into Arrow tables of one row group each, typed as `columns.py` says
    (`flat`: CSV's columns, nothing nested), from blocks of the ledger's rows (`Result`) and the
    rows file's lines beside them.

    pyarrow's JSON reader parses a block's rows in one call, and the JSON of the block's distinct
    `Shared` values in another (a classification run has a few hundred, whatever its rows), which
    are then spread over the rows by index; only JSON-text columns (mixed or nested values) are
    read value by value here.
    """

    def __init__(self, rows_path: Path, schema: dict[str, Any] | None, shared: Callable[[Shared], bytes], *, flat: bool = False) -> None:
        self.rows_path, self.shared = rows_path, shared
        self.columns = columns(schema, row_kinds(rows_path), flat_parsed=flat)
        typed = [_arrow(column, flat) for column in self.columns]
        self.schema = pa.schema([pa.field(c.name, t) for c, (t, _) in zip(self.columns, typed, strict=True)])
        read = [(column, kind) for column, (kind, as_json) in zip(self.columns, typed, strict=True) if not as_json]
        self.row_schema = pa.schema([pa.field(str(c.inner), kind) for c, kind in read if c.field == "row"])
        self.shared_schema = _line_schema([(c, kind) for c, kind in read if c.field not in _PER_ROW])
        self.as_json = {i for i, (_, as_json) in enumerate(typed) if as_json}
        self.rows_as_json = any(self.columns[i].field == "row" for i in self.as_json)
        self.shared_as_json = any(self.columns[i].field not in _PER_ROW for i in self.as_json)

    def tables(self, blocks: Iterable[list[Result]]) -> Iterator[pa.Table]:
        """One table per block, each joined to as many lines of the rows file."""
        with self.rows_path.open("rb", buffering=READ_CHUNK) as rows:
            for block in blocks:
                lines = list(islice(rows, len(block)))
                if len(lines) < len(block):
                    raise ValueError(f"{self.rows_path} has fewer rows than the run has requests")
                yield self.table(block, lines)
            if rows.readline():
                raise ValueError(f"{self.rows_path} has more rows than the run has requests")

    def table(self, block: list[Result], rows: list[bytes]) -> pa.Table:
        index: dict[Shared, int] = {}  # each distinct Shared value, numbered as it first appears
        at = _int64s(array.array("q", [index.setdefault(key, len(index)) for key in map(_SHARED, block)]))
        shared = list(map(self.shared, index))
        read_rows = _read(b"".join(rows), self.row_schema)
        read_shared = _read(b"".join(shared), self.shared_schema)
        row_values = list(map(orjson.loads, rows)) if self.rows_as_json else []
        shared_values = list(map(orjson.loads, shared)) if self.shared_as_json else []
        arrays: list[pa.Array | pa.ChunkedArray] = []
        for i, c in enumerate(self.columns):
            if c.field == "custom_id":
                arrays.append(_strings(list(map(_CUSTOM_ID, block))))
            elif c.field == "row":
                arrays.append(_json_array(row_values, None, c.inner) if i in self.as_json else read_rows.column(c.inner))
            elif i in self.as_json:
                arrays.append(_json_array(shared_values, c.field, c.inner).take(at))
            else:
                found = read_shared.column(c.field)
                arrays.append((found if c.inner is None else pc.struct_field(found, c.inner)).take(at))
        return pa.Table.from_arrays(arrays, schema=self.schema)


def _strings(values: list[str]) -> pa.Array:
    """A string array made from its buffers: `pa.array` over a list would import pandas (0.5 s)."""
    text = "".join(values)
    data = text.encode()
    lengths = map(len, values) if len(data) == len(text) else (len(value.encode()) for value in values)
    offsets = array.array("i", accumulate(lengths, initial=0))
    return pa.Array.from_buffers(pa.string(), len(values), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _int64s(values: array.array[int]) -> pa.Array:
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


_CUSTOM_ID = itemgetter(0)
_SHARED = itemgetter(1, 2, 3, 4, 5)  # a Result's Shared part
_PER_ROW = ("custom_id", "row")  # the parts of a line that differ from row to row
_NOTHING: dict[str, Any] = {}


def _read(data: bytes, schema: pa.Schema) -> pa.Table:
    """JSON lines as a table of `schema`'s fields, in one call (no fields: no call)."""
    if not len(schema):
        return schema.empty_table()
    return pj.read_json(
        pa.BufferReader(data),
        read_options=pj.ReadOptions(block_size=len(data) + 1, use_threads=False),
        parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
    )


def _json_array(values: list[Any], field: str | None, inner: str | None) -> pa.Array:
    """One JSON-text column from parsed JSON objects (a line's `field`, or the row itself)."""
    texts: list[str | None] = []
    for parsed in values:
        value = parsed if field is None else parsed[field]
        if inner is not None:
            value = (value or _NOTHING).get(inner)
        texts.append(None if value is None else orjson.dumps(value).decode())
    return pa.array(texts, pa.string())


def row_kinds(rows_path: Path) -> Kinds:
    """`columns.row_kinds`, sooner: pyarrow infers the types of a chunk of rows at a time. A
    chunk it cannot type (mixed values), or that holds a number it reads as a double whatever JSON
    wrote (an integer beyond 64 bits is JSON text, a float is not), is read row by row instead."""
    kinds: Kinds = {}
    with rows_path.open("rb") as file:
        while chunk := file.read(KINDS_CHUNK):
            if not chunk.endswith(b"\n"):
                chunk += file.readline()
            found = _arrow_kinds(chunk)
            if found is None:
                note_kinds(kinds, (orjson.loads(line) for line in chunk.splitlines()))
                continue
            for name, seen in found:
                kinds.setdefault(name, set()).update(seen)
    return kinds


def _arrow_kinds(chunk: bytes) -> list[tuple[str, set[type]]] | None:
    try:
        table = pj.read_json(pa.BufferReader(chunk), read_options=pj.ReadOptions(block_size=len(chunk) + 1, use_threads=False))
    except pa.ArrowInvalid:
        return None
    found = []
    for field, column in zip(table.schema, table.columns, strict=True):
        kind = field.type
        if pa.types.is_null(kind):
            seen: set[type] = set()
        elif pa.types.is_string(kind) or pa.types.is_timestamp(kind):  # pyarrow reads ISO dates as timestamps
            seen = {str}
        elif pa.types.is_int64(kind):
            seen = {int}
        elif pa.types.is_boolean(kind):
            seen = {bool}
        elif pa.types.is_float64(kind):
            largest = pc.max(pc.abs(column)).as_py()
            if largest is not None and largest >= 2**63:
                return None
            seen = {float}
        elif pa.types.is_struct(kind):
            seen = {dict}
        elif pa.types.is_list(kind):
            seen = {list}
        else:
            return None
        found.append((field.name, seen))
    return found


def _line_schema(typed: list[tuple[Column, pa.DataType]]) -> pa.Schema:
    """The typed fields of the output line as the JSON reader is to read them: top-level fields,
    and structs (usage, error, parsed.<key>) of the keys the columns take from them."""
    top: dict[str, pa.DataType] = {}
    inner: dict[str, list[pa.Field]] = {}
    for column, kind in typed:
        if column.inner is None:
            top[column.field] = kind
        else:
            inner.setdefault(column.field, []).append(pa.field(column.inner, kind))
    return pa.schema([*(pa.field(name, kind) for name, kind in top.items()),
                      *(pa.field(name, pa.struct(fields)) for name, fields in inner.items())])  # fmt: skip


def write_beside(output: Output, write: Callable[[Iterator[list[Result]]], None]) -> None:
    """`write(blocks)` in a second thread while this one reads them, a row group at a time.
    Reading is the ledger's scan (whose connection is this thread's); typing and writing them is
    mostly pyarrow's, which lets go of the GIL, so the two overlap. One block waits between them:
    memory stays flat. A failure on either side stops both and is raised here."""
    handoff: queue.Queue[list[Result] | None] = queue.Queue(maxsize=1)
    failed: list[BaseException] = []

    def handed() -> Iterator[list[Result]]:
        while (group := handoff.get()) is not None:
            yield group

    def work() -> None:
        try:
            write(handed())
        except BaseException as exc:  # raised in the reading thread below
            failed.append(exc)
            for _ in handed():  # until the reader stops
                pass

    worker = threading.Thread(target=work, name="output-writer")
    worker.start()
    try:
        for block in output.results(ROW_GROUP):
            if failed:
                break
            handoff.put(block)
    finally:
        handoff.put(None)
        worker.join()
    if failed:
        raise failed[0]


class ParquetWriter:
    def __init__(self, out: BinaryIO, rows_path: Path, schema: dict[str, Any] | None) -> None:
        self.out, self.rows_path, self.schema = out, rows_path, schema

    def write(self, output: Output) -> None:
        write_beside(output, lambda blocks: self._write(blocks, output.shared))

    def _write(self, blocks: Iterator[list[Result]], shared: Callable[[Shared], bytes]) -> None:
        rows = ArrowRows(self.rows_path, self.schema, shared)  # here, so the rows' kinds are found while the reading starts
        with ExitStack() as stack:
            file = None
            for table in rows.tables(blocks):
                if file is None:  # the first row group tells which columns repeat
                    file = stack.enter_context(pq.ParquetWriter(self.out, rows.schema, use_dictionary=_dictionary_columns(table)))
                file.write_table(table)
            if file is None:
                pq.ParquetWriter(self.out, rows.schema).close()  # no rows: the columns alone


def _dictionary_columns(table: pa.Table) -> list[str]:
    """The Parquet columns (leaf paths) to dictionary-encode: all but the top-level scalar ones
    whose values in `table`, the first row group, are mostly distinct (a custom_id, a row's
    text), where a dictionary is only work and then bytes."""
    chosen: list[str] = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_nested(field.type):
            chosen.extend(_leaves(field.name, field.type))
        elif pc.count_distinct(column).as_py() <= len(column) // 2:
            chosen.append(field.name)
    return chosen


def _leaves(path: str, kind: pa.DataType) -> Iterator[str]:
    """The leaf columns' paths Parquet stores a nested column as (`parsed.label`, `tags.list.element`)."""
    if pa.types.is_struct(kind):
        for child in kind:
            yield from _leaves(f"{path}.{child.name}", child.type)
    elif pa.types.is_list(kind):
        yield from _leaves(f"{path}.list.element", kind.value_type)
    else:
        yield path


def arrow_table(output: Output, rows_path: Path, schema: dict[str, Any] | None) -> pa.Table:
    """The output as one Arrow table with the Parquet output's columns (for `Outcome.to_arrow`)."""
    rows = ArrowRows(rows_path, schema, output.shared)
    tables = list(rows.tables(output.results(ROW_GROUP)))
    return pa.concat_tables(tables) if tables else rows.schema.empty_table()
