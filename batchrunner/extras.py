"""Optional dependencies: what a feature needs beyond the core install, and how to ask for it."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from batchrunner.paths import has_secret, masked, suffix_of

PARQUET_INSTALL = "pip install 'batchrunner[parquet]'"
STORE_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure"}
EXTRA_LIBRARIES = {"s3": "s3fs", "gcs": "gcsfs", "azure": "adlfs"}  # each beside fsspec


def is_parquet(location: Path | str) -> bool:
    return suffix_of(location) == ".parquet"


def has_pyarrow() -> bool:
    """Whether pyarrow can be imported; a Parquet path without it is refused before anything runs."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def store_url_problem(url: str) -> str | None:
    """Why an object store URL (`output:` or `--store`) cannot be used, or None: an unknown scheme,
    credentials in it, or its extra not installed. Offline, so `validate` holds a spec's `output:`
    to the rules `submit` does; the URL is shown masked."""
    scheme = url.split("://", 1)[0].lower()
    extra = STORE_EXTRAS.get(scheme)
    if extra is None:
        return (
            f"{masked(url)}: batchrunner stores run data and output in a local folder or at "
            f"s3://, gs:// or az:// URLs, not {scheme}://"
        )
    if has_secret(url):
        return (
            f"{masked(url)}: credentials do not go in the URL, where logs and the ledger would keep them; "
            "use the cloud SDK's own configuration (for S3: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile or a role)"
        )
    if find_spec("fsspec") is None or find_spec(EXTRA_LIBRARIES[extra]) is None:  # found, not imported: only store/ imports fsspec
        return f"{masked(url)}: needs the {extra} extra: pip install 'batchrunner[{extra}]'"
    return None
