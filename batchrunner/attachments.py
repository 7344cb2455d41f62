"""The local files a job's rows attach, checked and content-hashed before anything is sent; pure, no network.

`scan_attachments` streams the rows once and reads each distinct file once: it must exist, have
a type the Messages API reads from a file_id (PDF and plain text as documents; PNG, JPEG, GIF
and WebP as images), look like that type, and fit the size limits. Then its sha256 names it,
so the same content is uploaded once however many rows name it and whatever it is called.

File problems stay in the set, and `compile_job` reports them with every other row problem, once
per file, on the first row that names it; row problems (a missing field, a `type` the file is
not) are compile's to find, since it looks at every row anyway.
"""

from __future__ import annotations

import codecs
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchrunner.inputs import read_rows
from batchrunner.spec import Attachment, JobSpec, shown
from batchrunner.template import value_text

MAX_FILE_BYTES = 500 * 1024 * 1024  # the Files API's limit per file
MAX_IMAGE_BYTES = 5 * 1024 * 1024  # the Messages API's limit per image, however it is sent
CHUNK = 1 << 20
PLACEHOLDER_PREFIX = "file_pending_"

# extension -> (block type, format); the format decides the content check and the upload's type
FORMATS = {
    ".pdf": ("document", "pdf"),
    ".txt": ("document", "text"),
    ".md": ("document", "text"),
    ".png": ("image", "image"),
    ".jpg": ("image", "image"),
    ".jpeg": ("image", "image"),
    ".gif": ("image", "image"),
    ".webp": ("image", "image"),
}
SUPPORTED = "PDF (.pdf) or text (.txt, .md) documents, PNG, JPEG, GIF or WebP images"


@dataclass(frozen=True)
class AttachedFile:
    """One distinct local file, checked and hashed; `mime_type` is what it is uploaded as."""

    path: Path
    sha256: str
    size: int
    kind: str  # document | image
    mime_type: str
    mtime_ns: int

    @property
    def placeholder_id(self) -> str:
        """What `validate` puts where the file id will go: plainly not a real id."""
        return PLACEHOLDER_PREFIX + self.sha256[:12]


@dataclass
class AttachmentSet:
    """Every distinct file a job attaches, keyed by its resolved path, and why the others cannot be."""

    files: dict[str, AttachedFile] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)

    def distinct(self) -> dict[str, AttachedFile]:
        """One file per content: what has to be uploaded."""
        return {f.sha256: f for f in self.files.values()}

    def placeholder_ids(self) -> dict[str, str]:
        """sha256 -> placeholder id, for compiling without uploading (`validate`)."""
        return {sha: f.placeholder_id for sha, f in self.distinct().items()}

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.distinct().values())


class Unattachable(Exception):
    """A row names a file that the scan found cannot be attached (or did not see: the input changed)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def row_path(base: Path, name: str, row: Mapping[str, Any]) -> str:
    """The resolved path in a row's attachment field; a ValueError says what is wrong with the field."""
    if name not in row:
        raise ValueError(f"no `{name}` field for an attachment: add the file's path to the row")
    value = row[name]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"`{name}` should be a file path, relative to the input file's folder (got {value!r})")
    return os.path.normpath(os.path.join(base, os.path.expanduser(value)))


def kind_of(item: Attachment, path: str) -> str:
    """The block type for this file: `type` from the spec must agree with what the file is."""
    kind = FORMATS[Path(path).suffix.lower()][0]
    if item.type is not None and item.type != kind:
        what = "an image" if kind == "image" else "a document"
        raise ValueError(f"`{item.field}`: {Path(path).name} is {what}, but the spec says `type: {item.type}`: "
                         "fix `type` or the path")
    return kind


def scan_attachments(spec: JobSpec) -> AttachmentSet:
    """Check and hash every distinct file the rows attach; memory grows with distinct files, not rows."""
    found = AttachmentSet()
    base = spec.rows_file.parent
    for _, row in read_rows(spec.rows_file, lambda problem: None):  # compile reports bad rows
        for item in spec.attachments or ():
            try:
                path = row_path(base, item.field, row)
            except ValueError:
                continue
            if path in found.files or path in found.problems:
                continue
            try:
                found.files[path] = _check(Path(path))
            except ValueError as exc:
                found.problems[path] = f"`{item.field}`: {exc}"
    return found


