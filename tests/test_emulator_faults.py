"""The emulator as a test bench: fault options, trigger strings, scripted creates, auth and headers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

from batchrunner.emulator import EmulatorConfig, EmulatorServer, start_in_thread

FAULT_CLASSES = (anthropic.RateLimitError, anthropic.InternalServerError, anthropic.OverloadedError)


def client_for(server: EmulatorServer, **options: Any) -> anthropic.Anthropic:
    options.setdefault("max_retries", 0)
    return anthropic.Anthropic(base_url=server.base_url, api_key="test-key", **options)


def request(custom_id: str, text: str) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": text}]},
    }


def wait_until_ended(client: anthropic.Anthropic, batch_id: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        time.sleep(0.05)
    raise AssertionError(f"{batch_id} did not end within {timeout} s")


def outcomes(server: EmulatorServer, calls: int) -> list[str]:
    """What each of `calls` list calls got: "ok" or the SDK exception's class name."""
    client = client_for(server)
    seen = []
    for _ in range(calls):
        try:
            client.messages.batches.list()
            seen.append("ok")
        except anthropic.APIStatusError as error:
            seen.append(type(error).__name__)
    return seen


def control(server: EmulatorServer, method: str, path: str, body: Any = None) -> httpx2.Response:
    return httpx2.request(method, server.base_url + path, json=body)


def test_fault_rate_one_answers_every_api_call_with_429_500_or_529(tmp_path: Path) -> None:
    with start_in_thread(EmulatorConfig(data_dir=tmp_path, fault_rate=1.0)) as server:
        client = client_for(server)
        seen = set()
        for _ in range(12):
            with pytest.raises(FAULT_CLASSES) as caught:
                client.messages.batches.create(requests=[request("a", "Hi")])
            seen.add(type(caught.value))
            if isinstance(caught.value, anthropic.RateLimitError):
                assert 0 < float(caught.value.response.headers["retry-after-ms"]) <= 1000
        assert seen == set(FAULT_CLASSES)
        assert control(server, "GET", "/_emulator/health").json() == {"status": "ok"}
        stats = server.stats()
        assert (stats["faults_injected"], stats["batches_created"]) == (12, 0)
        assert stats["calls"]["POST /v1/messages/batches"] == 12


def test_the_sdk_retries_through_a_partial_fault_rate(tmp_path: Path) -> None:
    with start_in_thread(EmulatorConfig(data_dir=tmp_path, fault_rate=0.3, processing_seconds=0.1)) as server:
        client = client_for(server, max_retries=8)
        batch = client.messages.batches.create(requests=[request("a", "Hi")])
        assert wait_until_ended(client, batch.id).request_counts.succeeded == 1
        assert server.stats()["faults_injected"] > 0


def test_faults_fall_on_the_same_calls_for_the_same_seed(tmp_path: Path) -> None:
    runs = []
    for index, seed in enumerate((5, 5, 6)):
        with start_in_thread(EmulatorConfig(data_dir=tmp_path / str(index), seed=seed, fault_rate=0.5)) as server:
            runs.append(outcomes(server, 30))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert {"ok", "RateLimitError"} <= set(runs[0])


def test_truncate_rate_breaks_results_downloads_mid_stream(tmp_path: Path) -> None:
    with start_in_thread(EmulatorConfig(data_dir=tmp_path, truncate_rate=1.0, processing_seconds=0.0)) as server:
        client = client_for(server)
        batch = client.messages.batches.create(requests=[request(f"r-{i}", "Hello there") for i in range(50)])
        wait_until_ended(client, batch.id)
        with pytest.raises(httpx2.RemoteProtocolError):
            list(client.messages.batches.results(batch.id))

        with httpx2.stream("GET", f"{server.base_url}/v1/messages/batches/{batch.id}/results",
                           headers={"x-api-key": "k", "anthropic-version": "2023-06-01"}) as response:
            promised = int(response.headers["content-length"])
            received = bytearray()
            with pytest.raises(httpx2.RemoteProtocolError):
                for chunk in response.iter_raw():
                    received += chunk
        assert 0 < len(received) < promised
        assert server.stats()["truncated_downloads"] == 2


