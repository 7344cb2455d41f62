"""Optional dependencies: what a feature needs beyond the core install, and how to ask for it."""

from __future__ import annotations

from pathlib import Path

from batchrunner.paths import suffix_of

PARQUET_INSTALL = "pip install 'batchrunner[parquet]'"


def is_parquet(location: Path | str) -> bool:
    return suffix_of(location) == ".parquet"


def has_pyarrow() -> bool:
    """Whether pyarrow can be imported; a Parquet path without it is refused before anything runs."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True
