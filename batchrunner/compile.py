"""Turns a job spec and its rows into request lines, sharded under the batch limits; pure, no network.

Each request line is `{"custom_id":"<id>","params":{...}}` with `custom_id` first, so later stages
can read ids without parsing. The spec's static parts were validated against the Messages API
shape when it was loaded; here each row only fills in the template texts, so a line is built
from pre-serialized byte chunks and the per-row work stays small. Every shard is written to a
temp file and renamed into place only when the whole job compiled cleanly.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from batchrunner import requestfile
from batchrunner.atomic import fsync_dir, naming
from batchrunner.attachments import (
    AttachmentSet,
    Unattachable,
    render_blocks,
    scan_attachments,
)
from batchrunner.catalog import Catalog, ModelEntry
from batchrunner.errors import BudgetExceeded, Problem, RowError, SpecError
from batchrunner.inputs import SUFFIXES_TEXT, exact_row, input_suffix, read_rows_raw
from batchrunner.pricing import batch_cost_usd, estimate_tokens, usd
from batchrunner.rules import Violation, check_request, dotted
from batchrunner.spec import MAX_BATCH_SIZE, JobSpec, load_spec, shown
from batchrunner.template import InexactNumber, Template, template_sources


class Planner(Protocol):
    """What decides which requests are sent (answer_cache.Planner): compile gives it each request
    and the function that writes a request to the shards."""

    emit: Callable[[int, bytes], None]
    sent: int

    def add(self, seq: int, custom_id: str, line: bytes) -> None: ...

    def finish(self) -> None: ...

    def to_dict(self) -> dict[str, Any]: ...

MAX_BATCH_REQUESTS = MAX_BATCH_SIZE
MAX_BATCH_BYTES = 240_000_000  # the API allows 256 MB per batch; leave headroom
MAX_ROW_PROBLEMS = 20

_CUSTOM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class Shard:
    """One future message batch: a contiguous run of requests in input order."""

    index: int
    path: Path | None
    requests: int
    bytes: int
    first_seq: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "path": None if self.path is None else str(self.path),
            "requests": self.requests,
            "bytes": self.bytes,
            "first_seq": self.first_seq,
        }


@dataclass(frozen=True)
class CompileReport:
    """What a job compiles to, and what it may cost at batch prices."""

    requests: int
    shards: list[Shard]
    bytes: int
    estimated_input_tokens: int
    cost_low_usd: float | None
    cost_high_usd: float | None
    model: str
    rows_path: Path | None
    attachments: AttachmentSet | None = None  # the files the rows attach, when the spec has `attachments`
    warnings: list[Problem] = field(default_factory=list)  # e.g. a model the catalog does not know
    cache: dict[str, Any] | None = None  # with the answer cache: requests sent, cached, duplicates, and the cost to send

    def to_dict(self) -> dict[str, Any]:
        out = {
            "requests": self.requests,
            "shards": [shard.to_dict() for shard in self.shards],
            "bytes": self.bytes,
            "estimated_input_tokens": self.estimated_input_tokens,
            "cost_low_usd": self.cost_low_usd,
            "cost_high_usd": self.cost_high_usd,
            "model": self.model,
            "rows_path": None if self.rows_path is None else str(self.rows_path),
            "warnings": [warning.to_dict() for warning in self.warnings],
        }
        if self.attachments is not None:
            out["attachments"] = {"files": len(self.attachments.distinct()), "bytes": self.attachments.total_bytes}
        if self.cache is not None:
            out["cache"] = self.cache
        return out


CUSTOM_ID_SLOT = "custom_id"
ATTACHMENTS_SLOT = "attachments"

# ---------------------------------------------------------------- the request line


class _LineTemplate:
    """A request line as fixed byte chunks with slots for the custom_id, each row-dependent text and
    the row's attachment blocks.

    Texts without placeholders are baked into the chunks, so a row only renders what varies.
    """

    def __init__(self, spec: JobSpec, entry: ModelEntry | None = None) -> None:
        sources = template_sources(spec.prompt, spec.messages)
        templates = [Template.parse(text) for _, text in sources]
        token = uuid.uuid4().hex
        marks = [f"\x00{token}:{k}\x00" for k in range(len(sources) + 2)]  # [0] custom_id, [-1] attachments
        attachments_mark = marks[-1] if spec.attachments else None
        body = requestfile.encode_line(marks[0], _params(spec, iter(marks[1:-1]), attachments_mark, entry))
        found: list[tuple[bytes, str, Template | None]] = [(orjson.dumps(marks[0]), CUSTOM_ID_SLOT, None)]
        for k, ((source_key, _text), source_template) in enumerate(zip(sources, templates, strict=True)):
            if source_template.fields:
                found.append((orjson.dumps(marks[k + 1]), ".".join(str(p) for p in source_key), source_template))
            else:
                body = body.replace(orjson.dumps(marks[k + 1]), orjson.dumps(source_template.render({})))
        if attachments_mark is not None:
            found.append((orjson.dumps(attachments_mark), ATTACHMENTS_SLOT, None))
        found.sort(key=lambda slot: body.index(slot[0]))
        self.slots: list[tuple[int, str, Template]] = []  # (index in a row's parts, key, template) per text slot
        self.attachments_part: int | None = None  # where the row's blocks go, comma-joined, in the content list
        self.chunks: list[bytes] = []
        pos = 0
        for i, (encoded, key, template) in enumerate(found):
            at = body.index(encoded, pos)
            # a custom_id needs no escaping (it matches [A-Za-z0-9_-]), so its quotes stay in the chunks
            quote = 1 if key == CUSTOM_ID_SLOT else 0
            self.chunks.append(body[pos : at + quote])
            pos = at + len(encoded) - quote
            if template is not None:
                self.slots.append((2 * i + 1, key, template))
            elif key == ATTACHMENTS_SLOT:
                self.attachments_part = 2 * i + 1
        self.chunks.append(body[pos:])
        self.static_text_bytes = _static_text_bytes(spec) + sum(
            len(template.render({}).encode()) for template in templates if not template.fields
        )


def _params(spec: JobSpec, marks: Any, attachments_mark: str | None, entry: ModelEntry | None = None) -> dict[str, Any]:
    """The request params in API order, with each template text replaced by the next mark, and the
    attachment blocks (a mark in the content list) before the prompt's text; with the model's
    `entry` and `prompt_cache: auto`, the shared prefix marked for prompt caching."""
    params: dict[str, Any] = {"model": spec.model, "max_tokens": spec.max_tokens}
    if spec.system is not None:
        params["system"] = spec.system
    if spec.prompt is not None:
        text = next(marks)
        content = text if attachments_mark is None else [attachments_mark, {"type": "text", "text": text}]
        params["messages"] = [{"role": "user", "content": content}]
    else:
        messages: list[dict[str, Any]] = []
        for message in spec.messages or []:
            turn: Any = message["content"]
            if isinstance(turn, str):
                turn = next(marks)
            else:
                turn = [dict(block, text=next(marks)) if block["type"] == "text" else block for block in turn]
            messages.append({"role": message["role"], "content": turn})
        params["messages"] = messages
    params.update((k, v) for k, v in spec.params.items() if k != "output_config")
    output_config = dict(spec.params.get("output_config") or {})
    if spec.output_schema is not None:
        output_config["format"] = {"type": "json_schema", "schema": spec.output_schema}
    if output_config:
        params["output_config"] = output_config
    if entry is not None and spec.prompt_cache == "auto":
        _mark_shared_prefix(spec, params, entry)
    return params


EPHEMERAL = {"type": "ephemeral"}


def _mark_shared_prefix(spec: JobSpec, params: dict[str, Any], entry: ModelEntry) -> None:
    """Put `cache_control` on the last block of what every request shares (tools, system, and the
    turns before the first one with a placeholder), when it is long enough for the model to cache
    (estimated as compile estimates tokens). A spec that marks blocks itself is left as written."""
    if b"cache_control" in orjson.dumps([spec.system, spec.messages, spec.params.get("tools")]):
        return
    templated = {
        key[1] for key, text in template_sources(spec.prompt, spec.messages) if key[0] == "messages" and Template.parse(text).fields
    }
    shared = 0
    if spec.messages is not None:
        while shared < len(spec.messages) and shared not in templated:
            shared += 1
    size = len(orjson.dumps(spec.params["tools"])) if "tools" in spec.params else 0
    if isinstance(spec.system, str):
        size += len(spec.system.encode())
    elif spec.system is not None:
        size += sum(len(block.get("text", "").encode()) for block in spec.system)
    for message in (spec.messages or [])[:shared]:
        content = message["content"]
        size += len(content.encode()) if isinstance(content, str) else len(orjson.dumps(content))
    if estimate_tokens(size) < max(entry.min_cacheable_tokens, 1) or not (shared or spec.system or "tools" in params):
        return
    if shared:
        turn = params["messages"][shared - 1]
        content = turn["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
        blocks[-1] = dict(blocks[-1], cache_control=EPHEMERAL)
        turn["content"] = blocks
    elif spec.system is not None:
        system = params["system"]
        blocks = [{"type": "text", "text": system}] if isinstance(system, str) else list(system)
        blocks[-1] = dict(blocks[-1], cache_control=EPHEMERAL)
        params["system"] = blocks
    else:
        tools = list(params["tools"])
        tools[-1] = dict(tools[-1], cache_control=EPHEMERAL)
        params["tools"] = tools


def _static_text_bytes(spec: JobSpec) -> int:
    """Bytes of the text every request carries besides its templates: system, tools, schema."""
    total = 0
    if isinstance(spec.system, str):
        total += len(spec.system.encode())
    elif spec.system is not None:
        total += sum(len(block["text"].encode()) for block in spec.system)
    if "tools" in spec.params:
        total += len(orjson.dumps(spec.params["tools"]))
    if spec.output_schema is not None:
        total += len(orjson.dumps(spec.output_schema))
    return total


# ---------------------------------------------------------------- the API's rules, offline


def check_spec_request(spec: JobSpec, catalog: Catalog | None = None) -> tuple[ModelEntry | None, list[Problem]]:
    """Hold the request every row sends to the API's rules for the spec's `api_version` and model,
    as the catalog knows it: each broken rule is a SpecError at the line of its key. Returns the
    model's entry (None if the catalog does not know it) and warnings, such as an unknown model."""
    catalog = catalog or Catalog.default()
    entry = catalog.resolve(spec.model)
    texts = iter([text for _key, text in template_sources(spec.prompt, spec.messages)])
    params = _params(spec, texts, None, entry)
    violations = check_request(params, api_version=spec.api_version, model=entry)
    where = shown(spec.path)
    if violations:
        problems = sorted((_spec_problem(spec, where, v) for v in violations), key=lambda p: p.line or 0)
        raise SpecError(problems)
    warnings = []
    line = spec.key_line("model")
    if entry is None:
        close = catalog.closest(spec.model)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        cost = "priced by the spec's `pricing:`" if spec.pricing is not None else "cost unknown"
        warnings.append(Problem(where, line, f"model {spec.model} is not in the catalog (as of {catalog.as_of}): {cost}; "
                                f"submit checks it with the API{hint}"))
    elif entry.lifecycle == "deprecated":
        retires = str(entry.info.get("retires_at") or "")[:10]
        when = f" and retires on {retires}" if retires else ""
        warnings.append(Problem(where, line, f"model {spec.model} is deprecated{when}: move to a current model "
                                "(`batchrunner models` lists them)"))
    return entry, warnings


