"""`retry`, `cancel` and the run lock: re-run only what failed, stop what runs, one process per run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import orjson
from helpers import read_rows, reviews

FLAKY = "[[emulator:errored_once:overloaded_error]]"
EXPIRES_ONCE = "[[emulator:expired_once]]"
BAD_REQUEST = "[[emulator:errored:invalid_request_error]]"


def mixed_rows() -> list[dict[str, str]]:
    rows = reviews(10)
    rows[1]["text"] += FLAKY
    rows[4]["text"] += EXPIRES_ONCE
    rows[7]["text"] += BAD_REQUEST
    return rows


def statuses(path) -> dict[str, str]:
    return {row["custom_id"]: row["status"] for row in read_rows(path)}


def test_failed_requests_exit_3_and_retry_sends_exactly_the_retryable_ones(make_job, run_cli):
    job = make_job(mixed_rows())

    first = run_cli("--json", "submit", job.spec)

    assert first.exit_code == 3
    run_id = orjson.loads(first.stdout)["run"]["id"]
    after_first = statuses(job.output)
    assert (after_first["r-2"], after_first["r-5"], after_first["r-8"]) == ("errored", "expired", "errored")
    assert list(after_first.values()).count("succeeded") == 7

    retried = run_cli("--json", "retry", run_id)

    assert retried.exit_code == 3, "the invalid request is not retried by default, so it still fails"
    attempt_two = [b for b in orjson.loads(retried.stdout)["batches"] if b["attempt"] == 2]
    assert sum(b["requests"] for b in attempt_two) == 2
    after_retry = read_rows(job.output)
    by_id = {row["custom_id"]: row for row in after_retry}
    assert (by_id["r-2"]["status"], by_id["r-2"]["attempt"]) == ("succeeded", 2)
    assert (by_id["r-5"]["status"], by_id["r-5"]["attempt"]) == ("succeeded", 2)
    assert (by_id["r-8"]["status"], by_id["r-8"]["attempt"]) == ("errored", 1)
    assert by_id["r-1"]["attempt"] == 1
    assert [row["custom_id"] for row in after_retry] == [f"r-{i}" for i in range(1, 11)]


def test_retry_by_custom_id_and_ids_file(make_job, run_cli, tmp_path):
    job = make_job(mixed_rows())
    run_id = orjson.loads(run_cli("--json", "submit", job.spec).stdout)["run"]["id"]
    ids = tmp_path / "ids.txt"
    ids.write_text("# the flaky one\nr-2\n\n")

    result = run_cli("--json", "retry", run_id, "--ids-file", ids, "--custom-id", "r-5")

    assert [b["requests"] for b in orjson.loads(result.stdout)["batches"] if b["attempt"] == 2] == [2]
    assert statuses(job.output)["r-2"] == "succeeded"


def test_retry_refuses_unknown_or_succeeded_ids_with_exit_2(make_job, run_cli):
    job = make_job(mixed_rows())
    run_id = orjson.loads(run_cli("--json", "submit", job.spec).stdout)["run"]["id"]

    result = run_cli("retry", run_id, "--custom-id", "r-99", "--custom-id", "r-1")

    assert result.exit_code == 2
    assert "'r-99' is not a request of run" in result.stderr
    assert "'r-1' already succeeded" in result.stderr


def test_an_unknown_id_in_an_ids_file_is_named_at_its_line(make_job, run_cli, tmp_path):
    job = make_job(mixed_rows())
    run_id = orjson.loads(run_cli("--json", "submit", job.spec).stdout)["run"]["id"]
    ids = tmp_path / "ids.txt"
    ids.write_text("r-2\n# from yesterday's log\nr-99\n")

    result = run_cli("retry", run_id, "--ids-file", ids, "--custom-id", "r-1")

    assert result.exit_code == 2
    assert f"{ids}:3: 'r-99' is not a request of run {run_id}" in result.stderr
    assert "--custom-id: 'r-1' already succeeded" in result.stderr


def test_the_spec_retry_policy_retries_on_its_own(make_job, run_cli):
    job = make_job(mixed_rows(), extra="retry: {max_attempts: 2}\n")

    result = run_cli("submit", job.spec)

    assert result.exit_code == 3
    assert "retry policy: attempt 2 sends 2 failed request(s) again" in result.stderr
    final = statuses(job.output)
    assert (final["r-2"], final["r-5"], final["r-8"]) == ("succeeded", "succeeded", "errored")


def test_cancel_ends_the_batch_with_partial_results_collected(make_job, run_cli, monkeypatch):
    monkeypatch.setenv("BATCHRUNNER_LOCAL_PROCESSING_SECONDS", "20")
    job = make_job(reviews(6))
    run_id = orjson.loads(run_cli("--json", "submit", job.spec, "--detach").stdout)["run"]["id"]

    canceled = run_cli("--json", "cancel", run_id)

    assert canceled.exit_code == 0
    assert orjson.loads(canceled.stdout)["batches"][0]["processing_status"] == "canceling"
    assert re.search(r"attempt 1 batch 1: canceling +msgbatch_", run_cli("status", run_id).stdout)
    watched = run_cli("watch", run_id, "--timeout", "30")
    assert watched.exit_code == 3
    again = run_cli("cancel", run_id)
    assert again.exit_code == 0 and f"run {run_id} has no running batch: nothing to cancel" in again.stderr
    assert set(statuses(job.output).values()) <= {"canceled", "succeeded"}
    assert "canceled" in statuses(job.output).values()


def test_a_second_process_on_the_same_run_exits_75_at_once(make_job, tmp_path):
    job = make_job(reviews(3))
    home = tmp_path / "lockhome"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env["BATCHRUNNER_LOCAL_PROCESSING_SECONDS"] = "5"
    command = [sys.executable, "-m", "batchrunner", "--home", str(home)]
    first = subprocess.Popen([*command, "submit", str(job.spec), "--run-id", "locked"], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not (home / "locks" / "locked.lock").exists() or not (home / "runs" / "locked").exists():
            assert time.monotonic() < deadline, "the first process never took the lock"
            time.sleep(0.05)
        second = subprocess.run([*command, "watch", "locked"], env=env, capture_output=True, text=True, timeout=30)
        holder_still_running = first.poll() is None
    finally:
        first.wait(timeout=60)
    assert second.returncode == 75
    assert f"pid {first.pid}" in second.stderr
    assert holder_still_running, "the second process did not wait for the first to finish"
    assert first.returncode == 0


def test_retry_by_error_type_sends_only_those_errors_not_the_expired_rows(make_job, run_cli):
    job = make_job(mixed_rows())
    run_id = orjson.loads(run_cli("--json", "submit", job.spec).stdout)["run"]["id"]

    result = run_cli("--json", "retry", run_id, "--error-type", "overloaded_error")

    assert [b["requests"] for b in orjson.loads(result.stdout)["batches"] if b["attempt"] == 2] == [1]
    final = statuses(job.output)
    assert (final["r-2"], final["r-5"], final["r-8"]) == ("succeeded", "expired", "errored")


def test_an_ids_file_may_carry_trailing_comments(make_job, run_cli, tmp_path):
    job = make_job(mixed_rows())
    run_id = orjson.loads(run_cli("--json", "submit", job.spec).stdout)["run"]["id"]
    ids = tmp_path / "ids.txt"
    ids.write_text("r-2   # flaky overload\n  # a comment line\n\nr-5\t# expired once\n")

    result = run_cli("--json", "retry", run_id, "--ids-file", ids)

    assert result.exit_code == 3, result.stderr
    assert [b["requests"] for b in orjson.loads(result.stdout)["batches"] if b["attempt"] == 2] == [2]
    assert (statuses(job.output)["r-2"], statuses(job.output)["r-5"]) == ("succeeded", "succeeded")


def test_the_retry_help_says_what_each_selector_picks(run_cli):
    help_text = " ".join(run_cli("retry", "--help").stdout.split())

    assert "with --error-type: only those errors" in help_text
    assert "output_invalid selects answers that failed output_schema" in help_text
    assert "# comments are skipped" in help_text


SCHEMA = "output_schema: {type: object, properties: {label: {enum: [positive, negative, neutral]}}, required: [label]}\n"


def invalid_once_rows() -> list[dict[str, str]]:
    rows = reviews(4)
    rows[1]["text"] += "[[emulator:invalid_json_once]]"
    rows[2]["text"] += "[[emulator:invalid_json_once]]"
    return rows


def test_answers_that_fail_the_output_schema_are_counted_and_exit_3(make_job, run_cli):
    job = make_job(invalid_once_rows(), extra=SCHEMA)

    result = run_cli("submit", job.spec)

    assert result.exit_code == 3
    assert "output_invalid: 2 answer(s) not valid under output_schema" in result.stdout
    assert "--error-type output_invalid` asks again" in result.stdout
    status = run_cli("--json", "status")
    assert status.exit_code == 3
    assert orjson.loads(status.stdout)["summary"]["output_invalid"] == 2
    rows = {row["custom_id"]: row for row in read_rows(job.output)}
    assert (rows["r-2"]["status"], rows["r-2"]["parsed"], rows["r-2"]["error"]["type"]) == ("succeeded", None, "output_invalid")


def test_retry_by_error_type_output_invalid_replaces_the_invalid_answers(make_job, run_cli):
    job = make_job(invalid_once_rows(), extra=SCHEMA)
    run_id = orjson.loads(run_cli("--json", "submit", job.spec).stdout)["run"]["id"]

    result = run_cli("--json", "retry", run_id, "--error-type", "output_invalid")

    assert result.exit_code == 0, result.stderr
    assert [b["requests"] for b in orjson.loads(result.stdout)["batches"] if b["attempt"] == 2] == [2]
    rows = {row["custom_id"]: row for row in read_rows(job.output)}
    assert (rows["r-2"]["parsed"] is not None, rows["r-2"]["error"], rows["r-2"]["attempt"]) == (True, None, 2)
    assert rows["r-1"]["attempt"] == 1


def test_retry_by_custom_id_sends_an_invalid_answer_again(make_job, run_cli):
    job = make_job(invalid_once_rows(), extra=SCHEMA)
    run_id = orjson.loads(run_cli("--json", "submit", job.spec).stdout)["run"]["id"]

    result = run_cli("retry", run_id, "--custom-id", "r-3")

    assert result.exit_code == 3, "r-2 is still invalid"
    rows = {row["custom_id"]: row for row in read_rows(job.output)}
    assert (rows["r-3"]["error"], rows["r-3"]["attempt"]) == (None, 2)
    assert rows["r-2"]["error"]["type"] == "output_invalid"


def test_when_every_failure_is_a_refused_request_the_summary_does_not_suggest_a_plain_retry(make_job, run_cli):
    rows = reviews(3)
    rows[0]["text"] += BAD_REQUEST
    job = make_job(rows)

    result = run_cli("submit", job.spec)

    assert result.exit_code == 3
    run_id = orjson.loads(run_cli("--json", "status").stdout)["run"]["id"]
    assert f"`batchrunner retry {run_id}`" not in result.stdout
    assert "fix the job" in result.stdout
    assert f"retry {run_id} --error-type invalid_request_error" in result.stdout


def test_the_spec_retry_policy_can_ask_again_for_invalid_answers(make_job, run_cli):
    job = make_job(invalid_once_rows(), extra=SCHEMA + "retry: {max_attempts: 2, error_types: [output_invalid]}\n")

    result = run_cli("submit", job.spec)

    assert result.exit_code == 0, result.stdout
    assert "retry policy: attempt 2 sends 2 failed request(s) again" in result.stderr
    assert all(row["parsed"] is not None for row in read_rows(job.output))
