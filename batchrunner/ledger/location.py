"""Where the ledger is: `sqlite:///path` (default: the state home's file) or `postgresql://...`.

`--ledger` / BATCHRUNNER_LEDGER name it. A URL may carry a password: it is shown only through
`masked`, and nothing the ledger stores holds the URL.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from batchrunner import settings
from batchrunner.errors import InputError

LEDGER_FILE = "ledger.sqlite3"
POSTGRES_SCHEMES = ("postgresql", "postgres")

_selected: str | None = None  # --ledger, set by the CLI for this invocation
_PASSWORD = re.compile(r"(?P<head>://[^/@:]*:)(?P<password>[^@/]*)(?P<tail>@)")
_PASSWORD_PARAM = re.compile(r"(?P<head>[?&]password=)(?P<password>[^&]*)", re.IGNORECASE)


def select(url: str | None) -> None:
    """The ledger the command line named (None: BATCHRUNNER_LEDGER, else the state home's)."""
    global _selected
    _selected = url


def masked(url: str) -> str:
    """The URL as it may be shown: postgresql://user:***@host/db."""
    return _PASSWORD_PARAM.sub(r"\g<head>***", _PASSWORD.sub(r"\g<head>***\g<tail>", url))


@dataclass(frozen=True)
class Location:
    url: str  # as given, possibly with a password: pass it to the driver, show `shown`
    path: Path | None  # the SQLite file, or None for PostgreSQL

    @property
    def shown(self) -> str:
        return masked(self.url) if self.path is None else str(self.path)

    @property
    def is_postgres(self) -> bool:
        return self.path is None


def parse(url: str) -> Location:
    """A ledger URL, or exit 2 saying which forms there are."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        path = unquote(url[len("sqlite://"):]) if url.lower().startswith("sqlite://") else ""
        if not path.startswith("/") or path == "/":
            raise InputError(f"ledger {masked(url)!r}: a SQLite ledger is sqlite:///absolute/path/ledger.sqlite3 (three slashes)")
        return Location(url, Path(path))
    if scheme in POSTGRES_SCHEMES:
        return Location(url, None)
    raise InputError(
        f"ledger {masked(url)!r}: give sqlite:///path/ledger.sqlite3 or postgresql://user@host/db "
        f"(--ledger or {settings.LEDGER})"
    )


def locate(home: Path) -> Location:
    """The ledger this process uses: --ledger, else BATCHRUNNER_LEDGER, else the state home's file."""
    url = _selected or os.environ.get(settings.LEDGER)
    if url:
        return parse(url)
    path = home / LEDGER_FILE
    return Location(f"sqlite:///{Path(os.path.abspath(path))}", path)
