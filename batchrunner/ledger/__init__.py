"""The run state in SQLite or PostgreSQL, and the per-run lock. The only package that speaks SQL.

One database (the state home's SQLite file, or the one --ledger names) holds every run: its
batches (one per shard and attempt, each with the write-ahead state of its create call) and
one row per request with its latest status and the joined-ready fragment of its result. Every
state change is committed before the action it enables, so a crash at any instant leaves a
ledger that says exactly what may have happened.

    location.py     which database: --ledger / BATCHRUNNER_LEDGER, or the state home's file
    schema.py       the tables, as numbered migrations, one list for both engines
    database.py     the interface the tables use: transactions, bulk inserts, long scans, the run lock
    sqlite.py       the SQLite file; a damaged file named as such
    postgres.py     PostgreSQL: translated SQL, COPY, advisory locks
    copy.py         `ledger copy`: every table into another ledger
    runs.py         Run and the runs table
    batches.py      Batch and the batches table; every state change through one declared move
    results.py      the requests of a run and their latest results
    attachments.py  uploaded attachment files and which runs use them
    cache.py        the answer cache by request key, and rows that share a request
    lock.py         run_lock, the lock file of one run on a SQLite ledger
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from batchrunner.ledger.attachments import AttachmentsTable
from batchrunner.ledger.batches import Batch, BatchesTable
from batchrunner.ledger.cache import CacheTable, PlannedRequest
from batchrunner.ledger.database import STORAGE_ERRORS
from batchrunner.ledger.location import LEDGER_FILE, locate
from batchrunner.ledger.lock import run_lock
from batchrunner.ledger.results import RESULT_STATUSES, PlacedResult, ResultRow, ResultsTable
from batchrunner.ledger.runs import NewRun, Run, RunsTable

__all__ = [
    "LEDGER_FILE", "RESULT_STATUSES", "STORAGE_ERRORS", "Batch", "Ledger", "NewRun", "PlacedResult", "PlannedRequest",
    "ResultRow", "Run", "known_run_ids", "ledger_exists", "run_lock",
]


class Ledger(RunsTable, BatchesTable, ResultsTable, AttachmentsTable, CacheTable):
    """The state home's database, every table's queries on one object. One instance per process;
    not shared across threads. `read_only` is for commands that only look (status, runs)."""

    def create_run(
        self,
        new: NewRun,
        *,
        shards: Iterable[tuple[int, int | None, str, int, int]],
        custom_ids: Iterable[str] = (),
        planned: Iterable[PlannedRequest] | None = None,
        attachments: Iterable[tuple[str, str, str]] = (),
        keep_attachments: bool = True,
    ) -> Run:
        """Register a compiled run, its first-attempt batches, every request (`custom_ids`, or
        `planned` with their keys and shared requests, the cached ones answered by their answers'
        ids in the cache) and the files its requests attach ((sha256, backend_key, file_id)), in
        one transaction."""
        with self.transaction() as db:
            run_pk = self._insert_run(db, new)
            self._insert_batches(db, run_pk, 1, shards)
            if planned is None:
                total = self._insert_requests(db, run_pk, custom_ids)
            else:
                total = self._insert_plan(db, run_pk, planned)
            self._insert_run_attachments(db, run_pk, attachments, keep_attachments)
            self._set_requests(db, run_pk, total)
        return self.run(new.run_id)


def known_run_ids(home: Path) -> list[str]:
    """The run ids in the ledger, newest first, for shell completion; a home without a ledger
    has none, and is not created by asking."""
    if not ledger_exists(home):
        return []
    with Ledger(home, read_only=True) as ledger:
        return [run.id for run in reversed(ledger.runs())]


def ledger_exists(home: Path) -> bool:
    """Whether the ledger is there: a SQLite file may be deleted under a command; a server is not asked."""
    path = locate(home).path
    return path is None or path.exists()
