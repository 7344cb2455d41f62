"""The same request sent again in a later batch draws its fate anew; `_once` triggers fire only the first time."""

from __future__ import annotations

import time
from pathlib import Path

import anthropic

from batchrunner.emulator import EmulatorConfig, start_in_thread


def params(text: str) -> dict[str, object]:
    return {"model": "claude-haiku-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": text}]}


def run_batch(client: anthropic.Anthropic, requests: list[dict[str, object]]) -> dict[str, str]:
    batch = client.messages.batches.create(requests=requests)
    while client.messages.batches.retrieve(batch.id).processing_status != "ended":
        time.sleep(0.05)
    return {r.custom_id: r.result.type for r in client.messages.batches.results(batch.id)}


def test_once_triggers_fail_the_first_batch_only(tmp_path: Path):
    with start_in_thread(EmulatorConfig(data_dir=tmp_path / "emu", processing_seconds=0.1)) as server:
        client = anthropic.Anthropic(base_url=server.base_url, api_key="k")
        requests = [
            {"custom_id": "flaky", "params": params("hi [[emulator:errored_once:overloaded_error]]")},
            {"custom_id": "late", "params": params("hi [[emulator:expired_once]]")},
            {"custom_id": "bad", "params": params("hi [[emulator:errored:invalid_request_error]]")},
        ]
        first = run_batch(client, requests)
        second = run_batch(client, requests)

    assert first == {"flaky": "errored", "late": "expired", "bad": "errored"}
    assert second == {"flaky": "succeeded", "late": "succeeded", "bad": "errored"}


def fates(data_dir: Path) -> list[dict[str, str]]:
    config = EmulatorConfig(data_dir=data_dir, processing_seconds=0.1, errored_rate=0.5, seed=3)
    requests = [{"custom_id": f"r{i}", "params": params(f"question {i}")} for i in range(40)]
    with start_in_thread(config) as server:
        client = anthropic.Anthropic(base_url=server.base_url, api_key="k")
        first = run_batch(client, requests)
        failed = [r for r in requests if first[str(r["custom_id"])] == "errored"]
        return [first, run_batch(client, failed)]


def test_a_retried_request_draws_its_fate_anew_and_deterministically(tmp_path: Path):
    first, retried = fates(tmp_path / "a")

    assert 5 < list(first.values()).count("errored") < 35
    assert "succeeded" in retried.values(), "errors under --errored-rate are transient, as on the real API"
    assert "errored" in retried.values()
    assert fates(tmp_path / "b") == [first, retried], "same seed, same history: same outcomes"
