"""Message Batches on the emulator, driven through the official SDK over loopback HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import jsonschema
import orjson
import pytest

from batchrunner.emulator import EmulatorConfig, EmulatorServer, start_in_thread
from batchrunner.emulator.engine import Engine, Settings
from batchrunner.emulator.errors import NotFound
from batchrunner.emulator.store import Store

SENTIMENT = {
    "type": "object",
    "properties": {
        "label": {"enum": ["positive", "negative", "neutral"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "reasons": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
    },
    "required": ["label", "confidence", "reasons"],
    "additionalProperties": False,
}


def client_for(server: EmulatorServer, **options: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key="test-key", max_retries=0, **options)


def request(custom_id: str, text: str, **params: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {"model": "claude-haiku-4-5", "max_tokens": 256, "messages": [{"role": "user", "content": text}], **params},
    }


def wait_until_ended(client: anthropic.Anthropic, batch_id: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        time.sleep(0.05)
    raise AssertionError(f"{batch_id} did not end within {timeout} s")


def results_by_id(client: anthropic.Anthropic, batch_id: str) -> dict[str, Any]:
    return {line.custom_id: line.result for line in client.messages.batches.results(batch_id)}


def test_counts_stay_in_processing_until_the_batch_ends_then_flip_at_once(emulator: EmulatorServer) -> None:
    client = client_for(emulator)
    created = client.messages.batches.create(requests=[request(f"r-{i}", f"Question {i}?") for i in range(3)])

    assert created.id.startswith("msgbatch_")
    assert created.processing_status == "in_progress"
    assert created.request_counts.to_dict() == {"processing": 3, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    assert created.results_url is None and created.ended_at is None and created.archived_at is None
    assert created.expires_at - created.created_at == timedelta(hours=24)

    ended = wait_until_ended(client, created.id)
    assert ended.request_counts.to_dict() == {"processing": 0, "succeeded": 3, "errored": 0, "canceled": 0, "expired": 0}
    assert ended.results_url == f"/v1/messages/batches/{created.id}/results"
    assert ended.ended_at - created.created_at == timedelta(seconds=0.2)


def test_results_hold_answers_errors_and_schema_valid_json(emulator: EmulatorServer) -> None:
    client = client_for(emulator)
    structured = {"output_config": {"format": {"type": "json_schema", "schema": SENTIMENT}}}
    batch = client.messages.batches.create(requests=[
        request("text", "Explain in a sentence why the sky looks blue."),
        request("short", "Hi"),
        request("long", "Describe the history of the bicycle. " * 40),
        request("json-good", "Review: I love it, the battery is excellent.", **structured),
        request("json-bad", "Review: It arrived broken and I want a refund.", **structured),
        request("zero-tokens", "Hello", max_tokens=0),
        request("unknown-param", "Hello", colour="blue"),
        request("missing-file", "x", messages=[{"role": "user", "content": [
            {"type": "document", "source": {"type": "file", "file_id": "file_011Cmissing"}}]}]),
    ])
    wait_until_ended(client, batch.id)
    results = results_by_id(client, batch.id)

    assert {cid for cid, r in results.items() if r.type == "succeeded"} == {"text", "short", "long", "json-good", "json-bad"}
    text = results["text"].message
    assert text.role == "assistant" and text.model == "claude-haiku-4-5" and text.stop_reason == "end_turn"
    assert text.content[0].text.endswith(".") and len(text.content[0].text.split()) >= 5
    assert results["long"].message.usage.input_tokens > 10 * results["short"].message.usage.input_tokens
    for cid, label in (("json-good", "positive"), ("json-bad", "negative")):
        answer = jsonschema_valid(results[cid].message.content[0].text, SENTIMENT)
        assert answer["label"] == label
    errors = {cid: r.error.error for cid, r in results.items() if r.type == "errored"}
    assert {cid: e.type for cid, e in errors.items()} == dict.fromkeys(
        ("zero-tokens", "unknown-param", "missing-file"), "invalid_request_error"
    )
    assert "max_tokens" in errors["zero-tokens"].message
    assert errors["unknown-param"].message == "colour: Extra inputs are not permitted"
    assert "file_011Cmissing" in errors["missing-file"].message


def jsonschema_valid(text: str, schema: dict[str, Any]) -> Any:
    document = orjson.loads(text)
    jsonschema.validate(document, schema)
    return document


def test_an_answer_longer_than_max_tokens_stops_at_max_tokens(emulator: EmulatorServer) -> None:
    client = client_for(emulator)
    batch = client.messages.batches.create(requests=[request("tiny", "Tell me about volcanoes please.", max_tokens=3)])
    wait_until_ended(client, batch.id)
    message = results_by_id(client, batch.id)["tiny"].message
    assert (message.stop_reason, message.usage.output_tokens) == ("max_tokens", 3)
    assert len(message.content[0].text) <= 12


def test_results_are_jsonl_without_blank_lines(emulator: EmulatorServer) -> None:
    client = client_for(emulator)
    batch = client.messages.batches.create(requests=[request(f"r-{i}", "Hello") for i in range(5)])
    ended = wait_until_ended(client, batch.id)
    response = httpx2.get(emulator.base_url + ended.results_url, headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-jsonl"
    assert response.headers["request-id"].startswith("req_")
    assert b"\n\n" not in response.content and response.content.endswith(b"}\n")
    assert len(response.content.splitlines()) == 5


def test_cancel_keeps_finished_requests_and_cancels_the_rest(emulator: EmulatorServer) -> None:
    client = client_for(emulator)
    batch = client.messages.batches.create(requests=[
        request("quick-1", "One"), request("quick-2", "Two"), request("slow", "Three [[emulator:slow]]"),
    ])
    time.sleep(0.3)  # past processing_seconds: the quick ones are done, the slow one keeps the batch running
    assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"

    canceling = client.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None
    assert canceling.request_counts.processing == 3

    ended = wait_until_ended(client, batch.id)
    assert ended.request_counts.to_dict() == {"processing": 0, "succeeded": 2, "errored": 0, "canceled": 1, "expired": 0}
    results = results_by_id(client, batch.id)
    assert {cid: r.type for cid, r in results.items()} == {"quick-1": "succeeded", "quick-2": "succeeded", "slow": "canceled"}
    with pytest.raises(anthropic.BadRequestError, match="already ended"):
        client.messages.batches.cancel(batch.id)


def test_delete_only_after_the_batch_has_ended(emulator: EmulatorServer) -> None:
    client = client_for(emulator)
    batch = client.messages.batches.create(requests=[request("a", "Hi [[emulator:slow]]")])
    with pytest.raises(anthropic.BadRequestError, match="cancel it first"):
        client.messages.batches.delete(batch.id)
    client.messages.batches.cancel(batch.id)
    wait_until_ended(client, batch.id)

    deleted = client.messages.batches.delete(batch.id)
    assert (deleted.id, deleted.type) == (batch.id, "message_batch_deleted")
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)
    assert batch.id not in [b.id for b in client.messages.batches.list()]


@pytest.mark.parametrize("call", ["retrieve", "cancel", "delete", "results"])
def test_unknown_batch_ids_raise_not_found(emulator: EmulatorServer, call: str) -> None:
    client = client_for(emulator)
    with pytest.raises(anthropic.NotFoundError) as caught:
        result = getattr(client.messages.batches, call)("msgbatch_01NoSuchBatch")
        list(result)
    assert caught.value.body["error"]["type"] == "not_found_error"
    assert caught.value.request_id and caught.value.request_id.startswith("req_")


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        ([], "at least 1 item"),
        ([request("has space", "x")], "should match pattern"),
        ([request("x" * 65, "x")], "requests.0.custom_id: String should have at most 64 characters"),
        ([request("same", "x"), request("same", "y")], "requests.1.custom_id: Duplicate custom_id"),
        ([{"custom_id": "no-params"}], "requests.0.params: Field required"),
        ([{**request("a", "x"), "extra": 1}], "requests.0.extra: Extra inputs are not permitted"),
    ],
)
def test_create_refuses_bad_batches_before_creating_anything(
    emulator: EmulatorServer, requests: list[dict[str, Any]], message: str
) -> None:
    client = client_for(emulator)
    with pytest.raises(anthropic.BadRequestError, match=message):
        client.messages.batches.create(requests=requests)
    assert client.messages.batches.list().data == []


def test_create_refuses_more_than_100000_requests(emulator: EmulatorServer) -> None:
    client = client_for(emulator)
    tiny = {"model": "claude-haiku-4-5", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}
    with pytest.raises(anthropic.BadRequestError, match="at most 100000 items"):
        client.messages.batches.create(requests=[{"custom_id": f"r{i}", "params": tiny} for i in range(100_001)])


def test_create_refuses_a_body_over_256_mb_with_413(emulator: EmulatorServer) -> None:
    host, port = emulator.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(
            b"POST /v1/messages/batches HTTP/1.1\r\nHost: x\r\nx-api-key: k\r\nanthropic-version: 2023-06-01\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % (256 * 1024 * 1024 + 1)
        )
        reply = b"".join(iter(lambda: connection.recv(65536), b""))  # the server closes after answering
    assert reply.startswith(b"HTTP/1.1 413")
    assert b'"type":"request_too_large"' in reply


def test_list_pages_newest_first_with_the_sdk(emulator: EmulatorServer) -> None:
    client = client_for(emulator)
    ids = [client.messages.batches.create(requests=[request("a", "Hi")]).id for _ in range(5)]

    first = client.messages.batches.list(limit=2)
    assert [b.id for b in first.data] == ids[::-1][:2] and first.has_more
    assert [b.id for b in client.messages.batches.list(limit=2)] == ids[::-1]  # auto-paging over 3 pages
    newer = client.messages.batches.list(limit=2, before_id=ids[0])
    assert [b.id for b in newer] == [ids[2], ids[1], ids[4], ids[3]]  # pages walk newer, each newest first


def test_list_pages_in_the_0x_dialect(emulator: EmulatorServer) -> None:
    client = client_for(emulator)
    ids = [client.messages.batches.create(requests=[request("a", "Hi")]).id for _ in range(5)]
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01", "anthropic-beta": "message-batches-2024-09-24"}

    def page(**query: Any) -> dict[str, Any]:
        response = httpx2.get(f"{emulator.base_url}/v1/messages/batches", params={"beta": "true", **query}, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    one = page(limit=2)
    assert ([b["id"] for b in one["data"]], one["has_more"]) == (ids[4:2:-1], True)
    assert (one["first_id"], one["last_id"]) == (ids[4], ids[3])
    two = page(limit=2, after_id=one["last_id"])
    three = page(limit=2, after_id=two["last_id"])
    assert [b["id"] for b in two["data"] + three["data"]] == ids[2::-1] and not three["has_more"]
    back = page(limit=2, before_id=three["first_id"])
    assert ([b["id"] for b in back["data"]], back["has_more"]) == ([ids[2], ids[1]], True)
    empty = page(limit=2, after_id=ids[0])
    assert empty == {"data": [], "has_more": False, "first_id": None, "last_id": None, "next_page": None}


def test_a_restart_on_the_same_data_dir_continues_every_batch(tmp_path: Path) -> None:
    config = EmulatorConfig(data_dir=tmp_path / "data", processing_seconds=0.4, seed=7)
    with start_in_thread(config) as first:
        client = client_for(first)
        batch = client.messages.batches.create(requests=[request("a", "Hi"), request("b", "Why is the sea salty?")])
        uploaded = client.files.upload(file=("in.jsonl", b"{}\n"), extra_body={"purpose": "batch"})

    restarted = EmulatorConfig(data_dir=tmp_path / "data", processing_seconds=30.0, seed=99)
    with start_in_thread(restarted) as second:
        client = client_for(second)
        ended = wait_until_ended(client, batch.id)
        assert ended.ended_at - ended.created_at == timedelta(seconds=0.4)  # the batch keeps its own settings
        assert client.files.retrieve_metadata(uploaded.id).purpose == "batch"
        after_restart = raw_results(second, batch.id)

    with start_in_thread(EmulatorConfig(data_dir=tmp_path / "fresh", processing_seconds=0.0, seed=7)) as fresh:
        client = client_for(fresh)
        again = client.messages.batches.create(requests=[request("a", "Hi"), request("b", "Why is the sea salty?")])
        wait_until_ended(client, again.id)
        assert raw_results(fresh, again.id) == after_restart


def raw_results(server: EmulatorServer, batch_id: str) -> bytes:
    url = f"{server.base_url}/v1/messages/batches/{batch_id}/results"
    response = httpx2.get(url, headers={"authorization": "Bearer k", "anthropic-version": "2026-10-21"})
    assert response.status_code == 200
    return response.content


def test_the_same_seed_gives_byte_identical_results(tmp_path: Path) -> None:
    requests = [
        request("text", "What makes sourdough rise?"),
        request("json", "Review: great value, love it", output_config={"format": {"type": "json_schema", "schema": SENTIMENT}}),
        *[request(f"n-{i}", f"Give me fact number {i} about owls.") for i in range(20)],
    ]
    outputs = []
    for run, seed in enumerate((3, 3, 4)):
        with start_in_thread(EmulatorConfig(data_dir=tmp_path / str(run), processing_seconds=0.0, seed=seed)) as server:
            client = client_for(server)
            batch = client.messages.batches.create(requests=requests)
            wait_until_ended(client, batch.id)
            outputs.append(raw_results(server, batch.id))
    assert outputs[0] == outputs[1]
    assert outputs[0] != outputs[2]


def test_kill_9_loses_nothing_acknowledged(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from batchrunner.emulator import EmulatorConfig, serve_forever; "
        "serve_forever(EmulatorConfig(data_dir=Path(sys.argv[1]), processing_seconds=0.3), "
        "on_ready=lambda url: print(url, flush=True))"
    )
    server = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "data")], stdout=subprocess.PIPE, text=True)
    try:
        base_url = server.stdout.readline().strip()  # type: ignore[union-attr]
        client = anthropic.Anthropic(base_url=base_url, api_key="k", max_retries=0)
        batch = client.messages.batches.create(requests=[request("a", "Hi")])
        uploaded = client.files.upload(file=("a.txt", b"hello"), extra_body={"purpose": "user_data"})
    finally:
        os.kill(server.pid, signal.SIGKILL)
        server.wait()

    with start_in_thread(EmulatorConfig(data_dir=tmp_path / "data")) as restarted:
        client = client_for(restarted)
        assert wait_until_ended(client, batch.id).request_counts.succeeded == 1
        assert client.files.retrieve_metadata(uploaded.id).size_bytes == 5


def test_archived_at_is_set_29_days_after_creation_and_results_go_away(tmp_path: Path) -> None:
    now = [1_000_000.0]
    engine = Engine(Store(tmp_path), Settings(processing_seconds=1.0), clock=lambda: now[0])
    created = engine.create_batch(b'{"requests":[{"custom_id":"a","params":{}}]}')
    now[0] += 29 * 86_400 - 1
    assert engine.batch(created["id"])["archived_at"] is None
    assert engine.results_path(created["id"]).exists()
    now[0] += 1
    assert engine.batch(created["id"])["archived_at"] == "1970-02-10T13:46:40.000000Z"
    with pytest.raises(NotFound, match="archived"):
        engine.results_path(created["id"])
