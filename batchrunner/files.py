"""Files API operations as library calls: upload, list, info, download, delete; sync and async.

Each takes an `Api` from client.py and returns plain dicts. Errors are batchrunner's typed
errors (NotFound, NotDownloadable, TooLarge, StorageFull, ApiError), translated at client.py's
one boundary with the SDK's own exception kept as `__cause__`. The async variants run the same
calls on a worker thread, as the pipeline does: there is one client code path (DESIGN §2).
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO

from batchrunner.atomic import atomic_writer
from batchrunner.client import Api, backoff, connect as connect_backend, resolve_backend
from batchrunner.errors import ApiError, InputError, NotDownloadable, NotFound, ServerDataLost, TooLarge

MAX_UPLOAD_BYTES = 500 * 1024 * 1024  # the Files API's limit per file
DOWNLOAD_ATTEMPTS = 10  # reads retry freely; with backoff, 10 tries span about four minutes
PURPOSES = ("batch", "user_data")
DEFAULT_PURPOSE = "user_data"
DEFAULT_LIMIT = 20
# Types the standard table may not know; everything else comes from `mimetypes`.
MIME_TYPES = {".jsonl": "application/jsonl", ".md": "text/markdown"}


def connect(home: Path, *, backend: str | None = None) -> AbstractContextManager[Api]:
    """An `Api` for these calls, closed on leaving: `backend` is "anthropic", "local" or None (auto,
    as the CLI: anthropic when ANTHROPIC_API_KEY is set); `local` keeps its files under `home`."""
    return connect_backend(resolve_backend(backend, None, os.environ), home)


def mime_type(path: Path) -> str:
    """What the upload's part says it is; the API keeps it as the file's `mime_type`."""
    known = MIME_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    return known or "application/octet-stream"


def check_size(path: Path) -> int:
    """Refuse a file over the limit before sending a byte of it."""
    size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise TooLarge(
            f"{path}: too large: {size:,} bytes is over the Files API's limit of "
            f"{MAX_UPLOAD_BYTES:,} bytes (500 MB) per file; nothing was uploaded"
        )
    return size


def upload_file(
    api: Api, path: Path, *, purpose: str = DEFAULT_PURPOSE, filename: str | None = None, kind: str | None = None
) -> dict[str, Any]:
    """Upload `path`, sending `purpose` as a form field; a server that refuses the field gets it without.

    `filename` and `kind` (the MIME type) default to the path's name and what its extension says.
    Returns the file's metadata plus `purpose_accepted`: False when the upload had to go without it.
    """
    if purpose not in PURPOSES:
        raise InputError(f"purpose {purpose!r}: use one of {', '.join(PURPOSES)}")
    check_size(path)
    return api.upload_file(path, filename=filename or path.name, mime_type=kind or mime_type(path), purpose=purpose)


def list_files(
    api: Api,
    *,
    limit: int = DEFAULT_LIMIT,
    after_id: str | None = None,
    before_id: str | None = None,
    all_pages: bool = False,
) -> dict[str, Any]:
    """Files newest first, as `{data, has_more, first_id, last_id}`; `limit` is the page size.

    `after_id` pages toward older files, `before_id` toward newer ones; with `all_pages`, every
    page in that direction. The two cursors are exclusive: the direction must be unambiguous.
    """
    if after_id and before_id:
        raise InputError("give --after-id or --before-id, not both: they page in opposite directions")
    if not 1 <= limit <= 1000:
        raise InputError(f"limit {limit}: use 1 to 1000")
    if before_id:
        data, has_more = _newer(api, limit, before_id, all_pages)
    elif all_pages:
        data, has_more = list(api.iter_files(limit=limit, after_id=after_id)), False
    else:
        page = api.files_page(limit=limit, after_id=after_id)
        data, has_more = page["data"], page["has_more"]
    return {
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


def _newer(api: Api, limit: int, before_id: str, all_pages: bool) -> tuple[list[dict[str, Any]], bool]:
    """Page toward newer files: each page goes in front of the ones already read, keeping newest first."""
    found: list[dict[str, Any]] = []
    while True:
        page = api.files_page(limit=limit, before_id=before_id)
        found = page["data"] + found
        if not (all_pages and page["has_more"] and page["data"]):
            return found, page["has_more"] and not all_pages
        before_id = page["first_id"]


def file_info(api: Api, file_id: str) -> dict[str, Any]:
    """The file's metadata: name, size, type, created, whether it is downloadable."""
    return api.file_metadata(file_id)


async def stream_to_file(
    dest: Path,
    stream: Callable[[BinaryIO], Awaitable[int]],
    *,
    mode: int = 0o600,
    site: str = "atomic.write",
    check: Callable[[Path], None] | None = None,
    on_restart: Callable[[str], None] = lambda message: None,
) -> int:
    """The one way a stream from the API becomes a file: written atomically (atomic_writer, with
    `check` judging the whole temp file), and a broken stream, or one `check` refuses, started
    again with backoff. What cannot come back (not found, not downloadable, the server's data
    lost) is raised at once. Returns the bytes written."""
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        try:
            with atomic_writer(dest, mode, site=site, check=check) as out:
                return await stream(out)
        except (NotFound, NotDownloadable, ServerDataLost):
            raise
        except ApiError as exc:
            if attempt == DOWNLOAD_ATTEMPTS:
                raise
            on_restart(f"{exc.message}; downloading again ({attempt + 1}/{DOWNLOAD_ATTEMPTS})")
            await asyncio.sleep(backoff(attempt, first=0.5, cap=60.0))
    raise AssertionError("unreachable")


def download_file(api: Api, file_id: str, dest: Path) -> dict[str, Any]:
    """Stream the file's content to `dest`, atomically: on any error `dest` is left as it was."""
    return asyncio.run(download_file_async(api, file_id, dest))


def delete_file(api: Api, file_id: str) -> dict[str, Any]:
    """Delete the file on the server; it cannot be recovered."""
    return api.delete_file(file_id)


async def upload_file_async(api: Api, path: Path, *, purpose: str = DEFAULT_PURPOSE) -> dict[str, Any]:
    return await asyncio.to_thread(upload_file, api, path, purpose=purpose)


async def list_files_async(
    api: Api,
    *,
    limit: int = DEFAULT_LIMIT,
    after_id: str | None = None,
    before_id: str | None = None,
    all_pages: bool = False,
) -> dict[str, Any]:
    return await asyncio.to_thread(
        list_files, api, limit=limit, after_id=after_id, before_id=before_id, all_pages=all_pages
    )


async def file_info_async(api: Api, file_id: str) -> dict[str, Any]:
    return await asyncio.to_thread(file_info, api, file_id)


async def download_file_async(api: Api, file_id: str, dest: Path) -> dict[str, Any]:
    if not dest.parent.is_dir():
        raise InputError(f"{dest}: the folder {dest.parent} does not exist")
    if dest.is_dir():
        raise InputError(f"{dest}: is a folder; give the path of the file to write")
    written = await stream_to_file(dest, lambda out: asyncio.to_thread(api.download_file, file_id, out), mode=0o666)
    return {"id": file_id, "path": str(dest), "bytes": written}


async def delete_file_async(api: Api, file_id: str) -> dict[str, Any]:
    return await asyncio.to_thread(delete_file, api, file_id)
