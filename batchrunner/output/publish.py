"""The one step that makes a finished output visible: a file written beside it, synced, renamed
over it; or, for an object store URL, a local file uploaded whole (atomic.publish)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from batchrunner.atomic import publish


@contextmanager
def publishing(target: Path | str, *, site: str) -> Iterator[BinaryIO]:
    """A file to write the whole output into; `target` shows it only once the block ends cleanly."""
    if isinstance(target, Path):
        target.parent.mkdir(parents=True, exist_ok=True)
    with publish(target, site=site) as out:
        yield out
