"""Optional dependencies: what a feature needs beyond the core install, and how to ask for it."""

from __future__ import annotations

from pathlib import Path

PARQUET_INSTALL = "pip install 'batchrunner[parquet]'"


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() == ".parquet"


def has_pyarrow() -> bool:
    """Whether pyarrow can be imported; a Parquet path without it is refused before anything runs."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True
