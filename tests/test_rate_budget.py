"""The limiter that reads the server (issue 14): it starts at the spec's rate, or the local
emulator's own, then follows the rate-limit headers of the answers, never above what the server
grants, and holds every call for a 429's retry-after."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
from helpers import read_rows, reviews

from batchrunner import pipeline
from batchrunner.client import LIMIT_HEADER, REMAINING_HEADER, RESET_HEADER, Api, AsyncApi, RateBudget, ResolvedBackend
from batchrunner.errors import ApiError
from batchrunner.session import run_loop
from batchrunner.emulator import EmulatorConfig, EmulatorServer, start_in_thread
from batchrunner.emulator.ratelimit import rfc3339_seconds


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def takes_until_a_wait(budget: RateBudget) -> int:
    taken = 0
    while budget.take() == 0:
        taken += 1
    return taken


def test_it_starts_at_its_own_rate_until_the_server_says_otherwise() -> None:
    clock = Clock()
    budget = RateBudget(10, clock)
    assert takes_until_a_wait(budget) == 10
    assert budget.take() == pytest.approx(6.0), "one request every 6 s at 10 a minute"
    budget.observe({"content-type": "application/json"})
    assert budget.limit == 10, "an answer without the headers changes nothing"


def test_a_server_granting_more_raises_the_rate_and_the_requests_in_hand() -> None:
    clock = Clock()
    budget = RateBudget(10, clock)
    budget.take()
    budget.observe({LIMIT_HEADER: "600", REMAINING_HEADER: "599", RESET_HEADER: rfc3339_seconds(clock.now + 1)})
    assert budget.limit == 600
    assert takes_until_a_wait(budget) == 599, "the server's remaining, not the 10 a minute it started at"


def test_a_server_granting_less_slows_it_down_to_the_servers_rate() -> None:
    clock = Clock()
    budget = RateBudget(600, clock)
    budget.observe({LIMIT_HEADER: "6", REMAINING_HEADER: "2", RESET_HEADER: rfc3339_seconds(clock.now + 40)})
    assert budget.limit == 6
    assert takes_until_a_wait(budget) == 2
    assert budget.take() == pytest.approx(10.0), "one request every 10 s at 6 a minute"
    clock.now += 10
    assert budget.take() == 0


def test_remaining_is_the_servers_count_and_reset_caps_the_refill() -> None:
    clock = Clock()
    budget = RateBudget(60, clock)
    budget.observe({LIMIT_HEADER: "60", REMAINING_HEADER: "0", RESET_HEADER: rfc3339_seconds(clock.now + 120)})
    assert budget.take() == pytest.approx(2.0), "60 missing, full again in 120 s: one every 2 s, not every 1 s"


def test_a_retry_after_holds_every_call_until_it_has_passed() -> None:
    clock = Clock()
    budget = RateBudget(600, clock)
    budget.observe({"retry-after": "3", LIMIT_HEADER: "600", REMAINING_HEADER: "0"})
    assert budget.take() == pytest.approx(3.0)
    clock.now += 2.0
    assert budget.take() == pytest.approx(1.0)
    clock.now += 1.0
    assert budget.take() == 0
    budget.observe({"retry-after-ms": "250", "retry-after": "1"})
    assert budget.take() == pytest.approx(0.25), "retry-after-ms is the more precise, as the SDK reads it"


def record_facades(monkeypatch: pytest.MonkeyPatch) -> list[tuple[AsyncApi, int]]:
    """Every facade a command builds, with the rate its budget started at."""
    facades: list[tuple[AsyncApi, int]] = []
    real_init = AsyncApi.__init__

    def recorded(self: AsyncApi, api: Any, requests_per_minute: int) -> None:
        real_init(self, api, requests_per_minute)
        facades.append((self, self.budget.limit))

    monkeypatch.setattr(AsyncApi, "__init__", recorded)
    return facades


def server_calls(server: EmulatorServer) -> int:
    return sum(n for key, n in server.stats()["calls"].items() if " /v1/" in key)


def submit_to(server: EmulatorServer, make_job: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rpm: int, rows: int) -> Any:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-key")
    job = make_job(reviews(rows), batch_size=1, extra=f"poll: {{requests_per_minute: {rpm}, initial_interval: 0.05, max_interval: 0.3}}\n")
    job.spec.write_text(job.spec.read_text().replace("poll: {initial_interval: 0.05, max_interval: 0.3}\n", ""))
    outcome = pipeline.submit(job.spec, home=tmp_path / "state", backend="anthropic")
    assert outcome.exit_code == 0
    assert [row["custom_id"] for row in read_rows(job.output)] == [f"r-{i}" for i in range(1, rows + 1)]
    return job


def test_a_submit_at_10_a_minute_against_a_server_granting_600_does_not_wait_on_the_10(make_job, tmp_path, monkeypatch):
    facades = record_facades(monkeypatch)
    with start_in_thread(EmulatorConfig(data_dir=tmp_path / "emulator", processing_seconds=0.2, requests_per_minute=600)) as server:
        submit_to(server, make_job, tmp_path, monkeypatch, rpm=10, rows=6)
        calls, limited = server_calls(server), server.stats()["rate_limited"]

    [(facade, started_at)] = facades
    assert started_at == 10
    assert calls > 20, "more calls than 10 a minute would let through without waiting"
    assert facade.budget.limit == 600
    assert facade.budget.waits == 0
    assert limited == 0


def drain(server: EmulatorServer, key: str) -> None:
    """Another client of the same key uses up its requests, as a second process would."""
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    while httpx2.get(f"{server.base_url}/v1/models", headers=headers).status_code != 429:
        pass


# At 60 a minute the server regains one request a second; the drained bucket makes the submit wait on it.
def test_a_submit_against_a_server_granting_less_than_its_rate_slows_to_the_servers(make_job, tmp_path, monkeypatch):
    facades = record_facades(monkeypatch)
    with start_in_thread(EmulatorConfig(data_dir=tmp_path / "emulator", processing_seconds=0.2, requests_per_minute=60)) as server:
        drain(server, "sk-test-key")
        limited_before = server.stats()["rate_limited"]
        submit_to(server, make_job, tmp_path, monkeypatch, rpm=600, rows=2)
        limited = server.stats()["rate_limited"] - limited_before

    [(facade, started_at)] = facades
    assert started_at == 600
    assert facade.budget.limit == 60
    assert facade.budget.waits >= 3, "it waited for the server's refill instead of calling at 600 a minute"
    assert limited <= 1, "only the first call, before any answer said so, may find the key used up"


def test_a_local_submit_starts_at_the_emulators_own_limit_not_the_specs(make_job, tmp_path, monkeypatch):
    facades = record_facades(monkeypatch)
    job = make_job(reviews(2), extra="")

    outcome = pipeline.submit(job.spec, home=tmp_path / "state", backend="local")

    assert outcome.exit_code == 0
    [(facade, started_at)] = facades
    assert started_at == EmulatorConfig(data_dir=tmp_path).requests_per_minute == 4000
    assert facade.budget.limit == 4000 and facade.budget.waits == 0


def test_a_create_refused_429_holds_the_next_call_for_its_retry_after(tmp_path, monkeypatch):
    """Creates run with SDK retries off; the 429 they get still reaches the budget, so the
    submit's retry (or a reconcile) waits for the server instead of knocking again."""
    body = orjson.dumps({"requests": [{"custom_id": "a", "params": {
        "model": "claude-haiku-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}}]})
    # 6 a minute: the drained bucket regains a request only after 10 s, however busy the machine
    with start_in_thread(EmulatorConfig(data_dir=tmp_path / "emulator", requests_per_minute=6)) as server:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-key")
        api = Api(ResolvedBackend("anthropic", server.base_url), server.base_url)
        facade = AsyncApi(api, 600)
        drain(server, "sk-test-key")
        with pytest.raises(ApiError) as refused:
            run_loop(facade.create_batch(iter([body]), len(body)))
        api.close()

    assert refused.value.status == 429
    assert 0 < facade.budget.take() <= 10.0, "held for the retry-after the 429 carried (up to 10 s at 6 a minute)"
    assert facade.budget.limit == 6
