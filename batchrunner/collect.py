"""Collect: download each ended batch's results, join them to the ledger, write the output.

Results are streamed to a temp file and renamed only when whole (a broken download starts
again), parsed line by line with orjson, and joined into the ledger by custom_id. The output
is then one ordered scan of the ledger merged with the run's rows file: one line per input
row, in input order, written atomically. Memory stays flat in the number of rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from batchrunner.atomic import private_folder
from batchrunner.files import stream_to_file
from batchrunner.client import DEFAULT_URL, AsyncApi
from batchrunner.crashpoints import crashpoint
from batchrunner.errors import ApiError, BatchrunnerError, NotFound
from batchrunner.output import Result, Shared, open_writer
from batchrunner.ledger import (
    RESULT_STATUSES,
    Batch,
    Ledger,
    PlacedResult,
    ResultRow,
    Run,
)
from batchrunner.request_key import backend_scope
from batchrunner.requestfile import READ_CHUNK, ROWS_NAME, count_lines, iter_lines, request_ids
from batchrunner.states import BatchState
from batchrunner.store import Store, run_data

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

RESULTS_KEPT = timedelta(days=29)
ARCHIVE_WARNING = timedelta(days=3)
PARSE_CACHE_SIZE = 10_000
SHARED_FRAGMENTS = 10_000  # distinct result fragments kept once while a batch is joined
_Item = TypeVar("_Item")
PENDING_FRAGMENT = b'"text":null,"parsed":null,"stop_reason":null,"usage":null,"error":null'


class AnswerParser:
    """Parses and validates structured answers against the job's output_schema.

    Classification answers repeat (a handful of labels over millions of rows), so outcomes
    are cached by answer text; validation then costs nothing for all but the first few.
    jsonschema is imported here, so a run without an output_schema never loads it.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        from jsonschema import Draft202012Validator

        self.validator: Draft202012Validator = Draft202012Validator(schema)
        self.cache: dict[str, tuple[Any, dict[str, str] | None]] = {}

    def __call__(self, text: str) -> tuple[Any, dict[str, str] | None]:
        known = self.cache.get(text)
        if known is not None:
            return known
        outcome: tuple[Any, dict[str, str] | None]
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            outcome = (None, {"type": "output_invalid", "message": f"the answer is not JSON: {exc}"})
        else:
            from jsonschema.exceptions import best_match

            problem = best_match(self.validator.iter_errors(parsed))
            if problem is None:
                outcome = (parsed, None)
            else:
                where = "/".join(str(part) for part in problem.absolute_path) or "the answer"
                outcome = (None, {"type": "output_invalid", "message": f"{where}: {problem.message}"})
        if len(self.cache) < PARSE_CACHE_SIZE:
            self.cache[text] = outcome
        return outcome


def _fragment(
    text: str | None, parsed: Any, stop_reason: str | None, usage: Any, error: dict[str, Any] | None
) -> bytes:
    """The middle of an output line, stored in the ledger so writing the output needs no parsing."""
    body = orjson.dumps({"text": text, "parsed": parsed, "stop_reason": stop_reason, "usage": usage, "error": error})
    return body[1:-1]


def result_row(line: bytes, parse_answer: AnswerParser | None) -> ResultRow:
    """One results-file line as the ledger keeps it. Every result type is kept, none dropped."""
    record = orjson.loads(line)
    custom_id = record["custom_id"]
    result = record.get("result") or {}
    kind = result.get("type")
    if kind == "succeeded":
        message = result["message"]
        content: list[dict[str, Any]] = message.get("content") or []
        if len(content) == 1 and content[0].get("type") == "text":
            text = content[0].get("text", "")
        else:
            text = "".join(block.get("text", "") for block in content if block.get("type") == "text")
        usage = message.get("usage") or {}
        parsed, error = parse_answer(text) if parse_answer is not None else (None, None)
        fragment = _fragment(text, parsed, message.get("stop_reason"), usage, error)
        return ResultRow(
            custom_id,
            "succeeded",
            error["type"] if error else None,  # output_invalid: answered, but not usable
            usage.get("input_tokens") or 0,
            usage.get("output_tokens") or 0,
            fragment,
            usage.get("cache_creation_input_tokens") or 0,
            usage.get("cache_read_input_tokens") or 0,
        )
    if kind == "errored":
        envelope = result.get("error") or {}
        inner: dict[str, Any] = envelope["error"] if isinstance(envelope.get("error"), dict) else envelope
        error = {"type": inner.get("type", "unknown_error"), "message": inner.get("message", "")}
        return ResultRow(custom_id, "errored", error["type"], 0, 0, _fragment(None, None, None, None, error))
    if kind in ("expired", "canceled"):
        return ResultRow(custom_id, kind, None, 0, 0, _fragment(None, None, None, None, None))
    error = {"type": "unknown_result_type", "message": f"this version of batchrunner does not know {kind!r}"}
    return ResultRow(custom_id, "errored", error["type"], 0, 0, _fragment(None, None, None, None, error))


