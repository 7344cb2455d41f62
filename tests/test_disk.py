"""A full disk at every write site: exit 1 with one line naming the file, nothing torn, then recovery
(issue 7; reliability.md T8).

Root writes through permission bits and CI cannot mount a small filesystem, so the disk is filled
by BATCHRUNNER_FAIL_WRITE_AT (crashpoints.py): the named write raises ENOSPC with no file name,
exactly as write() and fsync() do on a full disk, and batchrunner must say which file it was.
After each failure: no temp or partial file anywhere, no output, a sound ledger; then, with the
switch off, `resume` (or `submit` again, when the run never got registered) completes the run
with every row and no batch created twice. Where mounting is allowed, one test fills a real tmpfs.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from click.testing import Result
from helpers import read_rows, reviews

from batchrunner.crashpoints import WRITE_SITES
from batchrunner.emulator import EmulatorServer
from batchrunner.ledger import Ledger
from batchrunner.settings import FAIL_WRITE_AT

ROWS = 6
SHARDS = 2
NO_SPACE = "error: No space left on device ("


@dataclass(frozen=True)
class Site:
    """One write that fails, what the error must name, and how the run is finished afterwards."""

    fail_at: str
    names: str  # the start of the path in the message: {home}, {output} filled in
    created_before: int  # batches the API had made when the disk filled: proves which write failed
    then: str  # "submit" again when the run was never registered, else "resume"


SITES = [
    Site("compile.write", "{home}/runs/.nightly.compiling", 0, "submit"),
    Site("ledger.commit@1", "{home}/ledger.sqlite3", 0, "submit"),  # a new state home's first commit
    Site("ledger.commit@2", "{home}/ledger.sqlite3", 0, "submit"),  # the run's registration
    Site("ledger.commit@4", "{home}/ledger.sqlite3", 0, "resume"),  # the intent, before the create call
    Site("ledger.commit@5", "{home}/ledger.sqlite3", 1, "resume"),  # the batch id, after the create call
    Site("collect.download", "{home}/runs/nightly/results/msgbatch_", SHARDS, "resume"),
    Site("output.write", "{output}", SHARDS, "resume"),
]


@pytest.fixture
def api(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-key")
    monkeypatch.setenv("BATCHRUNNER_RECONCILE_WAIT", "1")
    return emulator


def leftovers(*roots: Path) -> list[Path]:
    """Temp and partial files a failed write could have left."""
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.name.endswith((".tmp", ".part", ".compiling"))]


def integrity(home: Path) -> str:
    with sqlite3.connect(home / "ledger.sqlite3") as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


def assert_one_line_naming(result: Result, path: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [result.stderr.strip()], "one line"
    assert result.stderr.startswith(NO_SPACE + path), result.stderr
    assert "Traceback" not in result.output


def test_every_write_site_is_tested() -> None:
    assert {site.fail_at.partition("@")[0] for site in SITES} | {"retry.write"} == set(WRITE_SITES)


@pytest.mark.parametrize("site", SITES, ids=[site.fail_at for site in SITES])
def test_a_full_disk_fails_in_one_line_leaves_nothing_torn_and_the_run_completes_later(
    site: Site,
    make_job: Callable,
    run_cli: Callable[..., Result],
    api: EmulatorServer,
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = isolated_env
    job = make_job(reviews(ROWS), batch_size=ROWS // SHARDS)
    submit = ("-q", "submit", job.spec, "--run-id", "nightly", "--backend", "anthropic")

    monkeypatch.setenv(FAIL_WRITE_AT, site.fail_at)
    failed = run_cli(*submit)

    assert_one_line_naming(failed, site.names.format(home=home, output=job.output))
    assert api.stats()["batches_created"] == site.created_before
    assert leftovers(home, job.output.parent) == []
    assert not job.output.exists()
    assert integrity(home) == "ok"
    if site.then == "submit":
        assert not (home / "runs" / "nightly").exists(), "an unregistered run leaves no folder"

    monkeypatch.delenv(FAIL_WRITE_AT)
    recovered = run_cli(*submit) if site.then == "submit" else run_cli("-q", "resume", "nightly")

    assert recovered.exit_code == 0, recovered.stderr
    out = read_rows(job.output)
    assert [(r["custom_id"], r["status"]) for r in out] == [(f"r-{i}", "succeeded") for i in range(1, ROWS + 1)]
    assert api.stats()["batches_created"] == SHARDS, "no batch created twice"
    assert leftovers(home, job.output.parent) == []


def test_a_full_disk_during_retry_keeps_the_previous_output_and_the_retry_completes_later(
    make_job: Callable,
    run_cli: Callable[..., Result],
    api: EmulatorServer,
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = reviews(ROWS)
    rows[1]["text"] += " [[emulator:errored_once:overloaded_error]]"
    job = make_job(rows, batch_size=ROWS // SHARDS)
    assert run_cli("-q", "submit", job.spec, "--run-id", "nightly", "--backend", "anthropic").exit_code == 3
    previous = job.output.read_bytes()

    monkeypatch.setenv(FAIL_WRITE_AT, "retry.write")
    failed = run_cli("-q", "retry", "nightly")
    assert_one_line_naming(failed, f"{isolated_env}/runs/nightly/attempt-2/requests-000.jsonl")
    assert len(orjson.loads(run_cli("--json", "status", "nightly").stdout)["batches"]) == SHARDS, "no attempt registered"

    monkeypatch.setenv(FAIL_WRITE_AT, "output.write")
    failed = run_cli("-q", "retry", "nightly")
    assert_one_line_naming(failed, str(job.output))
    assert job.output.read_bytes() == previous, "the previous output stays whole"
    assert leftovers(isolated_env, job.output.parent) == []

    monkeypatch.delenv(FAIL_WRITE_AT)
    recovered = run_cli("-q", "resume", "nightly")

    assert recovered.exit_code == 0, recovered.stderr
    assert {r["status"] for r in read_rows(job.output)} == {"succeeded"}
    assert api.stats()["batches_created"] == SHARDS + 1, "one retry batch, created once"
    assert integrity(isolated_env) == "ok"


def test_sqlite_running_out_of_room_is_reported_as_a_full_disk_naming_the_ledger(tmp_path: Path) -> None:
    """What SQLite raises on a full disk ("database or disk is full"), made real with max_page_count."""
    with Ledger(tmp_path / "home") as ledger:
        ledger.db.execute(f"PRAGMA max_page_count = {ledger.db.execute('PRAGMA page_count').fetchone()[0]}")
        with pytest.raises(OSError) as caught, ledger.transaction() as db:
            db.execute("CREATE TABLE filler (data BLOB)")
            db.execute("INSERT INTO filler VALUES (zeroblob(1000000))")
        assert (caught.value.strerror, caught.value.filename) == ("No space left on device", str(ledger.path))
        assert ledger.db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'filler'").fetchone()[0] == 0
        assert ledger.integrity_check() == "ok"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, where this machine lets us mount one (root with CAP_SYS_ADMIN)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None or subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, check=False
    ).returncode:
        pytest.skip("mounting a small tmpfs is not permitted here; the fail points above cover every write site")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def test_a_real_full_disk_under_the_output_behaves_like_the_fail_point(
    small_disk: Path, make_job: Callable, run_cli: Callable[..., Result], api: EmulatorServer
) -> None:
    job = make_job(reviews(200, text="A long review. " * 30))  # about 150 KB of output
    output = small_disk / "results.jsonl"
    job.spec.write_text(job.spec.read_text().replace("output: out/results.jsonl", f"output: {output}"))

    failed = run_cli("-q", "submit", job.spec, "--run-id", "nightly", "--backend", "anthropic")

    assert_one_line_naming(failed, str(output))
    assert list(small_disk.iterdir()) == [], "no partial output, no temp file"
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)
    recovered = run_cli("-q", "resume", "nightly")
    assert recovered.exit_code == 0, recovered.stderr
    assert len(read_rows(output)) == 200
    assert api.stats()["batches_created"] == 1
