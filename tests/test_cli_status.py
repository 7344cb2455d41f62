"""`status` and `collect --all`/`resume --all`: a script can tell done, failed and in progress apart."""

from __future__ import annotations

import orjson
from helpers import reviews

from batchrunner.ledger import run_lock


def test_status_exits_with_the_runs_outcome(make_job, run_cli, monkeypatch):
    done = make_job(reviews(2), name="done")
    failed_rows = reviews(2)
    failed_rows[0]["text"] += "[[emulator:expired]]"
    failed = make_job(failed_rows, name="failed")
    run_cli("submit", done.spec, "--run-id", "done-run")
    run_cli("submit", failed.spec, "--run-id", "failed-run")
    monkeypatch.setenv("BATCHRUNNER_LOCAL_PROCESSING_SECONDS", "30")
    run_cli("submit", done.spec, "--run-id", "running-run", "--detach", "--no-cache")

    assert run_cli("status", "done-run").exit_code == 0
    assert run_cli("status", "failed-run").exit_code == 3
    running = run_cli("status", "running-run")
    assert running.exit_code == 4
    assert "still running" in running.stdout


def test_a_run_whose_batches_ended_but_were_not_collected_says_collect_it(make_job, run_cli, monkeypatch):
    job = make_job(reviews(3))
    monkeypatch.setenv("BATCHRUNNER_FAIL_WRITE_AT", "collect.download")
    assert run_cli("submit", job.spec, "--run-id", "ended").exit_code == 1
    monkeypatch.delenv("BATCHRUNNER_FAIL_WRITE_AT")

    status = run_cli("status", "ended")

    assert status.exit_code == 4
    assert "still running" not in status.stdout
    assert "ended — run `batchrunner collect ended`" in status.stdout
    assert run_cli("collect", "ended").exit_code == 0


def test_collect_all_and_resume_all_exit_4_and_name_a_run_another_process_holds(make_job, run_cli, isolated_env, monkeypatch):
    monkeypatch.setenv("BATCHRUNNER_LOCAL_PROCESSING_SECONDS", "30")
    job = make_job(reviews(2))
    run_cli("submit", job.spec, "--run-id", "held", "--detach")

    with run_lock(isolated_env, "held"):
        collected = run_cli("-q", "collect", "--all")
        resumed = run_cli("-q", "--json", "resume", "--all", "--detach")

    assert collected.exit_code == 4
    assert "skipped: run held is being worked on by pid" in collected.stderr
    assert "nothing to collect" not in collected.stdout
    assert resumed.exit_code == 4
    assert "skipped: run held" in resumed.stderr
    (outcome,) = orjson.loads(resumed.stdout)["runs"]
    assert (outcome["run"]["id"], outcome["exit_code"]) == ("held", 4)
    assert "being worked on" in outcome["skipped"]
