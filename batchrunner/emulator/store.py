"""The emulator's state: one SQLite database plus blobs under the data dir.

Every write is committed with `synchronous=FULL` (and blobs fsynced and renamed into place) before
the HTTP answer goes out, so a `kill -9` loses nothing that a client saw acknowledged. This is the
only module that speaks SQL or touches the data dir.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    visible_at REAL NOT NULL,
    request_count INTEGER NOT NULL,
    ends_at REAL NOT NULL,
    seed INTEGER NOT NULL,
    processing_seconds REAL NOT NULL,
    errored_rate REAL NOT NULL,
    expired_rate REAL NOT NULL,
    cancel_initiated_at REAL,
    ended_at REAL,
    counts TEXT,
    deleted_at REAL,
    api_version TEXT,
    betas TEXT,
    prepared TEXT
);
CREATE TABLE IF NOT EXISTS request_digests (
    digest BLOB NOT NULL,
    batch_seq INTEGER NOT NULL,
    PRIMARY KEY (digest, batch_seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    filename TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    created_at REAL NOT NULL,
    purpose TEXT,
    downloadable INTEGER NOT NULL,
    expires_at REAL,
    deleted_at REAL
);
"""

BATCH_COLUMNS = (
    "seq, id, created_at, visible_at, request_count, ends_at, seed, processing_seconds, "
    "errored_rate, expired_rate, api_version, betas, cancel_initiated_at, ended_at, counts, prepared"
)
# A data dir made before the emulator recorded versions judges its batches by the older, lenient rules.
UNRECORDED_VERSION = "2023-06-01"
FILE_COLUMNS = "seq, id, filename, mime_type, size_bytes, created_at, purpose, downloadable, expires_at"


@dataclass(frozen=True)
class BatchRow:
    """A batch as stored: the simulation settings it was created with travel with it across restarts."""

    seq: int
    id: str
    created_at: float
    visible_at: float
    request_count: int
    ends_at: float
    seed: int
    processing_seconds: float
    errored_rate: float
    expired_rate: float
    api_version: str  # the anthropic-version the create was sent with: its requests are judged by it
    betas: tuple[str, ...]  # its anthropic-beta values (the batch-only 300K output needs one)
    cancel_initiated_at: float | None
    ended_at: float | None
    counts: dict[str, int] | None
    prepared: dict[str, int] | None = None  # the counts of the results generated ahead, if they are ready

    @classmethod
    def from_db(cls, row: tuple[Any, ...]) -> BatchRow:
        values = list(row)
        values[10] = values[10] or UNRECORDED_VERSION
        values[11] = tuple(values[11].split(",")) if values[11] else ()
        values[14] = orjson.loads(values[14]) if values[14] else None
        values[15] = orjson.loads(values[15]) if values[15] else None
        return cls(*values)


@dataclass(frozen=True)
class FileRow:
    seq: int
    id: str
    filename: str
    mime_type: str
    size_bytes: int
    created_at: float
    purpose: str | None
    downloadable: bool
    expires_at: float | None

    @classmethod
    def from_db(cls, row: tuple[Any, ...]) -> FileRow:
        values = list(row)
        values[7] = bool(values[7])
        return cls(*values)


@dataclass(frozen=True)
class Page:
    """One page of a newest-first listing; `has_more` looks in the direction that was asked for."""

    rows: list[Any]
    has_more: bool


