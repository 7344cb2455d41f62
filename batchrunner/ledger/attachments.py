"""The uploads and run_attachments tables: which attachment contents each backend already has
(so the same bytes never go up twice), and which files each run uses and whether it keeps them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from batchrunner.ledger.database import Database, utcnow
from batchrunner.ledger.runs import Run
from batchrunner.states import OPEN_STATES


class AttachmentsTable(Database):
    def _insert_run_attachments(
        self, db: Any, run_pk: int, attachments: Iterable[tuple[str, str, str]], keep: bool
    ) -> None:
        """The files a new run's requests attach: (sha256, backend_key, file_id)."""
        db.executemany(
            "INSERT INTO run_attachments (run_pk, sha256, backend_key, file_id, keep) VALUES (?, ?, ?, ?, ?)",
            ((run_pk, sha, key, file_id, int(keep)) for sha, key, file_id in attachments),
        )

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
                "INSERT INTO uploads (sha256, backend_key, file_id, filename, size, uploaded_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sha256, backend_key) DO UPDATE SET file_id = excluded.file_id,"
                " filename = excluded.filename, size = excluded.size, uploaded_at = excluded.uploaded_at",
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
