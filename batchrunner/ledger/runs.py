"""The runs table: one row per run, with the settings frozen from its spec when it was compiled."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchrunner.errors import UnknownRun
from batchrunner.paths import is_url
from batchrunner.ledger.database import Database, utcnow
from batchrunner.run_settings import RunSettings


@dataclass(frozen=True)
class Run:
    pk: int
    id: str
    job_name: str
    spec_path: Path
    output_path: Path | str  # str: an object store URL
    run_dir: Path  # this host's folder for the run's data (for a remote store: its spool)
    store: str  # where the run's data is kept: its local folder, or an object store URL
    backend: str
    base_url: str | None
    model: str
    requests: int
    settings: RunSettings
    created_at: str
    output_written_at: str | None


@dataclass(frozen=True)
class NewRun:
    """What a run is registered with, before it has a key, requests or batches."""

    run_id: str
    job_name: str
    spec_path: Path
    output_path: Path | str  # str: an object store URL
    store: Path | str  # the run's local folder, or its object store URL (then run_dir is a spool)
    backend: str
    base_url: str | None
    model: str
    settings: RunSettings


def _location(value: str) -> Path | str:
    """A local path, or an object store URL kept as written (a Path would fold its `//`)."""
    return value if is_url(value) else Path(value)


def _run(row: Any, home: Path) -> Run:
    store = row["run_dir"]
    return Run(
        pk=row["pk"],
        id=row["id"],
        job_name=row["job_name"],
        spec_path=Path(row["spec_path"]),
        output_path=_location(row["output_path"]),
        run_dir=home / "runs" / row["id"] if is_url(store) else Path(store),
        store=store,
        backend=row["backend"],
        base_url=row["base_url"],
        model=row["model"],
        requests=row["requests"],
        settings=RunSettings.decode(row["settings"]),
        created_at=row["created_at"],
        output_written_at=row["output_written_at"],
    )


class RunsTable(Database):
    def _insert_run(self, db: Any, new: NewRun) -> int:
        """A new run with no requests counted yet (`_set_requests` counts them once they are in)."""
        cursor = db.execute(
            "INSERT INTO runs (id, job_name, spec_path, output_path, run_dir, backend, base_url, model,"
            " requests, settings, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?) RETURNING pk",
            (
                new.run_id,
                new.job_name,
                str(new.spec_path),
                str(new.output_path),
                str(new.store),
                new.backend,
                new.base_url,
                new.model,
                new.settings.encode(),
                utcnow(),
            ),
        )
        return int(cursor.fetchone()[0])

    def _set_requests(self, db: Any, run_pk: int, total: int) -> None:
        db.execute("UPDATE runs SET requests = ? WHERE pk = ?", (total, run_pk))

    def run(self, run_id: str) -> Run:
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise UnknownRun(f"no run {run_id!r} in {self.where}; `batchrunner runs` lists the runs there")
        return _run(row, self.home)

    def has_run(self, run_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None

    def latest_run(self) -> Run:
        row = self.db.execute("SELECT * FROM runs ORDER BY pk DESC LIMIT 1").fetchone()
        if row is None:
            raise UnknownRun(f"there are no runs in {self.where} yet; start one with `batchrunner submit JOB`")
        return _run(row, self.home)

    def runs(self) -> list[Run]:
        with self.checked():
            return [_run(row, self.home) for row in self.db.execute("SELECT * FROM runs ORDER BY pk")]

    def mark_output_written(self, run: Run) -> None:
        with self.transaction() as db:
            db.execute("UPDATE runs SET output_written_at = ? WHERE pk = ?", (utcnow(), run.pk))