@pytest.mark.parametrize(("option", "expected"), [("errored_rate", "errored"), ("expired_rate", "expired")])
def test_request_rates_end_requests_errored_or_expired(tmp_path: Path, option: str, expected: str) -> None:
    config = EmulatorConfig(data_dir=tmp_path, processing_seconds=0.0, **{option: 1.0})
    with start_in_thread(config) as server:
        client = client_for(server)
        batch = client.messages.batches.create(requests=[request(f"r-{i}", "Hi") for i in range(20)])
        ended = wait_until_ended(client, batch.id)
        assert getattr(ended.request_counts, expected) == 20
        results = list(client.messages.batches.results(batch.id))
    assert {r.result.type for r in results} == {expected}
    if expected == "errored":
        assert {r.result.error.error.type for r in results} == {"overloaded_error", "api_error"}


def test_half_rates_spread_over_requests_not_all_or_nothing(tmp_path: Path) -> None:
    with start_in_thread(EmulatorConfig(data_dir=tmp_path, processing_seconds=0.0, errored_rate=0.5)) as server:
        client = client_for(server)
        batch = client.messages.batches.create(requests=[request(f"r-{i}", "Same prompt") for i in range(40)])
        counts = wait_until_ended(client, batch.id).request_counts
    assert 5 < counts.errored < 35 and counts.succeeded == 40 - counts.errored


@pytest.mark.parametrize(
    ("trigger", "result_type", "error_type"),
    [
        ("[[emulator:errored:overloaded_error]]", "errored", "overloaded_error"),
        ("[[emulator:errored:invalid_request_error]]", "errored", "invalid_request_error"),
        ("[[emulator:errored:rate_limit_error]]", "errored", "rate_limit_error"),
        ("[[emulator:expired]]", "expired", None),
        ("[[emulator:canceled]]", "canceled", None),
    ],
)
def test_trigger_strings_force_one_requests_outcome(
    emulator: EmulatorServer, trigger: str, result_type: str, error_type: str | None
) -> None:
    client = client_for(emulator)
    batch = client.messages.batches.create(requests=[request("plain", "Hello"), request("forced", f"Hello {trigger}")])
    wait_until_ended(client, batch.id)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert results["plain"].type == "succeeded"
    assert results["forced"].type == result_type
    if error_type is not None:
        assert results["forced"].error.error.type == error_type


def test_the_slow_trigger_keeps_the_batch_running_ten_times_longer(emulator: EmulatorServer) -> None:
    client = client_for(emulator)
    batch = client.messages.batches.create(requests=[request("a", "Hi"), request("b", "Hi [[emulator:slow]]")])
    time.sleep(0.5)
    assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"
    ended = wait_until_ended(client, batch.id)
    assert (ended.ended_at - ended.created_at).total_seconds() == pytest.approx(2.0)
    assert ended.request_counts.succeeded == 2


@pytest.mark.parametrize(
    ("mode", "error", "created"),
    [
        ("reject_429", anthropic.RateLimitError, False),
        ("reject_500", anthropic.InternalServerError, False),
        ("reject_529", anthropic.OverloadedError, False),
        ("apply_then_500", anthropic.InternalServerError, True),
        ("apply_then_drop", anthropic.APIConnectionError, True),
    ],
)
def test_scripted_creates_fail_before_or_after_creating(
    emulator: EmulatorServer, mode: str, error: type[Exception], created: bool
) -> None:
    assert control(emulator, "POST", "/_emulator/faults", {"create": [mode]}).json()["create"] == [mode]
    client = client_for(emulator)
    with pytest.raises(error):
        client.messages.batches.create(requests=[request("a", "Hi")])
    assert len(client.messages.batches.list().data) == (1 if created else 0)
    client.messages.batches.create(requests=[request("a", "Hi")])  # the script is used up: this one just works
    assert len(client.messages.batches.list().data) == (2 if created else 1)
    assert emulator.stats()["create_attempts"] == 2


