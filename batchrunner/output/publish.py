"""The one step that makes a finished output visible: written beside it, synced, renamed over it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from batchrunner.atomic import atomic_writer


@contextmanager
def publishing(path: Path, *, site: str) -> Iterator[BinaryIO]:
    """A file to write the whole output into; `path` shows it only once the block ends cleanly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path, site=site) as out:
        yield out
