"""A damaged, emptied or read-only ledger: one message that names the file and what to do, never a traceback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import orjson
import pytest
from helpers import reviews

COMMANDS = (("runs",), ("status",), ("status", "r1"), ("collect", "r1"), ("collect", "--all"), ("resume", "--all"),
            ("retry", "r1"), ("watch", "r1"), ("cancel", "r1"))


@pytest.fixture
def finished_home(make_job, run_cli, isolated_env) -> Path:
    job = make_job(reviews(300))
    assert run_cli("submit", job.spec, "--run-id", "r1").exit_code == 0
    ledger = isolated_env / "ledger.sqlite3"
    assert not Path(f"{ledger}-wal").exists(), "the ledger is checkpointed once every connection closed"
    return isolated_env


def damage(ledger: Path, how: str) -> None:
    data = ledger.read_bytes()
    if how == "truncated":
        ledger.write_bytes(data[: len(data) // 3])
    else:
        ledger.write_bytes(data[:100] + os.urandom(4096) * (len(data) // 4096))


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_every_command_on_a_damaged_ledger_names_it_and_says_what_to_do(finished_home, run_cli, how):
    ledger = finished_home / "ledger.sqlite3"
    damage(ledger, how)

    for command in COMMANDS:
        result = run_cli(*command)
        assert result.exit_code == 1, (command, result.stderr)
        assert result.stderr.count("\n") == 1, (command, result.stderr)
        assert f"error: the ledger {ledger} is damaged" in result.stderr, (command, result.stderr)
        assert "Restore it" in result.stderr and "move it aside" in result.stderr
        assert "forgets every run" in result.stderr
        assert "unexpected" not in result.stderr


def test_a_ledger_emptied_beside_run_folders_is_refused_not_taken_for_a_new_home(finished_home, run_cli):
    ledger = finished_home / "ledger.sqlite3"
    ledger.write_bytes(b"")

    for command in (("runs",), ("status",), ("collect", "--all")):
        result = run_cli(*command)
        assert result.exit_code == 1, (command, result.stdout)
        assert f"the ledger {ledger} is empty (0 bytes)" in result.stderr
        assert "1 run folder(s) (r1)" in result.stderr
    assert ledger.stat().st_size == 0, "nothing was written into it"


def test_moving_a_damaged_ledger_aside_starts_afresh(finished_home, run_cli):
    ledger = finished_home / "ledger.sqlite3"
    damage(ledger, "garbage")
    ledger.rename(finished_home / "ledger.sqlite3.damaged")

    result = run_cli("runs")

    assert (result.exit_code, result.stdout.strip()) == (0, "no runs yet")


@pytest.fixture
def read_only_home(finished_home, tmp_path) -> Path:
    """The state home on a read-only file system (a bind mount: permission bits do not stop root)."""
    view = tmp_path / "ro-home"
    view.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(finished_home), str(view)], capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.decode().strip()}")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=False).returncode != 0:
            pytest.skip("cannot remount read-only here")
        yield view
    finally:
        subprocess.run(["umount", "-l", str(view)], check=False)


def test_status_and_runs_read_a_read_only_home(read_only_home, run_cli):
    runs = run_cli("--home", read_only_home, "runs")
    status = run_cli("--home", read_only_home, "--json", "status", "r1")

    assert runs.exit_code == 0, runs.stderr
    assert runs.stdout.startswith("r1 ")
    assert status.exit_code == 0, status.stderr
    assert orjson.loads(status.stdout)["summary"]["counts"]["succeeded"] == 300


def test_a_command_that_writes_on_a_read_only_home_says_so(read_only_home, run_cli):
    result = run_cli("--home", read_only_home, "collect", "r1")

    assert result.exit_code == 1
    assert f"cannot write the ledger {read_only_home / 'ledger.sqlite3'}" in result.stderr
    assert "`batchrunner status` and `batchrunner runs` still read it" in result.stderr


def test_damage_met_halfway_through_writing_the_output_is_named_too(make_job, run_cli, isolated_env):
    job = make_job(reviews(3000), extra="cache: false\n")  # no cached answers: the damaged last third holds results
    assert run_cli("submit", job.spec, "--run-id", "r1").exit_code == 0
    ledger = isolated_env / "ledger.sqlite3"
    data = ledger.read_bytes()
    ledger.write_bytes(data[: len(data) * 2 // 3] + os.urandom(len(data) - len(data) * 2 // 3))
    before = job.output.read_bytes()

    result = run_cli("collect", "r1")  # a finished run: collect writes its output again, scanning every row

    assert result.exit_code == 1
    assert f"error: the ledger {ledger} is damaged" in result.stderr
    assert job.output.read_bytes() == before, "the output is kept as it was"
