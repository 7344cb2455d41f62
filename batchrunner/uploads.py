"""Upload a job's attachments once per content and backend, reuse them across runs, delete them after.

Each distinct file (by sha256) goes up once, with purpose `user_data`, and its id is committed
to the ledger right after, so a crash never uploads again what was recorded and the next run
(of this job or any other) reuses it. A remembered id is checked first with one metadata call:
a file deleted on the server, or not visible to this key, is uploaded again. Every call passes
the command's one rate limiter, so uploads run concurrently under it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from batchrunner.client import AsyncApi
from batchrunner.crashpoints import crashpoint
from batchrunner.errors import ApiError, BatchrunnerError, NotFound
from batchrunner.files import check_size
from batchrunner.ledger import Ledger, Run

if TYPE_CHECKING:
    from batchrunner.attachments import AttachedFile, AttachmentSet

PURPOSE = "user_data"
MAX_FILENAME = 255
_NOT_IN_FILENAMES = re.compile(r'[<>:"|?*\\/\x00-\x1f]')  # the Files API refuses these

Notify = Callable[[str], None]


@dataclass(frozen=True)
class Uploaded:
    """A job's attachments on one backend: sha256 -> file id, for compiling and for the ledger."""

    files: AttachmentSet
    file_ids: dict[str, str]
    backend_key: str


async def upload_attachments(api: AsyncApi, ledger: Ledger, files: AttachmentSet, notify: Notify) -> Uploaded:
    """Make every distinct file available on the server, uploading only what it does not have."""
    distinct = files.distinct()
    key = api.backend.files_key
    remembered = ledger.uploaded_files(key, distinct)
    present = await asyncio.gather(*(_still_there(api, file_id, distinct[sha]) for sha, file_id in remembered.items()))
    file_ids = {sha: file_id for (sha, file_id), there in zip(remembered.items(), present, strict=True) if there}
    missing = [attached for sha, attached in distinct.items() if sha not in file_ids]
    if missing:
        notify(f"uploading {len(missing)} attachment(s) ({len(file_ids)} already on the server)")
    elif file_ids:
        notify(f"all {len(file_ids)} attachment(s) already on the server")
    # every upload runs to its end and is recorded, even when another fails: none is lost
    results = await asyncio.gather(*(_upload(api, ledger, key, attached) for attached in missing), return_exceptions=True)
    failed = [result for result in results if isinstance(result, BaseException)]
    if failed:
        raise failed[0]
    file_ids.update((attached.sha256, str(file_id)) for attached, file_id in zip(missing, results, strict=True))
    return Uploaded(files, file_ids, key)


async def _still_there(api: AsyncApi, file_id: str, attached: AttachedFile) -> bool:
    try:
        meta = await api.file_metadata(file_id)
    except NotFound:
        return False
    return bool(meta.get("size_bytes") == attached.size)


async def _upload(api: AsyncApi, ledger: Ledger, key: str, attached: AttachedFile) -> str:
    stat = attached.path.stat()
    if (stat.st_size, stat.st_mtime_ns) != (attached.size, attached.mtime_ns):
        raise BatchrunnerError(f"{attached.path} changed while the job was being prepared; run the command again")
    check_size(attached.path)
    name = upload_name(attached.path)
    meta = await api.upload_file(attached.path, filename=name, mime_type=attached.mime_type, purpose=PURPOSE)
    ledger.record_file_upload(attached.sha256, key, meta["id"], name, attached.size)
    crashpoint("attachments.uploaded")
    return str(meta["id"])


def upload_name(path: Path) -> str:
    """The file's name as the Files API takes it: 1-255 characters, none of < > : " | ? * \\ / or controls."""
    name = _NOT_IN_FILENAMES.sub("_", path.name)
    if len(name) > MAX_FILENAME:
        suffix = path.suffix[:16]
        name = name[: MAX_FILENAME - len(suffix)] + suffix
    return name


async def delete_attachments(api: AsyncApi, ledger: Ledger, run: Run, notify: Notify) -> None:
    """Delete the run's attachments that no other run still needs (`keep_attachments: false`).

    A failure is a notice, not an error: the output is written by now, and a later
    `batchrunner collect` of the run tries again.
    """
    doomed = ledger.attachments_to_delete(run)
    if not doomed:
        return
    errors = [error for error in await asyncio.gather(*(_delete(api, ledger, *pair) for pair in doomed)) if error]
    notify(f"deleted {len(doomed) - len(errors)} attachment(s) from the server (keep_attachments: false)")
    if errors:
        notify(f"could not delete {len(errors)} attachment(s) ({errors[0].message}); "
               f"`batchrunner collect {run.id}` tries again")


async def _delete(api: AsyncApi, ledger: Ledger, sha256: str, file_id: str) -> ApiError | None:
    try:
        await api.delete_file(file_id)
    except NotFound:
        pass
    except ApiError as error:
        return error
    ledger.mark_attachment_deleted(sha256, file_id)
    crashpoint("attachments.deleted")
    return None
