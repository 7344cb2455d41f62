"""`batchrunner collect RUN`, as a whole process, imports only what collecting needs (issue 14):
not the spec, compile or the model check (pydantic models, YAML), not jsonschema unless the run
has an output_schema, not the emulator unless the run is local."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from helpers import read_rows, reviews

SCHEMA = "output_schema: {type: object, properties: {label: {type: string}}}\n"
NEVER = {"batchrunner.spec", "batchrunner.compile", "batchrunner.models", "batchrunner.attachments", "yaml"}


def collected_imports(run_id: str, env: dict[str, str]) -> set[str]:
    """The modules a real `python -m batchrunner collect RUN` process imported, from -X importtime."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "batchrunner", "collect", run_id],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", done.stderr, re.MULTILINE))


def detached_run(make_job: Callable[..., Any], run_cli: Callable[..., Result], name: str, extra: str) -> Any:
    job = make_job(reviews(3), name=name, extra=extra)
    submitted = run_cli("submit", job.spec, "--run-id", name, "--detach")
    assert submitted.exit_code == 4, submitted.stderr
    return job


@pytest.fixture
def remote(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-key")
    return dict(os.environ)


def test_collect_of_a_run_without_a_schema_loads_neither_the_spec_nor_jsonschema_nor_the_emulator(make_job, run_cli, remote):
    job = detached_run(make_job, run_cli, "plain", "backend: anthropic\n")

    loaded = collected_imports("plain", remote)

    assert {row["status"] for row in read_rows(job.output)} == {"succeeded"}
    assert "anthropic" in loaded and "batchrunner.collect" in loaded
    assert not loaded & (NEVER | {"jsonschema", "batchrunner.emulator"})


def test_collect_loads_jsonschema_when_the_run_has_an_output_schema(make_job, run_cli, remote):
    detached_run(make_job, run_cli, "shaped", "backend: anthropic\n" + SCHEMA)

    loaded = collected_imports("shaped", remote)

    assert "jsonschema" in loaded
    assert not loaded & (NEVER | {"batchrunner.emulator"})


def test_collect_of_a_local_run_starts_the_emulator_and_still_not_the_spec(make_job, run_cli, tmp_path: Path):
    job = detached_run(make_job, run_cli, "local", "backend: local\n")

    loaded = collected_imports("local", dict(os.environ))

    assert {row["status"] for row in read_rows(job.output)} == {"succeeded"}
    assert "batchrunner.emulator" in loaded
    assert not loaded & NEVER
