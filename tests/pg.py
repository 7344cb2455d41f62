"""A real PostgreSQL 15 server on loopback for the tests and the ledger benchmark.

PostgreSQL refuses to run as root, so as root its programs run as the `postgres` user. The
server asks for a password on TCP (scram), so a URL's password is really used.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(os.environ.get("BATCHRUNNER_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER_PASSWORD = "pg-test-superuser"


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def server() -> Iterator[str]:
    """Start a throwaway server (fsync off: the tests kill clients, not the server); yield the
    URL of its `postgres` database; stop it and delete its files at the end."""
    root = Path(tempfile.mkdtemp(prefix="batchrunner-pg-"))
    data, pwfile = root / "data", root / "pw"
    pwfile.write_text(SUPERUSER_PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(pwfile, "postgres")
    port = _free_port()
    run = {"check": True, "capture_output": True, "text": True, "timeout": 120}
    try:
        subprocess.run(
            _as_postgres([str(BIN / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}",
                          "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"]),
            **run,  # type: ignore[call-overload]
        )
        subprocess.run(
            _as_postgres([str(BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60",
                          "-o", f"-p {port} -k {root} -h 127.0.0.1 -F -c max_connections=200", "start"]),
            **run,  # type: ignore[call-overload]
        )
    except (OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        detail = getattr(exc, "stderr", "") or ""
        raise RuntimeError(f"PostgreSQL did not start: {exc} {detail}") from exc
    try:
        yield f"postgresql://postgres:{SUPERUSER_PASSWORD}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def database_url(admin_url: str, name: str) -> str:
    """The URL of database `name` on the server `admin_url` points at."""
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


def create_database(admin_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0'.encode())
    return database_url(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
