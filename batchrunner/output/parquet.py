"""The output as Parquet: typed columns in the order of `columns.py`, written a row group at a time.

`parsed` is a struct (or list, or scalar) column when the output_schema maps onto Arrow types,
else JSON text; input fields whose values share one scalar type keep it, the rest are JSON text.
Memory holds one row group, whatever the number of rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from batchrunner.output.columns import Column, columns, reader

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


def _arrow(column: Column) -> tuple[pa.DataType, bool]:
    """The column's Arrow type, and whether its values are written as JSON text."""
    if column.kind == "parsed":
        found = schema_type(column.schema)
        return (found, False) if found is not None else (pa.string(), True)
    if column.kind == "json":
        return pa.string(), True
    return _SCALARS[column.kind], False


class ArrowRows:
    """Output lines gathered into Arrow tables of one row group each, typed as `columns.py` says."""

    def __init__(self, rows_path: Path, schema: dict[str, Any] | None) -> None:
        chosen = columns(schema, rows_path, flat_parsed=False)
        typed = [_arrow(column) for column in chosen]
        self.values = reader(chosen)
        self.as_json = [as_json for _, as_json in typed]
        self.schema = pa.schema([pa.field(c.name, t) for c, (t, _) in zip(chosen, typed, strict=True)])
        self.pending: list[list[Any]] = []

    def add(self, line: bytes) -> pa.Table | None:
        """Take one line; a full row group comes back as a table."""
        self.pending.append(self.values(line))
        return self.rest() if len(self.pending) == ROW_GROUP else None

    def rest(self) -> pa.Table | None:
        """The lines taken since the last table, as one (None if there are none)."""
        if not self.pending:
            return None
        arrays = [
            pa.array([_json_text(v) for v in values] if as_json else values, type=field.type)
            for values, field, as_json in zip(zip(*self.pending), self.schema, self.as_json, strict=True)
        ]
        self.pending = []
        return pa.Table.from_arrays(arrays, schema=self.schema)


class ParquetWriter:
    def __init__(self, out: BinaryIO, rows_path: Path, schema: dict[str, Any] | None) -> None:
        self.rows = ArrowRows(rows_path, schema)
        self.file = pq.ParquetWriter(out, self.rows.schema)

    def write(self, line: bytes) -> None:
        table = self.rows.add(line)
        if table is not None:
            self.file.write_table(table)

    def close(self) -> None:
        table = self.rows.rest()
        if table is not None:
            self.file.write_table(table)
        self.file.close()


def arrow_table(lines: Iterable[bytes], rows_path: Path, schema: dict[str, Any] | None) -> pa.Table:
    """The output as one Arrow table with the Parquet output's columns (for `Outcome.to_arrow`)."""
    rows = ArrowRows(rows_path, schema)
    tables = [table for line in lines if (table := rows.add(line)) is not None]
    rest = rows.rest()
    if rest is not None:
        tables.append(rest)
    return pa.concat_tables(tables) if tables else rows.schema.empty_table()


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()