def _check(path: Path) -> AttachedFile:
    """Stat, sniff and hash one file; a ValueError says what is wrong and how to fix it."""
    where = shown(path)
    form = FORMATS.get(path.suffix.lower())
    if form is None:
        raise ValueError(f"{where}: unsupported type {path.suffix or '(no extension)'!r}: attach {SUPPORTED}")
    try:
        stat = path.stat()
        if path.is_dir():
            raise ValueError(f"{where} is a folder: name a file")
        limit = MAX_IMAGE_BYTES if form[0] == "image" else MAX_FILE_BYTES
        if stat.st_size > limit:
            what = "the API's limit per image (5 MB)" if form[0] == "image" else "the Files API's limit (500 MB)"
            raise ValueError(f"{where} is {stat.st_size:,} bytes, over {what}: make it smaller or split it")
        if stat.st_size == 0:
            raise ValueError(f"{where} is empty: the API refuses an empty {form[0]}")
        sha256, mime_type = _digest(path, form[1])
    except FileNotFoundError:
        raise ValueError(f"file not found: {where} (paths are relative to the input file's folder)") from None
    except PermissionError:
        raise ValueError(f"cannot read {where}: permission denied") from None
    return AttachedFile(path, sha256, stat.st_size, form[0], mime_type, stat.st_mtime_ns)


_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
                (b"GIF89a", "image/gif"))


def _digest(path: Path, form: str) -> tuple[str, str]:
    """sha256 of the content, streamed, and the type the content shows it is."""
    digest = hashlib.sha256()
    text = codecs.getincrementaldecoder("utf-8")() if form == "text" else None
    with path.open("rb") as handle:
        head = handle.read(CHUNK)
        mime_type = _sniff(shown(path), form, head)
        chunk = head
        while chunk:
            digest.update(chunk)
            if text is not None:
                _decode(text, chunk, shown(path), final=False)
            chunk = handle.read(CHUNK)
    if text is not None:
        _decode(text, b"", shown(path), final=True)
    return digest.hexdigest(), mime_type


def _sniff(where: Path, form: str, head: bytes) -> str:
    if form == "pdf":
        if b"%PDF-" not in head[:1024]:
            raise ValueError(f"{where} does not start like a PDF (no %PDF- header): is it really one?")
        return "application/pdf"
    if form == "text":
        return "text/plain"  # the document block takes plain text; Markdown is sent as such
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    for magic, mime_type in _IMAGE_MAGIC:
        if head.startswith(magic):
            return mime_type
    raise ValueError(f"{where} is not a PNG, JPEG, GIF or WebP image, whatever its name says")


def _decode(decoder: codecs.IncrementalDecoder, chunk: bytes, where: Path, *, final: bool) -> None:
    try:
        decoder.decode(chunk, final)
    except UnicodeDecodeError:
        raise ValueError(f"{where} is not UTF-8 text: save it as UTF-8") from None


def render_blocks(
    items: list[Attachment], base: Path, row: Mapping[str, Any], files: Mapping[str, AttachedFile], file_ids: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The row's document and image blocks, in the spec's order, each naming its file by id.

    A ValueError is a row problem; Unattachable names a file that cannot be attached.
    """
    blocks = []
    for item in items:
        path = row_path(base, item.field, row)
        attached = files.get(path)
        if attached is None:
            raise Unattachable(path)
        kind = kind_of(item, path)
        block: dict[str, Any] = {"type": kind, "source": {"type": "file", "file_id": file_ids[attached.sha256]}}
        if kind == "document":
            if item.title_field is not None:
                if item.title_field not in row:
                    raise ValueError(f"no `{item.title_field}` field for the document title (`title_field`): add it")
                title = row[item.title_field]
                if title not in (None, ""):
                    block["title"] = title if isinstance(title, str) else value_text(title)
            if item.citations:
                block["citations"] = {"enabled": True}
        blocks.append(block)
    return blocks
