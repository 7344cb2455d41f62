"""Attachments: row fields naming local PDFs, texts and images become file_id blocks, each distinct
file uploaded once and reused across runs, checked by `validate` without a network call."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest
from click.testing import Result
from helpers import read_rows

from batchrunner.compile import compile_job
from batchrunner.emulator import EmulatorServer
from batchrunner.spec import load_spec

ROWS = 50
PDFS = 20
ATTACH = "attachments:\n  - field: doc\n"


def use_server(monkeypatch: pytest.MonkeyPatch, server: EmulatorServer) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-key")


def write_pdfs(folder: Path) -> dict[str, int]:
    """Small files that look like PDFs (the emulator does not parse them), each different: name -> size."""
    folder.mkdir(exist_ok=True)
    sizes = {}
    for k in range(PDFS):
        data = b"%PDF-1.4\n" + f"% quarterly report {k}\n".encode() * (k + 1) + b"%%EOF\n"
        (folder / f"report-{k:02d}.pdf").write_bytes(data)
        sizes[f"report-{k:02d}.pdf"] = len(data)
    return sizes


def document_rows(n: int = ROWS) -> list[dict[str, Any]]:
    return [{"id": f"r-{i}", "text": f"summary {i}", "doc": f"docs/report-{i % PDFS:02d}.pdf"} for i in range(1, n + 1)]


def uploads(server: EmulatorServer) -> int:
    """Attachment uploads so far: every POST /v1/files but the one request file per batch."""
    stats = server.stats()
    return stats["calls"].get("POST /v1/files", 0) - stats["batches_created"]


def request_lines(home: Path, run_id: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for path in sorted((home / "runs" / run_id).glob("requests-*.jsonl"))
            for line in path.read_bytes().splitlines()]


def files_on(server: EmulatorServer) -> list[Any]:
    """The job's attachments on the server, by the SDK (the request files are not among them)."""
    client = anthropic.Anthropic(base_url=server.base_url, api_key="sk-test-key")
    return [meta for meta in client.files.list(limit=1000) if meta.filename.startswith("report-")]


def file_ids_by_name(server: EmulatorServer) -> dict[str, str]:
    return {meta.filename: meta.id for meta in files_on(server)}


def recorded_uploads(home: Path) -> dict[str, str]:
    """What the ledger says is on the server: file name -> file id."""
    with sqlite3.connect(home / "ledger.sqlite3") as db:
        return dict(db.execute("SELECT filename, file_id FROM uploads").fetchall())