def _spec_problem(spec: JobSpec, where: Path, violation: Violation) -> Problem:
    """A violation of the compiled request, at the spec key that produced the offending part."""
    path = violation.path
    head = path[0] if path else "params"
    key: tuple[str | int, ...]
    if head in ("model", "max_tokens", "system"):
        key = path
    elif head == "messages":
        key = ("prompt",) if spec.prompt is not None else path
    elif path[:2] == ("output_config", "format") and spec.output_schema is not None:
        key = ("output_schema",)
    else:
        key = ("params", *path)
    return Problem(where, spec.key_line(*key), _relabel(violation, dotted(key)))


def _relabel(violation: Violation, label: str) -> str:
    """The violation's message with its subject named as the user wrote it."""
    subject = f"`{dotted(violation.path)}` "
    if violation.message.startswith(subject):
        return f"`{label}` " + violation.message[len(subject):]
    return violation.message


def _attachment_judge(
    spec: JobSpec, entry: ModelEntry | None, report: Callable[[int, str], None]
) -> Callable[[int, dict[str, Any], bytes], bool] | None:
    """For a model that cannot read some kinds of attachment, a function from (line, row, the row's
    blocks) to whether it reported one; None when every block the rows can have is readable. An
    uploaded file's block does not say whether it is a PDF, so the row's file name tells."""
    if entry is None or not spec.attachments or entry.supports("image_input") and entry.supports("pdf_input"):
        return None
    fields = [item.field for item in spec.attachments]

    def unreadable(line_no: int, row: dict[str, Any], blocks: bytes) -> bool:
        content = orjson.loads(b"[" + blocks + b"]")
        for j, name in enumerate(fields):
            if content[j]["type"] == "document" and not str(row.get(name, "")).lower().endswith(".pdf"):
                content[j] = {"type": "text", "text": "a text document"}
        params = {"model": spec.model, "messages": [{"role": "user", "content": content}]}
        violations = check_request(params, api_version=spec.api_version, model=entry)
        for violation in violations:
            index = violation.path[3] if len(violation.path) > 3 else 0
            field_name = fields[index] if isinstance(index, int) and index < len(fields) else "attachment"
            report(line_no, _relabel(violation, field_name).replace(f"`{field_name}`", f"the `{field_name}` attachment", 1))
        return bool(violations)

    return unreadable


