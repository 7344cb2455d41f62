"""The Files API on the emulator: uploads in both SDK dialects, listing, download rules, deletion."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

from batchrunner.emulator import EmulatorServer
from batchrunner.emulator.engine import Engine, Settings
from batchrunner.emulator.errors import FileExpired
from batchrunner.emulator.store import Store

LEGACY = {"x-api-key": "k", "anthropic-version": "2023-06-01", "anthropic-beta": "files-api-2025-04-14"}


def client_for(server: EmulatorServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key="test-key", max_retries=0)


def test_a_batch_purpose_upload_is_recorded_and_downloadable(emulator: EmulatorServer) -> None:
    client = client_for(emulator)
    content = b'{"custom_id":"a"}\n'
    meta = client.files.upload(file=("requests-001.jsonl", content, "application/jsonl"), extra_body={"purpose": "batch"})

    assert meta.id.startswith("file_") and meta.type == "file"
    assert (meta.filename, meta.mime_type, meta.size_bytes) == ("requests-001.jsonl", "application/jsonl", len(content))
    assert (meta.purpose, meta.downloadable, meta.expires_at) == ("batch", True, None)
    assert client.files.retrieve_metadata(meta.id).purpose == "batch"
    assert client.files.download(meta.id).read() == content


def test_other_uploads_are_not_downloadable(emulator: EmulatorServer) -> None:
    client = client_for(emulator)
    meta = client.files.upload(file=("notes.txt", b"hello"), extra_body={"purpose": "user_data"})
    assert (meta.purpose, meta.downloadable) == ("user_data", False)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.files.download(meta.id)
    assert type(caught.value).__name__ == "FileNotDownloadableError"
    assert caught.value.body["error"]["details"] == {"error_code": "file_not_downloadable"}


def test_a_part_without_a_filename_is_still_the_file(emulator: EmulatorServer) -> None:
    meta = client_for(emulator).files.upload(file=b"raw bytes from SDK 2.x")
    assert (meta.filename, meta.mime_type, meta.size_bytes, meta.purpose) == ("unnamed.bin", "application/octet-stream", 22, None)


def test_the_0x_dialect_uploads_with_a_filename_and_beta_query(emulator: EmulatorServer) -> None:
    response = httpx2.post(
        emulator.base_url + "/v1/files?beta=true",
        headers=LEGACY,
        files={"file": ("upload", b"Example data", "application/octet-stream")},
        data={"purpose": "batch"},
    )
    assert response.status_code == 200, response.text
    assert {k: response.json()[k] for k in ("filename", "mime_type", "purpose")} == {
        "filename": "upload", "mime_type": "application/octet-stream", "purpose": "batch",
    }


@pytest.mark.parametrize(
    ("filename", "part_type", "mime_type"),
    [
        ("report.pdf", "application/pdf", "application/pdf"),
        ("table.csv", "application/octet-stream", "text/csv"),
        ("shard.jsonl", None, "application/jsonl"),
        ("photo.PNG", None, "image/png"),
        ("mystery", None, "application/octet-stream"),
    ],
)
def test_the_mime_type_comes_from_the_part_or_the_extension(
    emulator: EmulatorServer, filename: str, part_type: str | None, mime_type: str
) -> None:
    file: Any = (filename, b"data", part_type) if part_type else (filename, b"data")
    assert client_for(emulator).files.upload(file=file).mime_type == mime_type


def test_only_the_last_path_component_of_a_filename_is_kept(emulator: EmulatorServer) -> None:
    response = httpx2.post(emulator.base_url + "/v1/files", headers=LEGACY, files={"file": ("dir/sub/a.txt", b"x")})
    assert response.json()["filename"] == "a.txt"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"filename": "bad|name.txt"}, "must not contain"),
        ({"filename": "x" * 256}, "at most 255 characters"),
        ({"purpose": "training"}, "purpose: Input should be 'batch' or 'user_data'"),
        ({"expires_in_seconds": "60"}, "expires_in_seconds: Input should be an integer between 3600 and 7776000"),
    ],
)
def test_bad_uploads_are_refused(emulator: EmulatorServer, fields: dict[str, str], message: str) -> None:
    filename = fields.pop("filename", "ok.txt")
    response = httpx2.post(emulator.base_url + "/v1/files", headers=LEGACY, files={"file": (filename, b"x")}, data=fields)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_expires_in_seconds_sets_expires_at(emulator: EmulatorServer) -> None:
    meta = client_for(emulator).files.upload(file=("a.txt", b"x"), expires_in_seconds=3600)
    assert (meta.expires_at - meta.created_at).total_seconds() == pytest.approx(3600)


def test_a_body_over_500_mb_is_refused_with_413(emulator: EmulatorServer) -> None:
    host, port = emulator.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(
            b"POST /v1/files HTTP/1.1\r\nHost: x\r\nx-api-key: k\r\nanthropic-version: 2023-06-01\r\n"
            b"content-type: multipart/form-data; boundary=b\r\ncontent-length: %d\r\n\r\n" % (502 * 1024 * 1024)
        )
        reply = b"".join(iter(lambda: connection.recv(65536), b""))
    assert reply.startswith(b"HTTP/1.1 413") and b'"request_too_large"' in reply


def test_the_sdk_lists_all_files_across_pages_newest_first(emulator: EmulatorServer) -> None:
    client = client_for(emulator)
    ids = [client.files.upload(file=(f"f{i}.txt", b"x")).id for i in range(5)]
    first = client.files.list(limit=2)
    assert [f.id for f in first.data] == ids[:2:-1] and first.next_page
    assert [f.id for f in client.files.list(limit=2)] == ids[::-1]
    assert [f.id for f in client.files.list(ids=[ids[1], ids[3], "file_011Cgone"])] == [ids[3], ids[1]]


def test_the_0x_dialect_lists_with_after_and_before_ids(emulator: EmulatorServer) -> None:
    client = client_for(emulator)
    ids = [client.files.upload(file=(f"f{i}.txt", b"x")).id for i in range(4)]

    def page(**query: Any) -> dict[str, Any]:
        return httpx2.get(emulator.base_url + "/v1/files", params={"beta": "true", **query}, headers=LEGACY).json()

    one = page(limit=3)
    assert ([f["id"] for f in one["data"]], one["has_more"], one["last_id"]) == (ids[:0:-1], True, ids[1])
    two = page(limit=3, after_id=one["last_id"])
    assert ([f["id"] for f in two["data"]], two["has_more"]) == ([ids[0]], False)
    back = page(limit=1, before_id=ids[0])
    assert ([f["id"] for f in back["data"]], back["has_more"], back["first_id"]) == ([ids[1]], True, ids[1])


def test_an_unknown_cursor_is_refused(emulator: EmulatorServer) -> None:
    with pytest.raises(anthropic.BadRequestError, match="to page from"):
        client_for(emulator).messages.batches.list(after_id="msgbatch_01Unknown")


def test_deleted_and_unknown_files_are_not_found(emulator: EmulatorServer) -> None:
    client = client_for(emulator)
    meta = client.files.upload(file=("a.txt", b"x"), extra_body={"purpose": "batch"})
    deleted = client.files.delete(meta.id)
    assert (deleted.id, deleted.type) == (meta.id, "file_deleted")
    for call in (client.files.retrieve_metadata, client.files.delete, client.files.download):
        with pytest.raises(anthropic.NotFoundError):
            call(meta.id)
    assert client.files.list().data == []


def test_documents_in_requests_resolve_against_stored_files(emulator: EmulatorServer) -> None:
    client = client_for(emulator)
    kept = client.files.upload(file=("a.txt", b"word " * 4000), extra_body={"purpose": "user_data"})
    gone = client.files.upload(file=("b.txt", b"word"), extra_body={"purpose": "user_data"})
    client.files.delete(gone.id)

    def asking_about(file_id: str, custom_id: str) -> dict[str, Any]:
        content = [{"type": "document", "source": {"type": "file", "file_id": file_id}}, {"type": "text", "text": "Summarize."}]
        return {"custom_id": custom_id, "params": {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": content}]}}

    batch = client.messages.batches.create(requests=[asking_about(kept.id, "kept"), asking_about(gone.id, "gone")])
    deadline = time.monotonic() + 5
    while client.messages.batches.retrieve(batch.id).processing_status != "ended" and time.monotonic() < deadline:
        time.sleep(0.05)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert results["kept"].type == "succeeded" and results["kept"].message.usage.input_tokens > 5000
    assert results["gone"].type == "errored" and gone.id in results["gone"].error.error.message


def test_an_expired_file_keeps_its_metadata_but_not_its_content(tmp_path: Path) -> None:
    now = [1_000_000.0]
    engine = Engine(Store(tmp_path), Settings(), clock=lambda: now[0])
    meta = engine.upload_file("a.jsonl", None, b"{}\n", "batch", "3600")
    assert engine.file_content(meta["id"])[0].read_bytes() == b"{}\n"
    now[0] += 3600
    with pytest.raises(FileExpired) as caught:
        engine.file_content(meta["id"])
    assert (caught.value.status, caught.value.error_code) == (404, "file_expired")
    assert engine.file(meta["id"])["expires_at"] == "1970-01-12T14:46:40.000000Z"


def test_an_upload_that_expects_100_continue_gets_it_at_once(emulator: EmulatorServer) -> None:
    body = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nhello\r\n--b--\r\n'
    host, port = emulator.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(
            b"POST /v1/files HTTP/1.1\r\nHost: x\r\nx-api-key: k\r\nanthropic-version: 2023-06-01\r\nExpect: 100-continue\r\n"
            b"content-type: multipart/form-data; boundary=b\r\nconnection: close\r\ncontent-length: %d\r\n\r\n" % len(body)
        )
        assert connection.recv(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        connection.sendall(body)
        reply = b"".join(iter(lambda: connection.recv(65536), b""))
    assert reply.startswith(b"HTTP/1.1 200") and b'"size_bytes":5' in reply
