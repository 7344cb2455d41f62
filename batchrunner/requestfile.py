"""Request files: the one owner of their names, their line format and their framing.

A run folder holds `rows.jsonl` (the input rows as read) and one request file per batch:
`requests-NNN.jsonl` for the first attempt, `attempt-K/requests-NNN.jsonl` for a retry. Each
line is one validated request, `{"custom_id":"<id>","params":{...}}`, custom_id first, so its
id is read without parsing the line, and no line holds a raw newline (JSON escapes them), so a
create body is the file's bytes with each line break turned into a comma. Compile writes the
files (through a temp file, sealed to disk, renamed only when the whole job compiled), submit
frames them, collect and pipeline read their ids and first params, retry copies chosen lines.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from batchrunner.atomic import atomic_writer
from batchrunner.crashpoints import failpoint

ROWS_NAME = "rows.jsonl"
CUSTOM_ID_PREFIX = b'{"custom_id":"'
BODY_PREFIX = b'{"requests":['
BODY_SUFFIX = b"]}"
BODY_FRAMING = len(BODY_PREFIX) + len(BODY_SUFFIX)  # what a create body adds to its lines
READ_CHUNK = 1 << 20
WRITE_BUFFER = 1 << 20


def shard_name(index: int) -> str:
    """The file name of shard `index` of the first attempt, in the run folder."""
    return f"requests-{index:03d}.jsonl"


def attempt_name(attempt: int, shard: int) -> str:
    """A retry attempt's request file for `shard`, relative to the run folder: sharded as the original."""
    return f"attempt-{attempt}/{shard_name(shard)}"


def encode_line(custom_id: str, params: dict[str, Any]) -> bytes:
    """One request line, newline included; compile encodes its line template with this once.

    The params are written with sorted keys, so a line's params bytes are its canonical body and
    the answer cache's key hashes them as they are (request_key.compiled_key), without parsing."""
    return b'{"custom_id":%b,"params":%b}\n' % (orjson.dumps(custom_id), orjson.dumps(params, option=orjson.OPT_SORT_KEYS))


# ---------------------------------------------------------------- writing


def open_temp(folder: Path, final_name: str) -> tuple[Path, IO[bytes]]:
    """A hidden temp file beside `final_name`, which `commit` renames into place."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=f".{final_name}.", suffix=".tmp")
    return Path(name), os.fdopen(fd, "wb", buffering=WRITE_BUFFER)


def seal(file: IO[bytes]) -> None:
    """A finished file goes to disk and its buffer is freed, so memory does not grow with shards."""
    failpoint("compile.write")
    file.flush()
    os.fsync(file.fileno())
    file.close()


def commit(tmp: Path, final: Path) -> None:
    """A sealed temp file takes its final name (the caller syncs the folder once, after the last)."""
    os.replace(tmp, final)


def discard(file: IO[bytes] | None, tmp: Path | None) -> None:
    if file is not None:
        file.close()
    if tmp is not None:
        tmp.unlink(missing_ok=True)


def copy_lines(source: Path, first_seq: int, seqs: Iterable[int], dest: Path) -> int:
    """Write the lines of `source` at input positions `seqs` (ascending; its first line is at
    `first_seq`) byte for byte to `dest`, atomically; returns the bytes written."""
    wanted = iter(seqs)
    next_wanted = next(wanted, None)
    size = 0
    with atomic_writer(dest, site="retry.write") as out:
        for seq, line in enumerate(iter_lines(source), start=first_seq):
            if next_wanted is None:
                break
            if seq == next_wanted:
                out.write(line + b"\n")
                size += len(line) + 1
                next_wanted = next(wanted, None)
    return size


def copy_lines_with_ids(source: Path, custom_ids: set[str], dest: Path) -> int:
    """Write the lines of `source` whose custom_id is in `custom_ids` byte for byte to `dest`,
    atomically; returns the bytes written. For request files that are not one stretch of the
    input (a run whose cached and duplicate rows were not sent)."""
    start = len(CUSTOM_ID_PREFIX)
    size = 0
    with atomic_writer(dest, site="retry.write") as out:
        for line in iter_lines(source):
            if line[start : line.index(b'"', start)].decode() in custom_ids:
                out.write(line + b"\n")
                size += len(line) + 1
    return size


# ---------------------------------------------------------------- reading


def iter_lines(path: Path) -> Iterator[bytes]:
    """Non-blank lines of a JSONL file (a request file, or a batch's results), read in large chunks."""
    with path.open("rb", buffering=READ_CHUNK) as handle:
        for line in handle:
            line = line.rstrip(b"\r\n")
            if line:
                yield line


def count_lines(path: Path) -> int:
    return sum(1 for _ in iter_lines(path))


def request_ids(path: Path) -> Iterator[str]:
    """The custom_ids of a request file in order, read from each line's fixed prefix."""
    start = len(CUSTOM_ID_PREFIX)
    for line in iter_lines(path):
        yield line[start : line.index(b'"', start)].decode()


def first_params(path: Path) -> dict[str, Any]:
    """The params of a request file's first line: every request of a run shares its model and params."""
    params: dict[str, Any] = orjson.loads(next(iter_lines(path)))["params"]
    return params


def create_body(path: Path) -> tuple[int, Iterator[bytes]]:
    """The create body `{"requests":[...]}` streamed from the request file, never re-encoded:
    its size, and its bytes in chunks."""
    size = path.stat().st_size

    def chunks() -> Iterator[bytes]:
        yield BODY_PREFIX
        with path.open("rb") as handle:
            previous = handle.read(READ_CHUNK)
            while previous:
                current = handle.read(READ_CHUNK)
                if not current:
                    previous = previous[:-1] if previous.endswith(b"\n") else previous
                yield previous.replace(b"\n", b",")
                previous = current
        yield BODY_SUFFIX

    trailing_newline = 1 if size else 0
    return BODY_FRAMING + size - trailing_newline, chunks()
