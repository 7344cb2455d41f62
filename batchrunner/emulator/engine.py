"""The lifecycle of batches and files, as transitions decided by the clock.

Nothing ticks: every read computes where a batch stands from its stored timestamps. When a read finds
that a batch's end time has passed, the batch is finished on the spot (results written, counts
flipped at once) at the simulated end time, not the time of the read, so a restart continues exactly.

    in_progress ──(created_at + processing time, or expires_at)──▶ ended
    in_progress ──cancel──▶ canceling ──(a short grace)──▶ ended

Request i of n finishes at created_at + processing_seconds * (i+1)/n ([[emulator:slow]] ones at
SLOW_FACTOR times the processing time). A cancel keeps the results of requests already finished and
cancels the rest; the 24 h expiry expires the rest. The results file lists them in an order shuffled
by the seed, as the API promises no order (`keep_order` keeps request order).
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from batchrunner.emulator.errors import (
    FileExpired,
    FileNotDownloadable,
    InvalidRequest,
    NotFound,
    RequestTooLarge,
)
from batchrunner.emulator.judge import Judge
from batchrunner.emulator.responder import SLOW_TRIGGER, Responder, alphanumeric
from batchrunner.emulator.store import BatchRow, FileRow, Page, Store
from batchrunner.rules import DEFAULT_API_VERSION

DAY = 86_400.0
EXPIRES_AFTER = DAY
ARCHIVED_AFTER = 29 * DAY
SLOW_FACTOR = 10
CANCEL_GRACE = 0.1
MAX_REQUESTS = 100_000
MAX_FILE_BYTES = 500 * 1024 * 1024
CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
FILENAME_FORBIDDEN = re.compile(r'[<>:"|?*\x00-\x1f]')
PURPOSES = ("batch", "user_data")
EXPIRES_IN_RANGE = (3600, 7_776_000)
MIME_BY_EXTENSION = {".jsonl": "application/jsonl", ".ndjson": "application/jsonl", ".md": "text/markdown"}


def request_digest(custom_id: str, canon: bytes) -> bytes:
    """What identifies "the same request" across batches: its custom_id and its params."""
    return hashlib.blake2b(custom_id.encode() + b"\0" + canon, digest_size=16).digest()


@dataclass(frozen=True)
class Settings:
    """The simulation knobs a batch is created with; they are stored with it."""

    seed: int = 0
    processing_seconds: float = 2.0
    errored_rate: float = 0.0
    expired_rate: float = 0.0


def rfc3339(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id(prefix: str, length: int) -> str:
    return prefix + alphanumeric(os.urandom(16), length)


def end_time(row: BatchRow) -> float:
    """When the batch ends (or ended), given what has happened to it so far."""
    natural = min(row.ends_at, row.created_at + EXPIRES_AFTER)
    if row.cancel_initiated_at is None:
        return natural
    return min(natural, round(row.cancel_initiated_at + CANCEL_GRACE * row.processing_seconds, 6))


def processing_status(row: BatchRow) -> str:
    if row.ended_at is not None:
        return "ended"
    return "canceling" if row.cancel_initiated_at is not None else "in_progress"


def batch_object(row: BatchRow, now: float) -> dict[str, Any]:
    """The MessageBatch as the wire shows it; counts stay in `processing` until the batch has ended."""
    ended = row.ended_at is not None
    counts = row.counts if row.counts is not None else {}
    archived_at = row.created_at + ARCHIVED_AFTER
    return {
        "id": row.id,
        "type": "message_batch",
        "processing_status": processing_status(row),
        "request_counts": {
            "processing": 0 if ended else row.request_count,
            **{kind: counts.get(kind, 0) for kind in ("succeeded", "errored", "canceled", "expired")},
        },
        "ended_at": rfc3339(row.ended_at),
        "created_at": rfc3339(row.created_at),
        "expires_at": rfc3339(row.created_at + EXPIRES_AFTER),
        "cancel_initiated_at": rfc3339(row.cancel_initiated_at),
        "archived_at": rfc3339(archived_at) if now >= archived_at else None,
        "results_url": f"/v1/messages/batches/{row.id}/results" if ended else None,
    }


def file_object(row: FileRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": "file",
        "filename": row.filename,
        "mime_type": row.mime_type,
        "size_bytes": row.size_bytes,
        "created_at": rfc3339(row.created_at),
        "downloadable": row.downloadable,
        "expires_at": rfc3339(row.expires_at),
        "purpose": row.purpose,
    }


def check_create_body(body: bytes) -> int:
    """The checks the API makes at create time; returns the request count. `params` waits for processing."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as bad:
        raise InvalidRequest(f"The request body is not valid JSON: {bad}") from None
    if not isinstance(document, dict):
        raise InvalidRequest("The request body must be a JSON object")
    for key in document:
        if key != "requests":
            raise InvalidRequest(f"{key}: Extra inputs are not permitted")
    requests = document.get("requests")
    if not isinstance(requests, list):
        raise InvalidRequest("requests: Field required")
    if not requests:
        raise InvalidRequest("requests: List should have at least 1 item after validation, not 0")
    if len(requests) > MAX_REQUESTS:
        raise InvalidRequest(f"requests: List should have at most {MAX_REQUESTS} items after validation, not {len(requests)}")
    seen: set[str] = set()
    for index, request in enumerate(requests):
        if not isinstance(request, dict):
            raise InvalidRequest(f"requests.{index}: Input should be a valid dictionary")
        custom_id = request.get("custom_id")
        if not isinstance(custom_id, str):
            raise InvalidRequest(f"requests.{index}.custom_id: Field required")
        if len(custom_id) > 64:
            raise InvalidRequest(f"requests.{index}.custom_id: String should have at most 64 characters")
        if not CUSTOM_ID.fullmatch(custom_id):
            raise InvalidRequest(f"requests.{index}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
        if custom_id in seen:
            raise InvalidRequest(f"requests.{index}.custom_id: Duplicate custom_id '{custom_id}'; each must be unique within a batch")
        seen.add(custom_id)
        if "params" not in request:
            raise InvalidRequest(f"requests.{index}.params: Field required")
        for key in request:
            if key not in ("custom_id", "params"):
                raise InvalidRequest(f"requests.{index}.{key}: Extra inputs are not permitted")
    return len(requests)


class Engine:
    """Batches and files: create, read (advancing time), cancel, delete."""

    def __init__(
        self, store: Store, settings: Settings, clock: Callable[[], float] = time.time, *,
        judge: Judge | None = None, keep_order: bool = False,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.judge = judge or Judge()
        self.keep_order = keep_order
        self._finishing = threading.Lock()

    # batches

    def create_batch(
        self, body: bytes, visible_after: float = 0.0, api_version: str = DEFAULT_API_VERSION, betas: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        count = check_create_body(body)
        now = round(self.clock(), 6)  # whole microseconds, as the wire shows them
        processing = self.settings.processing_seconds * (SLOW_FACTOR if SLOW_TRIGGER in body else 1)
        row = BatchRow(
            seq=0, id=new_id("msgbatch_01", 22), created_at=now, visible_at=now + visible_after,
            request_count=count, ends_at=round(now + processing, 6), seed=self.settings.seed,
            processing_seconds=self.settings.processing_seconds, errored_rate=self.settings.errored_rate,
            expired_rate=self.settings.expired_rate, api_version=api_version, betas=betas, cancel_initiated_at=None, ended_at=None,
            counts=None,
        )
        self.store.insert_batch(row, body)
        return batch_object(row, now)

    def batch(self, batch_id: str) -> dict[str, Any]:
        return batch_object(self._current(batch_id), self.clock())

    def list_batches(self, limit: int, after_id: str | None, before_id: str | None) -> tuple[list[dict[str, Any]], bool]:
        for cursor in (after_id, before_id):
            if cursor is not None and not self.store.known_id("batches", cursor):
                raise InvalidRequest(f"No message batch with id {cursor!r} to page from")
        now = self.clock()
        page: Page = self.store.list_batches(now, limit, after_id, before_id)
        return [batch_object(self._advance(row, now), now) for row in page.rows], page.has_more

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        row = self._current(batch_id)
        if row.ended_at is not None:
            raise InvalidRequest(f"Message batch {batch_id} has already ended and cannot be canceled")
        self.store.set_cancel(batch_id, round(self.clock(), 6))
        return self.batch(batch_id)

    def delete_batch(self, batch_id: str) -> dict[str, Any]:
        row = self._current(batch_id)
        if row.ended_at is None:
            raise InvalidRequest(
                f"Message batch {batch_id} is still processing; only ended batches can be deleted, cancel it first"
            )
        self.store.delete_batch(batch_id, self.clock())
        return {"id": batch_id, "type": "message_batch_deleted"}

    def results_path(self, batch_id: str) -> Path:
        row = self._current(batch_id)
        if row.ended_at is None:
            raise NotFound(f"Results for message batch {batch_id} are not available until it has ended")
        if self.clock() >= row.created_at + ARCHIVED_AFTER:
            raise NotFound(f"Results for message batch {batch_id} have been archived")
        return self.store.results_path(batch_id)

    def _current(self, batch_id: str) -> BatchRow:
        now = self.clock()
        row = self.store.get_batch(batch_id)
        if row is None or row.visible_at > now:
            raise NotFound(f"Message batch not found: {batch_id}")
        return self._advance(row, now)

    def _advance(self, row: BatchRow, now: float) -> BatchRow:
        if row.ended_at is not None or now < end_time(row):
            return row
        with self._finishing:
            fresh = self.store.get_batch(row.id)
            if fresh is None or fresh.ended_at is not None:
                return fresh or row
            counts = {"succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
            self.store.write_results(row.id, self._results(fresh, counts))
            self.store.mark_ended(row.id, end_time(fresh), counts)
            return self.store.get_batch(row.id) or row

    def _results(self, row: BatchRow, counts: dict[str, int]) -> Iterator[bytes]:
        """Every result line, in the seed's order (or request order), counting outcomes into `counts`."""
        requests = orjson.loads(self.store.requests_path(row.id).read_bytes())["requests"]
        responder = Responder(
            row.seed, row.errored_rate, row.expired_rate, self._stored_file, self.judge, row.api_version, row.betas
        )
        cutoff = end_time(row)
        unfinished = "canceled" if row.cancel_initiated_at is not None and cutoff < row.created_at + EXPIRES_AFTER else "expired"
        total = len(requests)
        canons = [orjson.dumps(request["params"], option=orjson.OPT_SORT_KEYS) for request in requests]
        seen = self.store.earlier_occurrences(
            row.seq, [request_digest(r["custom_id"], canon) for r, canon in zip(requests, canons, strict=True)]
        )
        lines: list[bytes] = []
        for index in self._order(row, requests):
            request, canon, occurrence = requests[index], canons[index], seen[index]
            factor = SLOW_FACTOR if SLOW_TRIGGER in canon else (index + 1) / total
            finished_at = round(row.created_at + row.processing_seconds * factor, 6)  # the last one ends exactly at ends_at
            if row.cancel_initiated_at is not None and finished_at > row.cancel_initiated_at or finished_at > cutoff:
                result: dict[str, Any] = {"type": unfinished}
            else:
                result = responder.result(request["custom_id"], request["params"], canon, occurrence)
            counts[result["type"]] += 1
            lines.append(orjson.dumps({"custom_id": request["custom_id"], "result": result}) + b"\n")
            if len(lines) >= 1000:
                yield b"".join(lines)
                lines.clear()
        yield b"".join(lines)

    def _order(self, row: BatchRow, requests: list[dict[str, Any]]) -> list[int]:
        """Request indexes in the order their results are written: a function of the seed and the
        custom_ids, so the same batch on the same seed comes back in the same order."""
        order = list(range(len(requests)))
        if not self.keep_order:
            key = b"\0".join([str(row.seed).encode(), *(request["custom_id"].encode() for request in requests)])
            random.Random(hashlib.sha256(key).digest()).shuffle(order)
        return order

    def _stored_file(self, file_id: str) -> tuple[str, int] | None:
        row = self.store.get_file(file_id)
        return (row.filename, row.size_bytes) if row is not None else None

    # files

    def upload_file(
        self, filename: str | None, content_type: str | None, content: bytes, purpose: str | None, expires_in: str | None
    ) -> dict[str, Any]:
        if len(content) > MAX_FILE_BYTES:
            raise RequestTooLarge(f"File is {len(content)} bytes; the limit is {MAX_FILE_BYTES} bytes (500 MB)")
        if purpose is not None and purpose not in PURPOSES:
            raise InvalidRequest(f"purpose: Input should be 'batch' or 'user_data', not {purpose!r}")
        now = self.clock()
        mime_type = choose_mime_type(filename, content_type)
        row = FileRow(
            seq=0, id=new_id("file_011C", 20), filename=clean_filename(filename, mime_type), mime_type=mime_type,
            size_bytes=len(content), created_at=now, purpose=purpose, downloadable=purpose == "batch",
            expires_at=now + parse_expires_in(expires_in) if expires_in is not None else None,
        )
        self.store.insert_file(row, content)
        return file_object(row)

    def file(self, file_id: str) -> dict[str, Any]:
        return file_object(self._file(file_id))

    def list_files(
        self, limit: int, after_id: str | None, before_id: str | None, ids: list[str] | None
    ) -> tuple[list[dict[str, Any]], bool]:
        if ids is not None:
            unique = list(dict.fromkeys(ids))
            if len(unique) > 100:
                raise InvalidRequest("ids: at most 100 ids may be given")
            return [file_object(row) for row in self.store.get_files(unique)], False
        for cursor in (after_id, before_id):
            if cursor is not None and not self.store.known_id("files", cursor):
                raise InvalidRequest(f"No file with id {cursor!r} to page from")
        page = self.store.list_files(self.clock(), limit, after_id, before_id)
        return [file_object(row) for row in page.rows], page.has_more

    def delete_file(self, file_id: str) -> dict[str, Any]:
        self._file(file_id)
        self.store.delete_file(file_id, self.clock())
        return {"id": file_id, "type": "file_deleted"}

    def file_content(self, file_id: str) -> tuple[Path, str]:
        row = self._file(file_id)
        if row.expires_at is not None and self.clock() >= row.expires_at:
            raise FileExpired(f"File {file_id} has expired and its content is no longer available")
        if not row.downloadable:
            raise FileNotDownloadable(f"File {file_id} cannot be downloaded: files you upload are not downloadable")
        return self.store.file_path(file_id), row.mime_type

    def _file(self, file_id: str) -> FileRow:
        row = self.store.get_file(file_id)
        if row is None:
            raise NotFound(f"File not found: {file_id}")
        return row


def choose_mime_type(filename: str | None, content_type: str | None) -> str:
    """The part's Content-Type, unless it is missing or generic; then a guess from the extension."""
    if content_type and content_type.split(";")[0].strip() not in ("", "application/octet-stream"):
        return content_type.split(";")[0].strip()
    extension = os.path.splitext(filename or "")[1].lower()
    return MIME_BY_EXTENSION.get(extension) or mimetypes.guess_type(f"x{extension}")[0] or "application/octet-stream"


def clean_filename(filename: str | None, mime_type: str) -> str:
    """Keep the last path component; name an unnamed file `unnamed` plus its type's extension."""
    name = re.split(r"[/\\]", filename or "")[-1]
    if not name:
        extension = next((e for e, m in MIME_BY_EXTENSION.items() if m == mime_type), None)
        return "unnamed" + (extension or mimetypes.guess_extension(mime_type) or "")
    if len(name) > 255:
        raise InvalidRequest("filename: must be at most 255 characters")
    if FILENAME_FORBIDDEN.search(name):
        raise InvalidRequest('filename: must not contain < > : " | ? * or control characters')
    return name


def parse_expires_in(value: str) -> int:
    low, high = EXPIRES_IN_RANGE
    if not value.isdigit() or not low <= int(value) <= high:
        raise InvalidRequest(f"expires_in_seconds: Input should be an integer between {low} and {high}")
    return int(value)
