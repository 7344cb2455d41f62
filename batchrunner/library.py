"""The library over rows in memory: a job made in Python, rows from dicts or data frames, and
the results back as rows or frames, through the same run as `batchrunner submit`.

Rows given to `run` are written to a JSONL file under the state home and compiled from there
like any input (so the run folder has its rows file, and `resume` works as for any run); the
file is removed once the run is compiled. pandas, polars and pyarrow are never imported unless
the rows are one of their frames.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from batchrunner import settings
from batchrunner.atomic import atomic_writer, private_folder
from batchrunner.errors import InputError, Problem
from batchrunner.inputs.parquet import json_value
from batchrunner.paths import shown
from batchrunner.pipeline import Events, Outcome, submit_job_async
from batchrunner.session import run_loop
from batchrunner.spec import JobSpec, validated, with_paths

FRAME_SLICE = 8192
_DUMP = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE


def Job(**keys: Any) -> JobSpec:  # noqa: N802 - read as the constructor of a job
    """A job spec made in Python, with the YAML's keys (`input=`, `output=`, ...), validated the same
    way; each problem names its key. Paths are relative to the working folder. Without `input`, the
    rows are given to `run`; without `output`, the results stay in the run folder (`Outcome.rows()`)."""
    name = keys.get("name")
    where = Path(f"Job({name})" if isinstance(name, str) else "Job")
    problems = []
    if "path" in keys:
        problems.append(Problem(where, None, "unknown key `path`: a Job's paths are relative to the working folder"))
        keys = {k: v for k, v in keys.items() if k != "path"}
    return validated(Path.cwd() / where, where, keys, {}, problems)


def run(
    job: JobSpec,
    rows: Any = None,
    *,
    home: Path | str | None = None,
    backend: str | None = None,
    output: Path | str | None = None,
    run_id: str | None = None,
    detach: bool = False,
    timeout: float | None = None,
    events: Events | None = None,
    store: str | None = None,
) -> Outcome:
    """Run a job over `rows` (any iterable of dicts, a pandas or polars DataFrame, a pyarrow Table;
    None: the job's `input` file) and wait for its results, like `batchrunner submit`. `home` and
    `store` default to `BATCHRUNNER_HOME` and `BATCHRUNNER_STORE`, as on the command line."""
    return run_loop(run_async(
        job, rows, home=home, backend=backend, output=output, run_id=run_id, detach=detach, timeout=timeout, events=events,
        store=store,
    ))


async def run_async(
    job: JobSpec,
    rows: Any = None,
    *,
    home: Path | str | None = None,
    backend: str | None = None,
    output: Path | str | None = None,
    run_id: str | None = None,
    detach: bool = False,
    timeout: float | None = None,
    events: Events | None = None,
    store: str | None = None,
) -> Outcome:
    """`run` in the caller's event loop (an Airflow or Dagster task, a notebook)."""
    state_home = Path(home or os.environ.get(settings.HOME) or ".batchrunner")
    spec = with_paths(job, output=Path(output) if output is not None else None)
    options: dict[str, Any] = {
        "run_id": run_id, "backend": backend, "detach": detach, "timeout": timeout, "events": events,
        "store": store or os.environ.get(settings.STORE) or None,
    }  # fmt: skip
    if rows is None:
        return await submit_job_async(spec, home=state_home, **options)
    rows_file = _write_rows(state_home, spec.name, rows)
    try:
        return await submit_job_async(with_paths(spec, input=rows_file), home=state_home, **options)
    except InputError as exc:
        raise _as_given_rows(exc, rows_file) from None
    finally:
        rows_file.unlink(missing_ok=True)  # compiled into the run folder, or refused


def _as_given_rows(error: InputError, rows_file: Path) -> InputError:
    """A problem found in the spooled rows file, named as the caller's `rows` (row N, from 1, is
    its line N) rather than as a temporary file they never wrote."""
    spooled = {str(rows_file), str(shown(rows_file))}
    if not any(str(problem.path) in spooled for problem in error.problems):
        return error
    problems = [replace(problem, path="rows") if str(problem.path) in spooled else problem for problem in error.problems]
    return type(error)(problems, more=error.more)


def _write_rows(home: Path, name: str, rows: Any) -> Path:
    folder = home / "inputs"
    private_folder(folder)  # the first thing a run from memory writes: it may make the state home
    path = folder / f"{name}-{uuid.uuid4().hex[:12]}.jsonl"
    with atomic_writer(path, site="rows.write") as out:
        for line in json_lines(rows):
            out.write(line)
    return path


def json_lines(rows: Any) -> Iterator[bytes]:
    """Each row as one line of JSON, a frame converted a slice at a time."""
    library = type(rows).__module__.partition(".")[0]
    if library == "pyarrow" and hasattr(rows, "to_batches"):
        yield from _arrow_lines(rows.to_batches(max_chunksize=FRAME_SLICE))
    elif library == "pandas" and hasattr(rows, "itertuples"):
        yield from _pandas_lines(rows)
    elif library == "polars" and hasattr(rows, "iter_rows"):
        yield from _dict_lines(rows.iter_rows(named=True))
    else:
        yield from _dict_lines(rows)


def _arrow_lines(batches: Iterable[Any]) -> Iterator[bytes]:
    for batch in batches:
        for row in batch.to_pylist():
            yield orjson.dumps(row, default=json_value, option=_DUMP)


def _pandas_lines(frame: Any) -> Iterator[bytes]:
    try:
        import pyarrow as pa
    except ImportError:
        columns = [str(name) for name in frame.columns]
        yield from _dict_lines(dict(zip(columns, values)) for values in frame.itertuples(index=False, name=None))
        return
    for start in range(0, len(frame), FRAME_SLICE):
        yield from _arrow_lines([pa.RecordBatch.from_pandas(frame.iloc[start : start + FRAME_SLICE], preserve_index=False)])


def _dict_lines(rows: Iterable[Any]) -> Iterator[bytes]:
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise InputError([Problem("rows", number, f"row {number} is a {type(row).__name__}, not a dict of fields")])
        try:
            yield orjson.dumps(row if type(row) is dict else dict(row), default=json_value, option=_DUMP)
        except TypeError as exc:
            raise InputError([Problem("rows", number, f"row {number} cannot be written as JSON: {exc}")]) from None
