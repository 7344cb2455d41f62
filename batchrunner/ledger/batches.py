"""The batches table: one row per request file (shard) and attempt, with the write-ahead state
of its create call. Every change of a batch's state goes through `_move`, which refuses a move
that states.TRANSITIONS does not declare."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from batchrunner.ledger.database import Database, utcnow
from batchrunner.ledger.runs import Run
from batchrunner.states import BatchState, ProcessingStatus, check_transition


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
    state: BatchState
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


def _batch(row: Any) -> Batch:
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
        state=BatchState(row["state"]),
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


# The columns a move may set besides the state: named here, never taken from a caller's string.
_MOVE_COLUMNS = frozenset(
    {"intent_at", "note", "batch_id", "processing_status", "request_counts", "created_at", "expires_at", "adopted"}
)


class BatchesTable(Database):
    def _insert_batches(
        self, db: Any, run_pk: int, attempt: int, shards: Iterable[tuple[int, int | None, str, int, int]]
    ) -> None:
        """New batches of one attempt, each `prepared`: (shard, first_seq, request_file, requests, bytes)."""
        db.executemany(
            "INSERT INTO batches (run_pk, attempt, shard, first_seq, request_file, requests, bytes, state)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (run_pk, attempt, shard, first, path, count, size, BatchState.PREPARED)
                for shard, first, path, count, size in shards
            ),
        )

    def _move(self, db: Any, batch: Batch, target: BatchState, **columns: Any) -> None:
        """The one way a batch changes state: from the state the database holds now (not the
        caller's copy), only along a declared transition, with the columns that move sets."""
        unknown = set(columns) - _MOVE_COLUMNS
        assert not unknown, f"not a column a move sets: {unknown}"
        current = BatchState(db.execute("SELECT state FROM batches WHERE pk = ?", (batch.pk,)).fetchone()[0])
        check_transition(f"batch {batch.shard + 1} of attempt {batch.attempt}", current, target)
        sets = "".join(f", {name} = ?" for name in columns)
        db.execute(f"UPDATE batches SET state = ?{sets} WHERE pk = ?", (target, *columns.values(), batch.pk))

    def batches(self, run: Run, states: Iterable[BatchState] | None = None) -> list[Batch]:
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
            self._insert_batches(db, run.pk, attempt, ((index, None, path, count, size) for index, path, count, size in shards))

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
            self._move(db, batch, BatchState.CREATING, intent_at=utcnow(), note=None)
        return self.batch(batch.pk)

    def record_created(self, batch: Batch, remote: dict[str, Any], *, adopted: bool = False) -> Batch:
        with self.transaction() as db:
            self._move(
                db,
                batch,
                BatchState.SUBMITTED,
                batch_id=remote["id"],
                processing_status=remote["processing_status"],
                request_counts=orjson.dumps(remote["request_counts"]),
                created_at=remote["created_at"],
                expires_at=remote["expires_at"],
                adopted=int(adopted),
                note="adopted after an uncertain create" if adopted else None,
            )
        return self.batch(batch.pk)

    def record_uncertain(self, batch: Batch, why: str) -> Batch:
        with self.transaction() as db:
            self._move(db, batch, BatchState.UNCERTAIN, note=why)
        return self.batch(batch.pk)

    def record_not_created(self, batch: Batch, why: str) -> Batch:
        """The create was refused, or reconciling proved it never happened: it may be tried again."""
        with self.transaction() as db:
            self._move(db, batch, BatchState.PREPARED, intent_at=None, note=why)
        return self.batch(batch.pk)

    def record_status(self, batch: Batch, remote: dict[str, Any]) -> Batch:
        """Store what a retrieve said of a submitted batch; `ended` moves it on to collection."""
        with self.transaction() as db:
            db.execute(
                "UPDATE batches SET processing_status = ?, request_counts = ?, ended_at = ?, archived_at = ?,"
                " results_url = ?, polls = polls + 1 WHERE pk = ?",
                (
                    remote["processing_status"],
                    orjson.dumps(remote["request_counts"]),
                    remote.get("ended_at"),
                    remote.get("archived_at"),
                    remote.get("results_url"),
                    batch.pk,
                ),
            )
            if ProcessingStatus.of(remote["processing_status"]) is ProcessingStatus.ENDED:
                self._move(db, batch, BatchState.ENDED)
        return self.batch(batch.pk)

    def count_poll(self, batch: Batch) -> None:
        """A poll that got no status (a transient error) still counts against the rate limit."""
        with self.transaction() as db:
            db.execute("UPDATE batches SET polls = polls + 1 WHERE pk = ?", (batch.pk,))

    def mark_unrecoverable(self, batch: Batch, why: str) -> None:
        with self.transaction() as db:
            self._move(db, batch, BatchState.UNRECOVERABLE, note=why)

    def mark_file_deleted(self, batch: Batch) -> None:
        with self.transaction() as db:
            db.execute("UPDATE batches SET file_deleted = 1 WHERE pk = ?", (batch.pk,))

    def mark_collected(self, batch: Batch) -> None:
        with self.transaction() as db:
            self._move(db, batch, BatchState.COLLECTED)
