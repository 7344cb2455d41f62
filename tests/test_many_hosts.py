"""Issue 17's done-when: two hosts share one PostgreSQL ledger and one S3 bucket, and nothing else.

Each host is a process of its own with its own --home; what they share is what pods share:
BATCHRUNNER_LEDGER (a real PostgreSQL server), BATCHRUNNER_STORE and the output (an S3 bucket on
moto's server, reached through the standard AWS environment) and the API (a `batchrunner serve`
process, reached as the real API is: ANTHROPIC_BASE_URL, backend anthropic).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from conftest import Bucket
from helpers import announced_url, reviews

from batchrunner import Job, pipeline

SHARDS = 3
ROWS = 9


class Api:
    """A `batchrunner serve` in a process of its own: the API both hosts talk to."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def created(self) -> int:
        """Batches the API has created, as its /_emulator/stats counts them."""
        with urllib.request.urlopen(f"{self.base_url}/_emulator/stats", timeout=30) as answer:
            return int(orjson.loads(answer.read())["batches_created"])


@contextmanager
def serving(folder: Path, processing_seconds: float) -> Iterator[Api]:
    log = folder / "serve.log"  # a file: a pipe nobody drains would block the server
    folder.mkdir()
    command = [sys.executable, "-m", "batchrunner", "--home", str(folder), "serve", "--port", "0",
               "--processing-seconds", str(processing_seconds)]
    with log.open("w") as stderr:
        process = subprocess.Popen(command, stderr=stderr, env=_clean(os.environ))
    try:
        found = announced_url(log, process, r"ANTHROPIC_BASE_URL=(http://127\.0\.0\.1:\d+)", within=60)
        yield Api(found.group(1))
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with serving(tmp_path / "serve", processing_seconds=0.5) as served:
        yield served


@pytest.fixture
def slow_api(tmp_path: Path) -> Iterator[Api]:
    """Batches that run for a minute, so a watcher is still watching when the other host asks."""
    with serving(tmp_path / "serve", processing_seconds=60.0) as served:
        yield served


def _clean(env: Any) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith(("ANTHROPIC_", "BATCHRUNNER_"))}


def shared_env(api: Api, ledger: str, bucket: Bucket) -> dict[str, str]:
    """What every host is given, and all it is given: the ledger, the store, the API (the
    AWS_* environment pointing at the S3 server comes from the `bucket` fixture)."""
    return _clean(os.environ) | {
        "BATCHRUNNER_LEDGER": ledger, "BATCHRUNNER_STORE": bucket.url("runs"), "BATCHRUNNER_BACKEND": "anthropic",
        "ANTHROPIC_BASE_URL": api.base_url, "ANTHROPIC_API_KEY": "test", "BATCHRUNNER_RECONCILE_WAIT": "1",
    }


def command(home: Path, *args: str | Path) -> list[str]:
    return [sys.executable, "-m", "batchrunner", "--home", str(home), *map(str, args)]


def on_host(home: Path, env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(home, *args), env=env, capture_output=True, text=True, timeout=120)


