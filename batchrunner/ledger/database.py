"""The ledger's database, whichever holds it: a SQLite file (sqlite.py) or PostgreSQL (postgres.py).

Each table's queries live in their own module (runs, batches, results, attachments), as
classes built on `Database`, written once in SQL both understand (`?` placeholders, ON CONFLICT
upserts, no engine's own functions); `Ledger` joins them. Every state change is committed before
the action it enables.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, Protocol, Self

from batchrunner.atomic import private_folder
from batchrunner.crashpoints import failpoint
from batchrunner.ledger.location import Location, locate

STORAGE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error,)  # what the ledger's storage raises, for callers that may not import it


LOOKUP_KEYS = 500  # values per `IN (...)` lookup: well under every SQL engine's parameter limit


def chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of at most `size` items, in order: one statement each, memory bounded."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def utcnow(ago: timedelta = timedelta()) -> str:
    """The ledger's timestamp (ISO, UTC, `Z`) of now, or of `ago` before now: one format, so
    stored times compare as text."""
    return (datetime.now(UTC) - ago).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Store(Protocol):
    """What one kind of database gives the tables."""

    db: Any  # the connection: execute(sql, parameters) -> a cursor (fetchone, iteration), executemany

    def transaction(self) -> AbstractContextManager[Any]: ...
    def checked(self) -> AbstractContextManager[None]: ...
    def insert_many(
        self, db: Any, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
        constants: Mapping[str, int] | None = None, conflict: str = "",
    ) -> None: ...
    def scan(self, sql: str, parameters: Sequence[Any] = ()) -> Iterator[Any]: ...
    def follow_keys(self, db: Any, table: str) -> None: ...
    def lock(self, run_id: str) -> AbstractContextManager[None]: ...
    def exists(self) -> bool: ...
    def integrity_check(self) -> str: ...
    def close(self) -> None: ...


def open_store(home: Path, location: Location, *, before_commit: Callable[[], None], read_only: bool = False) -> Store:
    """The engine the location names, migrated; `before_commit` runs in each transaction just before its COMMIT."""
    if location.is_postgres:
        from batchrunner.ledger.postgres import PostgresStore

        return PostgresStore(location, before_commit=before_commit)
    from batchrunner.ledger.sqlite import SqliteStore

    assert location.path is not None
    return SqliteStore(home, location.path, before_commit=before_commit, read_only=read_only)


class Database:
    """The ledger's database. One instance per process; not shared across threads.

    `read_only` is for commands that only look (status, runs): on SQLite they open the file
    read-only, so they work on a home the user cannot write to, and never change it.
    """

    def __init__(self, home: Path, *, read_only: bool = False, location: Location | None = None) -> None:
        self.home = Path(os.path.abspath(home))  # absolute, so the run folders it records mean the same from any folder
        self.location = location or locate(self.home)
        self.commits = 0  # transactions committed (or tried) by this instance; BATCHRUNNER_FAIL_WRITE_AT counts them
        if self.location.is_postgres and not read_only:
            private_folder(self.home)  # the run folders stay here, private, until --store
        self.store = open_store(self.home, self.location, before_commit=self._committing, read_only=read_only)
        self.db = self.store.db

    @property
    def where(self) -> str:
        """The ledger as messages name it: the state home, or the database's masked URL."""
        return self.location.shown if self.location.is_postgres else str(self.home)

    @property
    def path(self) -> Path | None:
        """The SQLite file, or None on PostgreSQL."""
        return self.location.path

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transaction(self) -> AbstractContextManager[Any]:
        """One transaction, committed before this returns."""
        return self.store.transaction()

    def _committing(self) -> None:
        self.commits += 1
        failpoint("ledger.commit", self.commits)

    def checked(self) -> AbstractContextManager[None]:
        """Report a damaged ledger met while iterating rows as such (SQLite)."""
        return self.store.checked()

    def lock(self, run_id: str) -> AbstractContextManager[None]:
        """One process per run (DESIGN §6): a second one exits 75 naming the holder."""
        return self.store.lock(run_id)

    def integrity_check(self) -> str:
        return self.store.integrity_check()
