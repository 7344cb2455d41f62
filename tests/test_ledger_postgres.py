"""Many hosts, one PostgreSQL ledger (issue 17): two "hosts" are two processes with their own
--home and the same --ledger, against a real PostgreSQL server and the emulator over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pg
import psycopg
import pytest
from helpers import read_rows, reviews

from batchrunner.emulator import EmulatorConfig, EmulatorServer, start_in_thread
from batchrunner.ledger import Ledger
from batchrunner.ledger.location import parse
from batchrunner.ledger.schema import MIGRATIONS

ROWS = 30
SHARDS = 3


def host(home: Path, env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "batchrunner", "--home", str(home), *map(str, args)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def user_env(server: EmulatorServer, ledger: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "BATCHRUNNER_"))}
    return env | {
        "ANTHROPIC_BASE_URL": server.base_url, "ANTHROPIC_API_KEY": "sk-test-key", "BATCHRUNNER_RECONCILE_WAIT": "1",
        "BATCHRUNNER_LEDGER": ledger, **extra,
    }


@pytest.fixture
def long_emulator(tmp_path: Path) -> Iterator[EmulatorServer]:
    """Batches that run for a minute, so a watcher is still watching when another host asks."""
    with start_in_thread(EmulatorConfig(data_dir=tmp_path / "emulator", processing_seconds=60.0)) as server:
        yield server


def held_by(ledger_url: str, run_id: str, pid: int) -> bool:
    with psycopg.connect(ledger_url) as db:
        row = db.execute("SELECT pid FROM run_locks WHERE run_id = %s", (run_id,)).fetchone()
    return row is not None and row[0] == pid


def test_a_second_hosts_watch_exits_75_naming_the_holder_and_a_killed_holder_frees_the_run(
    make_job, long_emulator, pg_ledger, tmp_path
):
    job = make_job(reviews(4))
    env = user_env(long_emulator, pg_ledger)
    assert host(tmp_path / "a", env, "submit", job.spec, "--run-id", "nightly", "--detach").returncode == 4
    watcher = subprocess.Popen(
        [sys.executable, "-m", "batchrunner", "--home", str(tmp_path / "a"), "--ledger", pg_ledger, "watch", "nightly"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not held_by(pg_ledger, "nightly", watcher.pid):
            assert watcher.poll() is None and time.monotonic() < deadline, "the watcher took the run's lock"
            time.sleep(0.1)

        second = host(tmp_path / "b", env, "watch", "nightly")

        assert second.returncode == 75, second.stderr
        assert f"pid {watcher.pid} on " in second.stderr and "batchrunner --home" in second.stderr
        assert "--ledger postgresql://postgres:***@127.0.0.1" in second.stderr and "watch nightly" in second.stderr
        assert pg.SUPERUSER_PASSWORD not in second.stderr, "the holder's command line is shown with its password masked"
    finally:
        watcher.send_signal(signal.SIGKILL)
        watcher.wait()
    cancelled = host(tmp_path / "b", env, "cancel", "nightly")
    assert cancelled.returncode != 75 and "cancel requested" in cancelled.stderr, "the killed holder's lock died with it"


@pytest.fixture
def flaky_emulator(tmp_path: Path) -> Iterator[EmulatorServer]:
    """Fast batches where a fifth of the requests end errored, so a retry has something to do."""
    with start_in_thread(EmulatorConfig(data_dir=tmp_path / "emulator", processing_seconds=0.2, errored_rate=0.2, seed=3)) as server:
        yield server


def test_two_hosts_resuming_everything_at_once_create_each_batch_once_and_either_collects(
    make_job, flaky_emulator, pg_ledger, tmp_path
):
    """Host A is killed mid-submit (a batch made, its id not yet recorded); A and B then both
    `resume --all` at the same moment; B, whose home holds nothing, collects, reads the status and retries."""
    emulator = flaky_emulator
    job = make_job(reviews(ROWS), batch_size=ROWS // SHARDS)
    env = user_env(emulator, pg_ledger)
    crashed = host(tmp_path / "a", env | {"BATCHRUNNER_CRASH_AT": "submit.created"}, "submit", job.spec, "--run-id", "nightly")
    assert crashed.returncode == -9, crashed.stderr

    command = ["resume", "--all"]
    both = [
        subprocess.Popen([sys.executable, "-m", "batchrunner", "--home", str(tmp_path / name), *command],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("a", "b")
    ]
    results = [(proc.wait(timeout=120), proc.stderr.read() if proc.stderr else "") for proc in both]

    assert {code for code, _ in results} <= {0, 3, 4} and 3 in {code for code, _ in results}, results  # 0: nothing left to resume
    assert emulator.stats()["batches_created"] == SHARDS, "no shard was created twice"
    collected = host(tmp_path / "b", env, "collect", "nightly")
    assert collected.returncode == 3, collected.stderr
    out = read_rows(job.output)
    assert [row["custom_id"] for row in out] == [f"r-{i}" for i in range(1, ROWS + 1)]
    failed = {row["custom_id"] for row in out if row["status"] == "errored"}
    assert failed and {row["status"] for row in out} == {"succeeded", "errored"}
    status = host(tmp_path / "b", env, "status", "nightly")
    assert status.returncode == 3 and "errored" in status.stdout

    retried = host(tmp_path / "b", env, "retry", "nightly", "--status", "errored")

    assert retried.returncode in (0, 3), retried.stderr
    batches = json.loads(host(tmp_path / "a", env, "--json", "status", "nightly").stdout)["batches"]
    assert {batch["attempt"] for batch in batches} == {1, 2}
    assert emulator.stats()["batches_created"] == sum(1 for batch in batches if batch["batch_id"]), "each batch once"
    again = read_rows(job.output)
    assert [row["custom_id"] for row in again] == [f"r-{i}" for i in range(1, ROWS + 1)]
    assert {row["custom_id"] for row in again if row["attempt"] == 2} == failed, "the retried rows' answers are joined"
    assert not list(tmp_path.glob("*/ledger.sqlite3")), "no host made a SQLite ledger of its own"


def test_ledger_copy_moves_every_run_to_postgresql_and_back(make_job, emulator, pg_ledger, tmp_path):
    job = make_job(reviews(6), batch_size=3)
    local = user_env(emulator, "")
    home = tmp_path / "a"
    assert host(home, local, "submit", job.spec, "--run-id", "nightly").returncode == 0
    before = host(home, local, "--json", "status", "nightly").stdout

    copied = host(home, local, "ledger", "copy", "--to", pg_ledger)
    assert copied.returncode == 0, copied.stderr
    assert "results: 6 row(s)" in copied.stdout and "runs: 1 row(s)" in copied.stdout
    on_postgres = user_env(emulator, pg_ledger)
    assert host(tmp_path / "b", on_postgres, "--json", "status", "nightly").stdout == before

    again = host(home, local, "ledger", "copy", "--to", pg_ledger)
    assert again.returncode == 2 and "is not empty (runs 1" in again.stderr, "a non-empty target is refused"
    back = tmp_path / "back" / "ledger.sqlite3"
    assert host(tmp_path / "b", on_postgres, "ledger", "copy", "--to", f"sqlite://{back}").returncode == 0
    assert host(tmp_path / "c", user_env(emulator, f"sqlite://{back}"), "--json", "status", "nightly").stdout == before

    second = make_job(reviews(3), name="second")
    assert host(tmp_path / "b", on_postgres, "submit", second.spec, "--run-id", "later").returncode == 0, (
        "new rows in copied tables get keys after the copied ones"
    )


def test_a_ledger_that_cannot_be_reached_exits_1_with_its_password_masked(tmp_path):
    url = "postgresql://runner:hunter2-secret@127.0.0.1:1/ledger"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHRUNNER_")} | {"BATCHRUNNER_DEBUG": "1"}

    done = host(tmp_path, env, "-v", "--ledger", url, "status")

    assert done.returncode == 1, done.stderr
    (error,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert "cannot open the ledger postgresql://runner:***@127.0.0.1:1/ledger" in error and "Is the server running" in error, done.stderr
    assert "hunter2" not in done.stderr + done.stdout and "Traceback" not in done.stderr


def test_a_ledger_url_of_no_known_kind_is_a_usage_error(tmp_path):
    for url in ("mysql://u:hunter2@h/db", "sqlite://relative.db"):
        done = host(tmp_path, dict(os.environ), "--ledger", url, "runs")
        assert done.returncode == 2 and "hunter2" not in done.stderr, done.stderr
        assert "sqlite:///" in done.stderr


def test_a_postgresql_ledger_without_the_extra_names_it(tmp_path, pg_ledger):
    code = "import sys; sys.modules['psycopg'] = None; sys.argv[0] = 'batchrunner'; from batchrunner.cli import main; main()"
    done = subprocess.run([sys.executable, "-c", code, "--ledger", pg_ledger, "runs"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "pip install 'batchrunner[postgres]'" in done.stderr, done.stderr


def test_two_hosts_opening_a_new_database_at_once_migrate_it_once(pg_ledger, tmp_path):
    errors: list[BaseException] = []

    def open_ledger(name: str) -> None:
        try:
            with Ledger(tmp_path / name, location=parse(pg_ledger)) as ledger:
                ledger.runs()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_ledger, args=(f"h{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with psycopg.connect(pg_ledger) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(len(MIGRATIONS),)]


def test_sql_written_once_runs_on_postgresql_as_written(pg_ledger, tmp_path):
    """The tables' SQL, and any table added later, runs unchanged: `?` placeholders (not one inside
    a string literal), a literal `%`, rows by column name, and integer sums as ints."""
    with Ledger(tmp_path, location=parse(pg_ledger)) as ledger:
        row = ledger.db.execute("SELECT ? AS given, '100% sure?' AS said, sum(x) AS total FROM (VALUES (CAST(2 AS BIGINT)), (3)) v(x)",
                                ("a",)).fetchone()
        assert (row["given"], row["said"], row["total"]) == ("a", "100% sure?", 5)
        assert type(row[2]) is int
