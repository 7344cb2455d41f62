"""How messages show a path, and whether two paths name one file: small, so any command may use them."""

from __future__ import annotations

import os
import re
from pathlib import Path

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/@]*)@")
_SECRET_QUERY = re.compile(r"(?i)([?&][a-z_-]*(?:sig|signature|token|secret|key|password|credential)[a-z_-]*=)[^&#]*")


def is_url(location: str | Path) -> bool:
    """Whether an output or store location is a URL (scheme://…) rather than a local path."""
    return isinstance(location, str) and _URL.match(location) is not None


def suffix_of(location: Path | str) -> str:
    """The extension of a path, or of the path part of a URL (`s3://b/out.csv?x` -> `.csv`), lowercased."""
    if isinstance(location, str) and is_url(location):
        location = Path(location.split("://", 1)[1].split("?", 1)[0].split("#", 1)[0])
    return Path(location).suffix.lower()


def masked(url: str) -> str:
    """A URL as messages and records show it: user info and secret-looking query values hidden."""
    return _SECRET_QUERY.sub(r"\1***", _USERINFO.sub(r"\1***@", url))


def has_secret(url: str) -> bool:
    """Whether a URL carries credentials (user info, a signature or key in its query)."""
    return masked(url) != url


def shown_target(target: Path | str) -> Path | str:
    """An output or store location as messages show it: a path as `shown`, a URL masked."""
    return masked(target) if isinstance(target, str) else shown(target)


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


def same_target(a: Path | str, b: Path | str) -> bool:
    """Whether two output locations are one: two URLs by their text, two paths as `same_file`."""
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return same_file(a, b)