def test_a_stalled_create_times_out_on_the_client_yet_exists(emulator: EmulatorServer) -> None:
    control(emulator, "POST", "/_emulator/faults", {"create": ["apply_then_stall:5"]})
    client = client_for(emulator, timeout=0.5)
    with pytest.raises(anthropic.APITimeoutError):
        client.messages.batches.create(requests=[request("a", "Hi")])
    assert len(client.messages.batches.list().data) == 1


def test_list_lag_hides_new_batches_from_list_and_retrieve_for_a_while(emulator: EmulatorServer) -> None:
    control(emulator, "POST", "/_emulator/faults", {"list_lag_seconds": 1.0})
    client = client_for(emulator)
    batch = client.messages.batches.create(requests=[request("a", "Hi")])
    assert client.messages.batches.list().data == []
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)
    time.sleep(1.1)
    assert [b.id for b in client.messages.batches.list()] == [batch.id]


@pytest.mark.parametrize("body", [{"create": ["explode"]}, {"create": "reject_429"}, {"other": 1}, {"list_lag_seconds": -1}])
def test_bad_fault_scripts_are_refused(emulator: EmulatorServer, body: Any) -> None:
    response = control(emulator, "POST", "/_emulator/faults", body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_a_required_api_key_is_enforced(tmp_path: Path) -> None:
    with start_in_thread(EmulatorConfig(data_dir=tmp_path, api_key="secret")) as server:
        with pytest.raises(anthropic.AuthenticationError, match="invalid x-api-key"):
            client_for(server).messages.batches.list()
        good = anthropic.Anthropic(base_url=server.base_url, api_key="secret", max_retries=0)
        assert good.messages.batches.list().data == []
        legacy = httpx2.get(server.base_url + "/v1/messages/batches",
                            headers={"x-api-key": "secret", "anthropic-version": "2023-06-01"})
        assert legacy.status_code == 200


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({"anthropic-version": "2023-06-01"}, 401, "x-api-key header is required"),
        ({"x-api-key": "k"}, 400, "anthropic-version: header is required"),
        ({"x-api-key": "k", "anthropic-version": "1999-01-01"}, 400, 'anthropic-version: "1999-01-01" is not a valid version'),
    ],
)
def test_missing_or_bad_headers_get_the_real_messages(
    emulator: EmulatorServer, headers: dict[str, str], status: int, message: str
) -> None:
    response = httpx2.get(emulator.base_url + "/v1/messages/batches", headers=headers)
    assert response.status_code == status
    body = response.json()
    assert (body["type"], body["error"]["message"]) == ("error", message)
    assert body["request_id"] == response.headers["request-id"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/_emulator/health"), ("GET", "/_emulator/stats"), ("GET", "/nowhere"), ("DELETE", "/v1/files")],
)
def test_every_response_carries_a_request_id(emulator: EmulatorServer, method: str, path: str) -> None:
    response = httpx2.request(method, emulator.base_url + path, headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
    assert response.headers["request-id"].startswith("req_")


def test_stats_count_calls_per_endpoint_template(emulator: EmulatorServer) -> None:
    client = client_for(emulator)
    batch = client.messages.batches.create(requests=[request("a", "Hi")])
    for _ in range(3):
        client.messages.batches.retrieve(batch.id)
    client.files.upload(file=("a.txt", b"hi"), extra_body={"purpose": "user_data"})
    stats = control(emulator, "GET", "/_emulator/stats").json()
    assert stats["calls"]["GET /v1/messages/batches/{message_batch_id}"] == 3
    assert stats["calls"]["POST /v1/messages/batches"] == 1
    assert (stats["batches_created"], stats["create_attempts"], stats["files_stored"]) == (1, 1, 1)
    direct = emulator.stats()
    assert direct.pop("uptime_seconds") >= 0 and stats.pop("uptime_seconds") >= 0
    assert direct == stats  # the library call and the endpoint give the same document
