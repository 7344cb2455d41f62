"""Parquet, CSV and gzip in; JSONL, CSV and Parquet out: real files through the local emulator."""

from __future__ import annotations

import csv
import gzip
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from helpers import read_rows, reviews

SENTIMENT = """output_schema:
  type: object
  properties: {label: {enum: [positive, negative, neutral]}, why: {type: string}}
  required: [label, why]
  additionalProperties: false
"""
CSV_HEAD = [
    "custom_id", "status", "text", "parsed.label", "parsed.why", "error_type", "error_message", "stop_reason",
    "input_tokens", "output_tokens", "batch_id", "attempt", "cached",
]  # fmt: skip


def spec(folder: Path, *, input: str, output: str, extra: str = "", name: str = "data") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nmodel: claude-haiku-4-5\nmax_tokens: 64\ninput: {input}\nid_field: id\n"
        f'prompt: "Review: {{text}}"\noutput: {output}\n'
        "poll: {initial_interval: 0.05, max_interval: 0.3}\n" + extra
    )
    return path


def parquet_rows(n: int) -> list[dict[str, object]]:
    return [{"id": f"r-{i}", "text": f"Works fine #{i}", "stars": i % 5 + 1, "tags": ["a", str(i)]} for i in range(1, n + 1)]


def test_a_parquet_input_writes_the_same_rows_in_order_to_parquet_csv_and_jsonl(tmp_path, run_cli):
    rows = parquet_rows(500)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rows.parquet", row_group_size=128)
    outputs = {}
    for suffix in ("parquet", "csv", "jsonl"):
        job = spec(tmp_path, input="rows.parquet", output=f"out/results.{suffix}", extra=SENTIMENT, name=f"to-{suffix}")
        result = run_cli("submit", job, "--backend", "local")
        assert result.exit_code == 0, result.output + result.stderr
        outputs[suffix] = tmp_path / "out" / f"results.{suffix}"

    lines = read_rows(outputs["jsonl"])
    assert [line["row"] for line in lines] == rows
    table = pq.read_table(outputs["parquet"])
    assert table.column_names == [*CSV_HEAD[:3], "parsed", *CSV_HEAD[5:], "row.id", "row.text", "row.stars", "row.tags"]
    assert table.schema.field("parsed").type == pa.struct([("label", pa.string()), ("why", pa.string())])
    assert table.schema.field("row.stars").type == pa.int64()
    assert table.schema.field("attempt").type == pa.int64()
    from_parquet = table.to_pylist()
    with outputs["csv"].open(newline="", encoding="utf-8") as f:
        from_csv = list(csv.DictReader(f))
    assert len(from_parquet) == len(from_csv) == len(lines) == 500
    for line, flat, record in zip(lines, from_parquet, from_csv, strict=True):
        assert flat["custom_id"] == record["custom_id"] == line["custom_id"] == line["row"]["id"]
        assert flat["status"] == record["status"] == "succeeded"
        assert flat["parsed"] == line["parsed"]
        assert record["parsed.label"] == line["parsed"]["label"] and record["parsed.why"] == line["parsed"]["why"]
        assert flat["row.stars"] == line["row"]["stars"] and record["row.stars"] == str(line["row"]["stars"])
        assert orjson.loads(record["row.tags"]) == line["row"]["tags"] and orjson.loads(flat["row.tags"]) == line["row"]["tags"]
        assert int(record["input_tokens"]) == flat["input_tokens"] > 0
        assert record["error_type"] == "" and flat["error_type"] is None


def test_csv_output_has_the_columns_in_order_and_says_what_failed(make_job, run_cli):
    rows = reviews(4)
    rows[1]["text"] = "fine [[emulator:errored:invalid_request_error]]"
    job = make_job(rows, extra=SENTIMENT.replace("additionalProperties: false\n", "") + "retry: {max_attempts: 1}\n")
    job.spec.write_text(job.spec.read_text().replace("out/results.jsonl", "out/results.csv"))
    result = run_cli("submit", job.spec, "--backend", "local")
    assert result.exit_code == 3, result.output + result.stderr
    with (job.output.parent / "results.csv").open(newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert table[0] == [*CSV_HEAD, "row.id", "row.text"]
    records = [dict(zip(table[0], record, strict=True)) for record in table[1:]]
    assert [r["row.id"] for r in records] == [r["custom_id"] for r in records] == ["r-1", "r-2", "r-3", "r-4"]
    failed = records[1]
    assert failed["status"] == "errored" and failed["error_type"] and failed["error_message"]
    assert failed["text"] == failed["parsed.label"] == failed["input_tokens"] == ""
    assert records[0]["attempt"] == "1" and records[0]["batch_id"].startswith("msgbatch_")


def test_gzipped_jsonl_and_csv_inputs_read_like_the_plain_ones(tmp_path, run_cli):
    rows = reviews(30)
    (tmp_path / "rows.jsonl.gz").write_bytes(gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in rows)))
    text = "id,text\n" + "".join(f'{r["id"]},"{r["text"]}"\n' for r in rows)
    (tmp_path / "rows.csv.gz").write_bytes(gzip.compress(text.encode()))
    for name in ("rows.jsonl.gz", "rows.csv.gz"):
        job = spec(tmp_path, input=name, output=f"out/{name}.jsonl", name=name.replace(".", "-"))
        result = run_cli("submit", job, "--backend", "local")
        assert result.exit_code == 0, result.output + result.stderr
        assert [line["row"] for line in read_rows(tmp_path / "out" / f"{name}.jsonl")] == rows