# ---------------------------------------------------------------- problems and shards


class _Problems:
    """Collects problems in input order up to a cap, counting the rest."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.found: list[Problem] = []
        self.more = 0
        self.count = 0

    def add(self, problem: Problem) -> None:
        self.count += 1
        if len(self.found) < self.cap:
            self.found.append(problem)
        else:
            self.more += 1


@dataclass
class _Open:
    index: int
    first_seq: int
    tmp: Path | None = None
    file: IO[bytes] | None = None
    requests: int = 0
    bytes: int = 0


@dataclass
class _ShardWriter:
    """Cuts shards at the request and byte limits; with a folder, writes each to a temp file."""

    out_dir: Path | None
    max_requests: int
    done: list[_Open] = field(default_factory=list)
    current: _Open | None = None
    writing: bool = True

    def start(self, seq: int) -> _Open:
        """Seal the current shard and open the next, whose first request is number `seq`."""
        if self.current is not None:
            _seal(self.current)
            self.done.append(self.current)
        self.current = _Open(index=len(self.done), first_seq=seq)
        if self.out_dir is not None and self.writing:
            self.current.tmp, self.current.file = requestfile.open_temp(
                self.out_dir, requestfile.shard_name(self.current.index)
            )
        return self.current

    def shards(self) -> list[_Open]:
        return self.done + ([self.current] if self.current is not None else [])

    def stop_writing(self) -> None:
        """A problem was found: nothing will be committed, so drop what was written."""
        self.writing = False
        for opened in self.shards():
            requestfile.discard(opened.file, opened.tmp)
            opened.file, opened.tmp = None, None


def _seal(opened: _Open) -> None:
    if opened.file is not None:
        requestfile.seal(opened.file)
        opened.file = None


def _commit(opened: _Open, final: Path) -> None:
    _seal(opened)
    assert opened.tmp is not None
    requestfile.commit(opened.tmp, final)
    opened.tmp = None


# ---------------------------------------------------------------- compile_job


def _check_input(spec: JobSpec) -> None:
    line = spec.key_line("input")
    path = spec.rows_file
    if input_suffix(path) is None:
        raise SpecError([Problem(shown(spec.path), line, f"`input` {path.name} is not a {SUFFIXES_TEXT} file: convert it")])
    if not path.is_file():
        raise SpecError([Problem(shown(spec.path), line, f"`input` file not found: {shown(path)} (paths are relative to the spec)")])


def _id_problem(id_field: str, row: dict[str, Any], value: Any) -> str:
    """Why a row's `id_field` value cannot be its custom_id, and what to do."""
    if type(value) is not str:
        if id_field not in row:
            return f"no `{id_field}` field for the custom_id: add it to the row, or drop `id_field`"
        kind = "float" if isinstance(value, float) else type(value).__name__
        return f"`{id_field}` is {kind}; a custom_id must be a string or an integer"
    if len(value) > 64:
        return f"custom_id {value[:20]!r}... from `{id_field}` is {len(value)} characters: at most 64"
    return f"custom_id {value!r} from `{id_field}` must be 1-64 of A-Z a-z 0-9 - _: change the id"


