"""The per-run lock on a SQLite ledger: one process works on a run at a time (DESIGN §6); a second
exits 75. (On PostgreSQL the lock is an advisory lock of the command's connection: postgres.py.)"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from batchrunner.errors import RunLocked


@contextmanager
def run_lock(home: Path, run_id: str) -> Iterator[None]:
    """Hold the exclusive lock of one run, or fail at once naming the process that has it.

    The lock is on a separate file (never the database: closing any descriptor of a file drops
    POSIX locks on it), and the kernel releases it when the holder dies, even by SIGKILL.
    """
    locks = home / "locks"
    locks.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = locks / f"{run_id}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise RunLocked(
                f"run {run_id} is being worked on by {holder}; wait for it to finish, or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)

