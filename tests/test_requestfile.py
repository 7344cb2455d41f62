"""Request files as every stage sees them: written by compile, framed by submit, read by collect, copied by retry."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from helpers import reviews

from batchrunner import requestfile
from batchrunner.compile import compile_job
from batchrunner.spec import load_spec


def write_requests(path: Path, ids: list[str]) -> list[bytes]:
    lines = [requestfile.encode_line(custom_id, {"model": "m", "messages": [{"role": "user", "content": f"a\nb {n}"}]})
             for n, custom_id in enumerate(ids)]
    path.write_bytes(b"".join(lines))
    return lines


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_the_create_body_is_the_files_requests_framed_whatever_the_read_size(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(requestfile, "READ_CHUNK", chunk)
    path = tmp_path / requestfile.shard_name(0)
    lines = write_requests(path, ["a", "b-2", "c_3"])

    size, chunks = requestfile.create_body(path)
    body = b"".join(chunks)

    assert len(body) == size
    assert orjson.loads(body) == {"requests": [orjson.loads(line) for line in lines]}


def test_an_empty_request_file_frames_an_empty_list(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    size, chunks = requestfile.create_body(path)
    assert b"".join(chunks) == b'{"requests":[]}' and size == requestfile.BODY_FRAMING


def test_ids_and_params_are_read_from_what_compile_wrote(make_job, tmp_path):
    job = make_job(reviews(5))
    report = compile_job(load_spec(job.spec), tmp_path / "out")
    (shard,) = report.shards
    assert shard.path == tmp_path / "out" / "requests-000.jsonl"

    assert list(requestfile.request_ids(shard.path)) == [f"r-{n}" for n in range(1, 6)]
    assert requestfile.first_params(shard.path)["model"] == load_spec(job.spec).model
    assert requestfile.count_lines(shard.path) == 5


def test_a_retry_copies_exactly_the_chosen_lines_byte_for_byte(tmp_path):
    source = tmp_path / requestfile.shard_name(3)
    lines = write_requests(source, [f"id-{n}" for n in range(10)])
    dest = tmp_path / requestfile.attempt_name(2, 3)
    dest.parent.mkdir()

    size = requestfile.copy_lines(source, 100, [101, 104, 109], dest)

    assert dest == tmp_path / "attempt-2" / "requests-003.jsonl"
    assert dest.read_bytes() == lines[1] + lines[4] + lines[9]
    assert size == dest.stat().st_size