def _custom_id(id_field: str | None, row: dict[str, Any], raw: bytes, seq: int) -> str | None:
    """The row's custom_id, or None if its `id_field` value cannot be one."""
    if id_field is None:
        return f"row-{seq}"
    value = row.get(id_field)
    if type(value) is float:  # perhaps an integer beyond 64 bits, which orjson reads as a float
        value = exact_row(raw).get(id_field)
    if type(value) is int:
        value = str(value)
    return value if type(value) is str and _CUSTOM_ID.fullmatch(value) else None


def compile_job(
    spec: JobSpec,
    out_dir: Path | None = None,
    *,
    max_shard_bytes: int | None = None,
    attachments: AttachmentSet | None = None,
    file_ids: Mapping[str, str] | None = None,
    catalog: Catalog | None = None,
    planner: Planner | None = None,
) -> CompileReport:
    """Compile a job. Without `out_dir` nothing is written (that is `validate`); with it (a folder
    of its own), the shards `requests-NNN.jsonl` and `rows.jsonl` appear only if every row compiled.

    A spec with `attachments` needs its files scanned (`attachments`, else scanned here) and their
    ids (`file_ids`: sha256 -> file id, once uploaded; else obvious placeholders, as for `validate`).
    The request is held to the API's rules for the model as `catalog` (default: the packaged one) knows it.
    With a `planner` (the answer cache), only the requests it does not answer or share are written.
    """
    max_bytes = MAX_BATCH_BYTES if max_shard_bytes is None else max_shard_bytes
    entry, warnings = check_spec_request(spec, catalog)
    _check_input(spec)
    if spec.attachments:
        attachments = attachments if attachments is not None else scan_attachments(spec)
        file_ids = file_ids if file_ids is not None else attachments.placeholder_ids()
    line = _LineTemplate(spec, entry)
    problems = _Problems(MAX_ROW_PROBLEMS)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    writer = _ShardWriter(out_dir, min(spec.batch_size or MAX_BATCH_REQUESTS, MAX_BATCH_REQUESTS))
    rows = _Open(index=-1, first_seq=0)
    if out_dir is not None:
        rows.tmp, rows.file = requestfile.open_temp(out_dir, requestfile.ROWS_NAME)
    try:
        with naming(out_dir) if out_dir is not None else nullcontext():
            report = _compile_rows(
                spec, line, problems, writer, rows.file, max_bytes, attachments, file_ids or {}, entry, planner
            )
            report = replace(report, warnings=warnings)
            if problems.count:
                raise RowError(problems.found, more=problems.more)
            if out_dir is None:
                return report
            shards = []
            for opened in writer.shards():
                final = out_dir / requestfile.shard_name(opened.index)
                _commit(opened, final)
                shards.append(Shard(opened.index, final, opened.requests, opened.bytes, opened.first_seq))
            _commit(rows, out_dir / requestfile.ROWS_NAME)
            fsync_dir(out_dir)
            return replace(report, shards=shards, rows_path=out_dir / requestfile.ROWS_NAME)
    finally:
        writer.stop_writing()
        requestfile.discard(rows.file, rows.tmp)


