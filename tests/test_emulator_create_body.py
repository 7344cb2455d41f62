"""The emulator reads a create body one request at a time (issue 14): on the `local` backend it runs
inside the CLI's process, so its memory must not grow with the requests. Whatever the layout a
client sends, it accepts the same bodies and answers the same errors as a whole-body parse."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest

from batchrunner.emulator import EmulatorServer
from batchrunner.emulator.engine import Engine, Settings
from batchrunner.emulator.store import Store

HEADERS = {"x-api-key": "test-key", "anthropic-version": "2023-06-01", "content-type": "application/json"}


def request(index: int) -> dict[str, Any]:
    """A request whose strings and nested blocks look like the ends of requests: `},{`, `}]}`."""
    return {
        "custom_id": f"r-{index}",
        "params": {
            "model": "claude-haiku-4-5", "max_tokens": 16,
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": 'quote: "}, {" and }]} end'}, {"type": "text", "text": "two"}]},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": f"row {index}"},
            ],
        },
    }


def create(server: EmulatorServer, body: bytes) -> httpx2.Response:
    return httpx2.post(f"{server.base_url}/v1/messages/batches", content=body, headers=HEADERS, timeout=60)


def results(server: EmulatorServer, batch_id: str) -> list[dict[str, Any]]:
    url = f"{server.base_url}/v1/messages/batches/{batch_id}"
    while httpx2.get(url, headers=HEADERS).json()["processing_status"] != "ended":
        pass
    return [orjson.loads(line) for line in httpx2.get(f"{url}/results", headers=HEADERS).content.splitlines()]


REQUESTS = [request(i) for i in range(50)]
LAYOUTS = {
    "compact": orjson.dumps({"requests": REQUESTS}),
    "spaced, as json.dumps writes it": json.dumps({"requests": REQUESTS}).encode(),
    "indented": json.dumps({"requests": REQUESTS}, indent=2).encode(),
    "lines joined by commas, as submit streams it": b'{"requests":[' + b",".join(orjson.dumps(r) for r in REQUESTS) + b"]}",
    "a duplicate key, the last one wins": b'{"requests": [{"custom_id": "x"}], "requests": ' + orjson.dumps(REQUESTS) + b"}",
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_of_a_create_body_gives_every_request_its_result(emulator: EmulatorServer, layout: str) -> None:
    created = create(emulator, LAYOUTS[layout])

    assert created.status_code == 200, created.text
    lines = results(emulator, created.json()["id"])
    assert sorted(line["custom_id"] for line in lines) == sorted(f"r-{i}" for i in range(50))
    assert {line["result"]["type"] for line in lines} == {"succeeded"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"requests":[{"custom_id":"a","params":{}},{"custom_id":"a","params":{}},', "The request body is not valid JSON"),
        (b'{"requests":[{"custom_id":"a","params":{}},{"custom_id":"a","params":{}}]}', "requests.1.custom_id: Duplicate custom_id 'a'"),
        (b'{"requests":[{"custom_id":"a","params":{}},7]}', "requests.1: Input should be a valid dictionary"),
        (b'{"requests":[{"custom_id":"a","params":{}}],"x":1}', "x: Extra inputs are not permitted"),
        (b'{"requests":[]}', "requests: List should have at least 1 item after validation, not 0"),
    ],
)
def test_a_bad_body_gets_the_error_a_whole_parse_gives(emulator: EmulatorServer, body: bytes, message: str) -> None:
    refused = create(emulator, body)

    assert refused.status_code == 400
    assert refused.json()["error"]["message"].startswith(message)


def test_creating_and_ending_a_big_batch_keeps_the_emulator_memory_flat(tmp_path: Path) -> None:
    """1,500 requests: parsed whole, the body alone takes about 8 MB as Python objects, growing with them."""
    engine = Engine(Store(tmp_path / "emulator"), Settings(processing_seconds=0.0))
    lines = [orjson.dumps(request(i)) for i in range(1_500)]
    body = b'{"requests":[' + b",".join(lines) + b"]}"
    del lines
    tracemalloc.start()
    try:
        batch = engine.create_batch(body)
        ended = engine.batch(batch["id"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        engine.store.close()
    assert ended["request_counts"]["succeeded"] == 1_500
    assert peak < 3 * 2**20, f"peak {peak / 2**20:.0f} MB"
