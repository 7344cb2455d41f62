"""Parquet rows, streamed one record batch at a time; a row's "line" is its number in the file.

pyarrow is an optional extra: the spec refuses a Parquet path without it, so this module
imports it only when a Parquet file is read.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from batchrunner.errors import Problem
from batchrunner.inputs.common import ProblemSink, Row

if TYPE_CHECKING:
    import pyarrow as pa

BATCH_ROWS = 8192


def read_parquet(path: Path, report: ProblemSink) -> Iterator[tuple[int, Row, bytes]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        source = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        report(Problem(path, None, f"not a readable Parquet file ({exc}): write it again with pyarrow or pandas"))
        return
    with source:
        plain = all(_plain(field.type) for field in source.schema_arrow)
        number = 0
        for batch in source.iter_batches(batch_size=BATCH_ROWS):
            for row in batch.to_pylist():
                number += 1
                raw = orjson.dumps(row, default=json_value)
                # a date or decimal becomes JSON text, so the row a template sees is the one rows.jsonl keeps
                yield number, row if plain else orjson.loads(raw), raw
    if number == 0:
        report(Problem(path, 1, "the file has no rows"))


def _plain(kind: pa.DataType) -> bool:
    """Whether pyarrow gives this type's values as JSON values already (str, int, float, bool, None,
    and lists and structs of them)."""
    import pyarrow.types as t

    if t.is_integer(kind) or t.is_floating(kind) or t.is_string(kind) or t.is_large_string(kind):
        return True
    if t.is_boolean(kind) or t.is_null(kind):
        return True
    if t.is_list(kind) or t.is_large_list(kind):
        return _plain(kind.value_type)
    if t.is_struct(kind):
        return all(_plain(kind.field(i).type) for i in range(kind.num_fields))
    return False


def json_value(value: Any) -> Any:
    """What orjson cannot write itself: a decimal as its exact text, bytes as text (or base64)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(value).decode()
    return str(value)
