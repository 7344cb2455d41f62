"""The join: results in any order, of every type, come back as one row per input row in input order."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from helpers import read_rows

from batchrunner.collect import AnswerParser, archive_warning, collect_batch, positions, result_row, write_output
from batchrunner.errors import BatchrunnerError
from batchrunner.ledger import Batch, Ledger, NewRun, Run
from batchrunner.spec import RunSettings

REMOTE = {
    "processing_status": "in_progress",
    "request_counts": {"processing": 0, "succeeded": 2, "errored": 0, "canceled": 0, "expired": 0},
    "created_at": "2026-11-24T00:00:00Z",
    "expires_at": "2026-11-25T00:00:00Z",
}
SCHEMA = {"type": "object", "properties": {"label": {"enum": ["positive", "negative"]}}, "required": ["label"]}


def succeeded(custom_id: str, text: str) -> bytes:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 3},
    }
    return orjson.dumps({"custom_id": custom_id, "result": {"type": "succeeded", "message": message}})


def errored(custom_id: str, kind: str = "overloaded_error") -> bytes:
    error = {"type": "error", "error": {"type": kind, "message": "try later"}, "request_id": None}
    return orjson.dumps({"custom_id": custom_id, "result": {"type": "errored", "error": error}})


def ended(custom_id: str, kind: str) -> bytes:
    return orjson.dumps({"custom_id": custom_id, "result": {"type": kind}})


def created_and_ended(ledger: Ledger, batch: Batch) -> Batch:
    """A prepared batch taken the way submit and poll take it, to where collect takes over."""
    batch = ledger.record_created(ledger.record_intent(batch), {**REMOTE, "id": f"msgbatch_{batch.pk}"})
    return ledger.record_status(batch, {**REMOTE, "processing_status": "ended"})


def join(ledger: Ledger, run: Run, batch: Batch, lines: list[bytes]) -> None:
    """Apply results lines to the ledger as collect does, by each request's input position."""
    sent = positions(ledger, run, batch)
    ledger.apply_results(run, batch, ((sent[r.custom_id], *r[1:]) for r in (result_row(line, None) for line in lines)))


