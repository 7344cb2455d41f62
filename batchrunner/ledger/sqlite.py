"""The ledger in one SQLite file: opening, migrating, transactions, and naming a damaged file.

Every state change is committed with `synchronous=FULL` before the action it enables; the run
lock is a lock file beside it (lock.py).
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, NoReturn

from batchrunner.atomic import naming, private_folder
from batchrunner.errors import LedgerUnusable
from batchrunner.ledger.lock import run_lock
from batchrunner.ledger.schema import MIGRATIONS, statements

CACHE_KIB = 8 * 1024  # results are applied in seq order, so a small page cache is enough

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


class SqliteStore:
    """The state home's SQLite file. `read_only` is for commands that only look (status, runs):
    they open the file read-only, so they work on a home the user cannot write to, and never change it."""

    def __init__(self, home: Path, path: Path, *, before_commit: Callable[[], None], read_only: bool = False) -> None:
        self.home = home
        self.before_commit = before_commit
        self.path = path
        self.db: sqlite3.Connection
        self._refuse_emptied()
        if read_only:
            if not self.path.is_file():
                self._open_empty()
                return
            if self._open_read_only() == len(MIGRATIONS):
                return
            self.db.close()  # an older ledger: migrating it needs write access
        folder = path.parent
        try:
            private_folder(folder)
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
                f"cannot write the ledger {self.path} ({exc}): make {folder} writable for this user, or pass --home "
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

    def _open_empty(self) -> None:
        """Where there is no ledger yet, an empty one in memory: a command that only looks finds no
        runs, and creates neither the file nor the state home by looking."""
        self.db = sqlite3.connect(":memory:", isolation_level=None, factory=_Connection)
        self._setup()
        for script in MIGRATIONS:
            for statement in statements(script):
                self.db.execute(statement)

    def _setup(self) -> None:
        assert isinstance(self.db, _Connection)
        self.db.path = self.path
        self.db.row_factory = sqlite3.Row
        self.db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")

    def close(self) -> None:
        self.db.close()

    def _migrate(self) -> None:
        with self.transaction():
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in statements(script):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """BEGIN IMMEDIATE ... COMMIT: the write lock is taken up front, so no deadlock on upgrade.

        A full disk rolls the transaction back and is reported as ENOSPC naming the ledger file
        (SQLite itself says only "database or disk is full").
        """
        try:
            with naming(self.path):
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    yield self.db
                    self.before_commit()
                    self.db.execute("COMMIT")
                except BaseException:
                    if self.db.in_transaction:  # SQLite may have rolled back already
                        self.db.execute("ROLLBACK")
                    raise
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_FULL:
                raise
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path)) from exc

    @contextmanager
    def checked(self) -> Iterator[None]:
        """Report a damaged ledger met while iterating rows as such (a try block costs no row anything)."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            _reraise(self.db, exc)

    def integrity_check(self) -> str:
        return str(self.db.execute("PRAGMA integrity_check").fetchone()[0])

    def exists(self) -> bool:
        """Whether the file is still there (a state home deleted under a command is reported as such)."""
        return self.path.exists()

    def lock(self, run_id: str) -> AbstractContextManager[None]:
        """The lock file beside the ledger, so every home sharing this file shares its locks."""
        return run_lock(self.path.parent, run_id)

    def insert_many(
        self, db: Any, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
        constants: Mapping[str, int] | None = None, conflict: str = "",
    ) -> None:
        """INSERT every row; `constants` (integers, the same for every row) are written into the
        statement once, instead of into each row's parameters."""
        fixed = constants or {}
        names = ", ".join((*fixed, *columns))
        values = ", ".join((*(str(int(value)) for value in fixed.values()), *("?" * len(columns))))
        db.executemany(f"INSERT INTO {table} ({names}) VALUES ({values}) {conflict}", rows)

    def follow_keys(self, db: Any, table: str) -> None:
        """SQLite's INTEGER PRIMARY KEY continues after the largest key by itself."""

    def scan(self, sql: str, parameters: Sequence[Any] = ()) -> Iterator[Any]:
        """Rows of a long query, read as they are iterated, as tuples (as PostgreSQL's scan
        gives them): a `sqlite3.Row` each would cost 1 s of CPU a million rows."""
        cursor = self.db.cursor(_Cursor)
        cursor.row_factory = None
        return iter(cursor.execute(sql, parameters))
