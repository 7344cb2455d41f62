"""`retry`, `cancel` and the run lock: re-run only what failed, stop what runs, one process per run."""

from __future__ import annotations

import os
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
    watched = run_cli("watch", run_id, "--timeout", "30")
    assert watched.exit_code == 3
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