def _compile_rows(
    spec: JobSpec,
    line: _LineTemplate,
    problems: _Problems,
    writer: _ShardWriter,
    rows_file: IO[bytes] | None,
    max_bytes: int,
    attachments: AttachmentSet | None,
    file_ids: Mapping[str, str],
    entry: ModelEntry | None,
    planner: Planner | None = None,
) -> CompileReport:
    path = shown(spec.rows_file)
    id_field = spec.id_field
    fullmatch = _CUSTOM_ID.fullmatch
    renders = [(part, key, template.renderer(), template) for part, key, template in line.slots]
    attachments_part = line.attachments_part
    attach_to = _attacher(spec, attachments, file_ids, lambda line_no, message: problems.add(Problem(path, line_no, message)))
    unreadable = _attachment_judge(spec, entry, lambda line_no, message: problems.add(Problem(path, line_no, message)))
    parts: list[bytes] = [b""] * (2 * len(line.chunks) - 1)
    parts[::2] = line.chunks
    dumps = orjson.dumps
    seen: set[int] = set()  # hashes, not ids: a third of the memory at a million rows
    seen_add = seen.add
    unique = 0
    suspects: list[tuple[str, int]] = []  # (custom_id, line) whose hash was seen before
    room = max_bytes - requestfile.BODY_FRAMING
    max_requests = writer.max_requests
    shard = writer.current
    seq = total_bytes = text_bytes = 0
    cid: Any  # a str once checked; before that whatever the row holds

    def emit(at: int, request: bytes) -> None:
        """Write one request to the current shard, or start the next at input position `at`."""
        nonlocal shard, total_bytes
        size = len(request)
        if shard is None or shard.requests >= max_requests or shard.bytes + size > room:
            shard = writer.start(at)
        shard.requests += 1
        shard.bytes += size
        total_bytes += size
        if shard.file is not None:
            shard.file.write(request)

    if planner is not None:
        planner.emit = emit
    for line_no, row, raw in read_rows_raw(spec.rows_file, lambda p: problems.add(Problem(path, p.line, p.message))):
        seq += 1
        if id_field is None:
            cid = f"row-{seq}"
        else:
            cid = row.get(id_field)
            if type(cid) is not str:
                if type(cid) is float:  # perhaps an integer beyond 64 bits, which orjson reads as a float
                    row = exact_row(raw)
                    cid = row.get(id_field)
                cid = str(cid) if type(cid) is int else None
            if cid is None or not fullmatch(cid):
                problems.add(Problem(path, line_no, _id_problem(id_field, row, row.get(id_field))))
                continue
            seen_add(hash(cid))
            if len(seen) == unique:  # one probe of the set instead of two
                suspects.append((cid, line_no))
            else:
                unique += 1
        parts[1] = cid.encode()
        if attachments_part is not None:
            try:
                blocks = attach_to(line_no, row)
            except InexactNumber:
                row = exact_row(raw)
                blocks = attach_to(line_no, row)
            if blocks is None or unreadable is not None and unreadable(line_no, row, blocks):
                continue
            parts[attachments_part] = blocks
        try:
            for slot, key, render, template in renders:
                try:
                    text = render(row)
                except InexactNumber:  # an integer beyond 64 bits: render the row read exactly
                    row = exact_row(raw)
                    text = render(row)
                if not text or text.isspace():
                    problems.add(Problem(path, line_no, f"`{key}` renders to empty text for this row "
                                         f"(the API rejects empty text): fill in {', '.join(template.fields)}"))
                    break
                encoded = dumps(text)
                text_bytes += len(encoded)
                parts[slot] = encoded
            else:
                request = b"".join(parts)
                size = len(request)
                if size > room:
                    problems.add(Problem(path, line_no, f"this row's request is {size:,} bytes, over the "
                                         f"{max_bytes:,}-byte batch limit: shorten the row's text"))
                elif problems.count == 0:
                    if planner is None:
                        emit(seq - 1, request)
                    else:
                        planner.add(seq - 1, cid, request)
                    if rows_file is not None:
                        rows_file.write(raw + b"\n")
        except KeyError as exc:
            problems.add(Problem(path, line_no, f"this row has no `{exc.args[0]}` field, which `{key}` uses: "
                                 "add it to the row or change the template"))
    if problems.count:
        writer.stop_writing()
    elif planner is not None:
        planner.finish()
    if suspects:
        _confirm_duplicates(spec, problems, suspects)
    requests = seq
    text_bytes -= 2 * len(renders) * requests  # the quotes around each encoded text
    tokens = estimate_tokens(text_bytes + line.static_text_bytes * requests)
    priced = entry if entry is not None else spec.model
    cache = None
    if planner is not None:
        share = planner.sent / requests if requests else 0.0
        cache = planner.to_dict()
        cache["cost_low_usd"] = batch_cost_usd(priced, round(tokens * share), 0, spec.pricing, requests=max(planner.sent, 1))
        cache["cost_high_usd"] = batch_cost_usd(
            priced, round(tokens * share), spec.max_tokens * planner.sent, spec.pricing, requests=max(planner.sent, 1)
        )
    return CompileReport(
        requests=requests,
        shards=[Shard(o.index, None, o.requests, o.bytes, o.first_seq) for o in writer.shards()],
        bytes=total_bytes,
        estimated_input_tokens=tokens,
        cost_low_usd=batch_cost_usd(priced, tokens, 0, spec.pricing, requests=requests),
        cost_high_usd=batch_cost_usd(priced, tokens, spec.max_tokens * requests, spec.pricing, requests=requests),
        model=spec.model,
        rows_path=None,
        attachments=attachments,
        cache=cache,
    )


