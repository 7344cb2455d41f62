"""A run's data in an object store through fsspec: streamed to and from a local spool folder.

Reads stream the object to a spool file (atomically, in chunks) and the stages read that;
writes go to a local file first and are then uploaded in one piece (one PUT, or a multipart
upload that is completed only after its last part), so an object appears whole or not at all.
fsspec and the store's own library are extras; credentials come from each cloud SDK's own
configuration (for S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, profiles,
instance roles), never from batchrunner, and a URL is only ever shown masked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from batchrunner.atomic import atomic_writer, private_folder
from batchrunner.crashpoints import crashpoint, failpoint
from batchrunner.errors import BatchrunnerError, InputError
from batchrunner.extras import store_url_problem
from batchrunner.paths import masked

CHUNK = 8 << 20  # S3's multipart parts must be 5 MB or more


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower()


def check_url(url: str) -> None:
    """Refuse, before anything is written, a URL of an unknown scheme, with credentials in it, or
    whose extra is not installed (exit 2)."""
    problem = store_url_problem(url)
    if problem is not None:
        raise InputError(problem)


def _filesystem(url: str) -> Any:
    """The fsspec filesystem for `url`, once `check_url` lets it through."""
    check_url(url)
    import fsspec

    return fsspec.filesystem(_scheme(url))  # botocore reads AWS_ENDPOINT_URL itself


@contextmanager
def speaking(url: str, doing: str) -> Iterator[None]:
    """A store's failure as one line naming the masked URL; the library's exception (which may
    carry a signed request) is not chained, so no traceback shows it."""
    try:
        yield
    except (BatchrunnerError, KeyboardInterrupt):
        raise
    except FileNotFoundError as exc:
        raise BatchrunnerError(f"{doing} {masked(url)}: {_what_is_missing(url, exc)}") from None
    except Exception as exc:  # botocore, gcsfs and adlfs each raise their own kinds
        reason = str(exc).replace(url, masked(url)) or type(exc).__name__
        raise BatchrunnerError(f"{doing} {masked(url)}: {reason}") from None


def _bucket_of(url: str) -> str:
    """The bucket (or container) a URL names: `s3://bucket/prefix/key` -> `bucket`."""
    return url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]


def _what_is_missing(url: str, exc: FileNotFoundError) -> str:
    """A missing bucket said as such (s3fs: "The specified bucket does not exist"; adlfs:
    ContainerNotFound), so a user fixes the bucket rather than hunts for an object."""
    text = str(exc).lower()
    if "bucket" in text or "container" in text:
        return f"the bucket {_bucket_of(url)} does not exist"
    return "no such object"


def missing_bucket(url: str) -> str | None:
    """Why the bucket of `url` cannot be used, or None: one cheap call (does the bucket exist?)
    before a batch is paid for, rather than a failed upload after it ends. fsspec's `exists`
    answers False for a bucket that is missing, forbidden or unreachable alike."""
    fs = _filesystem(url)
    bucket = _bucket_of(url)
    with speaking(url, "look up"):
        fs.invalidate_cache()
        if fs.exists(bucket):
            return None
    return (
        f"{masked(url)}: the bucket {bucket} does not exist or cannot be reached with this host's credentials: "
        "create it, or correct the URL or the cloud SDK's configuration (for S3: AWS_ENDPOINT_URL, AWS_PROFILE, the keys)"
    )


def put_whole(local: Path, url: str, *, site: str = "store.upload") -> None:
    """Upload a finished local file as the object `url`, whole or not at all: on any error the
    upload is discarded (a multipart upload aborted), so no reader ever sees part of it."""
    fs = _filesystem(url)
    with speaking(url, "upload to"):
        out = fs.open(url, "wb", block_size=CHUNK)
        try:
            with local.open("rb") as source:
                for count, chunk in enumerate(iter(lambda: source.read(CHUNK), b"")):
                    out.write(chunk)  # a full part goes out here, as part of a multipart upload
                    crashpoint("store.uploading")
                    failpoint(site, count + 1)
            out.close()
        except BaseException:
            out.discard()
            out.closed = True  # discarded: closing it (even at garbage collection) would upload the rest
            raise


class RemoteStore:
    """A run folder at an object store URL, with a local spool of the files this host used."""

    def __init__(self, location: str, spool: Path) -> None:
        self.location = location.rstrip("/")
        self.spool = spool
        self.remote = True
        self.fs = _filesystem(location)

    def _url(self, name: str) -> str:
        return f"{self.location}/{name}"

    def fetch(self, name: str) -> Path:
        local = self.spool / name
        if local.exists():
            return local
        private_folder(local.parent)
        url = self._url(name)
        with speaking(url, "download"), self.fs.open(url, "rb", block_size=CHUNK, cache_type="none") as source:
            with atomic_writer(local, site="store.download") as out:
                for chunk in iter(lambda: source.read(CHUNK), b""):
                    out.write(chunk)
        return local

    def publish(self, name: str, local: Path) -> None:
        put_whole(local, self._url(name))
        spooled = self.spool / name
        if local != spooled:
            private_folder(spooled.parent)
            local.replace(spooled)

    def exists(self, name: str) -> bool:
        url = self._url(name)
        with speaking(url, "look up"):
            self.fs.invalidate_cache()  # another host may have written it since this one listed
            return bool(self.fs.exists(url))

    def delete(self, name: str) -> None:
        url = self._url(name)
        with speaking(url, "delete"):
            if self.fs.exists(url):
                self.fs.rm(url)
        (self.spool / name).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> list[str]:
        with speaking(self.location, "list"):
            found = self.fs.find(self.location)
        root = self.location.split("://", 1)[1]
        return sorted(name for path in found if (name := path[len(root) + 1 :]).startswith(prefix))
