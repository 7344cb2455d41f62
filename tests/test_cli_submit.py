"""`submit`, `collect`, `status`, `runs`: a job from spec to joined output, as a user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import anthropic
import orjson
import pytest
from helpers import read_rows, reviews

from batchrunner.emulator import EmulatorConfig, EmulatorServer, start_in_thread

OUTPUT_KEYS = [
    "custom_id",
    "status",
    "row",
    "text",
    "parsed",
    "stop_reason",
    "usage",
    "error",
    "batch_id",
    "attempt",
    "backend",
    "cached",
]
SENTIMENT = """output_schema:
  type: object
  properties: {label: {enum: [positive, negative, neutral]}}
  required: [label]
"""


def use_server(monkeypatch: pytest.MonkeyPatch, server: EmulatorServer) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-key")


def test_submit_on_the_local_emulator_writes_one_row_per_input_row_in_order(make_job, run_cli):
    rows = reviews(25)
    job = make_job(rows, extra=SENTIMENT, batch_size=10)

    result = run_cli("submit", job.spec)

    assert result.exit_code == 0, result.output + result.stderr
    assert "running on the built-in emulator" in result.stderr
    out = read_rows(job.output)
    assert [r["custom_id"] for r in out] == [r["id"] for r in rows]
    assert [r["row"] for r in out] == rows
    first = out[0]
    assert list(first) == OUTPUT_KEYS
    assert first["status"] == "succeeded" and first["error"] is None
    assert first["parsed"]["label"] in ("positive", "negative", "neutral")
    assert orjson.loads(first["text"]) == first["parsed"]
    assert first["usage"]["input_tokens"] > 0 and first["stop_reason"]
    assert first["backend"] == "local" and first["attempt"] == 1
    assert len({r["batch_id"] for r in out}) == 3, "25 rows at batch_size 10 are three batches"
    assert "25 succeeded" in result.output


def test_submit_reaches_a_separately_started_server_through_the_anthropic_backend(
    make_job, run_cli, emulator, monkeypatch
):
    use_server(monkeypatch, emulator)
    job = make_job(reviews(5))

    result = run_cli("submit", job.spec, "--backend", "anthropic")

    assert result.exit_code == 0, result.stderr
    assert "simulated" not in result.stderr
    out = read_rows(job.output)
    assert {r["backend"] for r in out} == {"anthropic"}
    stats = emulator.stats()
    assert stats["batches_created"] == 1


def test_the_request_file_is_uploaded_with_purpose_batch_and_deleted_after_collection(
    make_job, run_cli, emulator, monkeypatch
):
    use_server(monkeypatch, emulator)
    job = make_job(reviews(3))

    assert run_cli("submit", job.spec).exit_code == 0

    status = orjson.loads(run_cli("--json", "status").stdout)
    (batch,) = status["batches"]
    assert batch["file_id"].startswith("file_")
    client = anthropic.Anthropic(base_url=emulator.base_url, api_key="k")
    with pytest.raises(anthropic.NotFoundError):
        client.files.retrieve_metadata(batch["file_id"])


def test_keep_request_files_keeps_the_upload_with_its_purpose(make_job, run_cli, emulator, monkeypatch):
    use_server(monkeypatch, emulator)
    job = make_job(reviews(3), extra="keep_request_files: true\n")

    assert run_cli("submit", job.spec).exit_code == 0

    file_id = orjson.loads(run_cli("--json", "status").stdout)["batches"][0]["file_id"]
    meta = anthropic.Anthropic(base_url=emulator.base_url, api_key="k").files.retrieve_metadata(file_id)
    assert meta.model_dump().get("purpose") == "batch"
    assert meta.filename.endswith("requests-000.jsonl")


def test_resume_without_a_run_finishes_the_latest_one(make_job, run_cli):
    first, latest = make_job(reviews(2), name="first"), make_job(reviews(3), name="latest")
    assert run_cli("submit", first.spec, "--detach").exit_code == 4
    detached = run_cli("--json", "submit", latest.spec, "--detach")

    resumed = run_cli("--json", "resume")

    assert resumed.exit_code == 0, resumed.stderr
    assert orjson.loads(resumed.stdout)["run"]["id"] == orjson.loads(detached.stdout)["run"]["id"]
    assert len(read_rows(latest.output)) == 3 and not first.output.exists()
    assert run_cli("resume", "some-run", "--all").exit_code == 2


def test_detach_returns_4_and_a_later_collect_finishes_the_output(make_job, run_cli):
    job = make_job(reviews(12), batch_size=5)

    detached = run_cli("--json", "submit", job.spec, "--detach")

    assert detached.exit_code == 4
    run_id = orjson.loads(detached.stdout)["run"]["id"]
    assert not job.output.exists()
    time.sleep(0.5)
    collected = run_cli("collect", run_id)
    assert collected.exit_code == 0, collected.stderr
    assert [r["custom_id"] for r in read_rows(job.output)] == [f"r-{i}" for i in range(1, 13)]
    again = run_cli("collect", run_id)
    assert again.exit_code == 0
    assert "nothing to collect" in run_cli("collect", "--all").output


def test_collect_before_the_batches_end_says_still_running(make_job, run_cli, monkeypatch):
    monkeypatch.setenv("BATCHRUNNER_LOCAL_PROCESSING_SECONDS", "30")
    job = make_job(reviews(3))
    run_id = orjson.loads(run_cli("--json", "submit", job.spec, "--detach").stdout)["run"]["id"]

    result = run_cli("collect", run_id)

    assert result.exit_code == 4
    assert f"batchrunner watch {run_id}" in result.output
    assert not job.output.exists()


def test_timeout_stops_waiting_with_exit_4_and_watch_finishes_later(make_job, run_cli, monkeypatch):
    monkeypatch.setenv("BATCHRUNNER_LOCAL_PROCESSING_SECONDS", "1.5")
    job = make_job(reviews(4))

    first = run_cli("--json", "submit", job.spec, "--timeout", "0.2")

    assert first.exit_code == 4
    run_id = orjson.loads(first.stdout)["run"]["id"]
    watched = run_cli("watch", run_id)
    assert watched.exit_code == 0, watched.stderr
    assert len(read_rows(job.output)) == 4


def test_json_status_and_runs_describe_the_run(make_job, run_cli):
    job = make_job(reviews(4))
    assert run_cli("submit", job.spec).exit_code == 0

    status = orjson.loads(run_cli("--json", "status").stdout)
    runs = orjson.loads(run_cli("--json", "runs").stdout)

    assert status["run"]["state"] == "done"
    assert status["summary"]["counts"]["succeeded"] == 4
    assert status["summary"]["cost_usd"] > 0
    assert status["summary"]["input_tokens"] > 0
    assert status["batches"][0]["polls"] >= 1
    assert [r["id"] for r in runs["runs"]] == [status["run"]["id"]]
    assert runs["runs"][0]["counts"]["succeeded"] == 4


def test_submitting_again_with_the_same_run_id_continues_instead_of_paying_twice(make_job, run_cli, emulator, monkeypatch):
    use_server(monkeypatch, emulator)
    job = make_job(reviews(3))

    assert run_cli("submit", job.spec, "--run-id", "nightly-1").exit_code == 0
    again = run_cli("submit", job.spec, "--run-id", "nightly-1")

    assert again.exit_code == 0
    assert "exists; continuing" in again.stderr and "changed after" not in again.stderr
    assert emulator.stats()["batches_created"] == 1


def test_continuing_a_run_whose_spec_was_edited_since_says_the_edit_is_not_sent(make_job, run_cli):
    job = make_job(reviews(3))
    assert run_cli("submit", job.spec, "--run-id", "nightly-1").exit_code == 0
    job.spec.write_text(job.spec.read_text().replace("max_tokens: 32", "max_tokens: 64"))
    later = time.time() + 5  # as if edited a few seconds after the run, whatever the clock's resolution
    os.utime(job.spec, (later, later))

    again = run_cli("submit", job.spec, "--run-id", "nightly-1")

    assert again.exit_code == 0
    assert "job.yaml changed after run nightly-1 was compiled: continuing it sends the requests compiled then" in again.stderr
    assert "another --run-id" in again.stderr


def test_a_budget_below_the_worst_case_stops_before_anything_is_sent(make_job, run_cli, emulator, monkeypatch, isolated_env):
    use_server(monkeypatch, emulator)
    job = make_job(reviews(50), extra="budget_usd: 0.00001\n")

    result = run_cli("submit", job.spec)

    assert result.exit_code == 2
    assert "budget_usd" in result.stderr and "--force" in result.stderr
    assert emulator.stats()["batches_created"] == 0
    assert not any((isolated_env / "runs").glob("*")), "no run folder is left behind"
    assert run_cli("submit", job.spec, "--force").exit_code == 0


def test_an_output_path_that_is_a_folder_is_refused_before_sending(make_job, run_cli, emulator, monkeypatch):
    use_server(monkeypatch, emulator)
    job = make_job(reviews(2))
    job.output.mkdir(parents=True)

    result = run_cli("submit", job.spec)

    assert result.exit_code == 2
    assert "is a folder" in result.stderr
    assert emulator.stats()["batches_created"] == 0


def test_a_run_id_of_other_characters_is_refused_before_anything(make_job, run_cli, isolated_env):
    result = run_cli("submit", make_job(reviews(2)).spec, "--run-id", "tonight's run")

    assert result.exit_code == 2
    assert "--run-id \"tonight's run\": use letters, digits, '_', '-' and '.'" in result.stderr
    assert "simulated" not in result.stderr, "no notice about a backend that is not going to be used"
    assert not (isolated_env / "ledger.sqlite3").exists()


def test_unknown_run_is_a_clear_error(run_cli):
    result = run_cli("status", "nope")
    assert result.exit_code == 2
    assert "no run 'nope'" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_the_anthropic_backend_without_a_key_says_how_to_fix_it(make_job, run_cli):
    job = make_job(reviews(2))
    result = run_cli("submit", job.spec, "--backend", "anthropic")
    assert result.exit_code == 2
    assert "ANTHROPIC_API_KEY" in result.stderr


def test_the_cli_runs_as_a_real_process(make_job, tmp_path):
    job = make_job(reviews(3))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    proc = subprocess.run(
        [sys.executable, "-m", "batchrunner", "--home", str(tmp_path / "h"), "submit", str(job.spec)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(read_rows(job.output)) == 3


def test_output_is_not_world_readable(make_job, run_cli):
    job = make_job(reviews(2))
    assert run_cli("submit", job.spec).exit_code == 0
    assert job.output.stat().st_mode & 0o077 == 0


def test_the_spec_poll_timeout_stops_waiting_like_the_flag(make_job, run_cli, monkeypatch):
    monkeypatch.setenv("BATCHRUNNER_LOCAL_PROCESSING_SECONDS", "30")
    job = make_job(reviews(2))
    spec = job.spec.read_text().replace("poll: {", "poll: {timeout: 0.3, ")
    job.spec.write_text(spec)

    result = run_cli("submit", job.spec)

    assert result.exit_code == 4
    assert "stopped waiting after 0.3 s" in result.stderr


def test_ctrl_c_detaches_says_how_to_come_back_and_never_cancels(make_job, run_cli, emulator, monkeypatch, tmp_path):
    use_server(monkeypatch, emulator)
    job = make_job([{"id": "r-1", "text": "takes a while [[emulator:slow]]"}, *reviews(2, start=2)])
    log = tmp_path / "submit.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "batchrunner", "submit", str(job.spec), "--run-id", "interrupted", "--backend", "anthropic"],
            stderr=stderr,
            stdout=subprocess.DEVNULL,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as from a terminal
        )
    deadline = time.monotonic() + 60
    while "created msgbatch_" not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)

    process.send_signal(signal.SIGINT)

    assert process.wait(timeout=30) == 4
    assert "detached from run interrupted" in log.read_text()
    assert "batchrunner watch interrupted" in log.read_text()
    assert not any("cancel" in call for call in emulator.stats()["calls"])
    watched = run_cli("watch", "interrupted")
    assert watched.exit_code == 0, watched.stderr
    assert [row["status"] for row in read_rows(job.output)] == ["succeeded"] * 3


def test_a_strict_server_refusing_purpose_gets_the_request_file_without_it(make_job, run_cli, tmp_path, monkeypatch):
    with start_in_thread(EmulatorConfig(data_dir=tmp_path / "strict", processing_seconds=0.2, reject_unknown_fields=True)) as strict:
        use_server(monkeypatch, strict)
        job = make_job(reviews(3), extra="keep_request_files: true\n")
        result = run_cli("submit", job.spec)
        (batch,) = orjson.loads(run_cli("--json", "status").stdout)["batches"]
        meta = anthropic.Anthropic(base_url=strict.base_url, api_key="k").files.retrieve_metadata(batch["file_id"])
        stats = strict.stats()

    assert result.exit_code == 0, result.output
    assert batch["purpose_accepted"] is False
    assert meta.model_dump().get("purpose") is None and meta.filename.endswith("requests-000.jsonl")
    assert (stats["calls"]["POST /v1/files"], stats["batches_created"]) == (2, 1)
    assert len(read_rows(job.output)) == 3


def test_upload_request_files_false_sends_no_file_and_the_run_still_completes(make_job, run_cli, emulator, monkeypatch):
    use_server(monkeypatch, emulator)
    job = make_job(reviews(3), extra="upload_request_files: false\n")

    assert run_cli("submit", job.spec).exit_code == 0

    (batch,) = orjson.loads(run_cli("--json", "status").stdout)["batches"]
    assert batch["file_id"] is None
    assert "POST /v1/files" not in emulator.stats()["calls"]
    assert len(read_rows(job.output)) == 3


def test_results_in_any_order_are_joined_back_in_input_order(make_job, run_cli, emulator, monkeypatch, isolated_env):
    use_server(monkeypatch, emulator)
    rows = reviews(40)
    job = make_job(rows)

    assert run_cli("submit", job.spec).exit_code == 0

    status = orjson.loads(run_cli("--json", "status").stdout)
    (batch,) = status["batches"]
    results = read_rows(isolated_env / "runs" / status["run"]["id"] / "results" / f"{batch['batch_id']}.jsonl")
    assert [r["custom_id"] for r in results] != [r["id"] for r in rows], "the emulator shuffles results"
    assert [r["custom_id"] for r in read_rows(job.output)] == [r["id"] for r in rows]


def test_the_specs_api_version_is_sent_on_every_call_of_the_run_retry_included(make_job, run_cli, emulator, monkeypatch):
    use_server(monkeypatch, emulator)
    rows = reviews(2) + [{"id": "flaky", "text": "[[emulator:errored_once:overloaded_error]]"}]
    job = make_job(rows, extra="api_version: 2023-06-01\nparams: {temperature: 0.5}\n")

    assert run_cli("submit", job.spec).exit_code == 3  # the emulator judges temperature by the create's version
    run_id = orjson.loads(run_cli("--json", "status").stdout)["run"]["id"]
    job.spec.write_text(job.spec.read_text().replace("api_version: 2023-06-01\n", ""))  # a later edit changes nothing

    result = run_cli("retry", run_id)

    assert result.exit_code == 0, result.output
    out = read_rows(job.output)
    assert [(r["status"], r["attempt"]) for r in out] == [("succeeded", 1), ("succeeded", 1), ("succeeded", 2)]
