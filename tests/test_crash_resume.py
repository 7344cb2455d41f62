"""Kill -9 at every step boundary of submit and collect, then `resume`: nothing lost, nothing paid twice.
On the SQLite ledger at every point; on PostgreSQL at the points around each commit that guards an API call."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import read_rows, reviews

from batchrunner.crashpoints import POINTS
from batchrunner.emulator import EmulatorServer

ROWS = 30
SHARDS = 3
POSTGRES_POINTS = ("submit.intent", "collect.ingesting")  # submit.created: test_ledger_postgres.py, with two hosts resuming
CASES = [(point, "sqlite") for point in POINTS] + [(point, "postgresql") for point in POSTGRES_POINTS]


def batchrunner(home: Path, env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "batchrunner", "--home", str(home), *map(str, args)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def user_env(server: EmulatorServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "BATCHRUNNER_"))}
    env.update(
        ANTHROPIC_BASE_URL=server.base_url,
        ANTHROPIC_API_KEY="sk-test-key",
        BATCHRUNNER_RECONCILE_WAIT="1",
        BATCHRUNNER_DEBUG="1",
        **extra,
    )
    return env


@pytest.mark.parametrize(("point", "ledger"), CASES)
def test_sigkill_at_each_step_then_resume_completes_exactly_once(point, ledger, make_job, slow_emulator, tmp_path, request):
    job = make_job(reviews(ROWS), batch_size=ROWS // SHARDS)
    home = tmp_path / "state"
    on_postgres = {"BATCHRUNNER_LEDGER": request.getfixturevalue("pg_ledger")} if ledger == "postgresql" else {}

    crashed = batchrunner(
        home, user_env(slow_emulator, BATCHRUNNER_CRASH_AT=point, **on_postgres), "submit", job.spec, "--run-id", "nightly"
    )

    assert crashed.returncode == -9, f"the process did not reach {point}: {crashed.stderr}"
    env = user_env(slow_emulator, **on_postgres)
    if point in ("cache.planned", "compile.done"):
        missing = batchrunner(home, env, "resume", "nightly")
        assert missing.returncode == 2 and "no run 'nightly'" in missing.stderr
        recovered = batchrunner(home, env, "submit", job.spec, "--run-id", "nightly")
    else:
        recovered = batchrunner(home, env, "resume", "nightly")

    assert recovered.returncode == 0, recovered.stderr
    assert slow_emulator.stats()["batches_created"] == SHARDS, "no batch was created twice"
    out = read_rows(job.output)
    assert [row["custom_id"] for row in out] == [f"r-{i}" for i in range(1, ROWS + 1)]
    assert {row["status"] for row in out} == {"succeeded"}
    if not on_postgres:
        with sqlite3.connect(home / "ledger.sqlite3") as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    else:
        assert not (home / "ledger.sqlite3").exists(), "a PostgreSQL ledger leaves no SQLite file"
    leftovers = [p.name for p in job.output.parent.iterdir() if p.name != job.output.name]
    assert leftovers == [], "no temp file is left beside the output"


def test_every_crash_point_is_tested():
    assert len(POINTS) == len(set(POINTS)) >= 14


@pytest.mark.parametrize("point", ["cache.planned", "compile.done", "run.registered", "output.writing", "output.written"])
def test_sigkill_while_a_rerun_is_answered_from_the_cache_loses_nothing(point, make_job, emulator, tmp_path):
    job = make_job(reviews(ROWS), batch_size=ROWS // SHARDS)
    home = tmp_path / "state"
    env = user_env(emulator)
    assert batchrunner(home, env, "submit", job.spec, "--run-id", "first").returncode == 0
    answers = read_rows(job.output)

    crashed = batchrunner(home, user_env(emulator, BATCHRUNNER_CRASH_AT=point), "submit", job.spec, "--run-id", "again")

    assert crashed.returncode == -9, f"the process did not reach {point}: {crashed.stderr}"
    if point in ("cache.planned", "compile.done"):
        recovered = batchrunner(home, env, "submit", job.spec, "--run-id", "again")
    else:
        recovered = batchrunner(home, env, "resume", "again")
    assert recovered.returncode == 0, recovered.stderr
    assert emulator.stats()["batches_created"] == SHARDS, "the rerun sent nothing"
    out = read_rows(job.output)
    assert [row["text"] for row in out] == [row["text"] for row in answers]
    assert {row["cached"] for row in out} == {True}
