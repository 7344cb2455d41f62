"""Shared fixtures: an isolated state home and environment for every test."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pg
import pytest
from click.testing import CliRunner, Result

from batchrunner.cli import cli
from batchrunner.emulator import EmulatorConfig, EmulatorServer, start_in_thread
from batchrunner.ledger import location


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads the developer's key, state home or backend choice."""
    home = tmp_path / "home"
    monkeypatch.setenv("BATCHRUNNER_HOME", str(home))
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "BATCHRUNNER_BACKEND", "BATCHRUNNER_DEBUG",
                 "BATCHRUNNER_LEDGER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BATCHRUNNER_LOCAL_PROCESSING_SECONDS", "0.3")
    monkeypatch.setattr(location, "_selected", None)  # the ledger an earlier test's CLI call selected in this process
    return home


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """One real PostgreSQL server for the whole session: BATCHRUNNER_TEST_PG (a URL of a database
    we may create databases from), or one started here and stopped at the end. In CI it must work."""
    given = os.environ.get("BATCHRUNNER_TEST_PG")
    if given:
        yield given
        return
    try:
        started = pg.server()
        url = started.__enter__()
    except RuntimeError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the PostgreSQL tests: {exc}")
        pytest.skip(f"no PostgreSQL server: {exc}")
    try:
        yield url
    finally:
        started.__exit__(None, None, None)


@pytest.fixture
def pg_ledger(pg_server: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test: its ledger URL."""
    name = f"t_{hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:16]}_{os.getpid()}"
    url = pg.create_database(pg_server, name)
    yield url
    pg.drop_database(pg_server, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest) -> str | None:
    """The durability suite on both ledgers: None (the state home's SQLite file) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("pg_ledger"))


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorServer]:
    """A fresh emulator on a free loopback port, with fast batches (0.2 s), closed after the test."""
    with start_in_thread(EmulatorConfig(data_dir=tmp_path / "emulator", processing_seconds=0.2)) as server:
        yield server


@pytest.fixture
def slow_emulator(tmp_path: Path) -> Iterator[EmulatorServer]:
    """Batches take a second, so a poller sees `in_progress` at least once (crash and Ctrl-C tests)."""
    with start_in_thread(EmulatorConfig(data_dir=tmp_path / "emulator", processing_seconds=1.0)) as server:
        yield server


@dataclass
class Job:
    """A job spec and its rows, written to real files the way a user would."""

    spec: Path
    rows: Path
    output: Path


@pytest.fixture
def make_job(tmp_path: Path) -> Callable[..., Job]:
    """Write `rows` (dicts) as JSONL and a spec over them; extra spec keys as YAML text."""

    def make(rows: list[dict[str, Any]], *, name: str = "job", extra: str = "", batch_size: int | None = None) -> Job:
        folder = tmp_path / name
        folder.mkdir()
        data = folder / "rows.jsonl"
        data.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
        spec = folder / "job.yaml"
        spec.write_text(
            f"name: {name}\n"
            "model: claude-haiku-4-5\n"
            "max_tokens: 32\n"
            "input: rows.jsonl\n"
            "id_field: id\n"
            'prompt: "Review: {text}"\n'
            "output: out/results.jsonl\n"
            + (f"batch_size: {batch_size}\n" if batch_size is not None else "")
            + "poll: {initial_interval: 0.05, max_interval: 0.3}\n" + extra
        )
        return Job(spec=spec, rows=data, output=folder / "out" / "results.jsonl")

    return make


@pytest.fixture
def run_cli() -> Callable[..., Result]:
    """Run the CLI in-process, as a user would type it; stdout and stderr kept apart."""
    runner = CliRunner()

    def run(*args: str | Path) -> Result:
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return run


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto's server mode) on a free loopback port, for the session."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@dataclass
class Bucket:
    """A fresh bucket on the S3 server, reached as batchrunner reaches it (s3fs, the AWS_* env)."""

    name: str

    def url(self, key: str = "") -> str:
        return f"s3://{self.name}/{key}"

    @property
    def fs(self) -> Any:
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        return fs

    def keys(self) -> list[str]:
        return sorted(path.removeprefix(f"{self.name}/") for path in self.fs.find(self.name))

    def read(self, key: str) -> bytes:
        data: bytes = self.fs.cat_file(f"{self.name}/{key}")
        return data


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    """The standard AWS environment pointed at the S3 server, and an empty bucket of this test's own."""
    for name, value in {
        "AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    made = Bucket(f"test-{secrets.token_hex(6)}")
    made.fs.mkdir(made.name)
    return made