def _attacher(
    spec: JobSpec, attachments: AttachmentSet | None, file_ids: Mapping[str, str], report: Callable[[int, str], None]
) -> Callable[[int, dict[str, Any]], bytes | None]:
    """A function from (line, row) to the row's blocks as comma-joined JSON, or None after reporting
    why the row cannot have them; a file that cannot be attached is reported once, on its first row."""
    items = spec.attachments or []
    base = spec.rows_file.parent
    files = attachments.files if attachments is not None else {}
    unattachable = attachments.problems if attachments is not None else {}
    reported: set[str] = set()

    def attach(line_no: int, row: dict[str, Any]) -> bytes | None:
        try:
            return b",".join(orjson.dumps(block, option=orjson.OPT_SORT_KEYS) for block in render_blocks(items, base, row, files, file_ids))
        except ValueError as exc:
            report(line_no, str(exc))
        except Unattachable as exc:
            if exc.path not in reported:
                reported.add(exc.path)
                report(line_no, unattachable.get(exc.path) or f"{exc.path} was not there when the attachments "
                       "were scanned (the input changed meanwhile): run again")
        return None

    return attach


def _confirm_duplicates(spec: JobSpec, problems: _Problems, suspects: list[tuple[str, int]]) -> None:
    """Ids were checked by hash to keep memory flat; a second pass finds where each first appeared."""
    wanted = {cid for cid, _ in suspects}
    first: dict[str, int] = {}
    for seq, (line_no, row, raw) in enumerate(read_rows_raw(spec.rows_file, lambda problem: None), start=1):
        cid = _custom_id(spec.id_field, row, raw, seq)
        if cid in wanted and cid not in first:
            first[cid] = line_no
    duplicates = [
        Problem(
            shown(spec.rows_file),
            line_no,
            f"duplicate custom_id {cid!r} (also on line {first[cid]}): `{spec.id_field}` values must be unique",
        )
        for cid, line_no in suspects
        if first.get(cid, line_no) != line_no  # otherwise a hash collision, not a duplicate
    ]
    problems.count += len(duplicates)
    merged = sorted(problems.found + duplicates, key=lambda p: p.line or 0)
    problems.more += max(0, len(merged) - problems.cap)
    problems.found = merged[: problems.cap]


