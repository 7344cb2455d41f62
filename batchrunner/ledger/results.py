"""The requests and results tables: every request of a run at its input position (seq), and
the latest result of each, stored as the joined-ready fragment of its output line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from operator import itemgetter
from typing import Any, NamedTuple

from batchrunner.ledger.batches import Batch
from batchrunner.ledger.database import LOOKUP_KEYS, Database, chunks
from batchrunner.ledger.runs import Run

RESULTS_CHUNK_ROWS = 100_000  # a whole batch
RESULTS_CHUNK_BYTES = 32 << 20  # but never more answer text than this in memory
RESULT_STATUSES = ("succeeded", "errored", "expired", "canceled")


class ResultRow(NamedTuple):
    """One request's result as the ledger keeps it (a tuple: millions are made per collect)."""

    custom_id: str
    status: str
    error_type: str | None
    input_tokens: int
    output_tokens: int
    fragment: bytes
    cache_write_tokens: int = 0  # prompt caching: tokens written to and read from the API's cache
    cache_read_tokens: int = 0


# (seq, status, error_type, input_tokens, output_tokens, fragment, cache_write_tokens, cache_read_tokens):
# a result placed at its input position.
PlacedResult = tuple[int, str, str | None, int, int, bytes, int, int]

_SEQ = itemgetter(0)
_RESULT_COLUMNS = (
    "seq", "status", "error_type", "input_tokens", "output_tokens", "result", "cache_write_tokens", "cache_read_tokens",
)


def _usable(result: PlacedResult) -> bool:
    return result[1] == "succeeded" and result[2] is None


def _once_each(rows: list[PlacedResult]) -> list[PlacedResult]:
    """Sorted results with one per seq, as applying them one by one would leave it: a later one
    replaces an earlier one unless that was a usable answer. (One upsert may not touch a row twice.)"""
    kept: list[PlacedResult] = []
    for result in rows:
        if kept and kept[-1][0] == result[0]:
            if not _usable(kept[-1]):
                kept[-1] = result
        else:
            kept.append(result)
    return kept


