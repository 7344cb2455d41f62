"""The library over rows in memory: Job(...), run(...) with dicts and frames, results as frames, async."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import reviews

import batchrunner
from batchrunner import pipeline
from batchrunner.errors import EventLoopRunning, InputError, SpecError

POLL = {"initial_interval": 0.05, "max_interval": 0.3}
SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["positive", "negative", "neutral"]}},
    "required": ["label"],
    "additionalProperties": False,
}


def job(**keys: object) -> batchrunner.JobSpec:
    fields: dict[str, object] = {
        "name": "lib", "model": "claude-haiku-4-5", "max_tokens": 32, "id_field": "id",
        "prompt": "Review: {text}", "output_schema": SCHEMA, "poll": POLL,
    }  # fmt: skip
    return batchrunner.Job(**{**fields, **keys})


def test_run_over_a_list_of_dicts_returns_every_row_in_input_order(isolated_env: Path):
    rows = reviews(40)
    outcome = batchrunner.run(job(), rows, backend="local")
    assert outcome.exit_code == 0
    got = list(outcome.rows())
    assert [r["row"] for r in got] == rows
    assert all(r["status"] == "succeeded" and r["parsed"]["label"] for r in got)
    assert outcome.run.output_path == isolated_env / "runs" / outcome.run.id / "output.jsonl"
    frame = outcome.to_pandas()
    assert len(frame) == 40
    assert list(frame["custom_id"]) == [r["id"] for r in rows]
    assert list(frame["parsed"].map(lambda p: p["label"])) == [r["parsed"]["label"] for r in got]
    assert not list((isolated_env / "inputs").iterdir())  # the rows were compiled into the run folder


def test_run_keeps_its_run_data_in_the_store_it_is_given_or_the_environment_names(tmp_path: Path, monkeypatch):
    given, named = tmp_path / "given", tmp_path / "named"
    outcome = batchrunner.run(job(), reviews(5), backend="local", store=str(given))
    assert outcome.exit_code == 0
    assert (given / outcome.run.id / "rows.jsonl").exists()
    monkeypatch.setenv("BATCHRUNNER_STORE", str(named))
    again = batchrunner.run(job(name="lib2"), reviews(5), backend="local")
    assert again.exit_code == 0 and (named / again.run.id / "rows.jsonl").exists()
    assert [r["row"] for r in again.rows()] == reviews(5)


def test_run_over_a_pandas_frame_or_arrow_table_writes_the_output_it_is_given(tmp_path: Path):
    frame = pd.DataFrame({"id": [f"p-{i}" for i in range(1, 31)], "text": [f"fine #{i}" for i in range(1, 31)],
                          "stars": [i % 5 for i in range(1, 31)]})  # fmt: skip
    outcome = batchrunner.run(job(), frame, backend="local", output=tmp_path / "out.parquet")
    assert outcome.exit_code == 0
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column("row.id").to_pylist() == list(frame["id"])
    assert table.schema.field("row.stars").type == pa.int64()
    back = outcome.to_pandas()
    assert len(back) == len(frame) and list(back["row.stars"]) == list(frame["stars"])

    arrow = pa.Table.from_pandas(frame.iloc[:12], preserve_index=False)
    again = batchrunner.run(job(name="lib-arrow"), arrow, backend="local")
    assert [r["custom_id"] for r in again.rows()] == list(frame["id"][:12])
    assert again.to_arrow().num_rows == 12


def test_a_run_from_memory_makes_its_state_home_0700_whatever_the_umask(tmp_path: Path):
    home = tmp_path / "fresh"
    umask = os.umask(0)
    try:
        outcome = batchrunner.run(job(), reviews(2), backend="local", home=home)
    finally:
        os.umask(umask)
    assert outcome.exit_code == 0
    folders = [home, *(p for p in home.rglob("*") if p.is_dir())]
    assert {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in folders} == {
        str(p.relative_to(tmp_path)): oct(0o700) for p in folders
    }


def test_a_job_is_validated_like_the_yaml_naming_each_key():
    with pytest.raises(SpecError) as caught:
        batchrunner.Job(name="bad", model="claude-haiku-4-5", max_tokens=0, prompt="hi", temprature=1)
    message = caught.value.message
    assert "Job(bad): `max_tokens` should be greater than or equal to 1 (got 0)" in message
    assert "Job(bad): unknown key `temprature`" in message
    with pytest.raises(SpecError, match=r"`output` out.xlsx should end in \.jsonl, \.csv, \.parquet"):
        batchrunner.Job(name="bad", model="claude-haiku-4-5", max_tokens=5, prompt="hi", output="out.xlsx")


def test_rows_that_are_not_dicts_are_refused_naming_the_row(isolated_env: Path):
    with pytest.raises(InputError, match=r"rows:2: row 2 is a list, not a dict of fields"):
        batchrunner.run(job(), [{"id": "a", "text": "x"}, ["b", "y"]], backend="local")
    assert not list((isolated_env / "inputs").iterdir())


@pytest.mark.parametrize("as_frame", [False, True], ids=["dicts", "dataframe"])
def test_a_bad_row_is_named_as_a_row_of_the_rows_given_not_a_temporary_file(isolated_env: Path, as_frame: bool):
    rows = [{"id": "a", "text": "fine"}, {"id": "b c", "text": "a space in its id"}]

    with pytest.raises(InputError) as caught:
        batchrunner.run(job(), pd.DataFrame(rows) if as_frame else rows, backend="local")

    assert str(caught.value.problems[0]).startswith("rows:2: "), caught.value.message
    assert "inputs" not in caught.value.message and ".jsonl" not in caught.value.message


def test_a_detached_run_from_memory_is_resumed_from_its_run_folder(isolated_env: Path):
    rows = reviews(15)
    started = batchrunner.run(job(), rows, backend="local", detach=True)
    assert started.exit_code == 4
    done = pipeline.resume(started.run.id, home=isolated_env)
    assert done.exit_code == 0
    assert [r["row"] for r in done.rows()] == rows


def test_run_async_works_inside_a_running_event_loop(isolated_env: Path):
    rows = reviews(10)

    async def task() -> tuple[batchrunner.Outcome, batchrunner.Outcome]:
        outcome = await batchrunner.run_async(job(), rows, backend="local", detach=True)
        return outcome, await pipeline.watch_async(outcome.run.id, home=isolated_env)

    started, finished = asyncio.run(task())
    assert started.exit_code == 4 and finished.exit_code == 0
    assert [r["row"] for r in finished.rows()] == rows


def test_a_sync_call_inside_a_running_loop_names_its_async_twin(isolated_env: Path):
    async def task() -> None:
        with pytest.raises(EventLoopRunning, match=r"run\(\) blocks.*use `await run_async\(\.\.\.\)` there"):
            batchrunner.run(job(), reviews(2), backend="local")
        with pytest.raises(EventLoopRunning, match=r"use `await collect_async\(\.\.\.\)` there"):
            pipeline.collect("no-such-run", home=isolated_env)

    asyncio.run(task())


def test_run_over_a_polars_frame(isolated_env: Path):
    pl = pytest.importorskip("polars")  # not in the test extra: the polars path runs where polars is installed
    frame = pl.DataFrame({"id": [f"q-{i}" for i in range(1, 13)], "text": [f"ok #{i}" for i in range(1, 13)]})
    outcome = batchrunner.run(job(name="lib-polars"), frame, backend="local")
    assert [r["row"] for r in outcome.rows()] == frame.to_dicts()