def write_atomically(path: Path, chunks: Iterable[bytes | memoryview], *, rename: bool = True) -> int:
    """Write, fsync and rename into place, so a crash leaves the old file or the whole new one.
    With `rename=False` the file is written and fsynced at `path` itself (already a temp name)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp") if rename else path
    size = 0
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
        for chunk in chunks:
            out.write(chunk)
            size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    if rename:
        os.replace(tmp, path)
        fsync_directory(path.parent)
    return size


def fsync_directory(path: Path) -> None:
    directory = os.open(path, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class Store:
    """SQLite (WAL, synchronous=FULL) for metadata; request bodies, results and files as blobs.

    Everything is private to its owner (folders 0700, files 0600): it holds prompts and answers.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        for sub in ("requests", "results", "files"):
            (data_dir / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.RLock()
        database = data_dir / "emulator.sqlite3"
        try:  # create it 0600 (SQLite gives -wal and -shm its mode); never open a live one outside SQLite
            os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        self._db = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(SCHEMA)
        for stale in [*(data_dir / "results").glob("*.tmp"), *(data_dir / "requests").glob("*.tmp")]:
            stale.unlink()  # a generation a crash cut short starts again
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(batches)")}
        for column in ("api_version", "betas", "prepared"):  # a data dir from before these were recorded
            if column not in columns:
                self._db.execute(f"ALTER TABLE batches ADD COLUMN {column} TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def requests_path(self, batch_id: str) -> Path:
        return self.data_dir / "requests" / f"{batch_id}.json"

    def spool_path(self, batch_id: str) -> Path:
        return self.data_dir / "requests" / f"{batch_id}.jsonl"

    def results_path(self, batch_id: str) -> Path:
        return self.data_dir / "results" / f"{batch_id}.jsonl"

    def prepared_path(self, batch_id: str) -> Path:
        return self.data_dir / "results" / f"{batch_id}.prepared"

    def file_path(self, file_id: str) -> Path:
        return self.data_dir / "files" / file_id

    # batches

    def insert_batch(self, row: BatchRow, requests: Iterable[bytes]) -> None:
        """A new batch and its spool: its requests as JSON lines."""
        write_atomically(self.spool_path(row.id), requests)
        with self._lock:
            self._db.execute(
                "INSERT INTO batches (id, created_at, visible_at, request_count, ends_at, seed, processing_seconds,"
                " errored_rate, expired_rate, api_version, betas) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row.id, row.created_at, row.visible_at, row.request_count, row.ends_at, row.seed,
                 row.processing_seconds, row.errored_rate, row.expired_rate, row.api_version, ",".join(row.betas)),
            )

    def get_batch(self, batch_id: str) -> BatchRow | None:
        with self._lock:
            found = self._db.execute(
                f"SELECT {BATCH_COLUMNS} FROM batches WHERE id = ? AND deleted_at IS NULL", (batch_id,)
            ).fetchone()
        return BatchRow.from_db(found) if found else None

    def earlier_occurrences(self, batch_seq: int, digests: list[bytes]) -> list[int]:
        """How many earlier batches carried each request (custom_id + params), recording this one's.

        Idempotent: finishing the same batch again after a restart gives the same counts.
        """
        count = "SELECT count(*) FROM request_digests WHERE digest = ? AND batch_seq < ?"
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO request_digests (digest, batch_seq) VALUES (?, ?)",
                    ((digest, batch_seq) for digest in digests),
                )
                found = [self._db.execute(count, (digest, batch_seq)).fetchone()[0] for digest in digests]
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return found

    def set_cancel(self, batch_id: str, at: float) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE batches SET cancel_initiated_at = ? WHERE id = ? AND cancel_initiated_at IS NULL", (at, batch_id)
            )

    def write_results(self, batch_id: str, results: Iterable[bytes]) -> None:
        """Called before `mark_ended`, so an ended batch always has its results file."""
        write_atomically(self.results_path(batch_id), results)

    def write_prepared(self, batch_id: str, results: Iterable[bytes]) -> None:
        """The results generated ahead, under a temp name until `publish_prepared`."""
        write_atomically(self.prepared_path(batch_id).with_suffix(".ready.tmp"), results, rename=False)

    def publish_prepared(self, batch_id: str, counts: dict[str, int]) -> None:
        os.replace(self.prepared_path(batch_id).with_suffix(".ready.tmp"), self.prepared_path(batch_id))
        fsync_directory(self.data_dir / "results")
        with self._lock:
            self._db.execute("UPDATE batches SET prepared = ? WHERE id = ?", (orjson.dumps(counts).decode(), batch_id))

    def discard_prepared(self, batch_id: str) -> None:
        for path in (self.prepared_path(batch_id), self.prepared_path(batch_id).with_suffix(".ready.tmp")):
            path.unlink(missing_ok=True)

    def adopt_prepared(self, batch_id: str) -> bool:
        """Make the results generated ahead the batch's results file; False if there are none."""
        try:
            os.replace(self.prepared_path(batch_id), self.results_path(batch_id))
        except FileNotFoundError:
            return False
        fsync_directory(self.data_dir / "results")
        return True

    def unprepared_batches(self) -> list[str]:
        """Batches still running whose results are not generated yet (a restart picks them up)."""
        with self._lock:
            found = self._db.execute(
                "SELECT id FROM batches WHERE ended_at IS NULL AND prepared IS NULL AND cancel_initiated_at IS NULL"
                " AND deleted_at IS NULL ORDER BY seq"
            ).fetchall()
        return [row[0] for row in found]

    def mark_ended(self, batch_id: str, ended_at: float, counts: dict[str, int]) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE batches SET ended_at = ?, counts = ? WHERE id = ?",
                (ended_at, orjson.dumps(counts).decode(), batch_id),
            )

    def delete_batch(self, batch_id: str, at: float) -> None:
        with self._lock:
            self._db.execute("UPDATE batches SET deleted_at = ? WHERE id = ?", (at, batch_id))
        for path in (self.requests_path(batch_id), self.spool_path(batch_id), self.results_path(batch_id)):
            path.unlink(missing_ok=True)
        self.discard_prepared(batch_id)

    def list_batches(self, now: float, limit: int, after_id: str | None, before_id: str | None) -> Page:
        return self._page("batches", BATCH_COLUMNS, BatchRow.from_db, now, limit, after_id, before_id)

    # files

    def insert_file(self, row: FileRow, content: bytes | memoryview) -> None:
        write_atomically(self.file_path(row.id), [content])
        with self._lock:
            self._db.execute(
                "INSERT INTO files (id, filename, mime_type, size_bytes, created_at, purpose, downloadable, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (row.id, row.filename, row.mime_type, row.size_bytes, row.created_at, row.purpose,
                 int(row.downloadable), row.expires_at),
            )

    def get_file(self, file_id: str) -> FileRow | None:
        with self._lock:
            found = self._db.execute(
                f"SELECT {FILE_COLUMNS} FROM files WHERE id = ? AND deleted_at IS NULL", (file_id,)
            ).fetchone()
        return FileRow.from_db(found) if found else None

    def get_files(self, file_ids: list[str]) -> list[FileRow]:
        marks = ",".join("?" * len(file_ids))
        with self._lock:
            found = self._db.execute(
                f"SELECT {FILE_COLUMNS} FROM files WHERE id IN ({marks}) AND deleted_at IS NULL ORDER BY seq DESC",
                file_ids,
            ).fetchall()
        return [FileRow.from_db(row) for row in found]

    def delete_file(self, file_id: str, at: float) -> None:
        with self._lock:
            self._db.execute("UPDATE files SET deleted_at = ? WHERE id = ?", (at, file_id))
        self.file_path(file_id).unlink(missing_ok=True)

    def list_files(self, now: float, limit: int, after_id: str | None, before_id: str | None) -> Page:
        return self._page("files", FILE_COLUMNS, FileRow.from_db, now, limit, after_id, before_id)

    def count_files(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM files WHERE deleted_at IS NULL").fetchone()[0])

    def known_id(self, table: str, object_id: str) -> bool:
        """Cursors may name deleted objects: a listing must not break when its last item goes away."""
        with self._lock:
            return self._db.execute(f"SELECT 1 FROM {table} WHERE id = ?", (object_id,)).fetchone() is not None

    def _page(
        self, table: str, columns: str, make: Callable[[tuple[Any, ...]], Any], now: float, limit: int,
        after_id: str | None, before_id: str | None,
    ) -> Page:
        where = ["deleted_at IS NULL"]
        args: list[object] = []
        if table == "batches":
            where.append("visible_at <= ?")
            args.append(now)
        if after_id is not None:
            where.append(f"seq < (SELECT seq FROM {table} WHERE id = ?)")
            args.append(after_id)
        if before_id is not None:
            where.append(f"seq > (SELECT seq FROM {table} WHERE id = ?)")
            args.append(before_id)
        order = "ASC" if before_id is not None and after_id is None else "DESC"
        sql = f"SELECT {columns} FROM {table} WHERE {' AND '.join(where)} ORDER BY seq {order} LIMIT ?"
        with self._lock:
            found = self._db.execute(sql, [*args, limit + 1]).fetchall()
        rows = [make(row) for row in found[:limit]]
        if order == "ASC":
            rows.reverse()
        return Page(rows, len(found) > limit)
