"""The side-by-side benchmark, small: both the hand-written SDK loop and `batchrunner submit`
return every row, in input order, from one `batchrunner serve` that shuffles results."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_vs_sdk.py"


def test_both_sides_produce_every_row_in_input_order() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--rows", "2000", "--processing-seconds", "2", "--json"],
        capture_output=True, check=False, timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode()
    report = orjson.loads(done.stdout)
    assert report["rows"] == 2000
    for side in ("sdk", "batchrunner"):
        assert report[side]["every_row_in_order"] is True
        assert report[side]["api_calls"] >= 3, "one create, a retrieve and a results download at least"
    calls = report["batchrunner"]["calls_by_route"]
    polls = calls.pop("GET /v1/messages/batches/{message_batch_id}")
    assert calls == {  # what the README lists: one of each, and the polls
        "GET /v1/models/{model_id}": 1, "POST /v1/files": 1, "POST /v1/messages/batches": 1,
        "GET /v1/messages/batches/{message_batch_id}/results": 1, "DELETE /v1/files/{file_id}": 1,
    }
    assert 1 <= polls <= 2, "a batch that ends 2 s after its create: first polled once it is 2 s old"
