"""Where a run's data lives: its request files, rows file and raw results (DESIGN §11).

A run records one location: a local folder (the default, `<home>/runs/<id>`) or an object
store URL (`s3://bucket/prefix/<id>`, `gs://…`, `az://…`, through fsspec). Every stage
reads a file as a local path (`fetch`) and hands a finished local file back (`publish`), so a
local run has no copy and no extra step, and a remote run keeps a local spool of what it used.

    local.py    the folder itself
    remote.py   an fsspec filesystem, streamed through a local spool; the extras it needs
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from batchrunner.paths import is_url
from batchrunner.store.local import LocalStore
from batchrunner.store.remote import RemoteStore, check_url, missing_bucket, put_whole

__all__ = [
    "LocalStore", "RemoteStore", "Store", "check_url", "missing_bucket", "open_store", "put_whole", "run_data", "runs_location",
]


class Store(Protocol):
    """The operations the pipeline needs of a run's data, by name relative to the run's folder."""

    location: str
    remote: bool  # False: the files are the folder's own, with no copy

    def fetch(self, name: str) -> Path:
        """A local file holding the object, for streaming reads."""
        ...

    def publish(self, name: str, local: Path) -> None:
        """Make a finished local file the object `name`, whole or not at all."""
        ...

    def exists(self, name: str) -> bool: ...

    def delete(self, name: str) -> None: ...

    def list(self, prefix: str = "") -> list[str]: ...


def open_store(location: str, spool: Path) -> Store:
    """The store at `location`; a remote one keeps the files it fetches or publishes under `spool`."""
    if is_url(location):
        return RemoteStore(location, spool)
    return LocalStore(Path(location))


class KeepsData(Protocol):
    """What a run (ledger.Run) says of where its data is."""

    @property
    def store(self) -> str: ...

    @property
    def run_dir(self) -> Path: ...


def run_data(run: KeepsData) -> Store:
    """A run's data, wherever the run keeps it (this host's folder is the spool of a remote store)."""
    return open_store(run.store, run.run_dir)


def runs_location(store: str | None, home: Path) -> str | None:
    """The folder that holds new runs' folders under `--store` (a run's is `<store>/<run id>`):
    None for the default, the state home's `runs/`."""
    if store is None or store == "":
        return None
    if is_url(store):
        check_url(store)
        return store.rstrip("/")
    return str(Path(store).resolve())