def collect_once_ended(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`collect ARGS` on a host, again while it exits 4 (batches still running), for 12 s at most."""
    for _ in range(60):
        collected = on_host(home, env, "collect", *args)
        if collected.returncode != 4:
            break
        time.sleep(0.2)
    return collected


def to_bucket(job: Any, bucket: Bucket) -> str:
    url = bucket.url("out.jsonl")
    job.spec.write_text(job.spec.read_text().replace("output: out/results.jsonl", f"output: {url}"))
    return url


def output_ids(bucket: Bucket) -> list[str]:
    return [orjson.loads(line)["custom_id"] for line in bucket.read("out.jsonl").splitlines()]


def test_host_b_with_nothing_local_collects_what_host_a_submitted_into_the_bucket(
    make_job: Callable[..., Any], api: Api, pg_ledger: str, bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Then a third host retries the failed row (the run shares one request between two rows, so
    the retry picks its lines by custom_id) and a fourth reads the rows through the library."""
    rows = reviews(ROWS)
    rows[1]["text"] = rows[0]["text"]
    rows[4]["text"] += " [[emulator:errored_once:overloaded_error]]"
    job = make_job(rows, batch_size=ROWS // SHARDS)
    to_bucket(job, bucket)
    env = shared_env(api, pg_ledger, bucket)
    host_a, host_b, host_c = tmp_path / "host-a", tmp_path / "host-b", tmp_path / "host-c"

    submitted = on_host(host_a, env, "submit", job.spec, "--detach", "--run-id", "nightly")
    assert submitted.returncode == 4, submitted.stderr
    assert api.created() == SHARDS
    shutil.rmtree(host_a)  # the pod is gone, with its spool
    collected = collect_once_ended(host_b, env, "nightly")

    assert collected.returncode == 3, collected.stderr
    assert output_ids(bucket) == [f"r-{i}" for i in range(1, ROWS + 1)]
    out = [orjson.loads(line) for line in bucket.read("out.jsonl").splitlines()]
    assert [row["custom_id"] for row in out if row["status"] != "succeeded"] == ["r-5"]
    assert len({row["batch_id"] for row in out}) == SHARDS
    assert len([key for key in bucket.keys() if key.startswith("runs/nightly/results/")]) == SHARDS
    assert not host_a.exists() and not list(host_b.glob("ledger.sqlite3*")), "no host made a ledger of its own"
    retried = on_host(host_c, env, "retry", "nightly")
    assert retried.returncode == 0, retried.stderr
    out = [orjson.loads(line) for line in bucket.read("out.jsonl").splitlines()]
    assert {row["status"] for row in out} == {"succeeded"} and out[4]["attempt"] == 2
    monkeypatch.setenv("BATCHRUNNER_LEDGER", pg_ledger)
    table = pipeline.status("nightly", home=tmp_path / "host-d").to_arrow()  # the library, on a fourth host
    assert table.column("custom_id").to_pylist() == [f"r-{i}" for i in range(1, ROWS + 1)]


def test_resume_all_on_both_hosts_at_once_creates_each_shard_once_and_lands_every_row_once(
    make_job: Callable[..., Any], api: Api, pg_ledger: str, bucket: Bucket, tmp_path: Path
) -> None:
    """Host A is killed just after its first create (the batch made, its id not yet in the ledger);
    then A and B both `resume --all` at the same moment."""
    job = make_job(reviews(ROWS), batch_size=ROWS // SHARDS)
    to_bucket(job, bucket)
    env = shared_env(api, pg_ledger, bucket)
    crashed = on_host(tmp_path / "host-a", env | {"BATCHRUNNER_CRASH_AT": "submit.created"}, "submit", job.spec,
                      "--run-id", "nightly")
    assert crashed.returncode == -9 and api.created() == 1, crashed.stderr

    both = [subprocess.Popen(command(tmp_path / name, "resume", "--all"), env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for name in ("host-a", "host-b")]
    ended = [(process.wait(timeout=120), *process.communicate()) for process in both]

    codes = [code for code, _, _ in ended]
    assert 0 in codes and set(codes) <= {0, 4}, ended  # 4: skipped, the other host held the run
    assert api.created() == SHARDS, "no shard was created twice"
    assert output_ids(bucket) == [f"r-{i}" for i in range(1, ROWS + 1)], "every row once, in input order"
    assert len([key for key in bucket.keys() if key.startswith("runs/nightly/results/")]) == SHARDS
    assert on_host(tmp_path / "host-b", env, "status", "nightly").returncode == 0


def held_by(ledger: str, run_id: str, pid: int) -> bool:
    with psycopg.connect(ledger) as db:
        row = db.execute("SELECT pid FROM run_locks WHERE run_id = %s", (run_id,)).fetchone()
    return row is not None and row[0] == pid


def test_host_bs_watch_of_a_run_host_a_is_watching_exits_75_at_once_naming_the_holder(
    make_job: Callable[..., Any], slow_api: Api, pg_ledger: str, bucket: Bucket, tmp_path: Path
) -> None:
    job = make_job(reviews(ROWS), batch_size=ROWS // SHARDS)
    to_bucket(job, bucket)
    env = shared_env(slow_api, pg_ledger, bucket)
    host_a, host_b = tmp_path / "host-a", tmp_path / "host-b"
    assert on_host(host_a, env, "submit", job.spec, "--detach", "--run-id", "nightly").returncode == 4
    watcher = subprocess.Popen(command(host_a, "watch", "nightly"), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            if held_by(pg_ledger, "nightly", watcher.pid):
                break
            assert watcher.poll() is None, "the watcher is still watching"
            time.sleep(0.1)

        second = on_host(host_b, env, "watch", "nightly")

        assert second.returncode == 75, second.stderr
        assert f"run nightly is being worked on by pid {watcher.pid} on " in second.stderr
        assert "watch nightly" in second.stderr and watcher.poll() is None
    finally:
        watcher.kill()
        watcher.wait()
    assert slow_api.created() == SHARDS and not (host_b / "runs" / "nightly").exists(), "B touched nothing"


def test_a_run_whose_data_is_on_another_hosts_disk_does_not_keep_collect_all_from_the_others(
    make_job: Callable[..., Any], api: Api, pg_ledger: str, bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run submitted to the shared ledger without a store keeps its data on its host's disk: the
    collect pods name it and go on with the runs they can reach (it used to stop them all, at exit 1).
    A library job without an output, in the store, keeps its output in the store too, not on A's disk."""
    env = shared_env(api, pg_ledger, bucket)
    laptop, job = make_job(reviews(2), name="laptop"), make_job(reviews(ROWS), name="nightly")
    host_a, host_b = tmp_path / "host-a", tmp_path / "host-b"
    without_store = {k: v for k, v in env.items() if k != "BATCHRUNNER_STORE"}
    assert on_host(host_a, without_store, "submit", laptop.spec, "--detach", "--run-id", "laptop").returncode == 4
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    nightly = Job(name="nightly", model="claude-haiku-4-5", max_tokens=32, input=str(job.rows), id_field="id",
                  prompt="Review: {text}")
    submitted = asyncio.run(pipeline.submit_job_async(nightly, home=host_a, run_id="nightly", detach=True,
                                                      store=bucket.url("runs")))
    assert submitted.exit_code == 4
    shutil.rmtree(host_a)
    collected = collect_once_ended(host_b, env, "--all")

    assert collected.returncode == 1, collected.stderr
    assert f"skipped: run laptop keeps its data in {host_a / 'runs' / 'laptop'}, which this host does not have" in collected.stderr
    output = bucket.read("runs/nightly/output.jsonl").splitlines()
    assert [orjson.loads(line)["custom_id"] for line in output] == [f"r-{i}" for i in range(1, ROWS + 1)]
    assert not host_a.exists()