def positions(ledger: Ledger, run: Run, batch: Batch) -> dict[str, int]:
    """custom_id → input position for the requests this batch was sent.

    A first attempt's request file is a contiguous stretch of the input, so its positions
    follow from the line order alone; a retry's are looked up.
    """
    ids = request_ids(run_data(run).fetch(batch.request_file))
    if batch.first_seq is not None:
        return {custom_id: batch.first_seq + offset for offset, custom_id in enumerate(ids)}
    return ledger.positions(run, ids)


def _joinable(
    path: Path, sent: dict[str, int], parse_answer: AnswerParser | None, unknown: list[str], crash_after: int
) -> Iterator[PlacedResult]:
    """Each result at its input position. A batch is buffered whole before it is written (in input
    order), and classification results repeat (a label, its usage), so equal fragments share one
    bytes object: a 100,000-result batch then holds a few hundred fragments, not 100,000."""
    shared: dict[bytes, bytes] = {}
    for count, line in enumerate(iter_lines(path)):
        if count == crash_after:
            crashpoint("collect.ingesting")
        row = result_row(line, parse_answer)
        seq = sent.get(row.custom_id)
        if seq is None:
            unknown.append(row.custom_id)
            continue
        fragment = shared.get(row.fragment)
        if fragment is None:
            fragment = row.fragment
            if len(shared) < SHARED_FRAGMENTS:
                shared[fragment] = fragment
        yield (
            seq, row.status, row.error_type, row.input_tokens, row.output_tokens, fragment, row.cache_write_tokens,
            row.cache_read_tokens,
        )


def results_name(batch: Batch) -> str:
    """A batch's raw results file, relative to the run's folder."""
    return f"results/{batch.batch_id}.jsonl"


async def _stored_results(data: Store, name: str, local: Path) -> Path | None:
    """The results this run already has: in its folder, or (a remote store) in the store, where
    a download that was spooled here but not yet uploaded is uploaded now."""
    if not data.remote:
        return local if local.exists() else None
    stored = await asyncio.to_thread(data.exists, name)
    if local.exists():
        if not stored:
            await asyncio.to_thread(data.publish, name, local)
        return local
    return await asyncio.to_thread(data.fetch, name) if stored else None


async def download_results(api: AsyncApi, run: Run, batch: Batch, on_event: Callable[[str], None]) -> Path:
    """The batch's raw results file under the run folder (kept in the run's store), downloaded
    once and kept, and only once it holds exactly the batch's number of results."""
    assert batch.batch_id is not None and batch.request_counts is not None
    data, name = run_data(run), results_name(batch)
    dest = run.run_dir / name
    private_folder(dest.parent)
    kept = await _stored_results(data, name, dest)
    if kept is not None:
        return kept
    url = batch.results_url or f"/v1/messages/batches/{batch.batch_id}/results"
    expected = sum(batch.request_counts.values())

    def whole(part: Path) -> None:
        lines = count_lines(part)
        if lines != expected:
            raise ApiError(f"download results: got {lines} results, the batch has {expected}")

    await stream_to_file(
        dest,
        lambda out: api.download_results(url, out, on_chunk=lambda: crashpoint("collect.downloading")),
        site="collect.download",
        check=whole,
        on_restart=lambda message: on_event(f"{batch.batch_id}: {message}"),
    )
    await asyncio.to_thread(data.publish, name, dest)
    return dest


