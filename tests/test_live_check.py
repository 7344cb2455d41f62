"""The live check: submit, retry and resume ask the backend's Models API before anything is created."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
from helpers import read_rows, reviews

from batchrunner.emulator import EmulatorConfig, EmulatorServer, start_in_thread

CATALOG = Path(__file__).resolve().parent.parent / "batchrunner" / "data" / "models.json"
HAIKU = "claude-haiku-4-5-20251001"  # what the jobs' `claude-haiku-4-5` is an alias of


def use_server(monkeypatch: pytest.MonkeyPatch, server: EmulatorServer) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-key")


def models_file(folder: Path, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> Path:
    """The packaged catalog with each model passed through `change` (None drops it)."""
    catalog = orjson.loads(CATALOG.read_bytes())
    catalog["models"] = [changed for model in catalog["models"] if (changed := change(model)) is not None]
    path = folder / "models.json"
    path.write_bytes(orjson.dumps(catalog))
    return path


@contextmanager
def server_with(folder: Path, change: Callable[[dict[str, Any]], dict[str, Any] | None], **config: Any) -> Iterator[EmulatorServer]:
    folder.mkdir(exist_ok=True)
    config.setdefault("data_dir", folder / "emulator")
    with start_in_thread(EmulatorConfig(processing_seconds=0.2, models_file=models_file(folder, change), **config)) as server:
        yield server


def without_haiku(model: dict[str, Any]) -> dict[str, Any] | None:
    return None if model["id"] == HAIKU else model


def calls(server: EmulatorServer, route: str) -> int:
    return int(server.stats()["calls"].get(route, 0))


def test_an_unknown_model_exits_2_naming_the_closest_ids_and_creates_nothing(make_job, run_cli, emulator, monkeypatch):
    use_server(monkeypatch, emulator)
    job = make_job(reviews(3))
    job.spec.write_text(job.spec.read_text().replace("model: claude-haiku-4-5\n", "model: claude-sonnet-5-9\n"))

    result = run_cli("submit", job.spec)

    assert result.exit_code == 2, result.output
    assert "job.yaml:2: `model: claude-sonnet-5-9`: the backend's Models API does not know this model (404)" in result.stderr
    assert "the closest it offers: claude-sonnet-5-5, claude-sonnet-5" in result.stderr
    stats = emulator.stats()
    assert (stats["create_attempts"], stats["batches_created"], stats["files_stored"]) == (0, 0, 0)
    assert calls(emulator, "GET /v1/models/{model_id}") == 1
    assert orjson.loads(run_cli("--json", "runs").stdout)["runs"] == []
    assert not job.output.exists()


def test_a_valid_job_asks_for_its_model_once_per_run_even_across_automatic_retries(make_job, run_cli, emulator, monkeypatch):
    use_server(monkeypatch, emulator)
    rows = reviews(3) + [{"id": "flaky", "text": "[[emulator:errored_once:overloaded_error]]"}]
    job = make_job(rows, extra="retry: {max_attempts: 2}\n")

    result = run_cli("submit", job.spec)

    assert result.exit_code == 0, result.output
    assert {row["attempt"] for row in read_rows(job.output) if row["custom_id"] == "flaky"} == {2}
    assert emulator.stats()["batches_created"] == 2
    assert calls(emulator, "GET /v1/models/{model_id}") == 1


def test_the_live_limits_win_over_the_catalog_and_name_the_spec_line(make_job, run_cli, tmp_path, monkeypatch):
    def tighter(model: dict[str, Any]) -> dict[str, Any]:
        return {**model, "max_tokens": 16} if model["id"] == HAIKU else model

    job = make_job(reviews(3))  # max_tokens: 32, at line 3
    assert run_cli("validate", job.spec).exit_code == 0  # the packaged catalog allows 64K

    with server_with(tmp_path, tighter) as server:
        use_server(monkeypatch, server)
        result = run_cli("submit", job.spec)
        stats = server.stats()

    assert result.exit_code == 2, result.output
    assert f"{job.spec.name}:3: `max_tokens` 32 > 16" in result.stderr
    assert (stats["create_attempts"], stats["files_stored"]) == (0, 0)


def test_a_capability_the_live_model_lacks_is_refused(make_job, run_cli, tmp_path, monkeypatch):
    def no_structured_outputs(model: dict[str, Any]) -> dict[str, Any]:
        if model["id"] != HAIKU:
            return model
        return {**model, "capabilities": {**model["capabilities"], "structured_outputs": {"supported": False}}}

    job = make_job(reviews(2), extra="output_schema: {type: object, properties: {label: {type: string}}}\n")
    with server_with(tmp_path, no_structured_outputs) as server:
        use_server(monkeypatch, server)
        result = run_cli("submit", job.spec)
        assert server.stats()["create_attempts"] == 0

    assert result.exit_code == 2, result.output
    assert "`output_schema` needs structured outputs" in result.stderr


def test_when_the_models_api_is_down_submit_checks_the_catalog_and_says_so(make_job, run_cli, emulator, monkeypatch):
    use_server(monkeypatch, emulator)
    httpx2.post(emulator.base_url + "/_emulator/faults", json={"models_down": True}).raise_for_status()
    job = make_job(reviews(3))

    result = run_cli("submit", job.spec)

    assert result.exit_code == 0, result.output
    assert "the Models API could not be reached" in result.stderr
    assert "checking against it instead" in result.stderr
    assert len(read_rows(job.output)) == 3


def test_when_the_models_api_is_down_the_catalog_still_refuses_what_it_knows(make_job, run_cli, emulator, monkeypatch):
    use_server(monkeypatch, emulator)
    httpx2.post(emulator.base_url + "/_emulator/faults", json={"models_down": True}).raise_for_status()
    job = make_job(reviews(3))
    job.spec.write_text(job.spec.read_text().replace("max_tokens: 32", "max_tokens: 70000"))

    result = run_cli("submit", job.spec)

    assert result.exit_code == 2
    assert "`max_tokens` 70000 > 64000" in result.stderr
    assert emulator.stats()["create_attempts"] == 0


def test_retry_asks_again_and_refuses_a_model_the_backend_no_longer_offers(make_job, run_cli, tmp_path, monkeypatch):
    job = make_job(reviews(2) + [{"id": "bad", "text": "[[emulator:errored:overloaded_error]]"}])
    with server_with(tmp_path / "a", lambda model: model, port=0) as first:
        use_server(monkeypatch, first)
        assert run_cli("submit", job.spec).exit_code == 3
        port = int(first.base_url.rsplit(":", 1)[1])
    run_id = orjson.loads(run_cli("--json", "status").stdout)["run"]["id"]

    # the same address and data, but the model has gone away
    with server_with(tmp_path / "b", without_haiku, port=port, data_dir=tmp_path / "a" / "emulator") as second:
        result = run_cli("retry", run_id)
        stats = second.stats()

    assert result.exit_code == 2, result.output
    assert "`model: claude-haiku-4-5`: the backend's Models API does not know this model (404)" in result.stderr
    assert stats["create_attempts"] == 0 and stats["calls"]["GET /v1/models/{model_id}"] == 1
    assert len(orjson.loads(run_cli("--json", "status").stdout)["batches"]) == 1  # no new attempt was prepared


def test_resume_asks_before_creating_what_a_crash_left_unsent(make_job, tmp_path):
    gone = make_job(reviews(3), name="gone")
    kept = make_job(reviews(2), name="kept")
    kept.spec.write_text(kept.spec.read_text().replace("model: claude-haiku-4-5\n", "model: claude-opus-5-5\n"))
    home = tmp_path / "state"
    with server_with(tmp_path / "a", lambda model: model) as first:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "BATCHRUNNER_"))}
        env.update(ANTHROPIC_BASE_URL=first.base_url, ANTHROPIC_API_KEY="sk-test-key")

        def batchrunner(*args: str | Path, **extra: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "batchrunner", "--home", str(home), *map(str, args)]
            return subprocess.run(command, env={**env, **extra}, capture_output=True, text=True, timeout=120)

        for job in (gone, kept):
            crashed = batchrunner("submit", job.spec, BATCHRUNNER_CRASH_AT="run.registered")
            assert crashed.returncode != 0
        assert first.stats()["create_attempts"] == 0
        port = int(first.base_url.rsplit(":", 1)[1])
    with server_with(tmp_path / "b", without_haiku, port=port, data_dir=tmp_path / "a" / "emulator") as second:
        resumed = batchrunner("resume", "--all")
        stats = second.stats()

    assert resumed.returncode == 2, resumed.stderr
    assert "not resumed: " in resumed.stderr and "does not know this model (404)" in resumed.stderr
    assert stats["create_attempts"] == 1 and stats["calls"]["GET /v1/models/{model_id}"] == 2
    assert not gone.output.exists()
    assert {row["status"] for row in read_rows(kept.output)} == {"succeeded"}  # one refused run does not stop the others


def test_the_closest_ids_include_the_aliases_users_type(make_job, run_cli, emulator, monkeypatch):
    use_server(monkeypatch, emulator)
    job = make_job(reviews(1))
    job.spec.write_text(job.spec.read_text().replace("model: claude-haiku-4-5\n", "model: claude-haiku-4-6\n"))

    result = run_cli("submit", job.spec)

    assert result.exit_code == 2
    assert "the closest it offers: claude-haiku-4-5," in result.stderr


def test_a_model_newer_than_the_catalog_is_checked_live_and_submitted(make_job, run_cli, tmp_path, monkeypatch):
    def plus_newer(model: dict[str, Any]) -> dict[str, Any]:
        return {**model, "id": "claude-opus-6", "batchrunner": {}} if model["id"] == "claude-opus-5-5" else model

    job = make_job(reviews(2))
    job.spec.write_text(job.spec.read_text().replace("model: claude-haiku-4-5\n", "model: claude-opus-6\n"))
    checked = run_cli("validate", job.spec)
    assert checked.exit_code == 0 and "is not in the catalog" in checked.stdout + checked.stderr

    with server_with(tmp_path, plus_newer) as server:
        use_server(monkeypatch, server)
        result = run_cli("submit", job.spec)

    assert result.exit_code == 0, result.output
    assert {row["status"] for row in read_rows(job.output)} == {"succeeded"}
