"""`batchrunner ledger copy --to URL`: every table of one ledger into another, empty one, in one
transaction (SQLite to PostgreSQL, or back): the copy is whole or not there at all."""

from __future__ import annotations

import re
from pathlib import Path

from batchrunner.errors import InputError
from batchrunner.ledger.database import Database
from batchrunner.ledger.location import locate, parse
from batchrunner.ledger.schema import MIGRATIONS

NOT_COPIED = frozenset({"run_locks"})  # who holds a lock now is no state to move


def tables() -> list[str]:
    """The ledger's tables in the order the migrations create them (referenced before referencing),
    under the names later migrations rename them to (a table rebuilt is created under another name)."""
    names: list[str] = []
    for script in MIGRATIONS:
        names += re.findall(r"CREATE TABLE (\w+)", script)
        for old, new in re.findall(r"ALTER TABLE (\w+) RENAME TO (\w+)", script):
            names = [new if name == old else name for name in names]
    return [name for name in dict.fromkeys(names) if name not in NOT_COPIED]


def copy_ledger(home: Path, target_url: str) -> dict[str, int]:
    """Copy the ledger this process uses into `target_url`; returns rows copied per table.

    Refuses a target that holds anything, and the source itself: nothing is merged or overwritten.
    """
    source_location, target_location = locate(home), parse(target_url)
    if source_location.url == target_location.url or (
        source_location.path is not None and source_location.path == target_location.path
    ):
        raise InputError(f"--to {target_location.shown} is the ledger being copied: name another database")
    if source_location.path is not None and not source_location.path.is_file():
        raise InputError(f"there is no ledger at {source_location.path} to copy: name it with --ledger or --home")
    with Database(home, read_only=True, location=source_location) as source, Database(home, location=target_location) as target:
        held = {table: int(target.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]) for table in tables()}
        if any(held.values()):
            rows = ", ".join(f"{table} {count}" for table, count in held.items() if count)
            raise InputError(
                f"--to {target_location.shown} is not empty ({rows} row(s)): copy into a new, empty database, "
                "so no run is merged with or overwritten by another"
            )
        copied = {}
        with target.transaction() as db:
            for table in tables():
                cursor = source.db.execute(f"SELECT * FROM {table} LIMIT 0")
                columns = [column[0] for column in cursor.description]
                names = ", ".join(columns)
                with source.checked():
                    target.store.insert_many(db, table, columns, source.store.scan(f"SELECT {names} FROM {table}"))
                target.store.follow_keys(db, table)
                copied[table] = int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        return copied
