"""Shared fixtures: an isolated state home and environment for every test."""

from __future__ import annotations

import hashlib
import os
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


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads the developer's key, state home or backend choice."""
    home = tmp_path / "home"
    monkeypatch.setenv("BATCHRUNNER_HOME", str(home))
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "BATCHRUNNER_BACKEND", "BATCHRUNNER_DEBUG",
                 "BATCHRUNNER_LEDGER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BATCHRUNNER_LOCAL_PROCESSING_SECONDS", "0.3")
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
