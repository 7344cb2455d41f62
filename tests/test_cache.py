"""The answer cache against a served emulator: a re-run pays only for what changed (DESIGN §10)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest
from helpers import read_rows, reviews

from batchrunner.emulator import EmulatorConfig, EmulatorServer, start_in_thread

ROWS = 200


def use_server(monkeypatch: pytest.MonkeyPatch, server: EmulatorServer) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-key")


def sent(server: EmulatorServer) -> int:
    """How many requests the server was sent, over every batch created on it."""
    client = anthropic.Anthropic(base_url=server.base_url, api_key="sk-test-key")
    return sum(sum(b.request_counts.to_dict().values()) for b in client.messages.batches.list(limit=100))


def submit(run_cli: Any, spec: Path, *options: str) -> Any:
    result = run_cli("--json", "submit", spec, *options)
    assert result.exit_code == 0, result.output + result.stderr
    return orjson.loads(result.stdout)


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))


def test_an_unchanged_rerun_sends_nothing_and_writes_every_row_cached(make_job, run_cli, emulator, monkeypatch, ledger_url):
    use_server(monkeypatch, emulator)
    if ledger_url is not None:
        monkeypatch.setenv("BATCHRUNNER_LEDGER", ledger_url)
    job = make_job(reviews(ROWS), batch_size=80)
    first = submit(run_cli, job.spec)
    answers = read_rows(job.output)
    assert sent(emulator) == ROWS and first["summary"]["cached"] == 0
    assert {row["cached"] for row in answers} == {False}
    batches = emulator.stats()["batches_created"]

    again = submit(run_cli, job.spec)

    assert emulator.stats()["batches_created"] == batches, "an all-cached run creates no batch"
    assert sent(emulator) == ROWS
    out = read_rows(job.output)
    assert [row["custom_id"] for row in out] == [row["custom_id"] for row in answers]
    assert {row["cached"] for row in out} == {True}
    assert [row["text"] for row in out] == [row["text"] for row in answers]
    assert [(row["batch_id"], row["attempt"]) for row in out] == [(row["batch_id"], row["attempt"]) for row in answers]
    summary = again["summary"]
    assert summary["cached"] == ROWS and summary["counts"]["succeeded"] == ROWS
    assert summary["input_tokens"] == 0 and summary["cost_usd"] == 0
    assert summary["cost_saved_usd"] == pytest.approx(first["summary"]["cost_usd"])
    status = run_cli("--json", "status")
    assert orjson.loads(status.stdout)["summary"]["cached"] == ROWS


def test_editing_ten_rows_sends_exactly_those_ten(make_job, run_cli, emulator, monkeypatch):
    use_server(monkeypatch, emulator)
    rows = reviews(ROWS)
    job = make_job(rows, batch_size=80)
    submit(run_cli, job.spec)
    edited = {f"r-{i}" for i in range(5, 205, 20)}
    write_rows(job.rows, [dict(row, text=row["text"] + " (edited)") if row["id"] in edited else row for row in rows])

    validated = run_cli("--json", "validate", job.spec)
    assert orjson.loads(validated.stdout)["cache"] | {"cost_low_usd": 0, "cost_high_usd": 0} == {
        "sent": 10, "cached": ROWS - 10, "duplicates": 0, "cost_low_usd": 0, "cost_high_usd": 0
    }
    submit(run_cli, job.spec)

    assert sent(emulator) == ROWS + 10
    out = read_rows(job.output)
    assert {row["custom_id"] for row in out if not row["cached"]} == edited
    assert {row["status"] for row in out} == {"succeeded"}


def test_no_cache_sends_every_request_and_still_caches_the_answers(make_job, run_cli, emulator, monkeypatch):
    use_server(monkeypatch, emulator)
    job = make_job(reviews(ROWS), batch_size=80)
    submit(run_cli, job.spec)

    submit(run_cli, job.spec, "--no-cache")
    assert sent(emulator) == 2 * ROWS
    assert {row["cached"] for row in read_rows(job.output)} == {False}

    submit(run_cli, job.spec)
    assert sent(emulator) == 2 * ROWS
    assert {row["cached"] for row in read_rows(job.output)} == {True}


def test_seventy_rows_over_seven_texts_send_seven(make_job, run_cli, emulator, monkeypatch):
    use_server(monkeypatch, emulator)
    rows = [{"id": f"r-{i}", "text": f"product {i % 7}"} for i in range(70)]
    job = make_job(rows, batch_size=20)

    outcome = submit(run_cli, job.spec)

    assert sent(emulator) == 7
    out = read_rows(job.output)
    assert [row["custom_id"] for row in out] == [row["id"] for row in rows]
    assert {row["status"] for row in out} == {"succeeded"} and {row["cached"] for row in out} == {False}
    by_text: dict[str, set[str]] = {}
    for row in out:
        by_text.setdefault(row["row"]["text"], set()).add(row["text"])
    assert all(len(answers) == 1 for answers in by_text.values()), "every row of one text has its one answer"
    assert outcome["summary"]["duplicates"] == 63


def test_answers_cached_on_local_do_not_serve_another_backend(make_job, run_cli, tmp_path, monkeypatch):
    job = make_job(reviews(20))
    submit(run_cli, job.spec, "--backend", "local")
    assert {row["backend"] for row in read_rows(job.output)} == {"local"}

    with start_in_thread(EmulatorConfig(data_dir=tmp_path / "served", processing_seconds=0.2)) as served:
        use_server(monkeypatch, served)
        submit(run_cli, job.spec, "--backend", "anthropic")
        assert sent(served) == 20
        assert {row["cached"] for row in read_rows(job.output)} == {False}
        submit(run_cli, job.spec, "--backend", "anthropic")
        assert sent(served) == 20, "the served backend's own answers are cached for it"


def test_answers_read_in_the_order_they_were_stored_still_serve_only_their_own_backend(
    make_job, run_cli, emulator, monkeypatch, ledger_url
):
    """More rows than one lookup asks for: after a hit, the answers stored next are read first, and
    those cached on `local` among them (the same requests) do not answer a run on the server."""
    use_server(monkeypatch, emulator)
    if ledger_url is not None:
        monkeypatch.setenv("BATCHRUNNER_LEDGER", ledger_url)
    rows = reviews(1200)
    job = make_job(rows[:500], batch_size=500)
    submit(run_cli, job.spec)
    write_rows(job.rows, rows)
    submit(run_cli, job.spec, "--backend", "local")
    assert sent(emulator) == 500

    served = submit(run_cli, job.spec)

    assert sent(emulator) == 500 + 700, "rows 501-1200 were answered only on local"
    assert served["summary"]["cached"] == 500
    again = submit(run_cli, job.spec, "--backend", "local")
    assert again["summary"]["cached"] == 1200


def test_cache_false_neither_uses_nor_keeps_answers(make_job, run_cli, emulator, monkeypatch):
    use_server(monkeypatch, emulator)
    rows = [{"id": f"r-{i}", "text": "same"} for i in range(10)]
    job = make_job(rows, extra="cache: false\n")
    submit(run_cli, job.spec)
    submit(run_cli, job.spec)
    assert sent(emulator) == 20
    stats = run_cli("--json", "cache", "stats")
    assert orjson.loads(stats.stdout)["entries"] == 0


def test_max_age_sends_again_what_was_cached_too_long_ago(make_job, run_cli, emulator, monkeypatch):
    use_server(monkeypatch, emulator)
    job = make_job(reviews(10))
    submit(run_cli, job.spec)
    job.spec.write_text(job.spec.read_text() + "cache: {max_age: 0s}\n")
    submit(run_cli, job.spec)
    assert sent(emulator) == 20


def test_max_age_holds_for_answers_read_in_the_order_they_were_stored(make_job, run_cli, emulator, monkeypatch, isolated_env):
    from batchrunner.ledger import Ledger

    use_server(monkeypatch, emulator)
    rows = reviews(1200)
    job = make_job(rows[:500], batch_size=500)
    submit(run_cli, job.spec)
    write_rows(job.rows, rows[500:])
    submit(run_cli, job.spec)
    with Ledger(isolated_env) as ledger, ledger.transaction() as db:
        db.execute("UPDATE answer_cache SET created_at = '2020-01-01T00:00:00.000000Z' WHERE id > 500")
    write_rows(job.rows, rows)
    job.spec.write_text(job.spec.read_text() + "cache: {max_age: 7d}\n")

    again = submit(run_cli, job.spec)

    assert again["summary"]["cached"] == 500 and sent(emulator) == 1200 + 700


def test_cache_stats_and_clear(make_job, run_cli, emulator, monkeypatch, ledger_url):
    use_server(monkeypatch, emulator)
    if ledger_url is not None:
        monkeypatch.setenv("BATCHRUNNER_LEDGER", ledger_url)
    job = make_job(reviews(12))
    submit(run_cli, job.spec)

    stats = orjson.loads(run_cli("--json", "cache", "stats").stdout)
    assert stats["entries"] == 12 and [s["scope"] for s in stats["scopes"]] == [emulator.base_url.rstrip("/")]
    kept = run_cli("--json", "cache", "clear", "--older-than", "30d")
    assert orjson.loads(kept.stdout) == {"removed": 0}
    bad = run_cli("cache", "clear", "--older-than", "soon")
    assert bad.exit_code == 2 and "7d" in bad.stderr
    cleared = run_cli("cache", "clear")
    assert cleared.exit_code == 0 and "removed 12" in cleared.stdout

    submit(run_cli, job.spec)
    assert sent(emulator) == 24


def test_answers_cleared_while_a_rerun_compiles_fail_it_before_anything_is_sent(make_job, run_cli, monkeypatch, ledger_url, isolated_env):
    from batchrunner import answer_cache

    if ledger_url is not None:
        monkeypatch.setenv("BATCHRUNNER_LEDGER", ledger_url)
    job = make_job(reviews(20))
    submit(run_cli, job.spec, "--backend", "local", "--run-id", "first")
    answers = job.output.read_bytes()
    step = answer_cache.crashpoint
    monkeypatch.setattr(answer_cache, "crashpoint", lambda name: answer_cache.clear_cache(isolated_env))  # `cache clear` meanwhile

    raced = run_cli("submit", job.spec, "--backend", "local", "--run-id", "raced")

    assert raced.exit_code == 1 and "20 cached answer(s) were removed" in raced.stderr and "submit again" in raced.stderr
    assert "Traceback" not in raced.stderr
    assert [run["id"] for run in orjson.loads(run_cli("--json", "runs").stdout)["runs"]] == ["first"], "the run is not registered"
    assert job.output.read_bytes() == answers
    monkeypatch.setattr(answer_cache, "crashpoint", step)
    again = submit(run_cli, job.spec, "--backend", "local", "--run-id", "raced")
    assert again["summary"]["cached"] == 0 and again["summary"]["counts"]["succeeded"] == 20


def test_a_bad_max_age_names_its_line(make_job, run_cli):
    job = make_job(reviews(2), extra="cache: {max_age: soon}\n")
    result = run_cli("validate", job.spec)
    assert result.exit_code == 2
    assert "job.yaml:" in result.stderr and "cache.max_age" in result.stderr and "7d" in result.stderr
    assert "boolean" not in result.stderr, "one mistake, one message: a mapping is not also checked as true/false"


def test_a_cache_setting_of_another_shape_says_what_it_takes(make_job, run_cli):
    job = make_job(reviews(2), extra="cache: weekly\n")
    result = run_cli("validate", job.spec)
    assert result.exit_code == 2
    assert "`cache` should be true, false or {max_age: AGE}" in result.stderr and "job.yaml:" in result.stderr


def test_the_key_of_a_compiled_line_is_the_key_of_its_canonical_params(make_job, tmp_path):
    from batchrunner.compile import compile_job
    from batchrunner.request_key import compiled_key, line_key, request_key
    from batchrunner.requestfile import iter_lines
    from batchrunner.spec import load_spec

    job = make_job(reviews(3), extra="system: Be brief.\nparams: {stop_sequences: [STOP], metadata: {user_id: u}}\n")
    report = compile_job(load_spec(job.spec), tmp_path / "compiled")
    lines = [line + b"\n" for line in iter_lines(report.shards[0].path)]
    params = orjson.loads(lines[0])["params"]
    reordered = dict(reversed(list(params.items())))

    assert compiled_key(lines[0], "r-1", "2026-10-21") == line_key(lines[0], "2026-10-21") == request_key(reordered, "2026-10-21")
    assert compiled_key(lines[0], "r-1", "2026-10-21") != compiled_key(lines[1], "r-2", "2026-10-21")
    assert request_key(params, "2026-10-21") != request_key(params, "2023-06-01")


def test_retry_sends_a_shared_failed_request_once_and_never_reads_the_cache(make_job, run_cli, emulator, monkeypatch):
    use_server(monkeypatch, emulator)
    texts = ["fine", "fine", "late [[emulator:expired_once]]", "late [[emulator:expired_once]]", "good", "good"]
    job = make_job([{"id": f"r-{i}", "text": text} for i, text in enumerate(texts)])
    first = run_cli("--json", "submit", job.spec, "--run-id", "shared")
    assert first.exit_code == 3, first.stderr
    assert [row["status"] for row in read_rows(job.output)][2:4] == ["expired", "expired"]
    assert sent(emulator) == 3

    retried = run_cli("--json", "retry", "shared", "--status", "expired")

    assert retried.exit_code == 0, retried.stderr
    assert sent(emulator) == 4, "the shared request is sent once more, for both rows"
    out = read_rows(job.output)
    assert {row["status"] for row in out} == {"succeeded"}
    assert out[2]["text"] == out[3]["text"] and out[2]["attempt"] == out[3]["attempt"] == 2
    stats = orjson.loads(run_cli("--json", "cache", "stats").stdout)
    assert stats["entries"] == 3, "the retried answer is cached too; the expired one never was"


def test_a_ledger_from_before_answer_ids_keeps_its_answers_for_the_next_run(make_job, run_cli, monkeypatch, ledger_url, isolated_env, tmp_path):
    """A ledger at schema 4 (answers cached, no answer ids yet) is migrated when opened, and a re-run is answered from it."""
    from batchrunner.compile import compile_job
    from batchrunner.ledger import Ledger, postgres, schema, sqlite
    from batchrunner.request_key import LOCAL_SCOPE, line_key
    from batchrunner.requestfile import iter_lines
    from batchrunner.spec import load_spec

    if ledger_url is not None:
        monkeypatch.setenv("BATCHRUNNER_LEDGER", ledger_url)
    job = make_job(reviews(20))
    spec = load_spec(job.spec)
    lines = [line for shard in compile_job(spec, tmp_path / "seed").shards if shard.path for line in iter_lines(shard.path)]
    with monkeypatch.context() as version_4:
        for store in (sqlite, postgres):
            version_4.setattr(store, "MIGRATIONS", schema.MIGRATIONS[:4])
        with Ledger(isolated_env) as ledger, ledger.transaction() as db:
            db.executemany(
                "INSERT INTO answer_cache VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(LOCAL_SCOPE, line_key(line, spec.api_version), spec.model,
                  b'"text":"answer %d","parsed":null,"stop_reason":"end_turn","usage":{"input_tokens":40,"output_tokens":5},'
                  b'"error":null' % i, 40, 5, 0, 0, "msgbatch_yesterday", 1, "yesterday", "2026-11-30T02:00:00.000000Z")
                 for i, line in enumerate(lines)],
            )

    rerun = submit(run_cli, job.spec, "--backend", "local")

    assert rerun["summary"]["cached"] == 20 and rerun["summary"]["counts"]["succeeded"] == 20
    out = read_rows(job.output)
    assert [row["text"] for row in out] == [f"answer {i}" for i in range(20)]
    assert {(row["cached"], row["batch_id"], row["attempt"]) for row in out} == {(True, "msgbatch_yesterday", 1)}
    rows = reviews(20)
    write_rows(job.rows, [dict(row, text=row["text"] + " (edited)") if row["id"] == "r-3" else row for row in rows])
    edited = submit(run_cli, job.spec, "--backend", "local")
    assert edited["summary"]["cached"] == 19, "the edited row is sent, and its answer cached beside the old ones"
    again = submit(run_cli, job.spec, "--backend", "local")
    assert again["summary"]["cached"] == 20
    stats = orjson.loads(run_cli("--json", "cache", "stats").stdout)
    assert stats["entries"] == 21
