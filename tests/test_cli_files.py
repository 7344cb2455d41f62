"""`batchrunner files`: every command through the CLI, on the emulator over loopback with the real SDK."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import orjson
import pytest
from click.testing import Result

from batchrunner.emulator import EmulatorServer

LEGACY = {"x-api-key": "any-key", "anthropic-version": "2023-06-01", "anthropic-beta": "files-api-2025-04-14"}

Files = Callable[..., Result]


@pytest.fixture
def files_cli(emulator: EmulatorServer, run_cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch) -> Files:
    """`batchrunner [globals] files <args> --backend anthropic`, pointed at the emulator."""
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")

    def run(*args: str | Path, json: bool = False) -> Result:
        return run_cli(*(["--json"] if json else []), "files", *args, "--backend", "anthropic")

    return run


def ok_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output + result.stderr
    return orjson.loads(result.stdout)


def write(folder: Path, name: str, content: bytes) -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


def upload_many(files_cli: Files, folder: Path, n: int) -> list[str]:
    """Upload n files through the CLI; their ids, oldest first."""
    return [ok_json(files_cli("upload", write(folder, f"doc-{i}.txt", b"x" * (i + 1)), json=True))["id"] for i in range(n)]


def ids(listing: dict[str, Any]) -> list[str]:
    return [meta["id"] for meta in listing["data"]]


def test_upload_prints_the_new_file_id(files_cli: Files, tmp_path: Path) -> None:
    result = files_cli("upload", write(tmp_path, "notes.txt", b"hello"))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"uploaded {tmp_path / 'notes.txt'} as file_")
    assert "(5 bytes, text/plain, purpose user_data)" in result.stdout


def test_upload_json_is_the_files_metadata(files_cli: Files, tmp_path: Path) -> None:
    meta = ok_json(files_cli("upload", write(tmp_path, "requests.jsonl", b"{}\n"), "--purpose", "batch", json=True))
    assert set(meta) >= {"id", "type", "filename", "mime_type", "size_bytes", "created_at", "downloadable", "purpose"}
    assert (meta["type"], meta["filename"], meta["size_bytes"]) == ("file", "requests.jsonl", 3)
    assert meta["mime_type"] == "application/jsonl"
    assert (meta["purpose"], meta["purpose_accepted"], meta["downloadable"]) == ("batch", True, True)


def test_list_shows_a_table_newest_first(files_cli: Files, tmp_path: Path) -> None:
    older = ok_json(files_cli("upload", write(tmp_path, "a.txt", b"hello"), json=True))
    newer = ok_json(files_cli("upload", write(tmp_path, "b.jsonl", b"{}\n" * 400), "--purpose", "batch", json=True))
    result = files_cli("list")
    assert result.exit_code == 0, result.output
    header, first, second = result.stdout.splitlines()
    assert header.split() == ["ID", "FILENAME", "SIZE", "MIME", "TYPE", "PURPOSE", "CREATED"]
    assert first.split()[:5] == [newer["id"], "b.jsonl", "1,200", "application/jsonl", "batch"]
    assert second.split()[:5] == [older["id"], "a.txt", "5", "text/plain", "user_data"]
    assert first.split()[5] == newer["created_at"][:10]


def test_an_empty_list_says_so(files_cli: Files) -> None:
    assert files_cli("list").stdout == "no files\n"
    assert ok_json(files_cli("list", json=True)) == {"data": [], "has_more": False, "first_id": None, "last_id": None}


def test_paging_forward_with_after_id(files_cli: Files, tmp_path: Path) -> None:
    newest_first = upload_many(files_cli, tmp_path, 7)[::-1]
    pages, cursor = [], None
    while True:
        listing = ok_json(files_cli("list", "--limit", "3", *(["--after-id", cursor] if cursor else []), json=True))
        pages.append(ids(listing))
        if not listing["has_more"]:
            break
        cursor = listing["last_id"]
    assert pages == [newest_first[:3], newest_first[3:6], newest_first[6:]]


def test_paging_backward_with_before_id(files_cli: Files, tmp_path: Path) -> None:
    oldest_first = upload_many(files_cli, tmp_path, 7)
    pages, cursor = [], oldest_first[0]
    while True:
        listing = ok_json(files_cli("list", "--limit", "2", "--before-id", cursor, json=True))
        pages.append(ids(listing))
        if not listing["has_more"]:
            break
        cursor = listing["first_id"]
    assert pages == [oldest_first[2:0:-1], oldest_first[4:2:-1], oldest_first[6:4:-1]]


def list_calls(emulator: EmulatorServer) -> int:
    return emulator.stats()["calls"].get("GET /v1/files", 0)


def test_all_pages_in_either_direction(files_cli: Files, emulator: EmulatorServer, tmp_path: Path) -> None:
    oldest_first = upload_many(files_cli, tmp_path, 7)
    before = list_calls(emulator)
    everything = ok_json(files_cli("list", "--all", "--limit", "2", json=True))
    assert ids(everything) == oldest_first[::-1] and not everything["has_more"]
    assert list_calls(emulator) - before == 4, "7 files at 2 a page"
    older = ok_json(files_cli("list", "--all", "--limit", "2", "--after-id", oldest_first[5], json=True))
    assert ids(older) == oldest_first[4::-1]
    before = list_calls(emulator)
    newer = ok_json(files_cli("list", "--all", "--limit", "2", "--before-id", oldest_first[1], json=True))
    assert ids(newer) == oldest_first[:1:-1]
    assert list_calls(emulator) - before == 3, "5 newer files at 2 a page"


def test_the_table_says_how_to_get_the_next_page(files_cli: Files, tmp_path: Path) -> None:
    oldest_first = upload_many(files_cli, tmp_path, 3)
    assert files_cli("list", "--limit", "2").stdout.splitlines()[-1] == (
        f"more: batchrunner files list --after-id {oldest_first[1]} (or --all)"
    )
    assert files_cli("list", "--limit", "1", "--before-id", oldest_first[0]).stdout.splitlines()[-1] == (
        f"more: batchrunner files list --before-id {oldest_first[1]} (or --all)"
    )


def test_both_cursors_are_a_usage_error(files_cli: Files) -> None:
    result = files_cli("list", "--after-id", "file_a", "--before-id", "file_b")
    assert result.exit_code == 2 and "not both" in result.stderr


def test_both_sdk_dialects_list_the_files_the_cli_uploaded(files_cli: Files, emulator: EmulatorServer, tmp_path: Path) -> None:
    oldest_first = upload_many(files_cli, tmp_path, 5)

    # 0.x: x-api-key, 2023-06-01, ?beta=true, after_id/before_id -> has_more/first_id/last_id
    seen, after = [], None
    while True:
        query = {"beta": "true", "limit": "2"} | ({"after_id": after} if after else {})
        page = httpx2.get(emulator.base_url + "/v1/files", params=query, headers=LEGACY).json()
        seen += ids(page)
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == oldest_first[::-1]
    page = httpx2.get(
        emulator.base_url + "/v1/files", params={"beta": "true", "limit": "2", "before_id": oldest_first[0]}, headers=LEGACY
    ).json()
    assert (ids(page), page["has_more"], page["first_id"]) == (oldest_first[2:0:-1], True, oldest_first[2])

    # 2.x: Bearer key, the GA resource and its `page` cursor
    client = anthropic.Anthropic(base_url=emulator.base_url, api_key="any-key", max_retries=0)
    assert [meta.id for meta in client.files.list(limit=2)] == oldest_first[::-1]


def test_info_shows_the_metadata(files_cli: Files, tmp_path: Path) -> None:
    file_id = upload_many(files_cli, tmp_path, 1)[0]
    text = files_cli("info", file_id).stdout
    assert f"id:           {file_id}\n" in text
    assert "filename:     doc-0.txt\n" in text and "purpose:      user_data\n" in text
    assert "downloadable: False\n" in text and "expires_at:   -\n" in text
    meta = ok_json(files_cli("info", file_id, json=True))
    assert (meta["id"], meta["size_bytes"], meta["mime_type"]) == (file_id, 1, "text/plain")


def test_download_writes_the_content(files_cli: Files, tmp_path: Path) -> None:
    content = b"".join(b'{"custom_id":"r-%d"}\n' % i for i in range(3000))
    meta = ok_json(files_cli("upload", write(tmp_path, "requests.jsonl", content), "--purpose", "batch", json=True))
    dest = tmp_path / "copy.jsonl"
    result = files_cli("download", meta["id"], "-o", dest)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"downloaded {meta['id']} to {dest} ({len(content):,} bytes)\n"
    assert dest.read_bytes() == content
    again = ok_json(files_cli("download", meta["id"], "--output", dest, json=True))
    assert again == {"id": meta["id"], "path": str(dest), "bytes": len(content)}


def test_delete_removes_the_file(files_cli: Files, tmp_path: Path) -> None:
    keep, gone = upload_many(files_cli, tmp_path, 2)
    result = files_cli("delete", gone)
    assert (result.exit_code, result.stdout) == (0, f"deleted {gone}\n")
    assert ids(ok_json(files_cli("list", json=True))) == [keep]
    assert ok_json(files_cli("delete", keep, json=True)) == {"id": keep, "type": "file_deleted"}


# errors


def test_a_missing_path_is_a_usage_error(files_cli: Files, emulator: EmulatorServer, tmp_path: Path) -> None:
    result = files_cli("upload", tmp_path / "nope.pdf")
    assert result.exit_code == 2
    assert "nope.pdf" in result.stderr and "does not exist" in result.stderr
    assert "POST /v1/files" not in emulator.stats()["calls"]


@pytest.mark.parametrize("command", ["info", "delete", "download"])
def test_an_unknown_id_is_not_found(files_cli: Files, tmp_path: Path, command: str) -> None:
    output = ["-o", tmp_path / "out.bin"] if command == "download" else []
    result = files_cli(command, "file_011Cnosuchfile", *output)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "not found" in result.stderr and "file_011Cnosuchfile" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "out.bin").exists()


def test_an_uploaded_file_is_not_downloadable(files_cli: Files, tmp_path: Path) -> None:
    file_id = upload_many(files_cli, tmp_path, 1)[0]
    dest = tmp_path / "out.txt"
    result = files_cli("download", file_id, "-o", dest)
    assert result.exit_code == 1
    assert "not downloadable" in result.stderr and "not uploaded ones" in result.stderr
    assert not dest.exists()


def test_a_file_over_500_mb_is_refused_before_upload(files_cli: Files, emulator: EmulatorServer, tmp_path: Path) -> None:
    big = tmp_path / "huge.pdf"
    with big.open("wb") as handle:
        handle.truncate(501 * 1024 * 1024)  # sparse: no real bytes written
    result = files_cli("upload", big)
    assert result.exit_code == 1
    assert "huge.pdf" in result.stderr and "too large" in result.stderr and "500 MB" in result.stderr
    assert "nothing was uploaded" in result.stderr
    assert "POST /v1/files" not in emulator.stats()["calls"]


def test_errors_in_json_mode_are_one_document(files_cli: Files, tmp_path: Path) -> None:
    big = tmp_path / "huge.bin"
    with big.open("wb") as handle:
        handle.truncate(501 * 1024 * 1024)
    too_large = files_cli("upload", big, json=True)
    assert too_large.exit_code == 1
    error = orjson.loads(too_large.stdout)["error"]
    assert (error["type"], error["exit_code"]) == ("TooLarge", 1) and "huge.bin" in error["message"]

    not_found = files_cli("info", "file_011Cnosuchfile", json=True)
    assert not_found.exit_code == 1 and orjson.loads(not_found.stdout)["error"]["type"] == "NotFound"

    file_id = upload_many(files_cli, tmp_path, 1)[0]
    refused = files_cli("download", file_id, "-o", tmp_path / "x", json=True)
    assert refused.exit_code == 1 and orjson.loads(refused.stdout)["error"]["type"] == "NotDownloadable"


def test_the_anthropic_backend_needs_a_key(run_cli: Callable[..., Result]) -> None:
    result = run_cli("files", "list", "--backend", "anthropic")
    assert result.exit_code == 2 and "ANTHROPIC_API_KEY" in result.stderr


# the default backend


def test_on_the_local_backend_files_persist_between_commands(
    run_cli: Callable[..., Result], isolated_env: Path, tmp_path: Path
) -> None:
    upload = run_cli("--json", "files", "upload", write(tmp_path, "requests.jsonl", b'{"a":1}\n'), "--purpose", "batch")
    assert upload.exit_code == 0, upload.output
    assert "built-in emulator" in upload.stderr and str(isolated_env / "emulator") in upload.stderr
    file_id = orjson.loads(upload.stdout)["id"]

    assert file_id in run_cli("files", "list").stdout
    assert f"id:           {file_id}" in run_cli("files", "info", file_id).stdout
    dest = tmp_path / "back.jsonl"
    assert run_cli("files", "download", file_id, "-o", dest).exit_code == 0
    assert dest.read_bytes() == b'{"a":1}\n'
    assert run_cli("files", "delete", file_id).exit_code == 0
    gone = run_cli("files", "info", file_id)
    assert gone.exit_code == 1 and "not found" in gone.stderr
    assert run_cli("-q", "files", "list").stderr == ""


# a strict server, as the real Files API is: it defines no `purpose` field


def test_upload_purpose_batch_to_a_strict_server_goes_again_without_it_and_says_so(
    run_cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batchrunner.emulator import EmulatorConfig, start_in_thread

    with start_in_thread(EmulatorConfig(data_dir=tmp_path / "strict", reject_unknown_fields=True)) as strict:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", strict.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        path = write(tmp_path, "requests.jsonl", b'{"a":1}\n')
        result = run_cli("--json", "files", "upload", path, "--purpose", "batch", "--backend", "anthropic")
        stats = strict.stats()

    meta = ok_json(result)
    assert (meta["purpose_accepted"], meta["purpose"]) == (False, None)
    assert f"the server refused the purpose field; {meta['id']} was uploaded without it" in result.stderr
    assert (stats["calls"]["POST /v1/files"], stats["files_stored"]) == (2, 1)
