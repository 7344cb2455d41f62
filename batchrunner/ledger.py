"""The run state in SQLite, and the per-run lock. The only module that speaks SQL.

One database per state home holds every run: its batches (one per shard and attempt, each
with the write-ahead state of its create call) and one row per request with its latest
status and the joined-ready fragment of its result. Every state change is committed with
`synchronous=FULL` before the action it enables, so a crash at any instant leaves a ledger
that says exactly what may have happened.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import orjson

from batchrunner.atomic import naming
from batchrunner.crashpoints import failpoint
from batchrunner.errors import LedgerUnusable, RunLocked, UnknownRun
from batchrunner.spec import RunSettings

# Batch states, in the order a batch moves through them.
PREPARED = "prepared"  # request file written; no create attempted (or the last one was definitely refused)
CREATING = "creating"  # intent committed; a create call may be in flight
UNCERTAIN = "uncertain"  # the create call's outcome is unknown: reconcile before anything else
SUBMITTED = "submitted"  # the API has the batch; poll it
ENDED = "ended"  # the API says it ended; results not yet joined
COLLECTED = "collected"  # results downloaded and joined into the ledger
UNRECOVERABLE = "unrecoverable"  # archived before its results were collected

RESULTS_CHUNK_ROWS = 100_000  # a whole batch
RESULTS_CHUNK_BYTES = 32 << 20  # but never more answer text than this in memory
CACHE_KIB = 8 * 1024  # results are applied in seq order, so a small page cache is enough

LEDGER_FILE = "ledger.sqlite3"

OPEN_STATES = (PREPARED, CREATING, UNCERTAIN, SUBMITTED, ENDED)
RESULT_STATUSES = ("succeeded", "errored", "expired", "canceled")

_MIGRATIONS: list[str] = [
    """
    CREATE TABLE runs (
        pk INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        job_name TEXT NOT NULL,
        spec_path TEXT NOT NULL,
        output_path TEXT NOT NULL,
        run_dir TEXT NOT NULL,
        backend TEXT NOT NULL,
        base_url TEXT,
        model TEXT NOT NULL,
        requests INTEGER NOT NULL,
        settings BLOB NOT NULL,
        created_at TEXT NOT NULL,
        output_written_at TEXT
    );
    CREATE TABLE batches (
        pk INTEGER PRIMARY KEY,
        run_pk INTEGER NOT NULL REFERENCES runs(pk),
        attempt INTEGER NOT NULL,
        shard INTEGER NOT NULL,
        first_seq INTEGER,
        request_file TEXT NOT NULL,
        requests INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        state TEXT NOT NULL,
        file_id TEXT,
        purpose_accepted INTEGER,
        intent_at TEXT,
        batch_id TEXT UNIQUE,
        processing_status TEXT,
        request_counts BLOB,
        created_at TEXT,
        ended_at TEXT,
        expires_at TEXT,
        archived_at TEXT,
        results_url TEXT,
        file_deleted INTEGER NOT NULL DEFAULT 0,
        adopted INTEGER NOT NULL DEFAULT 0,
        polls INTEGER NOT NULL DEFAULT 0,
        note TEXT,
        UNIQUE (run_pk, attempt, shard)
    );
    CREATE TABLE requests (
        run_pk INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        custom_id TEXT NOT NULL,
        PRIMARY KEY (run_pk, seq)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX requests_by_custom_id ON requests (run_pk, custom_id);
    CREATE TABLE results (
        run_pk INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        status TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        batch_pk INTEGER NOT NULL,
        error_type TEXT,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        result BLOB NOT NULL,
        PRIMARY KEY (run_pk, seq)
    ) WITHOUT ROWID;
    """,
    """
    CREATE TABLE uploads (
        sha256 TEXT NOT NULL,
        backend_key TEXT NOT NULL,
        file_id TEXT NOT NULL,
        filename TEXT NOT NULL,
        size INTEGER NOT NULL,
        uploaded_at TEXT NOT NULL,
        PRIMARY KEY (sha256, backend_key)
    ) WITHOUT ROWID;
    CREATE TABLE run_attachments (
        run_pk INTEGER NOT NULL REFERENCES runs(pk),
        sha256 TEXT NOT NULL,
        backend_key TEXT NOT NULL,
        file_id TEXT NOT NULL,
        keep INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (run_pk, sha256)
    ) WITHOUT ROWID;
    CREATE INDEX run_attachments_by_file_id ON run_attachments (file_id);
    """,
]


_SEQ = itemgetter(0)


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Run:
    pk: int
    id: str
    job_name: str
    spec_path: Path
    output_path: Path
    run_dir: Path
    backend: str
    base_url: str | None
    model: str
    requests: int
    settings: RunSettings
    created_at: str
    output_written_at: str | None


@dataclass(frozen=True)
class Batch:
    pk: int
    run_pk: int
    attempt: int
    shard: int
    first_seq: int | None
    request_file: str
    requests: int
    bytes: int
    state: str
    file_id: str | None
    purpose_accepted: bool | None
    intent_at: str | None
    batch_id: str | None
    processing_status: str | None
    request_counts: dict[str, int] | None
    created_at: str | None
    ended_at: str | None
    expires_at: str | None
    archived_at: str | None
    results_url: str | None
    file_deleted: bool
    adopted: bool
    polls: int
    note: str | None


class ResultRow(NamedTuple):
    """One request's result as the ledger keeps it (a tuple: millions are made per collect)."""

    custom_id: str
    status: str
    error_type: str | None
    input_tokens: int
    output_tokens: int
    fragment: bytes


# (seq, status, error_type, input_tokens, output_tokens, fragment): a result placed at its input position.
PlacedResult = tuple[int, str, str | None, int, int, bytes]


def _run(row: sqlite3.Row) -> Run:
    return Run(
        pk=row["pk"],
        id=row["id"],
        job_name=row["job_name"],
        spec_path=Path(row["spec_path"]),
        output_path=Path(row["output_path"]),
        run_dir=Path(row["run_dir"]),
        backend=row["backend"],
        base_url=row["base_url"],
        model=row["model"],
        requests=row["requests"],
        settings=RunSettings.decode(row["settings"]),
        created_at=row["created_at"],
        output_written_at=row["output_written_at"],
    )


def _batch(row: sqlite3.Row) -> Batch:
    counts = row["request_counts"]
    accepted = row["purpose_accepted"]
    return Batch(
        pk=row["pk"],
        run_pk=row["run_pk"],
        attempt=row["attempt"],
        shard=row["shard"],
        first_seq=row["first_seq"],
        request_file=row["request_file"],
        requests=row["requests"],
        bytes=row["bytes"],
        state=row["state"],
        file_id=row["file_id"],
        purpose_accepted=None if accepted is None else bool(accepted),
        intent_at=row["intent_at"],
        batch_id=row["batch_id"],
        processing_status=row["processing_status"],
        request_counts=orjson.loads(counts) if counts else None,
        created_at=row["created_at"],
        ended_at=row["ended_at"],
        expires_at=row["expires_at"],
        archived_at=row["archived_at"],
        results_url=row["results_url"],
        file_deleted=bool(row["file_deleted"]),
        adopted=bool(row["adopted"]),
        polls=row["polls"],
        note=row["note"],
    )


DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _damaged(path: Path, exc: sqlite3.DatabaseError) -> LedgerUnusable | None:
    """The one message for a ledger SQLite cannot read, whichever command found out."""
    if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in DAMAGED:
        return None
    return LedgerUnusable(
        f"the ledger {path} is damaged ({exc}). Restore it (and any {path.name}-wal beside it) from a backup; "
        f"or, to start afresh, move it aside with its -wal and -shm files (mkdir {path.parent}/damaged && "
        f"mv {path}* {path.parent}/damaged/): batchrunner then forgets every run in {path.parent}. Their folders "
        "under runs/ (until a new run of the same id takes one) and their outputs stay, but status, collect, "
        "retry and resume no longer know them, and the "
        "results of batches still running on the API are never collected"
    )


def _reraise(connection: sqlite3.Connection, exc: sqlite3.DatabaseError) -> NoReturn:
    damaged = _damaged(connection.path, exc) if isinstance(connection, _Connection) else None
    if damaged is None:
        raise exc
    raise damaged from exc


class _Cursor(sqlite3.Cursor):
    """A cursor that reports a damaged ledger as such. Rows read by iterating are not checked
    here (that would cost every row a Python call): a long scan runs inside `Ledger.checked()`."""

    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:
        try:
            super().execute(sql, parameters)
        except sqlite3.DatabaseError as exc:
            _reraise(self.connection, exc)
        return self

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> _Cursor:
        try:
            super().executemany(sql, seq_of_parameters)
        except sqlite3.DatabaseError as exc:
            _reraise(self.connection, exc)
        return self

    def fetchone(self) -> Any:
        try:
            return super().fetchone()
        except sqlite3.DatabaseError as exc:
            _reraise(self.connection, exc)


class _Connection(sqlite3.Connection):
    path: Path

    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:
        return self.cursor(_Cursor).execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> _Cursor:
        return self.cursor(_Cursor).executemany(sql, parameters)


class Ledger:
    """The state home's database. One instance per process; not shared across threads.

    `read_only` is for commands that only look (status, runs): they open the file read-only,
    so they work on a home the user cannot write to, and never change it.
    """

    def __init__(self, home: Path, *, read_only: bool = False) -> None:
        self.home = home
        self.path = home / LEDGER_FILE
        self.commits = 0  # transactions committed (or tried) by this instance; BATCHRUNNER_FAIL_WRITE_AT counts them
        self.db: sqlite3.Connection
        self._refuse_emptied()
        if read_only and self.path.is_file():
            if self._open_read_only() == len(_MIGRATIONS):
                return
            self.db.close()  # an older ledger: migrating it needs write access
        try:
            home.mkdir(parents=True, exist_ok=True, mode=0o700)
            old_umask = os.umask(0o077)
            try:
                self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0, factory=_Connection)
            finally:
                os.umask(old_umask)
            self._setup()
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except (sqlite3.OperationalError, PermissionError) as exc:
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if isinstance(exc, sqlite3.OperationalError) and code not in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY):
                raise
            raise LedgerUnusable(
                f"cannot write the ledger {self.path} ({exc}): make {home} writable for this user, or pass --home "
                "to use another state home; `batchrunner status` and `batchrunner runs` still read it"
            ) from exc

    def _refuse_emptied(self) -> None:
        """A 0-byte ledger beside run folders was truncated: opening it would silently forget them."""
        runs = self.home / "runs"
        if not self.path.is_file() or self.path.stat().st_size or not runs.is_dir():
            return
        folders = [p.name for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")]
        if folders:
            raise LedgerUnusable(
                f"the ledger {self.path} is empty (0 bytes), but {runs} holds {len(folders)} run folder(s) "
                f"({', '.join(sorted(folders)[:3])}{', ...' if len(folders) > 3 else ''}): it was truncated, and using it "
                f"would forget those runs. Restore it from a backup; or, to start afresh and forget them, move it "
                f"aside (mv {self.path} {self.path}.empty)"
            )

    def _open_read_only(self) -> int:
        """Read-only. Where SQLite cannot make the WAL index (a home on a read-only file system),
        as immutable: no one can write there while we read, though a WAL left by a crash is not read.
        Returns the ledger's schema version."""
        queries = ["mode=ro"] + ([] if os.access(self.home, os.W_OK) else ["mode=ro&immutable=1"])
        for number, query in enumerate(queries, start=1):
            self.db = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?{query}", uri=True, isolation_level=None, factory=_Connection
            )
            try:
                self._setup()
                return int(self.db.execute("PRAGMA user_version").fetchone()[0])
            except sqlite3.OperationalError as exc:
                self.db.close()
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_CANTOPEN or number == len(queries):
                    raise
        raise AssertionError("unreachable")

    def _setup(self) -> None:
        assert isinstance(self.db, _Connection)
        self.db.path = self.path
        self.db.row_factory = sqlite3.Row
        self.db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        with self.transaction():
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT: the write lock is taken up front, so no deadlock on upgrade.

        A full disk rolls the transaction back and is reported as ENOSPC naming the ledger file
        (SQLite itself says only "database or disk is full").
        """
        try:
            with naming(self.path):
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    yield self.db
                    self.commits += 1
                    failpoint("ledger.commit", self.commits)
                    self.db.execute("COMMIT")
                except BaseException:
                    if self.db.in_transaction:  # SQLite may have rolled back already
                        self.db.execute("ROLLBACK")
                    raise
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_FULL:
                raise
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path)) from exc

    # runs

    def create_run(
        self,
        *,
        run_id: str,
        job_name: str,
        spec_path: Path,
        output_path: Path,
        run_dir: Path,
        backend: str,
        base_url: str | None,
        model: str,
        settings: RunSettings,
        shards: Iterable[tuple[int, int, str, int, int]],
        custom_ids: Iterable[str],
        attachments: Iterable[tuple[str, str, str]] = (),
        keep_attachments: bool = True,
    ) -> Run:
        """Register a compiled run, its first-attempt batches, every request and the files its
        requests attach ((sha256, backend_key, file_id)), in one transaction."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO runs (id, job_name, spec_path, output_path, run_dir, backend, base_url, model,"
                " requests, settings, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                (
                    run_id,
                    job_name,
                    str(spec_path),
                    str(output_path),
                    str(run_dir),
                    backend,
                    base_url,
                    model,
                    settings.encode(),
                    utcnow(),
                ),
            )
            run_pk = cursor.lastrowid
            db.executemany(
                "INSERT INTO batches (run_pk, attempt, shard, first_seq, request_file, requests, bytes, state)"
                " VALUES (?, 1, ?, ?, ?, ?, ?, 'prepared')",
                ((run_pk, index, first, path, count, size) for index, first, path, count, size in shards),
            )
            db.executemany(
                "INSERT INTO requests (run_pk, seq, custom_id) VALUES (?, ?, ?)",
                ((run_pk, seq, custom_id) for seq, custom_id in enumerate(custom_ids)),
            )
            db.executemany(
                "INSERT INTO run_attachments (run_pk, sha256, backend_key, file_id, keep) VALUES (?, ?, ?, ?, ?)",
                ((run_pk, sha, key, file_id, int(keep_attachments)) for sha, key, file_id in attachments),
            )
            total = db.execute("SELECT count(*) FROM requests WHERE run_pk = ?", (run_pk,)).fetchone()[0]
            db.execute("UPDATE runs SET requests = ? WHERE pk = ?", (total, run_pk))
        return self.run(run_id)

    def run(self, run_id: str) -> Run:
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise UnknownRun(f"no run {run_id!r} in {self.home}; `batchrunner runs` lists the runs there")
        return _run(row)

    def has_run(self, run_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None

    def latest_run(self) -> Run:
        row = self.db.execute("SELECT * FROM runs ORDER BY pk DESC LIMIT 1").fetchone()
        if row is None:
            raise UnknownRun(f"there are no runs in {self.home} yet; start one with `batchrunner submit JOB`")
        return _run(row)

    def runs(self) -> list[Run]:
        with self.checked():
            return [_run(row) for row in self.db.execute("SELECT * FROM runs ORDER BY pk")]

    def mark_output_written(self, run: Run) -> None:
        with self.transaction() as db:
            db.execute("UPDATE runs SET output_written_at = ? WHERE pk = ?", (utcnow(), run.pk))

    # batches

    def batches(self, run: Run, states: Iterable[str] | None = None) -> list[Batch]:
        rows = self.db.execute("SELECT * FROM batches WHERE run_pk = ? ORDER BY attempt, shard", (run.pk,))
        wanted = set(states) if states is not None else None
        with self.checked():
            return [_batch(row) for row in rows if wanted is None or row["state"] in wanted]

    def batch(self, pk: int) -> Batch:
        return _batch(self.db.execute("SELECT * FROM batches WHERE pk = ?", (pk,)).fetchone())

    def claimed_batch_ids(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT batch_id FROM batches WHERE batch_id IS NOT NULL")}

    def add_attempt(self, run: Run, attempt: int, shards: Iterable[tuple[int, str, int, int]]) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO batches (run_pk, attempt, shard, request_file, requests, bytes, state)"
                " VALUES (?, ?, ?, ?, ?, ?, 'prepared')",
                ((run.pk, attempt, index, path, count, size) for index, path, count, size in shards),
            )

    def next_attempt(self, run: Run) -> int:
        row = self.db.execute("SELECT max(attempt) FROM batches WHERE run_pk = ?", (run.pk,)).fetchone()
        return (row[0] or 0) + 1

    def record_upload(self, batch: Batch, file_id: str, purpose_accepted: bool) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE batches SET file_id = ?, purpose_accepted = ? WHERE pk = ?",
                (file_id, int(purpose_accepted), batch.pk),
            )

    def record_intent(self, batch: Batch) -> Batch:
        """Committed before the create call: from here on, the batch may exist on the server."""
        with self.transaction() as db:
            db.execute(
                "UPDATE batches SET state = 'creating', intent_at = ?, note = NULL WHERE pk = ? AND state = 'prepared'",
                (utcnow(), batch.pk),
            )
        return self.batch(batch.pk)

    def record_created(self, batch: Batch, remote: dict[str, Any], *, adopted: bool = False) -> Batch:
        with self.transaction() as db:
            db.execute(
                "UPDATE batches SET state = 'submitted', batch_id = ?, processing_status = ?, request_counts = ?,"
                " created_at = ?, expires_at = ?, adopted = ?, note = ? WHERE pk = ?",
                (
                    remote["id"],
                    remote["processing_status"],
                    orjson.dumps(remote["request_counts"]),
                    remote["created_at"],
                    remote["expires_at"],
                    int(adopted),
                    "adopted after an uncertain create" if adopted else None,
                    batch.pk,
                ),
            )
        return self.batch(batch.pk)

    def record_uncertain(self, batch: Batch, why: str) -> Batch:
        with self.transaction() as db:
            db.execute("UPDATE batches SET state = 'uncertain', note = ? WHERE pk = ?", (why, batch.pk))
        return self.batch(batch.pk)

    def record_not_created(self, batch: Batch, why: str) -> Batch:
        """The create was refused, or reconciling proved it never happened: it may be tried again."""
        with self.transaction() as db:
            db.execute(
                "UPDATE batches SET state = 'prepared', intent_at = NULL, note = ? WHERE pk = ?", (why, batch.pk)
            )
        return self.batch(batch.pk)

    def record_status(self, batch: Batch, remote: dict[str, Any]) -> Batch:
        """Store what a retrieve said; `ended` moves the batch on to collection."""
        ended = remote["processing_status"] == "ended"
        with self.transaction() as db:
            db.execute(
                "UPDATE batches SET processing_status = ?, request_counts = ?, ended_at = ?, archived_at = ?,"
                " results_url = ?, polls = polls + 1,"
                " state = CASE WHEN ? AND state = 'submitted' THEN 'ended' ELSE state END WHERE pk = ?",
                (
                    remote["processing_status"],
                    orjson.dumps(remote["request_counts"]),
                    remote.get("ended_at"),
                    remote.get("archived_at"),
                    remote.get("results_url"),
                    ended,
                    batch.pk,
                ),
            )
        return self.batch(batch.pk)

    def count_poll(self, batch: Batch) -> None:
        """A poll that got no status (a transient error) still counts against the rate limit."""
        with self.transaction() as db:
            db.execute("UPDATE batches SET polls = polls + 1 WHERE pk = ?", (batch.pk,))

    def mark_unrecoverable(self, batch: Batch, why: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE batches SET state = 'unrecoverable', note = ? WHERE pk = ?", (why, batch.pk))

    def mark_file_deleted(self, batch: Batch) -> None:
        with self.transaction() as db:
            db.execute("UPDATE batches SET file_deleted = 1 WHERE pk = ?", (batch.pk,))

    # attachments

    def uploaded_files(self, backend_key: str, shas: Iterable[str]) -> dict[str, str]:
        """sha256 -> file_id of the contents already uploaded to this backend."""
        query = "SELECT file_id FROM uploads WHERE sha256 = ? AND backend_key = ?"
        found = {}
        for sha in shas:
            row = self.db.execute(query, (sha, backend_key)).fetchone()
            if row is not None:
                found[sha] = row[0]
        return found

    def record_file_upload(self, sha256: str, backend_key: str, file_id: str, filename: str, size: int) -> None:
        """Committed right after the upload, so a crash never makes the same content go up twice."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO uploads (sha256, backend_key, file_id, filename, size, uploaded_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (sha256, backend_key, file_id, filename, size, utcnow()),
            )

    def attachments_to_delete(self, run: Run) -> list[tuple[str, str]]:
        """(sha256, file_id) of the run's attachments still on the server that no other run needs.

        Another run needs a file while it keeps its attachments, or has not finished (no output
        yet, or batches still open, as after a retry): deleting the file would fail its requests.
        """
        opened = ",".join("?" * len(OPEN_STATES))
        rows = self.db.execute(
            "SELECT a.sha256, a.file_id FROM run_attachments a WHERE a.run_pk = ? AND a.keep = 0 AND a.deleted = 0"
            " AND NOT EXISTS (SELECT 1 FROM run_attachments o JOIN runs r ON r.pk = o.run_pk"
            "  WHERE o.file_id = a.file_id AND o.run_pk != a.run_pk AND (o.keep = 1 OR r.output_written_at IS NULL"
            f"   OR EXISTS (SELECT 1 FROM batches b WHERE b.run_pk = r.pk AND b.state IN ({opened}))))"
            " ORDER BY a.sha256",
            (run.pk, *OPEN_STATES),
        )
        return [(row[0], row[1]) for row in rows]

    def mark_attachment_deleted(self, sha256: str, file_id: str) -> None:
        """The file is gone from the server: every run that used it says so, and the cache forgets it."""
        with self.transaction() as db:
            db.execute("UPDATE run_attachments SET deleted = 1 WHERE file_id = ?", (file_id,))
            db.execute("DELETE FROM uploads WHERE sha256 = ? AND file_id = ?", (sha256, file_id))

    def attachments_deleted(self, run: Run) -> int:
        """How many of the run's attachments are no longer on the server."""
        query = "SELECT count(*) FROM run_attachments WHERE run_pk = ? AND deleted = 1"
        return int(self.db.execute(query, (run.pk,)).fetchone()[0])

    # requests

    def positions(self, run: Run, custom_ids: Iterable[str]) -> dict[str, int]:
        """Input positions (seq) of these custom_ids; unknown ids are left out."""
        query = "SELECT seq FROM requests WHERE run_pk = ? AND custom_id = ?"
        found = {}
        for custom_id in custom_ids:
            row = self.db.execute(query, (run.pk, custom_id)).fetchone()
            if row is not None:
                found[custom_id] = row[0]
        return found

    def apply_results(self, run: Run, batch: Batch, results: Iterable[PlacedResult]) -> None:
        """Join results into the run's results table; safe to repeat after a crash halfway.

        A newer attempt replaces an older failure and never a success, so re-applying the same
        results changes nothing. An answer that failed output_schema (succeeded, with an error
        type) is a failure here: any newer result replaces it, and a valid answer wins over it. Results are buffered up to a whole batch (or RESULTS_CHUNK_BYTES
        of answers, whichever comes first) and written in seq order: a first attempt's seqs are
        one contiguous stretch, so its rows are appended page after page instead of splitting
        pages in the middle.
        """
        query = (
            "INSERT INTO results (run_pk, attempt, batch_pk, seq, status, error_type, input_tokens, output_tokens,"
            f" result) VALUES ({int(run.pk)}, {int(batch.attempt)}, {int(batch.pk)}, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (run_pk, seq) DO UPDATE SET"
            " status = excluded.status, attempt = excluded.attempt, batch_pk = excluded.batch_pk,"
            " error_type = excluded.error_type, input_tokens = excluded.input_tokens,"
            " output_tokens = excluded.output_tokens, result = excluded.result"
            " WHERE (results.status != 'succeeded' OR results.error_type IS NOT NULL)"
            " AND (results.attempt <= excluded.attempt OR (excluded.status = 'succeeded' AND excluded.error_type IS NULL))"
        )
        buffered: list[PlacedResult] = []
        size = 0
        for placed in results:
            buffered.append(placed)
            size += len(placed[5])
            if len(buffered) >= RESULTS_CHUNK_ROWS or size >= RESULTS_CHUNK_BYTES:
                self._write_in_order(query, buffered)
                buffered, size = [], 0
        if buffered:
            self._write_in_order(query, buffered)

    def _write_in_order(self, query: str, rows: list[PlacedResult]) -> None:
        rows.sort(key=_SEQ)
        with self.transaction() as db:
            db.executemany(query, rows)

    def mark_collected(self, batch: Batch) -> None:
        with self.transaction() as db:
            db.execute("UPDATE batches SET state = 'collected' WHERE pk = ?", (batch.pk,))

    def output_rows(self, run: Run) -> Iterator[tuple[str, str, int | None, bytes | None]]:
        """(custom_id, status, batch_pk, fragment) for every request, in input order; no result is pending.

        Iterate it inside `checked()`, so a damaged page met halfway is reported as such.
        """
        rows = self.db.execute(
            "SELECT q.custom_id, coalesce(r.status, 'pending'), r.batch_pk, r.result FROM requests q"
            " LEFT JOIN results r ON r.run_pk = q.run_pk AND r.seq = q.seq WHERE q.run_pk = ? ORDER BY q.seq",
            (run.pk,),
        )
        return iter(rows)

    def summary(self, run: Run) -> dict[str, Any]:
        counts = {status: 0 for status in ("pending", *RESULT_STATUSES)}
        input_tokens = output_tokens = 0
        for row in self.db.execute(
            "SELECT status, count(*), sum(input_tokens), sum(output_tokens) FROM results WHERE run_pk = ?"
            " GROUP BY status",
            (run.pk,),
        ):
            counts[row[0]] = row[1]
            input_tokens += row[2]
            output_tokens += row[3]
        counts["pending"] = run.requests - sum(counts.values())
        errors = {
            row[0]: row[1]
            for row in self.db.execute(
                "SELECT error_type, count(*) FROM results WHERE run_pk = ? AND status = 'errored' GROUP BY error_type",
                (run.pk,),
            )
        }
        invalid = self.db.execute(
            "SELECT count(*) FROM results WHERE run_pk = ? AND status = 'succeeded' AND error_type IS NOT NULL",
            (run.pk,),
        ).fetchone()[0]
        return {
            "requests": run.requests,
            "counts": counts,
            "output_invalid": invalid,
            "errors_by_type": errors,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
        }

    def select_requests(
        self,
        run: Run,
        *,
        statuses: Iterable[str],
        error_types: Iterable[str] | None,
        exclude_error_types: Iterable[str],
    ) -> list[tuple[int, str]]:
        """(seq, custom_id) of the requests whose latest outcome matches, in input order.

        An error type selects errored rows of that type; `output_invalid` also selects the
        succeeded rows whose answer failed output_schema.
        """
        wanted = set(error_types) if error_types is not None else None
        status_list = list(statuses) + (["succeeded"] if wanted and "output_invalid" in wanted else [])
        marks = ",".join("?" * len(status_list))
        rows = self.db.execute(
            f"SELECT q.seq, q.custom_id, coalesce(r.status, 'pending') AS latest, r.error_type FROM requests q"
            " LEFT JOIN results r ON r.run_pk = q.run_pk AND r.seq = q.seq"
            f" WHERE q.run_pk = ? AND latest IN ({marks}) ORDER BY q.seq",
            (run.pk, *status_list),
        )
        excluded = set(exclude_error_types)
        picked = []
        with self.checked():
            for seq, custom_id, status, error_type in rows:
                if status == "succeeded" and error_type is None:
                    continue
                if status in ("errored", "succeeded"):
                    if wanted is not None and error_type not in wanted:
                        continue
                    if wanted is None and error_type in excluded:
                        continue
                picked.append((seq, custom_id))
        return picked

    def requests_by_custom_id(self, run: Run, custom_ids: Iterable[str]) -> list[tuple[int, str, str]]:
        """(seq, custom_id, status) for the given ids, an unusable answer's status being its
        error type (output_invalid); unknown ids are left out."""
        query = (
            "SELECT q.seq, q.custom_id, CASE WHEN r.status = 'succeeded' AND r.error_type IS NOT NULL"
            " THEN r.error_type ELSE coalesce(r.status, 'pending') END FROM requests q"
            " LEFT JOIN results r ON r.run_pk = q.run_pk AND r.seq = q.seq WHERE q.run_pk = ? AND q.custom_id = ?"
        )
        found = []
        for custom_id in custom_ids:
            row = self.db.execute(query, (run.pk, custom_id)).fetchone()
            if row is not None:
                found.append((row[0], row[1], row[2]))
        return sorted(found)

    @contextmanager
    def checked(self) -> Iterator[None]:
        """Report a damaged ledger met while iterating rows as such (a try block costs no row anything)."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            _reraise(self.db, exc)

    def integrity_check(self) -> str:
        return str(self.db.execute("PRAGMA integrity_check").fetchone()[0])


def known_run_ids(home: Path) -> list[str]:
    """The run ids in a state home, newest first, for shell completion; a home without a ledger
    has none, and is not created by asking."""
    if not (home / LEDGER_FILE).exists():
        return []
    with Ledger(home) as ledger:
        return [run.id for run in reversed(ledger.runs())]


@contextmanager
def run_lock(home: Path, run_id: str) -> Iterator[None]:
    """Hold the exclusive lock of one run, or fail at once naming the process that has it.

    The lock is on a separate file (never the database: closing any descriptor of a file drops
    POSIX locks on it), and the kernel releases it when the holder dies, even by SIGKILL.
    """
    locks = home / "locks"
    locks.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = locks / f"{run_id}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise RunLocked(
                f"run {run_id} is being worked on by {holder}; wait for it to finish, or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)

