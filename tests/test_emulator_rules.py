"""The emulator ends a request the API would refuse `errored`, judged under the version its create was sent with."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import orjson
import pytest

from batchrunner.emulator import EmulatorConfig, EmulatorServer, start_in_thread

LEGACY = {"x-api-key": "k", "anthropic-version": "2023-06-01"}


def client_for(server: EmulatorServer) -> anthropic.Anthropic:
    """SDK 2.x as it comes: Bearer auth, anthropic-version 2026-10-21."""
    return anthropic.Anthropic(base_url=server.base_url, api_key="k", max_retries=0)


def legacy_client(server: EmulatorServer) -> anthropic.Anthropic:
    """The 0.x dialect: x-api-key auth (no Bearer) and anthropic-version 2023-06-01, as older SDKs send."""
    headers = {**LEGACY, "Authorization": anthropic.omit}
    return anthropic.Anthropic(base_url=server.base_url, api_key="k", max_retries=0, default_headers=headers)


def request(custom_id: str, model: str = "claude-haiku-4-5", **params: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "Hello there"}], **params},
    }


def outcomes(client: anthropic.Anthropic, requests: list[dict[str, Any]]) -> dict[str, tuple[str, str | None, str | None]]:
    """custom_id -> (result type, error type, error message) once the batch has ended."""
    batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    deadline = time.monotonic() + 10
    while client.messages.batches.retrieve(batch.id).processing_status != "ended":
        assert time.monotonic() < deadline, "the batch did not end"
        time.sleep(0.05)
    found = {}
    for line in client.messages.batches.results(batch.id):
        error = line.result.error.error if line.result.type == "errored" else None  # type: ignore[union-attr]
        found[line.custom_id] = (line.result.type, error.type if error else None, error.message if error else None)
    return found


THREE = [request("plain"), request("sampled", temperature=0), request("unknown", model="claude-sonnet-9-9")]


def test_under_2026_10_21_temperature_is_refused_and_an_unknown_model_is_not_found(emulator: EmulatorServer) -> None:
    found = outcomes(client_for(emulator), THREE)

    assert found["plain"] == ("succeeded", None, None)
    kind, error_type, message = found["sampled"]
    assert (kind, error_type) == ("errored", "invalid_request_error")
    assert "temperature" in message and "2026-10-21" in message
    assert found["unknown"] == ("errored", "not_found_error", "model: claude-sonnet-9-9")


def test_under_2023_06_01_in_the_0x_dialect_temperature_still_works_on_haiku_4_5(emulator: EmulatorServer) -> None:
    found = outcomes(legacy_client(emulator), THREE)

    assert found["plain"][0] == "succeeded"
    assert found["sampled"] == ("succeeded", None, None)
    assert found["unknown"] == ("errored", "not_found_error", "model: claude-sonnet-9-9")


def test_under_2023_06_01_models_that_take_only_default_sampling_refuse_other_values(emulator: EmulatorServer) -> None:
    found = outcomes(legacy_client(emulator), [
        request("default", model="claude-sonnet-5", temperature=1.0),
        request("custom", model="claude-sonnet-5", temperature=0.2),
        request("thinking", model="claude-haiku-4-5", max_tokens=4096, temperature=0.5,
                thinking={"type": "enabled", "budget_tokens": 2048}),
    ])

    assert found["default"][0] == "succeeded"
    assert found["custom"][:2] == ("errored", "invalid_request_error") and "temperature" in found["custom"][2]
    assert found["thinking"][:2] == ("errored", "invalid_request_error") and "temperature" in found["thinking"][2]


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"tools": [{"name": "bad name!", "input_schema": {"type": "object"}}]}, "tools.0.name"),
        ({"tools": [{"name": "lookup", "input_schema": {"type": "objekt"}}]}, "tools.0.input_schema"),
        ({"tools": [{"name": "lookup", "input_schema": {"type": "object"}}], "tool_choice": {"type": "tool", "name": "find"}},
         "tool_choice.name"),
        ({"stop_sequences": ["  "]}, "stop_sequences.0"),
        ({"max_tokens": 10**12}, "max_tokens"),
        ({"max_tokens": 100_000}, "max_tokens"),
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}, "max_tokens": 4096, "model": "claude-opus-5-5"}, "thinking.type"),
        ({"tools": [{"name": "lookup", "input_schema": {"type": "object"}}], "tool_choice": {"type": "any"},
          "model": "claude-opus-5-5"}, "tool_choice.type"),
        ({"model": "claude-3-opus-20240229"}, "model"),
        ({"messages": [{"role": "user", "content": "Hi"},
                       {"role": "assistant", "content": [{"type": "document",
                                                          "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]},
                       {"role": "user", "content": "Go on"}]}, "messages.1.content.0"),
    ],
    ids=["tool-name", "tool-schema", "undefined-tool", "blank-stop", "absurd-max-tokens", "over-model-max",
         "manual-thinking-on-5-5", "forced-tool-on-opus-5-5", "retired", "assistant-document"],
)
def test_a_request_breaking_a_rule_ends_invalid_request_error_naming_the_parameter(
    emulator: EmulatorServer, params: dict[str, Any], names: str
) -> None:
    found = outcomes(client_for(emulator), [request("bad", **params), request("good")])

    kind, error_type, message = found["bad"]
    assert (kind, error_type) == ("errored", "invalid_request_error")
    assert names in message
    assert found["good"][0] == "succeeded"


def test_the_batch_only_300k_output_needs_the_beta_on_the_create(emulator: EmulatorServer) -> None:
    big = request("big", model="claude-opus-5-5", max_tokens=300_000)
    client = client_for(emulator)
    with_beta = anthropic.Anthropic(base_url=emulator.base_url, api_key="k", max_retries=0,
                                    default_headers={"anthropic-beta": "output-300k-2026-03-24"})

    refused = outcomes(client, [big])["big"]
    assert refused[:2] == ("errored", "invalid_request_error") and "300000 > 128000" in refused[2]
    assert outcomes(with_beta, [big])["big"][0] == "succeeded"


def test_a_top_level_cache_control_is_accepted(emulator: EmulatorServer) -> None:
    found = outcomes(client_for(emulator), [request("cached", cache_control={"type": "ephemeral"})])

    assert found["cached"] == ("succeeded", None, None)


def test_serve_models_file_teaches_it_a_newer_model(tmp_path: Path) -> None:
    catalog = orjson.loads((Path(__file__).parent.parent / "batchrunner" / "data" / "models.json").read_bytes())
    newer = {**catalog["models"][0], "id": "claude-opus-6", "display_name": "Claude Opus 6", "batchrunner": {}}
    models_file = tmp_path / "models.json"
    models_file.write_bytes(orjson.dumps({**catalog, "models": [newer, *catalog["models"]]}))

    with start_in_thread(EmulatorConfig(data_dir=tmp_path / "data", processing_seconds=0.2, models_file=models_file)) as server:
        client = client_for(server)
        assert client.models.retrieve("claude-opus-6").display_name == "Claude Opus 6"
        assert outcomes(client, [request("new", model="claude-opus-6")])["new"][0] == "succeeded"


def test_results_come_back_in_an_order_shuffled_by_the_seed_and_keep_order_keeps_request_order(tmp_path: Path) -> None:
    requests = [request(f"r-{i}") for i in range(40)]

    def order(name: str, **config: Any) -> list[str]:
        with start_in_thread(EmulatorConfig(data_dir=tmp_path / name, processing_seconds=0.1, **config)) as server:
            client = client_for(server)
            batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
            while client.messages.batches.retrieve(batch.id).processing_status != "ended":
                time.sleep(0.05)
            return [line.custom_id for line in client.messages.batches.results(batch.id)]

    in_order = [r["custom_id"] for r in requests]
    shuffled, again, other_seed = order("a"), order("b"), order("c", seed=7)
    assert shuffled != in_order and sorted(shuffled) == sorted(in_order)
    assert again == shuffled
    assert other_seed != shuffled
    assert order("d", keep_order=True) == in_order


def test_a_data_dir_from_before_versions_were_recorded_still_serves_its_batches(tmp_path: Path) -> None:
    data = tmp_path / "old"
    data.mkdir()
    with sqlite3.connect(data / "emulator.sqlite3") as db:  # the batches table as it was, without api_version
        db.execute(
            "CREATE TABLE batches (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, created_at REAL NOT NULL,"
            " visible_at REAL NOT NULL, request_count INTEGER NOT NULL, ends_at REAL NOT NULL, seed INTEGER NOT NULL,"
            " processing_seconds REAL NOT NULL, errored_rate REAL NOT NULL, expired_rate REAL NOT NULL,"
            " cancel_initiated_at REAL, ended_at REAL, counts TEXT, deleted_at REAL)"
        )
        now = round(time.time(), 6)
        db.execute("INSERT INTO batches (id, created_at, visible_at, request_count, ends_at, seed, processing_seconds,"
                   " errored_rate, expired_rate) VALUES ('msgbatch_old', ?, ?, 1, ?, 0, 0.1, 0, 0)",
                   (now, now, round(now + 0.1, 6)))
    (data / "requests").mkdir()
    (data / "requests" / "msgbatch_old.json").write_bytes(orjson.dumps({"requests": [request("old", temperature=0.5)]}))

    with start_in_thread(EmulatorConfig(data_dir=data)) as server:
        client = client_for(server)
        time.sleep(0.2)
        assert client.messages.batches.retrieve("msgbatch_old").processing_status == "ended"
        # judged by the older rules, as batches created before the version was recorded
        assert [line.result.type for line in client.messages.batches.results("msgbatch_old")] == ["succeeded"]
        assert outcomes(client, [request("new")])["new"][0] == "succeeded"


def test_a_strict_server_refuses_the_purpose_field_naming_it(tmp_path: Path) -> None:
    with start_in_thread(EmulatorConfig(data_dir=tmp_path / "strict", reject_unknown_fields=True)) as server:
        client = client_for(server)
        with pytest.raises(anthropic.BadRequestError, match="purpose: Extra inputs are not permitted"):
            client.files.upload(file=("a.jsonl", b"{}\n"), extra_body={"purpose": "batch"})
        assert client.files.upload(file=("a.jsonl", b"{}\n")).filename == "a.jsonl"
        response = httpx2.post(server.base_url + "/v1/files", headers=LEGACY,
                               files={"file": ("a.txt", b"x")}, data={"colour": "blue"})
        assert response.status_code == 400
        assert response.json()["error"] == {"type": "invalid_request_error", "message": "colour: Extra inputs are not permitted"}
