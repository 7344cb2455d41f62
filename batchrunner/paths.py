"""How messages show a path, and whether two paths name one file: small, so any command may use them."""

from __future__ import annotations

import os
from pathlib import Path


def shown(path: Path) -> Path:
    """A path as messages show it: relative to the working folder when inside it, else absolute."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def same_file(a: Path, b: Path | None) -> bool:
    """Whether two paths name one file: through symlinks (real paths), or hard links (device and inode)."""
    if b is None:
        return False
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False
