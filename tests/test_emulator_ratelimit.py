"""The emulator's rate limit: the headers the API sends on every answer, and a 429 past the limit."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import anthropic
import httpx2
import pytest

from batchrunner.emulator import EmulatorConfig, EmulatorServer, start_in_thread

LIMIT = "anthropic-ratelimit-requests-limit"
REMAINING = "anthropic-ratelimit-requests-remaining"
RESET = "anthropic-ratelimit-requests-reset"


def client_for(server: EmulatorServer, key: str = "key-a") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key=key, max_retries=0)


def test_every_answer_carries_the_generous_default_limit(emulator: EmulatorServer) -> None:
    client = client_for(emulator)
    first = client.models.with_raw_response.list()
    second = client.files.with_raw_response.list()
    missing = client.messages.batches.with_raw_response.retrieve
    with pytest.raises(anthropic.NotFoundError) as not_found:
        missing("msgbatch_01nothing")
    assert [r.headers[LIMIT] for r in (first, second)] == ["4000", "4000"]
    assert all(int(r.headers[REMAINING]) < 4000 for r in (first, second)), "each call takes one from the bucket"
    assert int(not_found.value.response.headers[REMAINING]) < 4000, "an error answer counts and says so too"
    reset = datetime.fromisoformat(second.headers[RESET].replace("Z", "+00:00"))
    assert reset > datetime.now(UTC), "reset is when the bucket is full again, in RFC 3339"


# At 3 a minute the bucket regains one request in 20 s, so the counts below do not depend on speed.
def test_past_the_limit_a_429_with_retry_after_per_key_and_never_on_control_endpoints(tmp_path: Path) -> None:
    with start_in_thread(EmulatorConfig(data_dir=tmp_path / "emulator", requests_per_minute=3)) as server:
        client = client_for(server)
        assert [client.models.with_raw_response.list().headers[REMAINING] for _ in range(3)] == ["2", "1", "0"]
        with pytest.raises(anthropic.RateLimitError) as limited:
            client.models.list()
        headers = limited.value.response.headers
        assert limited.value.status_code == 429 and limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
        assert 1 <= int(headers["retry-after"]) <= 20 and headers[LIMIT] == "3" and headers[REMAINING] == "0"
        assert client_for(server, "key-b").models.with_raw_response.list().headers[REMAINING] == "2"
        for _ in range(5):
            assert httpx2.get(f"{server.base_url}/_emulator/health").status_code == 200
        assert server.stats()["rate_limited"] == 1


def test_no_limit_when_asked_for_none(tmp_path: Path) -> None:
    with start_in_thread(EmulatorConfig(data_dir=tmp_path / "emulator", requests_per_minute=None)) as server:
        answer = client_for(server).models.with_raw_response.list()
        assert LIMIT not in answer.headers
