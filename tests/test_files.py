"""The files library over the real SDK: against the emulator, and a scripted server for refusals it never makes."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest

from batchrunner import files
from batchrunner.client import Api, connect, resolve_backend
from batchrunner.emulator import EmulatorServer
from batchrunner.errors import (
    ApiError,
    InputError,
    NotDownloadable,
    NotFound,
    StorageFull,
    TooLarge,
)


@pytest.fixture
def api(emulator: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    with connect(resolve_backend("anthropic", None, os.environ), tmp_path / "home") as connected:
        yield connected


def write(folder: Path, name: str, content: bytes) -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


def upload_many(api: Api, folder: Path, n: int) -> list[str]:
    """Upload n small files; their ids, oldest first."""
    return [files.upload_file(api, write(folder, f"f{i}.txt", b"x" * (i + 1)))["id"] for i in range(n)]


def test_upload_returns_the_metadata_with_the_purpose_the_server_kept(api: Api, tmp_path: Path) -> None:
    meta = files.upload_file(api, write(tmp_path, "requests.jsonl", b'{"a": 1}\n'), purpose="batch")
    assert meta["id"].startswith("file_")
    assert (meta["filename"], meta["mime_type"], meta["size_bytes"]) == ("requests.jsonl", "application/jsonl", 9)
    assert (meta["purpose"], meta["purpose_accepted"], meta["downloadable"]) == ("batch", True, True)
    assert files.file_info(api, meta["id"]) == {k: v for k, v in meta.items() if k != "purpose_accepted"}


def test_upload_defaults_to_user_data_and_refuses_an_unknown_purpose(api: Api, tmp_path: Path) -> None:
    path = write(tmp_path, "notes.txt", b"hello")
    assert files.upload_file(api, path)["purpose"] == "user_data"
    with pytest.raises(InputError, match="purpose 'training'"):
        files.upload_file(api, path, purpose="training")


def test_a_file_over_500_mb_is_refused_before_any_upload(api: Api, emulator: EmulatorServer, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        handle.truncate(501 * 1024 * 1024)  # sparse: no real bytes on disk
    with pytest.raises(TooLarge) as caught:
        files.upload_file(api, big)
    assert "big.bin" in caught.value.message and "500 MB" in caught.value.message
    assert caught.value.exit_code == 1
    assert "POST /v1/files" not in emulator.stats()["calls"]


def test_one_page_forward_then_on_with_after_id(api: Api, tmp_path: Path) -> None:
    ids = upload_many(api, tmp_path, 7)
    newest_first = ids[::-1]
    first = files.list_files(api, limit=3)
    assert [f["id"] for f in first["data"]] == newest_first[:3]
    assert (first["has_more"], first["first_id"], first["last_id"]) == (True, newest_first[0], newest_first[2])
    second = files.list_files(api, limit=3, after_id=first["last_id"])
    assert [f["id"] for f in second["data"]] == newest_first[3:6] and second["has_more"]
    last = files.list_files(api, limit=3, after_id=second["last_id"])
    assert [f["id"] for f in last["data"]] == newest_first[6:] and not last["has_more"]


def test_all_pages_in_both_directions(api: Api, tmp_path: Path) -> None:
    ids = upload_many(api, tmp_path, 7)
    newest_first = ids[::-1]
    assert [f["id"] for f in files.list_files(api, limit=2, all_pages=True)["data"]] == newest_first
    older = files.list_files(api, limit=2, after_id=newest_first[1], all_pages=True)
    assert [f["id"] for f in older["data"]] == newest_first[2:] and not older["has_more"]
    newer = files.list_files(api, limit=2, before_id=ids[0], all_pages=True)
    assert [f["id"] for f in newer["data"]] == newest_first[:-1] and not newer["has_more"]


def test_one_page_backward_is_the_files_just_newer_than_the_cursor(api: Api, tmp_path: Path) -> None:
    ids = upload_many(api, tmp_path, 7)
    page = files.list_files(api, limit=2, before_id=ids[0])
    assert [f["id"] for f in page["data"]] == [ids[2], ids[1]] and page["has_more"]
    page = files.list_files(api, limit=2, before_id=page["first_id"])
    assert [f["id"] for f in page["data"]] == [ids[4], ids[3]] and page["has_more"]
    top = files.list_files(api, limit=5, before_id=ids[4])
    assert [f["id"] for f in top["data"]] == [ids[6], ids[5]] and not top["has_more"]


def test_both_cursors_at_once_are_refused(api: Api) -> None:
    with pytest.raises(InputError, match="not both"):
        files.list_files(api, after_id="file_a", before_id="file_b")


def test_download_streams_a_batch_file_to_disk(api: Api, tmp_path: Path) -> None:
    content = b"".join(b'{"custom_id": "r-%d"}\n' % i for i in range(5000))
    meta = files.upload_file(api, write(tmp_path, "requests.jsonl", content), purpose="batch")
    dest = tmp_path / "copy.jsonl"
    assert files.download_file(api, meta["id"], dest) == {"id": meta["id"], "path": str(dest), "bytes": len(content)}
    assert dest.read_bytes() == content


def test_a_refused_download_leaves_the_destination_as_it_was(api: Api, tmp_path: Path) -> None:
    meta = files.upload_file(api, write(tmp_path, "notes.txt", b"hello"), purpose="user_data")
    dest = write(tmp_path, "keep.txt", b"old content")
    with pytest.raises(NotDownloadable) as caught:
        files.download_file(api, meta["id"], dest)
    assert "not downloadable" in caught.value.message and "uploaded" in caught.value.message
    assert type(caught.value.__cause__).__name__ == "FileNotDownloadableError"
    assert isinstance(caught.value.__cause__, anthropic.BadRequestError)
    assert dest.read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_download_into_a_missing_folder_is_the_users_to_fix(api: Api, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        files.download_file(api, "file_x", tmp_path / "no" / "such.txt")


def test_unknown_ids_raise_not_found_keeping_the_sdk_error(api: Api, tmp_path: Path) -> None:
    for call in (files.file_info, files.delete_file, lambda a, i: files.download_file(a, i, tmp_path / "x")):
        with pytest.raises(NotFound) as caught:
            call(api, "file_011Cnothere")
        assert "not found" in caught.value.message and caught.value.status == 404
        assert isinstance(caught.value.__cause__, anthropic.NotFoundError)


def test_delete_then_the_file_is_gone(api: Api, tmp_path: Path) -> None:
    file_id = upload_many(api, tmp_path, 1)[0]
    assert files.delete_file(api, file_id) == {"id": file_id, "type": "file_deleted"}
    with pytest.raises(NotFound):
        files.file_info(api, file_id)
    assert files.list_files(api)["data"] == []


def test_the_async_variants_do_the_same(api: Api, tmp_path: Path) -> None:
    paths = [write(tmp_path, f"a{i}.jsonl", b"{}\n" * (i + 1)) for i in range(4)]

    async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
        uploaded = await asyncio.gather(*(files.upload_file_async(api, p, purpose="batch") for p in paths))
        listing = await files.list_files_async(api, limit=3, all_pages=True)
        info = await files.file_info_async(api, uploaded[0]["id"])
        fetched = await files.download_file_async(api, uploaded[0]["id"], tmp_path / "back.jsonl")
        deleted = await files.delete_file_async(api, uploaded[0]["id"])
        return uploaded, listing, info, fetched, deleted

    uploaded, listing, info, fetched, deleted = asyncio.run(scenario())
    assert {f["id"] for f in listing["data"]} == {u["id"] for u in uploaded}
    assert info["filename"] == "a0.jsonl" and fetched["bytes"] == 3
    assert (tmp_path / "back.jsonl").read_bytes() == b"{}\n"
    assert deleted["type"] == "file_deleted"

    async def missing() -> None:
        await files.file_info_async(api, uploaded[0]["id"])

    with pytest.raises(NotFound):
        asyncio.run(missing())


# Refusals the emulator does not make, from a scripted server speaking the same wire format.

Script = Callable[[str, bytes], tuple[int, dict[str, Any]]]
METADATA = {
    "id": "file_011Cscripted", "type": "file", "filename": "a.txt", "mime_type": "text/plain",
    "size_bytes": 5, "created_at": "2026-01-01T00:00:00Z", "downloadable": False,
}


def refusal(status: int, kind: str, message: str, code: str | None = None) -> tuple[int, dict[str, Any]]:
    error: dict[str, Any] = {"type": kind, "message": message} | ({"details": {"error_code": code}} if code else {})
    return status, {"type": "error", "error": error, "request_id": "req_scripted"}


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable[[Script], tuple[Api, list[bytes]]]]:
    """Serve `script(path, body)` on loopback; yields an Api on it and the request bodies it saw."""
    stack = ExitStack()

    def start(script: Script) -> tuple[Api, list[bytes]]:
        seen: list[bytes] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.do_POST()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                seen.append(body)
                status, document = script(self.path, body)
                payload = orjson.dumps(document)
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        stack.callback(server.server_close)
        stack.callback(server.shutdown)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        return stack.enter_context(connect(resolve_backend("anthropic", None, os.environ), tmp_path / "home")), seen

    with stack:
        yield start


def test_a_server_that_refuses_the_purpose_field_gets_the_file_without_it(scripted, tmp_path: Path) -> None:
    def script(path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if b'name="purpose"' in body:
            return refusal(400, "invalid_request_error", "purpose: Extra inputs are not permitted")
        return 200, METADATA

    api, seen = scripted(script)
    meta = files.upload_file(api, write(tmp_path, "a.txt", b"hello"), purpose="batch")
    assert (meta["id"], meta["purpose_accepted"]) == ("file_011Cscripted", False)
    assert [b'name="purpose"' in body for body in seen] == [True, False]


@pytest.mark.parametrize(
    ("answer", "cause"),
    [
        (refusal(400, "invalid_request_error", "Storage quota exceeded", "storage_quota_exceeded"), "StorageQuotaExceededError"),
        (refusal(403, "permission_error", "Storage limit exceeded"), "PermissionDeniedError"),
    ],
)
def test_a_full_storage_is_storage_full(scripted, tmp_path: Path, answer: tuple[int, dict[str, Any]], cause: str) -> None:
    api, _ = scripted(lambda path, body: answer)
    with pytest.raises(StorageFull) as caught:
        files.upload_file(api, write(tmp_path, "a.txt", b"hello"))
    assert "storage full" in caught.value.message and "files delete" in caught.value.message
    assert caught.value.exit_code == 1 and type(caught.value.__cause__).__name__ == cause


def test_a_413_from_the_server_is_too_large(scripted, tmp_path: Path) -> None:
    api, _ = scripted(lambda path, body: refusal(413, "request_too_large", "Request exceeds the maximum allowed size"))
    with pytest.raises(TooLarge) as caught:
        files.upload_file(api, write(tmp_path, "a.txt", b"hello"))
    assert caught.value.status == 413 and isinstance(caught.value.__cause__, anthropic.APIStatusError)


def test_paging_to_newer_files_stops_on_a_server_that_only_pages_forward(scripted) -> None:
    """A 2.x-only answer has `next_page` (forward) and no `has_more`: no loop over the same page."""
    api, seen = scripted(lambda path, body: (200, {"data": [METADATA], "next_page": "page_abc"}))
    listing = files.list_files(api, limit=1, before_id="file_011Colder", all_pages=True)
    assert (len(seen), listing["has_more"], [f["id"] for f in listing["data"]]) == (1, False, ["file_011Cscripted"])


def test_other_refusals_stay_plain_api_errors(scripted, tmp_path: Path) -> None:
    api, _ = scripted(lambda path, body: refusal(400, "invalid_request_error", "filename: must be at most 255 characters"))
    with pytest.raises(ApiError) as caught:
        files.upload_file(api, write(tmp_path, "a.txt", b"hello"))
    assert type(caught.value) is ApiError and "255 characters" in caught.value.message


def test_a_broken_download_starts_again_and_the_file_is_whole(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The stream-to-file helper results downloads use: a stream that breaks off is fetched again."""
    content = b"0123456789" * 1000
    served: list[int] = []

    class Breaking(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.append(len(served))
            self.send_response(200)
            self.send_header("content-type", "application/octet-stream")
            self.send_header("content-length", str(len(content)))
            self.end_headers()
            self.wfile.write(content if len(served) > 1 else content[:100])
            self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Breaking)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    dest = tmp_path / "back.bin"
    try:
        with connect(resolve_backend("anthropic", None, os.environ), tmp_path / "home") as api:
            result = files.download_file(api, "file_x", dest)
    finally:
        server.shutdown()
        server.server_close()

    assert len(served) == 2, "the broken stream was fetched once more"
    assert result["bytes"] == len(content) and dest.read_bytes() == content
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".back")] == [], "no temp file left"