def validate_job(
    path: Path, home: Path | None = None, planner: Callable[[JobSpec, Path], AbstractContextManager[Planner | None]] | None = None
) -> CompileReport:
    """Load and compile a job without writing anything, and hold it to its budget: `batchrunner validate`.
    Given the state home, also refuse an output inside it, and with a `planner` for it (answer_cache.
    validation_planner) say what the answer cache there would spare."""
    spec = load_spec(path)
    check_output_writable(spec)
    if home is not None:
        check_output_outside(spec, home)
    if home is None or planner is None:
        report = compile_job(spec)
    else:
        with planner(spec, home) as planned:
            report = compile_job(spec, planner=planned)
    check_budget(spec, report)
    return report


def check_output_writable(spec: JobSpec) -> None:
    """Refuse before anything is sent or written if the output could never be written (an object
    store URL is checked by the command that writes it, where the store's extra is looked for)."""
    out = spec.output_path
    if out is None or isinstance(out, str):  # a `Job` without one (the run folder, which batchrunner makes), or a URL
        return
    where = (shown(spec.path), spec.key_line("output"))
    if out.is_dir():
        example = shown(out / f"{spec.name}.jsonl")
        raise SpecError([Problem(*where, f"`output` {shown(out)} is a folder: name a file such as {example}")])
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise SpecError([Problem(*where, f"cannot write the output {shown(out)}: {shown(parent)} is not a writable folder")])
    if _holds_no_files(parent):
        raise SpecError([Problem(*where, (
            f"cannot write the output {shown(out)}: {shown(parent)} is on a system filesystem (such as /proc or /sys) "
            "where no file or folder can be made: write the output to a folder on a disk"
        ))])