def make_run(ledger: Ledger, tmp_path: Path, n: int, shards: int = 1) -> Run:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rows = [{"id": f"c{i}", "n": i} for i in range(n)]
    (run_dir / "rows.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    per = -(-n // shards)
    shard_rows = []
    for index in range(shards):
        part = rows[index * per : (index + 1) * per]
        name = f"requests-{index:03d}.jsonl"
        body = b"".join(orjson.dumps({"custom_id": r["id"], "params": {}}) + b"\n" for r in part)
        (run_dir / name).write_bytes(body)
        shard_rows.append((index, index * per, name, len(part), len(body)))
    return ledger.create_run(
        NewRun(
            run_id="r1",
            job_name="t",
            spec_path=tmp_path / "job.yaml",
            output_path=tmp_path / "out.jsonl",
            store=run_dir,
            backend="local",
            base_url=None,
            model="claude-haiku-4-5",
            settings=RunSettings(),
        ),
        shards=shard_rows,
        custom_ids=(r["id"] for r in rows),
    )


@pytest.mark.parametrize("seed", range(20))
def test_results_in_any_order_join_back_in_input_order(tmp_path, seed, monkeypatch):
    rng = random.Random(seed)
    monkeypatch.setattr("batchrunner.ledger.results.RESULTS_CHUNK_ROWS", rng.randint(1, 50))
    n = rng.randint(1, 300)
    shards = rng.randint(1, 4)
    with Ledger(tmp_path / "home") as ledger:
        run = make_run(ledger, tmp_path, n, shards)
        outcomes = {}
        for batch in ledger.batches(run):
            ids = [orjson.loads(line)["custom_id"] for line in (run.run_dir / batch.request_file).read_bytes().splitlines()]
            lines = []
            for cid in ids:
                kind = rng.choice(["succeeded", "errored", "expired", "canceled"])
                outcomes[cid] = kind
                lines.append(
                    succeeded(cid, "ok") if kind == "succeeded" else errored(cid) if kind == "errored" else ended(cid, kind)
                )
            rng.shuffle(lines)
            join(ledger, run, batch, lines)
            ledger.mark_collected(created_and_ended(ledger, batch))

        write_output(ledger, run, "local")

    out = read_rows(run.output_path)
    assert [r["custom_id"] for r in out] == [f"c{i}" for i in range(n)]
    assert [r["row"]["n"] for r in out] == list(range(n))
    assert {r["custom_id"]: r["status"] for r in out} == outcomes


def test_a_newer_attempt_replaces_a_failure_but_never_a_success(tmp_path):
    with Ledger(tmp_path / "home") as ledger:
        run = make_run(ledger, tmp_path, 3)
        (first,) = ledger.batches(run)
        join(ledger, run, first, [succeeded("c0", "a"), errored("c1"), ended("c2", "expired")])
        ledger.add_attempt(run, 2, [(0, "requests-000.jsonl", 3, 0)])
        second = ledger.batches(run)[-1]
        join(ledger, run, second, [errored("c0"), succeeded("c1", "b"), errored("c2")])
        join(ledger, run, first, [errored("c1")])
        write_output(ledger, run, "local")

    out = {r["custom_id"]: r for r in read_rows(run.output_path)}
    assert (out["c0"]["status"], out["c0"]["attempt"], out["c0"]["text"]) == ("succeeded", 1, "a")
    assert (out["c1"]["status"], out["c1"]["attempt"], out["c1"]["text"]) == ("succeeded", 2, "b")
    assert (out["c2"]["status"], out["c2"]["attempt"]) == ("errored", 2)


def test_rows_without_a_result_are_written_as_pending(tmp_path):
    with Ledger(tmp_path / "home") as ledger:
        run = make_run(ledger, tmp_path, 2)
        write_output(ledger, run, "local")
    out = read_rows(run.output_path)
    assert [r["status"] for r in out] == ["pending", "pending"]
    assert out[0]["batch_id"] is None and out[0]["attempt"] is None


def test_results_for_ids_the_batch_was_never_sent_are_reported_not_applied(tmp_path):
    with Ledger(tmp_path / "home") as ledger:
        run = make_run(ledger, tmp_path, 2)
        (batch,) = ledger.batches(run)
        batch = ledger.record_intent(batch)
        batch = ledger.record_created(batch, {**REMOTE, "id": "msgbatch_x"})
        batch = ledger.record_status(batch, {**REMOTE, "processing_status": "ended"})
        (run.run_dir / "results").mkdir()
        (run.run_dir / "results" / "msgbatch_x.jsonl").write_bytes(succeeded("zz", "x") + b"\n" + succeeded("c0", "y") + b"\n")

        with pytest.raises(BatchrunnerError, match="1 result\\(s\\) for custom_ids it was not sent"):
            asyncio.run(collect_batch(None, ledger, run, batch, print))  # type: ignore[arg-type]
        write_output(ledger, run, "local")

    assert [row["status"] for row in read_rows(run.output_path)] == ["succeeded", "pending"]


def test_every_result_type_keeps_its_error():
    row = result_row(errored("a", "invalid_request_error"), None)
    assert (row.status, row.error_type) == ("errored", "invalid_request_error")
    assert orjson.loads(b"{" + row.fragment + b"}")["error"] == {"type": "invalid_request_error", "message": "try later"}
    assert result_row(ended("b", "expired"), None).status == "expired"
    assert result_row(ended("c", "canceled"), None).status == "canceled"
    odd = result_row(ended("d", "vaporized"), None)
    assert (odd.status, odd.error_type) == ("errored", "unknown_result_type")


@pytest.mark.parametrize(
    ("text", "parsed", "problem"),
    [
        ('{"label": "positive"}', {"label": "positive"}, None),
        ('{"label": "meh"}', None, "label"),
        ("{}", None, "label"),
        ("positive", None, "not JSON"),
    ],
)
def test_structured_answers_are_parsed_or_marked_never_dropped(text, parsed, problem):
    row = result_row(succeeded("a", text), AnswerParser(SCHEMA))
    fields = orjson.loads(b"{" + row.fragment + b"}")
    assert row.status == "succeeded"
    assert fields["text"] == text
    assert fields["parsed"] == parsed
    if problem is None:
        assert fields["error"] is None
    else:
        assert fields["error"]["type"] == "output_invalid" and problem in fields["error"]["message"]


def test_an_uncollected_batch_past_its_archive_date_is_unrecoverable_not_resubmitted(tmp_path):
    with Ledger(tmp_path / "home") as ledger:
        run = make_run(ledger, tmp_path, 2)
        (batch,) = ledger.batches(run)
        batch = ledger.record_intent(batch)
        batch = ledger.record_created(batch, {**REMOTE, "id": "msgbatch_old", "created_at": "2026-01-01T00:00:00Z"})
        batch = ledger.record_status(batch, {**REMOTE, "processing_status": "ended", "archived_at": "2026-01-30T00:00:00Z"})
        notices: list[str] = []

        batch = asyncio.run(collect_batch(None, ledger, run, batch, notices.append))  # type: ignore[arg-type]

        assert batch.state == "unrecoverable"
        assert "archived" in notices[0] and "--status pending" in notices[0]
        assert ledger.select_requests(run, statuses=("errored", "expired"), error_types=None, exclude_error_types=()) == []


def test_batches_near_their_archive_date_are_warned_about():
    batch = Batch(
        **{field: None for field in Batch.__dataclass_fields__}
        | {"state": "ended", "batch_id": "msgbatch_x", "created_at": "2026-11-01T00:00:00Z"}
    )
    assert archive_warning(batch, now=datetime(2026, 11, 10, tzinfo=UTC)) is None
    warning = archive_warning(batch, now=datetime(2026, 11, 28, tzinfo=UTC))
    assert warning is not None and "2026-11-30" in warning