def archived(batch: Batch, now: datetime | None = None) -> bool:
    """The API keeps results for 29 days after a batch was created, then archives them."""
    if batch.archived_at is not None:
        return True
    if batch.created_at is None:
        return False
    return (now or datetime.now(UTC)) >= _parse_time(batch.created_at) + RESULTS_KEPT


def archive_warning(batch: Batch, now: datetime | None = None) -> str | None:
    """A warning for an uncollected batch whose results will soon be gone."""
    if batch.state not in (BatchState.SUBMITTED, BatchState.ENDED) or batch.created_at is None:
        return None
    gone = _parse_time(batch.created_at) + RESULTS_KEPT
    if (now or datetime.now(UTC)) < gone - ARCHIVE_WARNING:
        return None
    return (
        f"batch {batch.batch_id}'s results are archived by the API at {gone:%Y-%m-%d %H:%M} UTC; "
        "collect them before then"
    )


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def collect_batch(
    api: AsyncApi, ledger: Ledger, run: Run, batch: Batch, on_event: Callable[[str], None]
) -> Batch:
    """Download an ended batch's results and join them into the ledger; safe to run again.

    A batch whose results were archived before they were collected is marked unrecoverable
    and reported: its requests stay `pending` and are never resubmitted on their own.
    """
    crashpoint("collect.start")
    name = results_name(batch)
    if archived(batch) and await _stored_results(run_data(run), name, run.run_dir / name) is None:
        why = f"its results were archived by the API at {batch.archived_at or 'created_at + 29 days'} before they were collected"
        ledger.mark_unrecoverable(batch, why)
        on_event(
            f"batch {batch.batch_id}: {why}; its {batch.requests} request(s) stay pending. "
            f"`batchrunner retry {run.id} --status pending` sends them again if you want"
        )
        return ledger.batch(batch.pk)
    path = await download_results(api, run, batch, on_event)
    crashpoint("collect.downloaded")
    schema = run.settings.output_schema
    parse_answer = AnswerParser(schema) if schema else None
    sent = positions(ledger, run, batch)
    if batch.adopted:
        foreign = sum(1 for line in iter_lines(path) if orjson.loads(line)["custom_id"] not in sent)
        if foreign:
            raise BatchrunnerError(
                f"adopted batch {batch.batch_id} returned {foreign} results for custom_ids that "
                f"{batch.request_file} does not contain: it is not this run's batch, and its results were not used. "
                "Cancel it if it is unwanted, then run `batchrunner resume`"
            )
    unknown: list[str] = []
    ledger.apply_results(run, batch, _joinable(path, sent, parse_answer, unknown, batch.requests // 2))
    if unknown:
        raise BatchrunnerError(
            f"batch {batch.batch_id} returned {len(unknown)} result(s) for custom_ids it was not sent "
            f"(first: {unknown[0]!r}); the others were joined. Its raw results are in {path}"
        )
    crashpoint("collect.ingested")
    ledger.fan_out_duplicates(run)
    if run.settings.cache:
        ledger.store_answers(run, batch, backend_scope(run.backend, run.base_url, DEFAULT_URL))
        crashpoint("collect.cached")
    ledger.mark_collected(batch)
    if batch.file_id and not run.settings.keep_request_files and not batch.file_deleted:
        with suppress(NotFound):  # already gone is what we wanted
            await api.delete_file(batch.file_id)
        ledger.mark_file_deleted(batch)
    return ledger.batch(batch.pk)


def write_output(ledger: Ledger, run: Run, backend: str) -> Path | str:
    """One line per input row, in input order, as in DESIGN §5, in the format the output path
    names (output/); atomically replaces the old output."""
    path = run.output_path
    rows_path = run_data(run).fetch(ROWS_NAME)
    with open_writer(path, rows_path=rows_path, schema=run.settings.output_schema, site="output.write") as out:
        out.write(LedgerOutput(ledger, run, backend, rows_path, started=_writing))
    crashpoint("output.written")
    ledger.mark_output_written(run)
    return path


class LedgerOutput:
    """The output as a writer reads it: JSON lines (JSONL), or blocks of the ledger's ordered
    scan with the part of each line they share (the flat formats, which read the rows file
    themselves). `started` is called once the first line or block is out."""

    def __init__(self, ledger: Ledger, run: Run, backend: str, rows_path: Path | None = None,
                 *, started: Callable[[], None] = lambda: None) -> None:  # fmt: skip
        self.ledger, self.run, self.backend, self.rows_path, self.started = ledger, run, backend, rows_path, started
        self.tails = Tails(ledger, run, backend)

    def lines(self) -> Iterator[bytes]:
        return _after_the_first(output_lines(self.ledger, self.run, self.backend, self.rows_path), self.started)

    def results(self, size: int) -> Iterator[list[Result]]:
        return _after_the_first(_blocks(self.ledger, self.run, size), self.started)

    def shared(self, key: Shared) -> bytes:
        status, batch_pk, fragment, cached_from, attempt = key
        return b'{"status":"%b",%b%b' % (status.encode(), fragment or PENDING_FRAGMENT, self.tails.of(batch_pk, cached_from, attempt))


def _blocks(ledger: Ledger, run: Run, size: int) -> Iterator[list[Result]]:
    """The ledger's ordered scan, `size` rows at a time: no Python runs per row."""
    with ledger.checked():
        scan = ledger.output_rows(run)
        while block := list(islice(scan, size)):
            yield block


def _writing() -> None:
    crashpoint("output.writing")


def _after_the_first(items: Iterator[_Item], then: Callable[[], None]) -> Iterator[_Item]:
    for item in items:
        yield item
        then()
        break
    yield from items


class Tails:
    """The end of each output line: `,` the fields from `batch_id` on, `}` and the newline. The
    same for every row of a batch, or of the batch and attempt a cached answer came from."""

    def __init__(self, ledger: Ledger, run: Run, backend: str) -> None:
        self.backend = orjson.dumps(backend)
        self.batches: dict[int | None, bytes] = {
            batch.pk: b',"batch_id":%b,"attempt":%d,"backend":%b,"cached":false}\n'
            % (orjson.dumps(batch.batch_id), batch.attempt, self.backend)
            for batch in ledger.batches(run)
        }
        self.batches[None] = b',"batch_id":null,"attempt":null,"backend":%b,"cached":false}\n' % self.backend
        self.cached: dict[tuple[str, int], bytes] = {}

    def of(self, batch_pk: int | None, cached_from: str | None, attempt: int | None) -> bytes:
        if cached_from is None or attempt is None:
            return self.batches[batch_pk]
        found = self.cached.get((cached_from, attempt))
        if found is None:
            found = self.cached[(cached_from, attempt)] = (
                b',"batch_id":%b,"attempt":%d,"backend":%b,"cached":true}\n' % (orjson.dumps(cached_from), attempt, self.backend)
            )
        return found


def output_lines(ledger: Ledger, run: Run, backend: str, rows_path: Path | None = None) -> Iterator[bytes]:
    """The output's JSON lines (DESIGN §5), newline included: one ordered scan of the ledger
    merged with the run's rows file.

    Everything but the custom_id, the row and the stored fragment is the same for every row of
    a batch (its id, its attempt, the backend), so each line is a join of ready-made bytes. A
    row answered from the cache ends with the batch and attempt that produced its answer.
    """
    heads = {status: b'","status":"%b","row":' % status.encode() for status in ("pending", *RESULT_STATUSES)}
    tails = Tails(ledger, run, backend)
    batches = tails.batches
    rows_path = rows_path or run_data(run).fetch(ROWS_NAME)  # a local copy of the store's
    with ledger.checked(), rows_path.open("rb", buffering=READ_CHUNK) as rows:
        for (custom_id, status, batch_pk, fragment, cached_from, attempt), row in zip(ledger.output_rows(run), rows, strict=True):
            tail = batches[batch_pk] if cached_from is None else tails.of(batch_pk, cached_from, attempt)
            yield b"".join((b'{"custom_id":"', custom_id.encode(), heads[status], row.rstrip(b"\r\n"), b",",
                            fragment or PENDING_FRAGMENT, tail))  # fmt: skip