def _holds_no_files(folder: Path) -> bool:
    """Whether `folder` is on a filesystem with no blocks and no inodes (proc, sysfs, cgroup):
    it takes no new file whatever the permission bits say, which for root say yes. Asked of the
    filesystem, so `validate` still writes nothing."""
    stats = os.statvfs(folder)
    return stats.f_blocks == 0 and stats.f_files == 0


def check_output_outside(spec: JobSpec, home: Path) -> None:
    """Refuse, on the spec's `output:` line, an output inside the state home (through links too):
    it would overwrite the ledger or a run folder, or be deleted with them. Only a command knows
    the home, so the spec cannot check this itself."""
    if spec.output_path is None or isinstance(spec.output_path, str):  # the run folder belongs in the home; a URL is no path
        return
    real_home = os.path.realpath(home)
    if os.path.commonpath([os.path.realpath(spec.output_path), real_home]) == real_home:
        raise SpecError([Problem(
            shown(spec.path),
            spec.key_line("output"),
            f"`output` {shown(spec.output_path)} is inside the state home {shown(Path(real_home))}, which holds "
            "the ledger and run folders: write the output somewhere else",
        )])


def check_budget(spec: JobSpec, report: CompileReport) -> None:
    """Raise BudgetExceeded, on the spec's `budget_usd` line, if the worst case could cost more."""
    if spec.budget_usd is None:
        return
    line = spec.key_line("budget_usd")
    if report.cost_high_usd is None:
        raise BudgetExceeded([Problem(shown(spec.path), line, f"the price of {spec.model} is unknown, so `budget_usd` cannot "
                                      "be checked: add a `pricing:` block with this model's prices")])
    if report.cost_high_usd > spec.budget_usd:
        raise BudgetExceeded([Problem(
            shown(spec.path),
            line,
            f"the worst case costs {usd(report.cost_high_usd)} at batch prices ({report.requests:,} requests × "
            f"max_tokens {spec.max_tokens}), over `budget_usd` {usd(spec.budget_usd)}: raise the budget, "
            "lower max_tokens or split the input",
        )])