class ResultsTable(Database):
    def _insert_requests(self, db: Any, run_pk: int, custom_ids: Iterable[str]) -> int:
        """Every request of a new run, numbered in input order; returns how many."""
        self.store.insert_many(db, "requests", ("seq", "custom_id"), enumerate(custom_ids), constants={"run_pk": run_pk})
        return int(db.execute("SELECT count(*) FROM requests WHERE run_pk = ?", (run_pk,)).fetchone()[0])

    def positions(self, run: Run, custom_ids: Iterable[str]) -> dict[str, int]:
        """Input positions (seq) of these custom_ids; unknown ids are left out."""
        return {custom_id: seq for seq, custom_id in self._requests_by_custom_id(run, "q.seq, q.custom_id", "", custom_ids)}

    def apply_results(self, run: Run, batch: Batch, results: Iterable[PlacedResult]) -> None:
        """Join results into the run's results table; safe to repeat after a crash halfway.

        A newer attempt replaces an older failure and never a success, so re-applying the same
        results changes nothing. An answer that failed output_schema (succeeded, with an error
        type) is a failure here: any newer result replaces it, and a valid answer wins over it. Results are buffered up to a whole batch (or RESULTS_CHUNK_BYTES
        of answers, whichever comes first) and written in seq order: a first attempt's seqs are
        one contiguous stretch, so its rows are appended page after page instead of splitting
        pages in the middle.
        """
        constants = {"run_pk": run.pk, "attempt": batch.attempt, "batch_pk": batch.pk}
        conflict = (
            "ON CONFLICT (run_pk, seq) DO UPDATE SET"
            " status = excluded.status, attempt = excluded.attempt, batch_pk = excluded.batch_pk,"
            " error_type = excluded.error_type, input_tokens = excluded.input_tokens,"
            " output_tokens = excluded.output_tokens, result = excluded.result,"
            " cache_write_tokens = excluded.cache_write_tokens, cache_read_tokens = excluded.cache_read_tokens"
            " WHERE (results.status != 'succeeded' OR results.error_type IS NOT NULL)"
            " AND (results.attempt <= excluded.attempt OR (excluded.status = 'succeeded' AND excluded.error_type IS NULL))"
        )
        buffered: list[PlacedResult] = []
        size = 0
        for placed in results:
            buffered.append(placed)
            size += len(placed[5])
            if len(buffered) >= RESULTS_CHUNK_ROWS or size >= RESULTS_CHUNK_BYTES:
                self._write_in_order(constants, conflict, buffered)
                buffered, size = [], 0
        if buffered:
            self._write_in_order(constants, conflict, buffered)

    def _write_in_order(self, constants: dict[str, int], conflict: str, rows: list[PlacedResult]) -> None:
        rows.sort(key=_SEQ)
        with self.transaction() as db:
            self.store.insert_many(db, "results", _RESULT_COLUMNS, _once_each(rows), constants=constants, conflict=conflict)

    def output_rows(self, run: Run) -> Iterator[tuple[str, str, int | None, bytes | None, str | None, int | None]]:
        """(custom_id, status, batch_pk, fragment, cached_batch_id, attempt) for every request, in input
        order; no result is pending. A row answered from the cache has its answer's batch id and attempt.

        Iterate it inside `checked()`, so a damaged page met halfway is reported as such.
        """
        return self.store.scan(
            "SELECT q.custom_id, coalesce(r.status, 'pending'), r.batch_pk, r.result, r.cached_batch_id, r.attempt"
            " FROM requests q"
            " LEFT JOIN results r ON r.run_pk = q.run_pk AND r.seq = q.seq WHERE q.run_pk = ? ORDER BY q.seq",
            (run.pk,),
        )

    def summary(self, run: Run) -> dict[str, Any]:
        counts = {status: 0 for status in ("pending", *RESULT_STATUSES)}
        billed = {"input_tokens": 0, "output_tokens": 0, "cache_write_tokens": 0, "cache_read_tokens": 0}
        saved = dict(billed)
        cached = 0
        for row in self.db.execute(
            "SELECT status, cached_batch_id IS NOT NULL, count(*), sum(input_tokens), sum(output_tokens),"
            " sum(cache_write_tokens), sum(cache_read_tokens) FROM results WHERE run_pk = ?"
            " GROUP BY status, cached_batch_id IS NOT NULL",
            (run.pk,),
        ):
            counts[row[0]] += row[2]
            tokens = saved if row[1] else billed
            cached += row[2] if row[1] else 0
            for name, value in zip(tokens, row[3:], strict=True):
                tokens[name] += value
        duplicates = self.db.execute("SELECT count(*) FROM request_links WHERE run_pk = ?", (run.pk,)).fetchone()[0]
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
            **billed,
            "cached": cached,
            "cached_tokens": saved,
            "duplicates": duplicates,
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
        rows = self.store.scan(
            "SELECT q.seq, q.custom_id, coalesce(r.status, 'pending'), r.error_type FROM requests q"
            " LEFT JOIN results r ON r.run_pk = q.run_pk AND r.seq = q.seq"
            f" WHERE q.run_pk = ? AND coalesce(r.status, 'pending') IN ({marks}) ORDER BY q.seq",
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
        """(seq, custom_id, status) for the given ids in input order, an unusable answer's status
        being its error type (output_invalid); unknown ids are left out."""
        status = (
            "CASE WHEN r.status = 'succeeded' AND r.error_type IS NOT NULL THEN r.error_type"
            " ELSE coalesce(r.status, 'pending') END"
        )
        joined = " LEFT JOIN results r ON r.run_pk = q.run_pk AND r.seq = q.seq"
        return sorted((row[0], row[1], row[2]) for row in self._requests_by_custom_id(run, f"q.seq, q.custom_id, {status}", joined, custom_ids))

    def _requests_by_custom_id(self, run: Run, columns: str, joined: str, custom_ids: Iterable[str]) -> Iterator[Any]:
        """The run's requests with these ids, LOOKUP_KEYS ids a query (a retry of 10,000 ids on a
        remote PostgreSQL is 20 round trips, not 10,000)."""
        for chunk in chunks(dict.fromkeys(custom_ids), LOOKUP_KEYS):
            marks = ",".join("?" * len(chunk))
            yield from self.db.execute(
                f"SELECT {columns} FROM requests q{joined} WHERE q.run_pk = ? AND q.custom_id IN ({marks})", (run.pk, *chunk)
            ).fetchall()
