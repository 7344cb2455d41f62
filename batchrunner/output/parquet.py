"""The output as Parquet: typed columns in the order of `columns.py`, written a row group at a time.

`parsed` is a struct (or list, or scalar) column when the output_schema maps onto Arrow types,
else JSON text; input fields whose values share one scalar type keep it, the rest are JSON text.
Memory holds one row group, whatever the number of rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from batchrunner.output.columns import Column, columns

ROW_GROUP = 32_768

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
    """Output lines gathered into Arrow tables of one row group each, typed as `columns.py` says
    (`flat`: CSV's columns, nothing nested).

    pyarrow's JSON reader parses a row group's lines in one call, into the typed fields of the
    output line; only JSON-text columns (mixed or nested values) are read line by line here.
    """

    def __init__(self, rows_path: Path, schema: dict[str, Any] | None, *, flat: bool = False) -> None:
        self.columns = columns(schema, rows_path, flat_parsed=flat)
        typed = [_arrow(column, flat) for column in self.columns]
        self.schema = pa.schema([pa.field(c.name, t) for c, (t, _) in zip(self.columns, typed, strict=True)])
        self.read_schema = _line_schema(
            [(column, kind) for column, (kind, as_json) in zip(self.columns, typed, strict=True) if not as_json]
        )
        self.as_json = [(i, column.field, column.inner) for i, (column, (_, as_json)) in enumerate(zip(self.columns, typed)) if as_json]

    def tables(self, lines: Iterable[bytes]) -> Iterator[pa.Table]:
        """The lines as tables of one row group each."""
        source = iter(lines)
        while group := list(islice(source, ROW_GROUP)):
            yield self._table(group)

    def _table(self, group: list[bytes]) -> pa.Table:
        data = b"".join(group)
        read = pj.read_json(
            pa.BufferReader(data),
            read_options=pj.ReadOptions(block_size=len(data) + 1, use_threads=False),
            parse_options=pj.ParseOptions(explicit_schema=self.read_schema, unexpected_field_behavior="ignore"),
        )
        texts = self._json_texts(group)
        arrays = [
            texts[i] if i in texts else read.column(c.field) if c.inner is None else pc.struct_field(read.column(c.field), c.inner)
            for i, c in enumerate(self.columns)
        ]
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def _json_texts(self, group: list[bytes]) -> dict[int, pa.Array]:
        if not self.as_json:
            return {}
        values: dict[int, list[str | None]] = {i: [] for i, _, _ in self.as_json}
        nothing: dict[str, Any] = {}
        for line in group:
            parsed = orjson.loads(line)
            for i, field, inner in self.as_json:
                value = parsed[field] if inner is None else (parsed[field] or nothing).get(inner)
                values[i].append(None if value is None else orjson.dumps(value).decode())
        return {i: pa.array(texts, pa.string()) for i, texts in values.items()}


def _line_schema(typed: list[tuple[Column, pa.DataType]]) -> pa.Schema:
    """The typed fields of the output line as the JSON reader is to read them: top-level fields,
    and structs (usage, error, row, parsed.<key>) of the keys the columns take from them."""
    top: dict[str, pa.DataType] = {}
    inner: dict[str, list[pa.Field]] = {}
    for column, kind in typed:
        if column.inner is None:
            top[column.field] = kind
        else:
            inner.setdefault(column.field, []).append(pa.field(column.inner, kind))
    return pa.schema([*(pa.field(name, kind) for name, kind in top.items()),
                      *(pa.field(name, pa.struct(fields)) for name, fields in inner.items())])  # fmt: skip


class ParquetWriter:
    def __init__(self, out: BinaryIO, rows_path: Path, schema: dict[str, Any] | None) -> None:
        self.out = out
        self.rows = ArrowRows(rows_path, schema)

    def write(self, lines: Iterable[bytes]) -> None:
        with pq.ParquetWriter(self.out, self.rows.schema) as file:
            for table in self.rows.tables(lines):
                file.write_table(table)


def arrow_table(lines: Iterable[bytes], rows_path: Path, schema: dict[str, Any] | None) -> pa.Table:
    """The output as one Arrow table with the Parquet output's columns (for `Outcome.to_arrow`)."""
    rows = ArrowRows(rows_path, schema)
    tables = list(rows.tables(lines))
    return pa.concat_tables(tables) if tables else rows.schema.empty_table()