def test_a_damaged_gzip_input_is_refused_at_the_line_where_it_breaks(tmp_path, run_cli):
    data = gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in reviews(2000)))
    (tmp_path / "rows.jsonl.gz").write_bytes(data[: len(data) // 2])
    result = run_cli("validate", spec(tmp_path, input="rows.jsonl.gz", output="out.jsonl"))
    assert result.exit_code == 2
    assert "rows.jsonl.gz:" in result.stderr and "the gzip stream breaks off after line" in result.stderr


def test_a_parquet_row_problem_names_the_row_number(tmp_path, run_cli):
    rows = parquet_rows(20)
    rows[16]["id"] = "r-3"
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rows.parquet", row_group_size=5)
    result = run_cli("validate", spec(tmp_path, input="rows.parquet", output="out.jsonl"))
    assert result.exit_code == 2
    assert "rows.parquet:17: duplicate custom_id 'r-3' (also on line 3)" in result.stderr


def test_parquet_values_json_cannot_hold_reach_the_prompt_as_text(tmp_path, run_cli):
    import datetime
    import decimal

    table = pa.table({
        "id": ["a", "b"],
        "text": ["one", "two"],
        "day": [datetime.date(2026, 1, 2), datetime.date(2026, 1, 3)],
        "price": pa.array([decimal.Decimal("1.10"), decimal.Decimal("2.25")], pa.decimal128(5, 2)),
    })  # fmt: skip
    pq.write_table(table, tmp_path / "rows.parquet")
    job = spec(tmp_path, input="rows.parquet", output="out.jsonl")
    job.write_text(job.read_text().replace('"Review: {text}"', '"{text} on {day} for {price}"'))
    result = run_cli("submit", job, "--backend", "local")
    assert result.exit_code == 0, result.output + result.stderr
    assert [line["row"] for line in read_rows(tmp_path / "out.jsonl")] == [
        {"id": "a", "text": "one", "day": "2026-01-02", "price": "1.10"},
        {"id": "b", "text": "two", "day": "2026-01-03", "price": "2.25"},
    ]
    request = orjson.loads(next(iter((tmp_path / "home" / "runs").glob("*/requests-000.jsonl"))).read_bytes().splitlines()[0])
    assert request["params"]["messages"][0]["content"] == "one on 2026-01-02 for 1.10"


def test_an_unknown_output_extension_is_refused_at_the_output_line(tmp_path, run_cli):
    (tmp_path / "rows.jsonl").write_bytes(orjson.dumps({"id": "a", "text": "x"}) + b"\n")
    result = run_cli("validate", spec(tmp_path, input="rows.jsonl", output="out/results.xlsx"))
    assert result.exit_code == 2
    assert "data.yaml:7: `output` results.xlsx should end in .jsonl, .csv, .parquet" in result.stderr


def test_parquet_without_pyarrow_is_refused_naming_the_extra(tmp_path):
    blocker = tmp_path / "no-pyarrow"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['pyarrow'] = None\n")
    (tmp_path / "rows.jsonl").write_bytes(orjson.dumps({"id": "a", "text": "x"}) + b"\n")
    job = spec(tmp_path, input="rows.jsonl", output="out/results.parquet")
    env = dict(os.environ, PYTHONPATH=str(blocker))
    done = subprocess.run(
        [sys.executable, "-m", "batchrunner", "validate", str(job)], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 2, done.stderr
    assert "data.yaml:7: `output` results.parquet is a Parquet file, which needs pyarrow: pip install 'batchrunner[parquet]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_csv_output_is_the_same_with_or_without_pyarrow(tmp_path, run_cli):
    rows = [{"id": f"r-{i}", "text": f'say "hi", #{i}', "ok": i % 2 == 0, "score": i / 4, "tags": ["a", i], "n": 2**63 + i}
            for i in range(1, 41)]  # fmt: skip
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    blocker = tmp_path / "no-pyarrow"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['pyarrow'] = None\n")
    tables = []
    for name, env in (("with", {}), ("without", {"PYTHONPATH": str(blocker)})):
        job = spec(tmp_path, input="rows.jsonl", output=f"{name}.csv", extra=SENTIMENT, name=name)
        done = subprocess.run(
            [sys.executable, "-m", "batchrunner", "--home", str(tmp_path / f"home-{name}"), "submit", str(job), "--backend", "local"],
            env=dict(os.environ, **env), capture_output=True, text=True, check=False, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        with (tmp_path / f"{name}.csv").open(newline="", encoding="utf-8") as f:
            tables.append([dict(record, batch_id=None) for record in csv.DictReader(f)])
    assert tables[0] == tables[1]
    first = tables[0][0]
    assert list(first)[len(CSV_HEAD):] == ["row.id", "row.text", "row.ok", "row.score", "row.tags", "row.n"]
    assert (first["row.text"], first["row.ok"], first["row.score"], first["row.tags"]) == ('say "hi", #1', "false", "0.25", '["a",1]')
    assert first["row.n"] == str(2**63 + 1)  # beyond int64: kept exact, as text


def test_integers_beyond_64_bits_are_json_text_and_floats_stay_floats_in_parquet(tmp_path, run_cli):
    rows = [{"id": f"r-{i}", "text": "ok", "n": 2**63 + i, "score": i / 4, "big": 1e19 * i} for i in range(1, 31)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = run_cli("submit", spec(tmp_path, input="rows.jsonl", output="out.parquet"), "--backend", "local")
    assert result.exit_code == 0, result.output + result.stderr
    table = pq.read_table(tmp_path / "out.parquet")
    assert [table.schema.field(f"row.{name}").type for name in ("n", "score", "big")] == [pa.string(), pa.float64(), pa.float64()]
    assert table.column("row.n").to_pylist() == [str(row["n"]) for row in rows]
    assert table.column("row.big").to_pylist() == [row["big"] for row in rows]


def test_ctrl_c_while_a_flat_output_is_written_detaches_and_resume_writes_it_whole(tmp_path):
    rows = parquet_rows(300)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rows.parquet")
    for suffix in ("parquet", "csv"):
        job = spec(tmp_path, input="rows.parquet", output=f"out/results.{suffix}", extra=SENTIMENT, name=f"stop-{suffix}")
        home = tmp_path / f"home-{suffix}"

        def batchrunner(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "batchrunner", "--home", str(home), *args], env=dict(os.environ, **env),
                                  capture_output=True, text=True, check=False, timeout=300,
                                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip

        stopped = batchrunner("submit", str(job), "--backend", "local", "--run-id", "nightly", BATCHRUNNER_INTERRUPT_AT="output.writing")
        assert stopped.returncode == 4, stopped.stderr
        assert "detached from run nightly" in stopped.stderr and "Traceback" not in stopped.stderr
        assert list((tmp_path / "out").glob(f"*{suffix}*")) == [], "nothing, not even a temp file, beside the output"
        resumed = batchrunner("resume", "nightly")
        assert resumed.returncode == 0, resumed.stderr
        output = tmp_path / "out" / f"results.{suffix}"
        if suffix == "parquet":
            ids = pq.read_table(output).column("custom_id").to_pylist()
        else:
            with output.open(newline="", encoding="utf-8") as f:
                ids = [record["custom_id"] for record in csv.DictReader(f)]
        assert ids == [row["id"] for row in rows]


def test_a_rerun_to_parquet_says_which_rows_came_from_the_cache_and_which_batch_answered_them(tmp_path, run_cli):
    rows = reviews(40)
    (tmp_path / "rows.jsonl").write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    job = spec(tmp_path, input="rows.jsonl", output="first.jsonl", extra=SENTIMENT)
    assert run_cli("submit", job, "--backend", "local").exit_code == 0
    first = read_rows(tmp_path / "first.jsonl")
    edited = {"r-3", "r-17", "r-40"}
    (tmp_path / "rows.jsonl").write_bytes(
        b"".join(orjson.dumps(dict(row, text=row["text"] + " (edited)") if row["id"] in edited else row) + b"\n" for row in rows)
    )
    job.write_text(job.read_text().replace("output: first.jsonl", "output: again.parquet"))
    result = run_cli("submit", job, "--backend", "local")
    assert result.exit_code == 0, result.output + result.stderr

    again = pq.read_table(tmp_path / "again.parquet").to_pylist()
    assert [row["cached"] for row in again] == [row["id"] not in edited for row in rows]
    for before, after in zip(first, again, strict=True):
        assert (after["custom_id"], after["row.text"].endswith("(edited)")) == (before["custom_id"], after["custom_id"] in edited)
        if after["cached"]:
            assert (after["batch_id"], after["attempt"], after["parsed"]) == (before["batch_id"], before["attempt"], before["parsed"])
        else:
            assert after["batch_id"] != before["batch_id"] and after["attempt"] == 1


def test_the_arrow_table_of_a_run_whose_batch_has_not_ended_has_every_row_pending(isolated_env):
    import batchrunner

    rows = reviews(30)
    job = batchrunner.Job(name="early", model="claude-haiku-4-5", max_tokens=32, id_field="id", prompt="Review: {text}")
    started = batchrunner.run(job, rows, backend="local", detach=True)
    assert started.exit_code == 4
    table = started.to_arrow()
    assert table.column("custom_id").to_pylist() == [row["id"] for row in rows]
    assert table.column("row.text").to_pylist() == [row["text"] for row in rows]
    assert set(table.column("status").to_pylist()) == {"pending"}
    assert {name: table.column(name).null_count for name in ("text", "input_tokens", "batch_id", "attempt")} == dict.fromkeys(
        ("text", "input_tokens", "batch_id", "attempt"), 30
    )
    assert table.column("cached").to_pylist() == [False] * 30