def test_fifty_rows_over_twenty_pdfs_upload_twenty_files_once_and_reuse_them(
    make_job, run_cli: Callable[..., Result], emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    use_server(monkeypatch, emulator)
    job = make_job(document_rows(), extra=ATTACH)
    sizes = write_pdfs(job.rows.parent / "docs")

    first = run_cli("submit", job.spec, "--backend", "anthropic", "--run-id", "first")

    assert first.exit_code == 0, first.stderr
    assert uploads(emulator) == PDFS
    assert f"uploading {PDFS} attachment(s) (0 already on the server)" in first.stderr
    on_server = file_ids_by_name(emulator)
    assert sorted(on_server) == sorted(sizes)
    out = read_rows(job.output)
    assert [row["custom_id"] for row in out] == [f"r-{i}" for i in range(1, ROWS + 1)]
    for row in out:
        name = Path(row["row"]["doc"]).name
        assert row["status"] == "succeeded"
        assert row["text"].startswith(f"(read {name}, {sizes[name]:,} bytes)"), row["text"]
    for line in request_lines(isolated_env, "first"):
        document, text = line["params"]["messages"][0]["content"]
        name = f"report-{int(line['custom_id'][2:]) % PDFS:02d}.pdf"
        assert document == {"type": "document", "source": {"type": "file", "file_id": on_server[name]}}
        assert text["type"] == "text"

    second = run_cli("submit", job.spec, "--backend", "anthropic", "--run-id", "second", "--no-cache")

    assert second.exit_code == 0, second.stderr
    assert uploads(emulator) == PDFS, "the second run uploads nothing"
    assert f"all {PDFS} attachment(s) already on the server" in second.stderr
    assert request_lines(isolated_env, "second") == request_lines(isolated_env, "first"), "with the same file ids"

    gone = on_server["report-07.pdf"]
    anthropic.Anthropic(base_url=emulator.base_url, api_key="sk-test-key").files.delete(gone)
    third = run_cli("submit", job.spec, "--backend", "anthropic", "--run-id", "third")

    assert third.exit_code == 0, third.stderr
    assert uploads(emulator) == PDFS + 1, "only the deleted file goes up again"
    assert f"uploading 1 attachment(s) ({PDFS - 1} already on the server)" in third.stderr
    again = file_ids_by_name(emulator)["report-07.pdf"]
    assert again != gone
    sent = {line["params"]["messages"][0]["content"][0]["source"]["file_id"] for line in request_lines(isolated_env, "third")}
    assert again in sent and gone not in sent


def test_validate_checks_the_files_without_any_network_call(
    make_job, run_cli: Callable[..., Result], emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_server(monkeypatch, emulator)
    rows = document_rows(6)
    rows[1]["doc"] = "docs/missing.pdf"
    rows[2]["doc"] = "docs/notes.docx"
    rows[3]["doc"] = "docs/huge.pdf"
    rows[4]["doc"] = "docs/big.png"
    del rows[5]["doc"]
    job = make_job(rows, extra=ATTACH)
    docs = job.rows.parent / "docs"
    write_pdfs(docs)
    (docs / "notes.docx").write_bytes(b"PK\x03\x04")
    with (docs / "huge.pdf").open("wb") as huge:  # sparse: the size is what counts
        huge.write(b"%PDF-1.4\n")
        huge.truncate(500 * 1024 * 1024 + 1)
    (docs / "big.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(5 * 1024 * 1024))
    before = emulator.stats()["calls"]

    bad = run_cli("validate", job.spec)

    assert bad.exit_code == 2
    problems = bad.stderr.removeprefix("error: ").splitlines()
    assert problems[0].endswith("rows.jsonl:2: `doc`: file not found: " + str(_shown(docs / "missing.pdf"))
                                + " (paths are relative to the input file's folder)")
    assert "rows.jsonl:3: `doc`: " in problems[1] and "unsupported type '.docx'" in problems[1]
    assert "rows.jsonl:4: `doc`: " in problems[2] and "over the Files API's limit (500 MB)" in problems[2]
    assert "rows.jsonl:5: `doc`: " in problems[3] and "over the API's limit per image (5 MB)" in problems[3]
    assert "rows.jsonl:6: no `doc` field for an attachment" in problems[4]
    assert len(problems) == 5

    rows[1:6] = document_rows(6)[1:6]
    job.rows.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    good = run_cli("--json", "validate", job.spec)

    assert good.exit_code == 0, good.stderr
    assert orjson.loads(good.stdout)["attachments"] == {"files": 6, "bytes": sum(
        (docs / f"report-{k:02d}.pdf").stat().st_size for k in range(1, 7))}
    assert "attachments: 6 distinct file(s)" in run_cli("validate", job.spec).stdout
    assert emulator.stats()["calls"] == before, "validate made no HTTP call"


def _shown(path: Path) -> Path:
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def test_blocks_follow_the_spec_documents_and_images_titles_and_citations(tmp_path: Path) -> None:
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.7\nx")
    (tmp_path / "b.md").write_text("# notes\n")
    (tmp_path / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0 jpeg")
    rows = [{"id": "1", "doc": "a.pdf", "pic": "c.jpg", "name": "Annual report"},
            {"id": "2", "doc": str(tmp_path / "b.md"), "pic": "c.jpg", "name": None}]
    (tmp_path / "rows.jsonl").write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    (tmp_path / "job.yaml").write_text(
        "name: t\nmodel: claude-haiku-4-5\nmax_tokens: 16\ninput: rows.jsonl\noutput: out.jsonl\nid_field: id\n"
        "prompt: Compare the document with the picture.\n"
        "attachments:\n  - {field: doc, title_field: name, citations: true}\n  - {field: pic}\n"
    )
    spec = load_spec(tmp_path / "job.yaml")

    report = compile_job(spec, tmp_path / "out")

    first, second = (orjson.loads(line) for line in (tmp_path / "out" / "requests-000.jsonl").read_bytes().splitlines())
    doc, pic, text = first["params"]["messages"][0]["content"]
    assert doc["type"] == "document" and doc["title"] == "Annual report" and doc["citations"] == {"enabled": True}
    assert doc["source"]["file_id"].startswith("file_pending_")
    assert pic == {"type": "image", "source": {"type": "file", "file_id": pic["source"]["file_id"]}}
    assert text == {"type": "text", "text": "Compare the document with the picture."}
    assert "title" not in second["params"]["messages"][0]["content"][0]
    assert second["params"]["messages"][0]["content"][1] == pic, "the same image has one id"
    assert report.to_dict()["attachments"] == {"files": 3, "bytes": 10 + 8 + 9}
    assert report.attachments is not None
    assert {f.mime_type for f in report.attachments.files.values()} == {"application/pdf", "text/plain", "image/jpeg"}


@pytest.mark.parametrize(
    ("extra", "line", "message"),
    [
        ("attachments:\n  - {field: doc, type: image, citations: true}\n", 10, "`attachments.0.citations` applies to documents only"),
        ("attachments:\n  - {field: doc, kind: pdf}\n", 10, "unknown key `kind` in `attachments.0`"),
        ("attachments:\n  - field: doc\n    type: video\n", 11, "`attachments.0.type` should be 'document' or 'image'"),
        ("attachments: []\n", 9, "`attachments` should have at least 1 item"),
        ("keep_attachments: sometimes\n", 9, "`keep_attachments` should be a valid boolean"),
    ],
)
def test_spec_mistakes_name_the_line(make_job, run_cli: Callable[..., Result], extra: str, line: int, message: str) -> None:
    job = make_job(document_rows(2), extra=extra)
    result = run_cli("validate", job.spec)
    assert result.exit_code == 2
    assert f"job.yaml:{line}: {message}" in result.stderr, result.stderr


def test_attachments_are_refused_with_messages(make_job, run_cli: Callable[..., Result]) -> None:
    job = make_job(document_rows(2), extra=ATTACH)
    job.spec.write_text(job.spec.read_text().replace('prompt: "Review: {text}"', "messages: [{role: user, content: hi}]"))
    result = run_cli("validate", job.spec)
    assert result.exit_code == 2
    assert "job.yaml:9: `attachments` work with `prompt:` only" in result.stderr


def test_a_type_the_file_is_not_is_an_error_on_its_row(make_job, run_cli: Callable[..., Result]) -> None:
    job = make_job(document_rows(2), extra="attachments:\n  - {field: doc, type: image}\n")
    write_pdfs(job.rows.parent / "docs")
    result = run_cli("validate", job.spec)
    assert result.exit_code == 2
    assert "rows.jsonl:1: `doc`: report-01.pdf is a document, but the spec says `type: image`" in result.stderr


def test_keep_attachments_false_deletes_them_after_the_run_and_a_retry_is_refused(
    make_job, run_cli: Callable[..., Result], emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_server(monkeypatch, emulator)
    rows = document_rows(10)
    rows[0]["text"] = "[[emulator:errored:overloaded_error]]"
    job = make_job(rows, extra=ATTACH + "keep_attachments: false\n")
    write_pdfs(job.rows.parent / "docs")

    result = run_cli("submit", job.spec, "--backend", "anthropic", "--run-id", "tidy")

    assert result.exit_code == 3, result.stderr
    assert "deleted 10 attachment(s) from the server (keep_attachments: false)" in result.stderr
    assert file_ids_by_name(emulator) == {}
    assert emulator.stats()["calls"]["DELETE /v1/files/{file_id}"] == 10 + 1, "and the request file"
    assert [row["status"] for row in read_rows(job.output)].count("succeeded") == 9

    refused = run_cli("retry", "tidy")
    assert refused.exit_code == 2
    assert "attachments were deleted from the server when it finished" in refused.stderr

    again = run_cli("submit", job.spec, "--backend", "anthropic", "--run-id", "again")
    assert again.exit_code == 3 and uploads(emulator) == 20, "the ledger forgot the deleted files"


def test_a_file_another_job_keeps_is_reused_and_not_deleted(
    make_job, run_cli: Callable[..., Result], emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_server(monkeypatch, emulator)
    keeper = make_job(document_rows(20), name="keeper", extra=ATTACH)
    tidy = make_job(document_rows(20), name="tidy", extra=ATTACH + "keep_attachments: false\n")
    write_pdfs(keeper.rows.parent / "docs")
    write_pdfs(tidy.rows.parent / "docs")  # the same contents, elsewhere

    assert run_cli("submit", keeper.spec, "--backend", "anthropic").exit_code == 0
    result = run_cli("submit", tidy.spec, "--backend", "anthropic")

    assert result.exit_code == 0, result.stderr
    assert uploads(emulator) == PDFS, "identical contents go up once, whatever their path"
    assert "deleted" not in result.stderr
    assert len(file_ids_by_name(emulator)) == PDFS, "the keeping job still has them"


def test_a_crash_between_uploads_then_the_same_submit_uploads_only_the_rest(
    make_job, emulator: EmulatorServer, tmp_path: Path
) -> None:
    job = make_job(document_rows(), extra=ATTACH)
    write_pdfs(job.rows.parent / "docs")
    home = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "BATCHRUNNER_"))}
    env.update(ANTHROPIC_BASE_URL=emulator.base_url, ANTHROPIC_API_KEY="sk-test-key")
    command = [sys.executable, "-m", "batchrunner", "--home", str(home), "submit", str(job.spec), "--run-id", "nightly"]

    crashed = subprocess.run(command, check=False, env=env | {"BATCHRUNNER_CRASH_AT": "attachments.uploaded"},
                             capture_output=True, text=True, timeout=120)

    assert crashed.returncode == -9, crashed.stderr
    recorded = recorded_uploads(home)
    assert len(recorded) >= 1

    recovered = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=120)

    assert recovered.returncode == 0, recovered.stderr
    # Counted by name, not by call: an upload the killed process had in flight may reach the
    # server after it died, and that orphan is uploaded again because nothing recorded it.
    on_server = Counter(meta.filename for meta in files_on(emulator))
    assert {name: on_server[name] for name in recorded} == dict.fromkeys(recorded, 1), "what was recorded is not uploaded again"
    after = recorded_uploads(home)
    assert len(after) == PDFS
    assert {name: after[name] for name in recorded} == recorded, "and its file id is the one the requests use"
    sent = {line["params"]["messages"][0]["content"][0]["source"]["file_id"] for line in request_lines(home, "nightly")}
    assert sent == set(after.values())
    assert {row["status"] for row in read_rows(job.output)} == {"succeeded"}
