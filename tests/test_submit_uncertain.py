"""A create whose outcome is unknown is reconciled, never blindly repeated (the API has no idempotency key)."""

from __future__ import annotations

import urllib.request

import anthropic
import orjson
import pytest
from helpers import read_rows, reviews

from batchrunner.emulator import EmulatorServer


@pytest.fixture
def against(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-key")
    monkeypatch.setenv("BATCHRUNNER_RECONCILE_WAIT", "1.5")
    monkeypatch.setenv("BATCHRUNNER_CREATE_TIMEOUT", "1")
    return emulator


def script_faults(server: EmulatorServer, **document: object) -> None:
    request = urllib.request.Request(
        f"{server.base_url}/_emulator/faults",
        data=orjson.dumps(document),
        headers={"Content-Type": "application/json", "x-api-key": "k", "anthropic-version": "2023-06-01"},
        method="POST",
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 200


@pytest.mark.parametrize("mode", ["apply_then_500", "apply_then_drop", "apply_then_stall:3"])
def test_a_batch_created_behind_a_failed_answer_is_adopted_not_created_again(mode, make_job, run_cli, against):
    script_faults(against, create=[mode])
    job = make_job(reviews(6))

    result = run_cli("submit", job.spec)

    assert result.exit_code == 0, result.stderr
    assert "adopted" in result.stderr
    stats = against.stats()
    assert stats["batches_created"] == 1
    assert stats["create_attempts"] == 1, "the SDK did not retry the create behind our back"
    assert [row["status"] for row in read_rows(job.output)] == ["succeeded"] * 6


def test_a_batch_that_shows_in_the_list_late_is_still_found(make_job, run_cli, against):
    script_faults(against, create=["apply_then_500"], list_lag_seconds=1.0)
    job = make_job(reviews(4))

    result = run_cli("submit", job.spec)

    assert result.exit_code == 0, result.stderr
    assert against.stats()["batches_created"] == 1


@pytest.mark.parametrize("mode", ["reject_500", "reject_529"])
def test_a_create_proven_not_to_have_happened_is_made_once_more(mode, make_job, run_cli, against):
    script_faults(against, create=[mode])
    job = make_job(reviews(4))

    result = run_cli("submit", job.spec)

    assert result.exit_code == 0, result.stderr
    assert "created again" in result.stderr
    stats = against.stats()
    assert (stats["batches_created"], stats["create_attempts"]) == (1, 2)


def test_a_rate_limited_create_waits_and_tries_again(make_job, run_cli, against):
    script_faults(against, create=["reject_429"])
    job = make_job(reviews(4))

    result = run_cli("submit", job.spec)

    assert result.exit_code == 0, result.stderr
    assert "rate limited" in result.stderr
    assert against.stats()["batches_created"] == 1


def test_two_matching_batches_stop_the_run_and_name_both(make_job, run_cli, against):
    job = make_job(reviews(3))
    foreign = anthropic.Anthropic(base_url=against.base_url, api_key="k").messages.batches.create(
        requests=[
            {"custom_id": f"x{i}", "params": {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}}
            for i in range(3)
        ]
    )
    script_faults(against, create=["apply_then_500"])

    first = run_cli("submit", job.spec, "--run-id", "ambiguous")

    assert first.exit_code == 1
    assert "2 batches match" in first.stderr and foreign.id in first.stderr
    again = run_cli("resume", "ambiguous")
    assert again.exit_code == 1, "still ambiguous: batchrunner never guesses"
    assert against.stats()["batches_created"] == 2


def test_creates_proven_not_made_again_and_again_are_refused_not_uncertain(make_job, run_cli, against, monkeypatch):
    monkeypatch.setenv("BATCHRUNNER_RECONCILE_WAIT", "0.2")
    script_faults(against, create=["reject_500"] * 10)
    job = make_job(reviews(3))

    first = run_cli("--json", "submit", job.spec, "--run-id", "refused")

    assert first.exit_code == 1
    error = orjson.loads(first.stdout)["error"]
    assert error["type"] == "CreateRefused"
    assert "10 creates in a row failed without creating anything" in error["message"]
    assert against.stats()["batches_created"] == 0
    assert run_cli("resume", "refused").exit_code == 0, "nothing was uncertain: a later resume just creates it"


def test_two_matches_are_an_ambiguous_create(make_job, run_cli, against):
    job = make_job(reviews(3))
    anthropic.Anthropic(base_url=against.base_url, api_key="k").messages.batches.create(
        requests=[
            {"custom_id": f"x{i}", "params": {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}}
            for i in range(3)
        ]
    )
    script_faults(against, create=["apply_then_500"])

    first = run_cli("--json", "submit", job.spec, "--run-id", "ambiguous")

    assert first.exit_code == 1
    assert orjson.loads(first.stdout)["error"]["type"] == "CreateAmbiguous"
