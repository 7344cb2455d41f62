"""The command line behaves like the CLIs people know: global options after the command, usage
errors as JSON with --json, quiet closed pipes, exit 2 for unknown runs, -v logs each poll,
read-only commands start without the SDK, and shell completion."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from helpers import read_rows, reviews

from batchrunner.ledger import Ledger


def batchrunner(
    *args: str | Path, python: tuple[str, ...] = (), env: dict[str, str] | None = None, stdout: int = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    """A real process, as a shell runs it (the state home comes from BATCHRUNNER_HOME)."""
    command = [sys.executable, *python, "-m", "batchrunner", *map(str, args)]
    return subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, env=env, text=True, timeout=120)


def test_global_options_after_the_command_each_print_one_json_document(make_job, run_cli):
    job = make_job(reviews(3))
    run_id = orjson.loads(run_cli("submit", job.spec, "--json").stdout)["run"]["id"]

    for args in (
        ["runs", "--json"],
        ["status", run_id, "--json"],
        ["validate", job.spec, "--json"],
        ["collect", run_id, "--json"],
        ["files", "list", "--json", "-q"],
    ):
        result = run_cli(*args)
        assert result.exit_code == 0, (args, result.stderr)
        assert isinstance(orjson.loads(result.stdout), dict), args  # one document, nothing else on stdout


def test_a_relative_home_is_recorded_absolute_so_its_runs_work_from_any_folder(make_job, run_cli, tmp_path, monkeypatch, ledger_url):
    """`--home h9` records <cwd>/h9/runs/RUN, so another folder (or, on PostgreSQL, another host)
    is told where the data really is. A run an older version recorded as h9/runs/RUN still works
    from the folder it was made in: reading takes the stored path as it is."""
    if ledger_url:
        monkeypatch.setenv("BATCHRUNNER_LEDGER", ledger_url)
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    jobs = {run_id: make_job(reviews(2), name=run_id.replace("-", "_")) for run_id in ("mid-2", "old")}
    monkeypatch.chdir(work)
    for run_id, job in jobs.items():
        assert run_cli("--home", "h9", "-q", "submit", job.spec, "--run-id", run_id, "--detach").exit_code == 4
    home = Path.cwd() / "h9"
    with Ledger(home) as opened, opened.transaction() as db:
        db.execute("UPDATE runs SET run_dir = ? WHERE id = ?", ("h9/runs/old", "old"))  # as older versions wrote it

    monkeypatch.chdir(elsewhere)
    status = run_cli("--home", home, "--json", "status", "mid-2")
    watched = run_cli("--home", home, "-q", "watch", "mid-2")
    monkeypatch.chdir(work)
    old = run_cli("--home", "h9", "-q", "watch", "old")

    assert orjson.loads(status.stdout)["run"]["store"] == str(home / "runs" / "mid-2")
    assert watched.exit_code == 0, watched.stderr
    assert old.exit_code == 0, old.stderr
    assert [len(read_rows(job.output)) for job in jobs.values()] == [2, 2]


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["status"], 2, "there are no runs in"),
        (["runs"], 0, "no runs yet"),
        (["collect", "--all"], 0, "nothing to collect"),
    ],
)
def test_commands_that_only_look_create_no_state_home(args, code, says, run_cli, isolated_env):
    result = run_cli(*args)

    assert result.exit_code == code, result.stderr
    assert says in result.stdout + result.stderr
    assert not isolated_env.exists()


def test_home_after_the_command_wins_over_the_one_before(make_job, run_cli, tmp_path):
    job = make_job(reviews(2))
    other = tmp_path / "other-home"

    submitted = run_cli("--home", tmp_path / "ignored", "submit", job.spec, "--home", other, "-q", "--json")

    assert submitted.exit_code == 0, submitted.stderr
    run_id = orjson.loads(submitted.stdout)["run"]["id"]
    assert [r["id"] for r in orjson.loads(run_cli("runs", "--json", "--home", other).stdout)["runs"]] == [run_id]
    assert orjson.loads(run_cli("runs", "--json").stdout)["runs"] == []
    assert not (tmp_path / "ignored").exists()
    assert submitted.stderr == "", "-q after the command silences notices too"


@pytest.mark.parametrize(
    "args",
    [
        ["status", "--bogus", "--json"],  # unknown option, --json after it
        ["--json", "--bogus", "runs"],  # unknown global option
        ["--json", "watch"],  # missing argument
        ["files", "upload", "--json", "missing.txt"],  # a path that does not exist
        ["files", "list", "--backend", "nope", "--json"],  # a bad choice
        ["--json", "nosuchcommand"],
    ],
)
def test_a_usage_error_with_json_is_one_json_document_and_exit_2(args, run_cli):
    result = run_cli(*args)

    assert result.exit_code == 2
    error = orjson.loads(result.stdout)["error"]
    assert error["exit_code"] == 2 and error["type"] and error["message"]
    assert "Error:" in result.stderr and error["message"] in result.stderr


def test_a_usage_error_without_json_leaves_stdout_empty(run_cli):
    result = run_cli("status", "--bogus")
    assert result.exit_code == 2 and result.stdout == "" and "No such option" in result.stderr


@pytest.mark.parametrize("args", [["runs"], ["--json", "runs"], ["--json", "status"], ["validate", "JOB"]])
def test_a_closed_pipe_is_not_an_error(args, make_job, run_cli):
    """`batchrunner runs | head -1`: the reader has gone before anything is written."""
    job = make_job(reviews(2))
    assert run_cli("-q", "submit", job.spec).exit_code == 0
    args = [str(job.spec) if a == "JOB" else a for a in args]
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = batchrunner(*args, stdout=write_end)
    finally:
        os.close(write_end)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no "error: Broken pipe", no "Exception ignored", no traceback


def test_a_closed_pipe_keeps_the_exit_code_of_an_error():
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = batchrunner("--json", "status", "nope", stdout=write_end)
    finally:
        os.close(write_end)

    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "Exception ignored" not in result.stderr


def test_verbose_logs_each_poll_and_the_wait_before_the_next(make_job, run_cli, monkeypatch):
    monkeypatch.setenv("BATCHRUNNER_LOCAL_PROCESSING_SECONDS", "1.5")  # the first poll surely sees it running
    job = make_job(reviews(3))

    result = run_cli("-v", "submit", job.spec)

    assert result.exit_code == 0, result.stderr
    polls = [line for line in result.stderr.splitlines() if " poll msgbatch_" in line]
    waiting = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ poll msgbatch_\w+ in_progress \(0/3 done\), next in \d+\.\d s$"
    assert re.match(waiting, polls[0]), polls
    assert re.match(r".* poll msgbatch_\w+ ended \(3/3 done\)$", polls[-1]), polls


def test_without_verbose_polls_are_not_logged(make_job, run_cli):
    result = run_cli("submit", make_job(reviews(2)).spec)
    assert result.exit_code == 0 and " poll " not in result.stderr


@pytest.mark.parametrize("command", ["status", "watch", "collect", "resume", "retry", "cancel"])
def test_an_unknown_run_is_a_usage_error(command, make_job, run_cli, isolated_env):
    assert run_cli("-q", "submit", make_job(reviews(1)).spec).exit_code == 0

    result = run_cli("--json", command, "nope")

    assert result.exit_code == 2
    assert orjson.loads(result.stdout)["error"]["type"] == "UnknownRun"
    assert "no run 'nope'" in result.stderr and "`batchrunner runs`" in result.stderr
    assert not (isolated_env / "locks" / "nope.lock").exists(), "nothing is written for a mistyped id"


@pytest.mark.parametrize("command", ["watch", "collect", "resume", "retry", "cancel"])
def test_an_unknown_run_where_there_is_no_ledger_creates_no_state_home(command, run_cli, isolated_env):
    result = run_cli(command, "nope")

    assert result.exit_code == 2
    assert "no run 'nope'" in result.stderr
    assert not isolated_env.exists()


def test_validate_refuses_an_output_that_is_a_folder_at_its_line(make_job, run_cli):
    job = make_job(reviews(2))
    job.output.mkdir(parents=True)

    result = run_cli("--json", "validate", job.spec)

    assert result.exit_code == 2
    (problem,) = orjson.loads(result.stdout)["error"]["problems"]
    assert problem["line"] == 7 and "is a folder" in problem["message"]
    assert "job.yaml:7: `output`" in result.stderr and "is a folder" in result.stderr


@pytest.mark.parametrize("command", ["runs", "status"])
def test_commands_that_read_the_ledger_do_not_import_the_sdk(command, make_job, run_cli):
    assert run_cli("-q", "submit", make_job(reviews(2)).spec).exit_code == 0

    result = batchrunner(command, python=("-X", "importtime"))

    assert result.returncode == 0, result.stderr[-500:]

    modules = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "batchrunner.cli" in modules, result.stderr[-500:]
    assert not {m for m in modules if m == "anthropic" or m.startswith("anthropic.")}


def test_shell_completion_script_is_produced():
    result = batchrunner(env=os.environ | {"_BATCHRUNNER_COMPLETE": "bash_source"})
    assert result.returncode == 0
    assert "complete -o nosort -F _batchrunner_completion batchrunner" in result.stdout


def test_shell_completion_offers_the_run_ids_newest_first(make_job, run_cli):
    job = make_job(reviews(1))
    for run_id in ("first", "second"):
        assert run_cli("-q", "submit", job.spec, "--run-id", run_id, "--detach").exit_code == 4
    env = os.environ | {"_BATCHRUNNER_COMPLETE": "bash_complete", "COMP_WORDS": "batchrunner status ", "COMP_CWORD": "2"}

    result = batchrunner(env=env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["plain,second", "plain,first"]


def test_on_postgresql_collect_all_and_completion_create_no_state_home(isolated_env, pg_ledger, run_cli, monkeypatch):
    """The run folders of a PostgreSQL ledger live in the state home: looking must not make it."""
    monkeypatch.setenv("BATCHRUNNER_LEDGER", pg_ledger)
    env = os.environ | {"_BATCHRUNNER_COMPLETE": "bash_complete", "COMP_WORDS": "batchrunner status ", "COMP_CWORD": "2"}

    collected = run_cli("collect", "--all")
    completed = batchrunner(env=env)

    assert (collected.exit_code, collected.stdout.strip()) == (0, "nothing to collect")
    assert (completed.returncode, completed.stdout.split(), completed.stderr) == (0, [], "")
    assert not isolated_env.exists()
