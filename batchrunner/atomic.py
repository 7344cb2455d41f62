"""Atomic file writes: a reader (or a crash) sees the old file or the whole new one, never a torn one."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from batchrunner.crashpoints import failpoint

# What only a write can fail with; the OS reports them without a file name.
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_folder(path: Path) -> None:
    """Make `path` and any missing parent 0700 whatever the umask (mkdir's parents=True gives
    the parents the umask's mode): a run's spool on a host that had nothing of it yet."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(path: Path) -> None:
    """Delete temp files that writers of `path` left when they were killed mid-write."""
    for temp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = temp.name[len(path.name) + 2 : -len(".tmp")]
        if pid.isdigit() and not _alive(int(pid)):
            temp.unlink(missing_ok=True)


@contextmanager
def naming(path: Path) -> Iterator[None]:
    """Make a full-disk error say which file it hit: write() and fsync() report ENOSPC without one."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None and exc.errno in WRITE_ERRNOS:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


@contextmanager
def atomic_writer(
    path: Path, mode: int = 0o600, *, site: str = "atomic.write", check: Callable[[Path], None] | None = None
) -> Iterator[BinaryIO]:
    """Write to a temp file beside `path`, then fsync, rename over it and fsync the folder: the
    one way batchrunner writes a file, a stream from the API (results, `files download`) included.

    On any error the temp file is removed and `path` is left as it was; temp files of
    writers that were killed are swept first. The pid in the name keeps two writers apart.
    `check` may refuse the whole temp file (e.g. a short download) before it is renamed.
    `site` names this write for BATCHRUNNER_FAIL_WRITE_AT (crashpoints.py).
    """
    remove_stale_temps(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with naming(path):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            with os.fdopen(fd, "wb", buffering=1 << 20) as handle:
                yield handle
                failpoint(site)
                handle.flush()
                os.fsync(handle.fileno())
            if check is not None:
                check(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)


@contextmanager
def publish(target: Path | str, *, site: str) -> Iterator[BinaryIO]:
    """The one way an output is published: a path through `atomic_writer`; an object store URL
    written to a private local temp file first, then uploaded whole (store.put_whole), so the
    object appears whole or not at all and a failed or killed write leaves none."""
    if isinstance(target, Path):
        with atomic_writer(target, site=site) as out:
            yield out
        return
    from batchrunner.store import put_whole

    fd, name = tempfile.mkstemp(prefix=".batchrunner-output.", suffix=".tmp")
    tmp = Path(name)
    try:
        with naming(tmp), os.fdopen(fd, "wb", buffering=1 << 20) as out:
            yield out
            failpoint(site)
        put_whole(tmp, target, site=f"{site}.upload")
    finally:
        tmp.unlink(missing_ok=True)
