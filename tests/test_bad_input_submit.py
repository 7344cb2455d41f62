"""`submit` refuses every bad job before it sends or writes anything (issue 7; reliability.md T5).

The corpus is `validate`'s (tests/test_cli_validate.py) plus what only a run can get wrong or
what that corpus lacks: YAML tags that would run code, outputs that are folders or sit under a
file, encodings, custom_ids and sizes. Every case goes through `submit --backend anthropic`
against the emulator and must exit 2 naming the file and line, with no traceback, 0 HTTP
requests to the API and 0 bytes written: no output, no run folder, no run row, and nothing new
beside the inputs. A rejected submit may leave a state home with an empty ledger (it is opened
before the rows are read), never a run.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import Result
from helpers import read_rows
from test_cli_validate import BASE, CORPUS, CSV_SPEC, ROWS, Case, csv, edit, rows

import batchrunner.compile as compile_module
from batchrunner.emulator import EmulatorServer

RUN_CODE = '!!python/object/apply:os.system ["touch pwned"]'  # would leave `pwned` in the job folder
NOTES = {"rows.jsonl": ROWS, "notes.txt": b"not a folder\n"}
CRLF_ROWS = b'{"id": "r-1", "text": "good"}\r\n{"id": "r-2", "text": "bad"}\r\n'


@dataclass
class SubmitCase(Case):
    """A bad job for `submit`: also folders to create first, or a spec given as raw bytes."""

    dirs: tuple[str, ...] = ()
    raw_spec: bytes | None = None


def crlf(*lines: bytes) -> dict[str, bytes]:
    return {"rows.jsonl": b"".join(line + b"\r\n" for line in lines)}


EXTRA = [
    # -- YAML tags that would run code: refused, never constructed
    SubmitCase("run-code-as-model", edit("model: claude-haiku-4-5", f"model: {RUN_CODE}"), "job.yaml", 2,
               "unsupported YAML tag !!python/object/apply:os.system"),
    SubmitCase("run-code-in-params", BASE + f"params:\n  metadata: {RUN_CODE}\n", "job.yaml", 9,
               "unsupported YAML tag !!python/object/apply:os.system"),
    SubmitCase("run-code-in-messages", edit('prompt: "Review: {text}"', f"messages: [{{role: user, content: {RUN_CODE}}}]"),
               "job.yaml", 6, "unsupported YAML tag !!python/object/apply:os.system"),
    SubmitCase("python-name-tag", BASE + "x: !!python/name:os.system\n", "job.yaml", 8, "unsupported YAML tag !!python/name:os.system"),
    SubmitCase("python-new-popen", BASE + "x: !!python/object/new:subprocess.Popen [[touch, pwned]]\n", "job.yaml", 8,
               "unsupported YAML tag !!python/object/new:subprocess.Popen"),
    # -- output paths that could never be written
    SubmitCase("output-is-a-folder", edit("out/results.jsonl", "out"), "job.yaml", 7, "`output` out is a folder", dirs=("out",)),
    SubmitCase("output-is-a-folder-with-slash", edit("out/results.jsonl", "out/"), "job.yaml", 7, "is a folder", dirs=("out",)),
    SubmitCase("output-is-the-spec-folder", edit("out/results.jsonl", "."), "job.yaml", 7, "is a folder: name a file"),
    SubmitCase("output-under-a-file", edit("out/results.jsonl", "notes.txt/results.jsonl"), "job.yaml", 7,
               "notes.txt is not a writable folder", files=NOTES),
    SubmitCase("output-two-below-a-file", edit("out/results.jsonl", "notes.txt/a/results.jsonl"), "job.yaml", 7,
               "notes.txt is not a writable folder", files=NOTES),
    SubmitCase("output-is-the-spec", edit("out/results.jsonl", "job.yaml"), "job.yaml", 7, "is the job spec itself"),
    SubmitCase("output-is-the-input-by-a-detour", edit("out/results.jsonl", "out/../rows.jsonl"), "job.yaml", 7,
               "is the same file as `input`"),
    # -- encodings: invalid UTF-8 anywhere, and BOM/CRLF not hiding a bad line's number
    SubmitCase("invalid-utf8-in-spec", BASE, "job.yaml", 3, "invalid UTF-8",
               raw_spec=BASE.encode().replace(b"max_tokens: 64", b"max_tokens: 64 # caf\xe9")),
    SubmitCase("utf16-input", BASE, "rows.jsonl", 1, "invalid UTF-8 at byte 1 of the line",
               files={"rows.jsonl": '{"id": "r-1", "text": "a"}\n'.encode("utf-16")}),
    SubmitCase("overlong-utf8", BASE, "rows.jsonl", 1, "invalid UTF-8", files=rows(b'{"id": "r-1", "text": "a\xc0\xaf"}')),
    SubmitCase("utf8-cut-at-end-of-file", BASE, "rows.jsonl", 2, "invalid UTF-8",
               files={"rows.jsonl": b'{"id": "r-1", "text": "a"}\n{"id": "r-2", "text": "\xe2\x82'}),
    SubmitCase("bom-on-a-later-line", BASE, "rows.jsonl", 2, "byte order mark",
               files=rows(b'{"id": "r-1", "text": "a"}', b'\xef\xbb\xbf{"id": "r-2", "text": "b"}')),
    SubmitCase("crlf-bad-json-on-line-3", BASE, "rows.jsonl", 3, "not valid JSON",
               files=crlf(b'\xef\xbb\xbf{"id": "r-1", "text": "a"}', b'{"id": "r-2", "text": "b"}', b'{"id": ')),
    SubmitCase("bom-crlf-csv-ragged", CSV_SPEC, "rows.csv", 3, "3 field(s), but the header on line 1 has 2",
               files=csv(b"\xef\xbb\xbfid,text\r\nr-1,good\r\nr-2,bad,extra\r\n")),
    # -- custom_ids: duplicates however spelled, and every kind of invalid one
    SubmitCase("duplicate-int-and-string-id", BASE, "rows.jsonl", 2, "duplicate custom_id '1' (also on line 1)",
               files=rows(b'{"id": 1, "text": "a"}', b'{"id": "1", "text": "b"}')),
    SubmitCase("duplicate-id-in-csv", CSV_SPEC, "rows.csv", 4, "duplicate custom_id 'r-1' (also on line 2)",
               files=csv(b"id,text\nr-1,a\nr-2,b\nr-1,c\n")),
    SubmitCase("duplicate-id-with-crlf", BASE, "rows.jsonl", 3, "duplicate custom_id 'r-1' (also on line 1)",
               files=crlf(b'{"id": "r-1", "text": "a"}', b'{"id": "r-2", "text": "b"}', b'{"id": "r-1", "text": "c"}')),
    SubmitCase("empty-custom-id", BASE, "rows.jsonl", 1, "custom_id '' from `id` must be 1-64", files=rows(b'{"id": "", "text": "a"}')),
    SubmitCase("non-ascii-custom-id", BASE, "rows.jsonl", 1, "must be 1-64 of A-Z a-z 0-9 - _",
               files=rows('{"id": "ré-1", "text": "a"}'.encode())),
    SubmitCase("slash-in-custom-id", BASE, "rows.jsonl", 1, "must be 1-64", files=rows(b'{"id": "r/1", "text": "a"}')),
    SubmitCase("newline-in-custom-id", BASE, "rows.jsonl", 1, "must be 1-64", files=rows(b'{"id": "r\\n1", "text": "a"}')),
    SubmitCase("null-id", BASE, "rows.jsonl", 1, "a custom_id must be a string or an integer", files=rows(b'{"id": null, "text": "a"}')),
    SubmitCase("bool-id", BASE, "rows.jsonl", 1, "`id` is bool", files=rows(b'{"id": true, "text": "a"}')),
    SubmitCase("object-id", BASE, "rows.jsonl", 1, "`id` is dict", files=rows(b'{"id": {"a": 1}, "text": "a"}')),
    SubmitCase("integer-id-too-big-for-64-bits", BASE, "rows.jsonl", 1, "a custom_id must be a string or an integer",
               files=rows(b'{"id": ' + b"9" * 70 + b', "text": "a"}')),
    # -- oversized requests (the limit lowered to 2,000 bytes, as in validate's corpus)
    SubmitCase("oversized-third-row", BASE, "rows.jsonl", 3, "over the 2,000-byte batch limit",
               files=rows(b'{"id": "r-1", "text": "a"}', b'{"id": "r-2", "text": "b"}', b'{"id": "r-3", "text": "' + b"x" * 3000 + b'"}'),
               max_bytes=2000),
    SubmitCase("oversized-csv-row", CSV_SPEC, "rows.csv", 2, "over the 2,000-byte batch limit",
               files=csv(b"id,text\nr-1," + b"y" * 3000 + b"\n"), max_bytes=2000),
    SubmitCase("oversized-by-the-system-prompt", BASE + "system: " + "s" * 3000 + "\n", "rows.jsonl", 1,
               "over the 2,000-byte batch limit", max_bytes=2000),
]
CASES: list[Case] = [*CORPUS, *EXTRA]


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` (folders as None), to prove nothing appeared or changed."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def write_job(folder: Path, case: Case) -> None:
    for name in getattr(case, "dirs", ()):
        (folder / name).mkdir()
    for name, data in case.files.items():
        (folder / name).write_bytes(data)
    raw = getattr(case, "raw_spec", None)
    (folder / "job.yaml").write_bytes(raw if raw is not None else case.spec.encode())


def http_requests(server: EmulatorServer) -> int:
    """Every HTTP request the emulator saw, on any endpoint (`calls` counts them all, known or not)."""
    return sum(server.stats()["calls"].values())


def assert_no_run(home: Path) -> None:
    """The state home holds no run: at most an empty ledger, a lock file and an empty runs/."""
    if not home.exists():
        return
    assert not any((home / "runs").glob("*")), "no run folder, not even a scratch one"
    assert {p.name for p in home.iterdir()} <= {"ledger.sqlite3", "ledger.sqlite3-wal", "ledger.sqlite3-shm", "locks", "runs"}
    with sqlite3.connect(f"file:{home / 'ledger.sqlite3'}?mode=ro", uri=True) as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 0


@pytest.fixture
def job_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer) -> Path:
    """The job's own folder, as the working folder (so a tag that ran code would leave its file here),
    with the anthropic backend pointed at the emulator."""
    folder = tmp_path / "job"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-key")
    return folder


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 60
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_bad_job_is_refused_before_anything_is_sent_or_written(
    case: Case,
    job_folder: Path,
    isolated_env: Path,
    emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    run_cli: Callable[..., Result],
) -> None:
    if case.max_bytes is not None:
        monkeypatch.setattr(compile_module, "MAX_BATCH_BYTES", case.max_bytes)
    write_job(job_folder, case)
    before = snapshot(job_folder)

    result = run_cli("submit", "job.yaml", "--backend", "anthropic")

    assert result.exit_code == 2, result.output
    assert f"{case.file}:{case.line}: " in result.stderr, result.stderr
    assert case.says in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert http_requests(emulator) == 0
    assert snapshot(job_folder) == before, "nothing written beside the inputs: no output, no temp file, no `pwned`"
    assert_no_run(isolated_env)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits, so a read-only folder cannot be staged")
def test_an_output_folder_without_write_permission_is_refused(
    job_folder: Path, isolated_env: Path, emulator: EmulatorServer, run_cli: Callable[..., Result]
) -> None:
    case = SubmitCase("read-only-output-folder", BASE, "job.yaml", 7, "out is not a writable folder", dirs=("out",))
    write_job(job_folder, case)
    (job_folder / "out").chmod(0o500)
    before = snapshot(job_folder)

    result = run_cli("submit", "job.yaml", "--backend", "anthropic")

    assert result.exit_code == 2 and "job.yaml:7: " in result.stderr and case.says in result.stderr, result.stderr
    assert http_requests(emulator) == 0 and snapshot(job_folder) == before
    assert_no_run(isolated_env)


@pytest.mark.parametrize(
    ("spec", "files"),
    [
        (BASE, {"rows.jsonl": b'\xef\xbb\xbf{"id": "r-1", "text": "good"}\r\n\r\n{"id": "r-2", "text": "bad"}\r\n'}),
        (CSV_SPEC, csv(b'\xef\xbb\xbfid,text\r\nr-1,good\r\nr-2,"two\r\nlines"\r\n')),
    ],
    ids=["jsonl", "csv"],
)
def test_bom_and_crlf_inputs_run(
    spec: str, files: dict[str, bytes], job_folder: Path, emulator: EmulatorServer, run_cli: Callable[..., Result]
) -> None:
    """A BOM and CRLF line ends are how many tools write files: read as the same rows, sent, joined."""
    write_job(job_folder, Case("ok", spec, "", 0, "", files=files))

    result = run_cli("submit", "job.yaml", "--backend", "anthropic")

    assert result.exit_code == 0, result.output
    out = read_rows(job_folder / "out" / "results.jsonl")
    assert [(r["custom_id"], r["status"]) for r in out] == [("r-1", "succeeded"), ("r-2", "succeeded")]
    assert out[0]["row"] == {"id": "r-1", "text": "good"}, "no BOM in the first key, no CR in the values"
    assert emulator.stats()["batches_created"] == 1
