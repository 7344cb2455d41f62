"""The answer cache (DESIGN §10): succeeded answers kept by request key and backend scope, the
rows of a run answered from it, and the rows that share another row's request.

Portable SQL only (issue 17 runs these queries on PostgreSQL too): `?` placeholders, standard
types, `INSERT ... ON CONFLICT`, timestamps as ISO text computed in Python.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from batchrunner.errors import BatchrunnerError
from batchrunner.ledger.batches import Batch
from batchrunner.ledger.database import LOOKUP_KEYS, Database, chunks, utcnow
from batchrunner.ledger.runs import Run

NEAR_SLACK = 64  # answers read past the expected ones, for rows added to the job since its last run
PLAN_CHUNK = 20_000  # planned requests registered per statement: a few MB of them in memory
CACHED_BATCH_PK = 0  # a cached row's results.batch_pk: no batch of this run made its answer

# What a planned request is: sent, the same as an earlier row's request, or answered from the cache.
SENT, SHARED, CACHED = b"S", b"D", b"C"

# One request of a new run, in input order: (kind, custom_id, value). A sent request's value is its
# key (empty when its answer is not to be cached); a cached one's, the id of its answer in the cache;
# a shared one's, the seq of the earlier row whose request is sent for it.
PlannedRequest = tuple[bytes, str, str]


class CacheTable(Database):
    def cached_answers(self, scope: str, keys: list[str], since: str | None, near: int | None = None) -> dict[str, int]:
        """Which of these keys have an answer in this scope, stored at or after `since` (ISO time),
        and that answer's id. Without `since` the unique index on the key answers (it holds the id);
        no answer is read.

        `near` is the id where these answers probably begin: a re-run asks for its answers in the
        order its last run stored them. The ids from there are read first, as one range (pages in
        order, not a probe of the key index at random per key), and only the keys not among them
        are looked up by key."""
        wanted = dict.fromkeys(keys)
        found: dict[str, int] = {}
        if near is not None:
            rows = self.db.execute(
                "SELECT request_key, id, scope, created_at FROM answer_cache WHERE id >= ? AND id < ?",
                (near, near + len(wanted) + NEAR_SLACK),
            )
            with self.checked():
                found = {key: id_ for key, id_, kept_for, created_at in rows
                         if key in wanted and kept_for == scope and (since is None or created_at >= since)}
        age = "" if since is None else " AND created_at >= ?"
        for chunk in chunks((key for key in wanted if key not in found), LOOKUP_KEYS):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT request_key, id FROM answer_cache WHERE scope = ?{age} AND request_key IN ({marks})",
                (scope, *(() if since is None else (since,)), *chunk),
            )
            with self.checked():
                found.update(rows)
        return found

    def _insert_plan(self, db: Any, run_pk: int, planned: Iterable[PlannedRequest]) -> int:
        """Every request of a new run with its key, the row it shares a request with, or the id of
        its cached answer, which is copied inside the database (it never passes through Python),
        streamed in chunks. An answer gone since it was looked up (`cache clear` meanwhile) fails
        the registration: that row would be neither sent nor answered."""
        run = {"run_pk": run_pk}
        total = 0
        for chunk in chunks(planned, PLAN_CHUNK):
            cached = [(total + i, custom_id, int(answer)) for i, (kind, custom_id, answer) in enumerate(chunk) if kind == CACHED]
            if cached:
                self.store.insert_many(db, "requests", ("seq", "custom_id", "answer_id"), cached, constants=run)
                copied = db.execute(
                    "INSERT INTO results (run_pk, seq, status, attempt, batch_pk, error_type, input_tokens, output_tokens,"
                    " result, cached_batch_id, cache_write_tokens, cache_read_tokens)"
                    f" SELECT q.run_pk, q.seq, 'succeeded', a.attempt, {CACHED_BATCH_PK}, NULL, a.input_tokens,"
                    " a.output_tokens, a.result, a.batch_id, a.cache_write_tokens, a.cache_read_tokens"
                    " FROM requests q JOIN answer_cache a ON a.id = q.answer_id"
                    " WHERE q.run_pk = ? AND q.seq >= ? AND q.seq < ?",
                    (run_pk, total, total + len(chunk)),
                ).rowcount
                if copied != len(cached):
                    raise BatchrunnerError(
                        f"{len(cached) - copied} cached answer(s) were removed from the cache while this run was "
                        "compiled (`batchrunner cache clear`?); nothing was sent: submit again"
                    )
            if len(cached) < len(chunk):
                rest = [(total + i, custom_id, key if kind == SENT and key else None)
                        for i, (kind, custom_id, key) in enumerate(chunk) if kind != CACHED]
                self.store.insert_many(db, "requests", ("seq", "custom_id", "request_key"), rest, constants=run)
                links = [(total + i, int(first)) for i, (kind, _, first) in enumerate(chunk) if kind == SHARED]
                if links:
                    self.store.insert_many(db, "request_links", ("seq", "primary_seq"), links, constants=run)
            total += len(chunk)
        return total

    def fan_out_duplicates(self, run: Run) -> None:
        """Give every row that shares another row's request that row's latest result (no tokens of
        its own: it was not sent). Safe to repeat."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO results (run_pk, seq, status, attempt, batch_pk, error_type, input_tokens, output_tokens,"
                " result, cached_batch_id, cache_write_tokens, cache_read_tokens)"
                " SELECT l.run_pk, l.seq, r.status, r.attempt, r.batch_pk, r.error_type, 0, 0, r.result, NULL, 0, 0"
                " FROM request_links l JOIN results r ON r.run_pk = l.run_pk AND r.seq = l.primary_seq"
                " WHERE l.run_pk = ?"
                " ON CONFLICT (run_pk, seq) DO UPDATE SET status = excluded.status, attempt = excluded.attempt,"
                " batch_pk = excluded.batch_pk, error_type = excluded.error_type, result = excluded.result",
                (run.pk,),
            )

    def primary_seqs(self, run: Run, seqs: Iterable[int]) -> list[int]:
        """The seqs whose requests were sent for these rows (a duplicate row's is its first row's), sorted."""
        query = "SELECT primary_seq FROM request_links WHERE run_pk = ? AND seq = ?"
        sent = set()
        for seq in seqs:
            row = self.db.execute(query, (run.pk, seq)).fetchone()
            sent.add(seq if row is None else row[0])
        return sorted(sent)

    def custom_ids_at(self, run: Run, seqs: Iterable[int]) -> set[str]:
        query = "SELECT custom_id FROM requests WHERE run_pk = ? AND seq = ?"
        return {self.db.execute(query, (run.pk, seq)).fetchone()[0] for seq in seqs}

    def store_answers(self, run: Run, batch: Batch, scope: str) -> int:
        """Cache the batch's succeeded, schema-valid answers under their keys, in one transaction (a
        batch holds at most 100,000); errored, expired, canceled and output_invalid results are never
        cached. A newer answer replaces an older one."""
        assert batch.batch_id is not None
        now = utcnow()
        with self.transaction() as db:
            rows = db.execute(
                "SELECT q.request_key, r.result, r.input_tokens, r.output_tokens, r.cache_write_tokens,"
                " r.cache_read_tokens FROM results r JOIN requests q ON q.run_pk = r.run_pk AND q.seq = r.seq"
                " WHERE r.run_pk = ? AND r.batch_pk = ? AND r.status = 'succeeded' AND r.error_type IS NULL"
                " AND q.request_key IS NOT NULL",
                (run.pk, batch.pk),
            )
            answers = [
                (scope, key, run.model, bytes(fragment), inp, out, write, read, batch.batch_id,
                 batch.attempt, run.id, now)
                for key, fragment, inp, out, write, read in rows
            ]
            db.executemany(
                "INSERT INTO answer_cache (scope, request_key, model, result, input_tokens, output_tokens,"
                " cache_write_tokens, cache_read_tokens, batch_id, attempt, run_id, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (scope, request_key) DO UPDATE SET model = excluded.model, result = excluded.result,"
                " input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens,"
                " cache_write_tokens = excluded.cache_write_tokens, cache_read_tokens = excluded.cache_read_tokens,"
                " batch_id = excluded.batch_id, attempt = excluded.attempt, run_id = excluded.run_id,"
                " created_at = excluded.created_at",
                answers,
            )
        return len(answers)

    def cache_stats(self) -> list[dict[str, Any]]:
        """Per backend scope: entries, stored answer bytes, input and output tokens they hold, oldest and newest."""
        rows = self.db.execute(
            "SELECT scope, count(*), sum(length(result)), sum(input_tokens), sum(output_tokens), min(created_at),"
            " max(created_at) FROM answer_cache GROUP BY scope ORDER BY scope"
        )
        names = ("scope", "entries", "bytes", "input_tokens", "output_tokens", "oldest", "newest")
        with self.checked():
            return [dict(zip(names, row, strict=True)) for row in rows]

    def clear_cache(self, before: str | None) -> int:
        """Forget the cached answers stored before `before` (ISO time), or all; returns how many."""
        with self.transaction() as db:
            if before is None:
                cursor = db.execute("DELETE FROM answer_cache")
            else:
                cursor = db.execute("DELETE FROM answer_cache WHERE created_at < ?", (before,))
            return int(cursor.rowcount)
