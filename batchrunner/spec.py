"""Loads a job spec from YAML into a validated `JobSpec`, naming file:line for every problem.

YAML is composed into nodes with a safe loader (no tag that runs code), so each key keeps its
line; the plain values are then validated by pydantic, and each validation error is mapped back
to the line of the key it is about. The request parts of the spec (`params`, `messages`,
`system`) are checked against the Messages API shape here, because the Batches API only validates
them after the whole batch has ended, up to a day later.
"""

from __future__ import annotations

import datetime
import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import jsonschema
import yaml
from pydantic import (
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from batchrunner.durations import parse_age
from batchrunner.errors import Problem, SpecError
from batchrunner.extras import PARQUET_INSTALL, has_pyarrow, is_parquet, store_url_problem
from batchrunner.output import SUFFIXES as OUTPUT_SUFFIXES
from batchrunner.output import output_suffix
from batchrunner.paths import is_url, same_file as same_file
from batchrunner.paths import shown as shown
from batchrunner.request_shape import PARAM_NAMES, Message, Params, System
from batchrunner.run_settings import PollSettings as PollSettings
from batchrunner.run_settings import Pricing as Pricing
from batchrunner.run_settings import RetryPolicy as RetryPolicy
from batchrunner.run_settings import RunSettings as RunSettings
from batchrunner.run_settings import Strict as _Strict
from batchrunner.rules import API_VERSIONS, DEFAULT_API_VERSION
from batchrunner.template import Template, template_sources

MAX_PROBLEMS = 50
MAX_NODES = 100_000
MAX_BATCH_SIZE = 100_000
_NAME = re.compile(r"[a-z0-9_-]{1,64}")

# ---------------------------------------------------------------- the job spec


class Attachment(_Strict):
    """A row field naming a local file that goes into the user message as a document or image block."""

    field: str = Field(min_length=1)
    type: Literal["document", "image"] | None = None
    title_field: str | None = Field(default=None, min_length=1)
    citations: bool = False

    @field_validator("title_field", "citations")
    @classmethod
    def _documents_only(cls, value: Any, info: ValidationInfo) -> Any:
        if value and info.data.get("type") == "image":
            key = "title" if info.field_name == "title_field" else "citations"
            raise PydanticCustomError("documents_only", "applies to documents only: an image block has no {key}", {"key": key})
        return value


class CacheSpec(_Strict):
    """`cache: {max_age: 7d}`: answers cached longer ago than this are not used (they are sent again)."""

    max_age: str

    @field_validator("max_age")
    @classmethod
    def _an_age(cls, value: str) -> str:
        try:
            parse_age(value)
        except ValueError as exc:
            raise PydanticCustomError("age", str(exc)) from None
        return value


def _cache_tag(value: Any) -> str | None:
    if isinstance(value, bool):
        return "switch"
    return "settings" if isinstance(value, dict | CacheSpec) else None


# Told apart by shape, so a mistake in `{max_age: ...}` is reported once, not also as "not a boolean".
CacheSetting = Annotated[
    Annotated[bool, Tag("switch")] | Annotated[CacheSpec, Tag("settings")],
    Discriminator(
        _cache_tag, custom_error_type="cache_type", custom_error_message="should be true, false or {max_age: AGE}, such as {max_age: 7d}"
    ),
]


def _resolve(value: Path, info: ValidationInfo) -> Path:
    base = info.data.get("path")
    value = value.expanduser()
    if base is not None and not value.is_absolute():
        value = Path(base).parent / value
    return Path(os.path.normpath(value))


class JobSpec(_Strict):
    """One job: which rows, how each becomes a Messages API request, and how the run behaves."""

    path: Path = Field(strict=False)
    name: str
    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    api_version: str = DEFAULT_API_VERSION
    backend: Literal["auto", "local", "anthropic"] | None = None
    input_path: Path | None = Field(default=None, strict=False, validation_alias="input")  # None: rows given to run()
    output_path: Path | str | None = Field(default=None, validation_alias="output")  # None: in the run folder; a str only for an object store URL
    id_field: str | None = Field(default=None, min_length=1)
    system: System | None = None
    prompt: str | None = None
    messages: list[Message] | None = Field(default=None, min_length=1, validate_default=True)
    attachments: list[Attachment] | None = Field(default=None, min_length=1)
    keep_attachments: bool = True
    output_schema: dict[str, Any] | None = None
    params: Params = Field(default_factory=lambda: Params())
    batch_size: int | None = Field(default=None, ge=1, le=MAX_BATCH_SIZE)  # None: fill to the API's limits
    keep_request_files: bool = False
    upload_request_files: bool = True  # False: skip the request-file upload, which no API call reads
    budget_usd: float | None = Field(default=None, gt=0)
    pricing: Pricing | None = None
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    poll: PollSettings = Field(default_factory=PollSettings)
    cache: CacheSetting = True  # the answer cache (DESIGN §10)
    prompt_cache: Literal["auto", "off"] = "auto"  # mark the shared prefix with cache_control when long enough

    _lines: dict[tuple[str | int, ...], int] = PrivateAttr(default_factory=dict)

    def run_settings(self) -> RunSettings:
        """What later commands need of this spec, frozen with the run."""
        return RunSettings(
            output_schema=self.output_schema,
            keep_request_files=self.keep_request_files,
            pricing=self.pricing,
            retry=self.retry,
            poll=self.poll,
            max_tokens=self.max_tokens,
            api_version=self.api_version,
            upload_request_files=self.upload_request_files,
            cache=self.cache is not False,
        )

    def cache_max_age(self) -> datetime.timedelta | None:
        return parse_age(self.cache.max_age) if isinstance(self.cache, CacheSpec) else None

    @field_validator("name")
    @classmethod
    def _name_shape(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise PydanticCustomError(
                "name", "should be 1-64 lowercase letters, digits, '-' or '_' (for example `eval`): it starts run ids"
            )
        return value

    @field_validator("api_version", mode="before")
    @classmethod
    def _known_version(cls, value: Any) -> Any:
        if isinstance(value, datetime.date):  # YAML reads an unquoted 2026-10-21 as a date
            value = value.isoformat()
        if value not in API_VERSIONS:
            raise PydanticCustomError(
                "api_version", "should be one of {versions}, the `anthropic-version` a run sends (got {got})",
                {"versions": ", ".join(API_VERSIONS), "got": repr(value) if isinstance(value, str) else type(value).__name__},
            )
        return value

    @field_validator("prompt_cache", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        """YAML reads an unquoted `off` as false (and `on` as true)."""
        return {False: "off", True: "auto"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("input_path", "output_path", mode="before")
    @classmethod
    def _path_text(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value:
            raise PydanticCustomError("path", "should be a file path, relative to the spec file")
        return value

    @field_validator("input_path")
    @classmethod
    def _relative_to_spec(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve(value, info)

    @field_validator("output_path")
    @classmethod
    def _not_the_input(cls, value: Path | str, info: ValidationInfo) -> Path | str:
        if isinstance(value, str) and is_url(value):
            if (problem := store_url_problem(value)) is not None:  # the rules `submit` holds a store URL to, offline
                raise PydanticCustomError("store_url", "{problem}", {"problem": problem})
            return _known_output(value)
        value = _resolve(Path(value), info)
        if same_file(value, info.data.get("input_path")):
            raise ValueError("is the same file as `input`: the results would overwrite the rows")
        if same_file(value, info.data.get("path")):
            raise ValueError("is the job spec itself: the results would overwrite it")
        return _known_output(value)

    @field_validator("input_path", "output_path")
    @classmethod
    def _parquet_needs_pyarrow(cls, value: Path | str) -> Path | str:
        return _needs_pyarrow(value)

    @field_validator("messages")
    @classmethod
    def _prompt_or_messages(cls, value: list[Message] | None, info: ValidationInfo) -> list[Message] | None:
        if "prompt" not in info.data:
            return value  # prompt itself was invalid; that error says enough
        if value is None and info.data["prompt"] is None:
            raise PydanticCustomError(
                "prompt_or_messages", "add `prompt:` (one user message) or `messages:` (a list of turns)"
            )
        if value is not None and info.data["prompt"] is not None:
            raise PydanticCustomError("prompt_or_messages", "use either `prompt` or `messages`, not both")
        return value

    @field_validator("attachments")
    @classmethod
    def _with_prompt_only(cls, value: list[Attachment] | None, info: ValidationInfo) -> list[Attachment] | None:
        if value is not None and info.data.get("messages") is not None:
            raise PydanticCustomError(
                "attachments_with_messages",
                "work with `prompt:` only (they come before its text in the user message): "
                "with `messages:`, put document or image blocks in the turns yourself",
            )
        return value

    @field_validator("output_schema")
    @classmethod
    def _valid_json_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                jsonschema.Draft202012Validator.check_schema(value)
            except jsonschema.SchemaError as exc:
                where = "/".join(str(p) for p in exc.absolute_path) or "the root"
                raise PydanticCustomError(
                    "json_schema", "is not a valid JSON Schema at {where}: {reason}", {"where": where, "reason": exc.message}
                ) from None
        return value

    @field_validator("params")
    @classmethod
    def _params_agree(cls, value: Params, info: ValidationInfo) -> Params:
        thinking = value.get("thinking")
        max_tokens = info.data.get("max_tokens")
        budget = thinking["budget_tokens"] if thinking is not None and thinking["type"] == "enabled" else None
        if budget is not None and max_tokens is not None and budget >= max_tokens:
            raise PydanticCustomError(
                "thinking_budget",
                "thinking.budget_tokens ({budget}) must be less than max_tokens ({max_tokens}): raise max_tokens",
                {"budget": budget, "max_tokens": max_tokens},
            )
        output_format = (value.get("output_config") or {}).get("format")
        if output_format is not None and info.data.get("output_schema") is not None:
            raise PydanticCustomError(
                "output_format", "set the schema once: use `output_schema`, not also params.output_config.format"
            )
        return value

    @property
    def rows_file(self) -> Path:
        """The input rows file; a `Job` made without one has its rows given to `batchrunner.run`."""
        if self.input_path is None:
            raise SpecError([Problem(shown(self.path), None, (
                "no `input`: give the rows to batchrunner.run(job, rows), or name a rows file with input=..."
            ))])
        return self.input_path

    def key_line(self, *key: str | int) -> int | None:
        """The spec line of a key path such as ("input",) or ("params", "temperature")."""
        return _line_for(self._lines, key)


Location = TypeVar("Location", bound=Path | str)


def _known_output(path: Location) -> Location:
    if output_suffix(path) is None and (isinstance(path, str) or not path.is_dir()):  # a folder: compile says to name a file in it
        raise PydanticCustomError(
            "output_suffix", "{name} should end in {suffixes}: the extension chooses the format of the results",
            {"name": path if isinstance(path, str) else path.name, "suffixes": ", ".join(OUTPUT_SUFFIXES)},
        )
    return path


def _needs_pyarrow(path: Location) -> Location:
    if is_parquet(path) and not has_pyarrow():
        raise PydanticCustomError(
            "parquet_extra", "{name} is a Parquet file, which needs pyarrow: {install}",
            {"name": path if isinstance(path, str) else path.name, "install": PARQUET_INSTALL},
        )
    return path


def with_paths(spec: JobSpec, *, input: Path | None = None, output: Path | None = None) -> JobSpec:
    """The spec with another input or output (`batchrunner.run`'s rows and `output=`), each
    checked as the spec checks its own."""
    changes: dict[str, Path] = {}
    problems = []
    for key, value, checks in (("input", input, (_needs_pyarrow,)), ("output", output, (_known_output, _needs_pyarrow))):
        if value is None:
            continue
        path = Path(os.path.abspath(value))
        try:
            for check in checks:
                check(path)
        except PydanticCustomError as exc:
            problems.append(Problem(shown(spec.path), None, f"`{key}` {exc.message()}"))
        changes[f"{key}_path"] = path
    if problems:
        raise SpecError(problems)
    return spec.model_copy(update=changes)


_SPEC_KEYS = tuple(
    (field.validation_alias if isinstance(field.validation_alias, str) else name)
    for name, field in JobSpec.model_fields.items()
    if name != "path"
)
_KNOWN_KEYS: dict[tuple[str | int, ...], tuple[str, ...]] = {
    (): _SPEC_KEYS,
    ("retry",): tuple(RetryPolicy.model_fields),
    ("poll",): tuple(PollSettings.model_fields),
    ("pricing",): tuple(Pricing.model_fields),
    ("cache",): tuple(CacheSpec.model_fields),
    ("attachments", "*"): tuple(Attachment.model_fields),
    ("params",): PARAM_NAMES,
}
_EXAMPLES = {
    "name": "name: eval",
    "api_version": "api_version: 2026-10-21",
    "model": "model: claude-haiku-4-5",
    "max_tokens": "max_tokens: 1024",
    "input": "input: ../samples/eval.jsonl",
    "output": "output: ../results/eval.jsonl",
    "input_per_mtok": "input_per_mtok: 1.0",
    "output_per_mtok": "output_per_mtok: 5.0",
}


# ---------------------------------------------------------------- YAML with line numbers

Lines = dict[tuple[str | int, ...], int]


class SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader: plain data only; a `!!python/...` tag is an error, never a call."""


_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


class _Composer:
    """Turns composed YAML nodes into plain values, recording the line of every key and item."""

    def __init__(self, path: Path, loader: SpecLoader) -> None:
        self.path = path
        self.loader = loader
        self.lines: Lines = {(): 1}
        self.problems: list[Problem] = []
        self.memo: dict[int, tuple[Any, int]] = {}
        self.nodes = 0

    def problem(self, node: yaml.Node, message: str) -> None:
        self.problems.append(Problem(self.path, node.start_mark.line + 1, message))

    def value(self, node: yaml.Node, at: tuple[str | int, ...]) -> Any:
        seen = self.memo.get(id(node))
        if seen is not None:  # an alias: reuse the value, but still count what it expands to
            self.nodes += seen[1]
            return seen[0]
        before = self.nodes
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise SpecError([Problem(self.path, node.start_mark.line + 1, f"the spec expands to over {MAX_NODES} values")])
        if isinstance(node, yaml.MappingNode):
            result: Any = self.mapping(node, at)
        elif isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                self.problem(node, f"unsupported YAML tag {_tag(node.tag)}: a spec holds plain data only; remove the tag")
            result = []
            for i, item in enumerate(node.value):
                self.lines[at + (i,)] = item.start_mark.line + 1
                result.append(self.value(item, at + (i,)))
        else:
            try:
                result = self.loader.construct_object(node, deep=True)
            except yaml.constructor.ConstructorError:
                self.problem(node, f"unsupported YAML tag {_tag(node.tag)}: a spec holds plain data only; remove the tag")
                result = None
        self.memo[id(node)] = (result, self.nodes - before)
        return result

    def mapping(self, node: yaml.MappingNode, at: tuple[str | int, ...]) -> dict[str, Any]:
        if node.tag != _MAP_TAG:
            self.problem(node, f"unsupported YAML tag {_tag(node.tag)}: a spec holds plain data only; remove the tag")
        first_line: dict[str, int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                line = key_node.start_mark.line + 1
                if key_node.value in first_line:
                    self.problem(
                        key_node,
                        f"duplicate key `{key_node.value}` (first on line {first_line[key_node.value]}): keep one",
                    )
                else:
                    first_line[key_node.value] = line
        self.loader.flatten_mapping(node)  # resolves `<<: *anchor` merges
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(key_node, "a key must be a plain string")
                continue
            key = key_node.value
            self.lines.setdefault(at + (key,), key_node.start_mark.line + 1)
            result[key] = self.value(value_node, at + (key,))
        return result


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SpecError([Problem(shown(path), line, f"invalid UTF-8 at byte offset {exc.start}: save the spec as UTF-8")]) from None


_CONTROL_NAMES = {0x00: "NUL", 0x1B: "ESC", 0x7F: "DEL"}


def _unprintable(path: Path, text: str, exc: yaml.reader.ReaderError) -> SpecError:
    """YAML refuses control characters (NUL, ESC, DEL, ...) anywhere in the file; say on which line."""
    code = exc.character if isinstance(exc.character, int) else ord(exc.character)
    line = text.count("\n", 0, exc.position) + 1
    kind = "control character" if code < 0x20 or 0x7F <= code <= 0x9F else "character"
    name = f" ({_CONTROL_NAMES[code]})" if code in _CONTROL_NAMES else ""
    escape = f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    message = f"the {kind} U+{code:04X}{name} is not allowed in a YAML file: delete it, or inside double quotes write it as {escape}"
    return SpecError([Problem(path, line, message)])


def _compose(path: Path, text: str) -> tuple[Any, Lines]:
    try:
        loader = SpecLoader(text)
    except yaml.reader.ReaderError as exc:
        raise _unprintable(path, text, exc) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError([Problem(path, 1, "the spec is empty: start with `name:`, `model:`, `max_tokens:`, ...")])
        composer = _Composer(path, loader)
        composer.lines[()] = node.start_mark.line + 1  # a missing key is named where the spec's keys begin, past any comments
        data = composer.value(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        raise SpecError([Problem(path, line, f"malformed YAML: {what}: check the indentation and quoting")]) from None
    finally:
        loader.dispose()
    if composer.problems:
        raise SpecError(composer.problems[:MAX_PROBLEMS], more=max(0, len(composer.problems) - MAX_PROBLEMS))
    return data, composer.lines


# ---------------------------------------------------------------- pydantic errors -> file:line


def _tag(tag: str) -> str:
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org,2002:") else tag


def _line_for(lines: Lines, loc: tuple[str | int, ...]) -> int | None:
    for end in range(len(loc), -1, -1):
        line = lines.get(loc[:end])
        if line is not None:
            return line
    return None


def _data_path(data: Any, loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """The part of a pydantic error location that names keys and items of the data (not union tags)."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            continue
        path.append(part)
    return tuple(path)


def _dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in path)


def _problem_for(path: Path, data: dict[str, Any], lines: Lines, error: Any) -> Problem:
    loc = tuple(p for p in error["loc"])
    kind = error["type"]
    where = _data_path(data, loc)
    if kind == "extra_forbidden":
        key = str(loc[-1])
        parent = where[:-1] if where and where[-1] == loc[-1] else where
        known = _KNOWN_KEYS.get(tuple("*" if isinstance(p, int) else p for p in parent), ())
        close = difflib.get_close_matches(key, known, n=1)
        hint = f": did you mean `{close[0]}`?" if close else (f": known keys are {', '.join(known)}" if known else "")
        label = "parameter" if parent == ("params",) else "key"
        inside = f" in `{_dotted(parent)}`" if parent else ""
        return Problem(path, _line_for(lines, where), f"unknown {label} `{key}`{inside}{hint}")
    if kind == "missing":
        key = str(loc[-1])
        inside = f" in `{_dotted(where)}`" if where else ""
        example = f" (for example `{_EXAMPLES[key]}`)" if key in _EXAMPLES else ""
        return Problem(path, _line_for(lines, where), f"missing required key `{key}`{inside}{example}")
    message = _SUBJECT.sub("should", str(error["msg"]).replace("Value error, ", ""), count=1)
    got = error.get("input")
    if kind == "block_type" and isinstance(got, dict):
        got = got.get("type")
    shown = "" if kind in _SAYS_ENOUGH else _got(got)
    hint = ""
    if isinstance(got, dict) and kind in ("string_type", "content_type", "system_type"):
        hint = " (a bare {...} in YAML is a mapping: quote the text)"
    label = f"`{_dotted(where)}` " if where else ""
    if len(where) == 1 and where[0] in _EXAMPLES and "for example" not in message and kind != "store_url":  # it says how to fix it
        hint += f" (for example `{_EXAMPLES[str(where[0])]}`)"
    return Problem(path, _line_for(lines, where), f"{label}{message}{shown}{hint}")


_SAYS_ENOUGH = (
    "refused", "prompt_or_messages", "json_schema", "thinking_budget", "output_format", "api_version",
    "attachments_with_messages", "documents_only", "output_suffix", "parquet_extra", "store_url",
)
_SUBJECT = re.compile(r"^(Input|String|List|Dictionary|Value|Object) should")


def _got(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return f" (got a {'mapping' if isinstance(value, dict) else 'list'})"
    text = repr(value)
    return f" (got {text[:60] + '...' if len(text) > 60 else text})"


# ---------------------------------------------------------------- load_spec


def _template_problems(path: Path, data: dict[str, Any], lines: Lines) -> list[Problem]:
    found: list[Problem] = []
    for key, text in template_sources(data.get("prompt"), data.get("messages")):
        try:
            template = Template.parse(text)
        except ValueError as exc:
            found.append(Problem(path, _line_for(lines, key), f"`{_dotted(key)}`: {exc}"))
            continue
        if not template.fields and not text.strip():
            found.append(Problem(path, _line_for(lines, key), f"`{_dotted(key)}` is empty: the API rejects empty text"))
    return found


def load_spec(path: Path) -> JobSpec:
    """Read and validate a job spec; every problem found is raised together as one SpecError."""
    path = Path(os.path.abspath(path))
    data, lines = _compose(shown(path), _read_text(path))
    where = shown(path)
    if not isinstance(data, dict):
        raise SpecError([Problem(where, 1, "a job spec is a mapping of keys (`name:`, `model:`, ...)")])
    problems: list[Problem] = []
    if "path" in data:
        problems.append(Problem(where, lines[("path",)], "unknown key `path`: the spec's own location is implied"))
        data = {k: v for k, v in data.items() if k != "path"}
    for key in ("input", "output"):  # only a `Job` made in Python may do without them
        if key not in data:
            problems.append(Problem(where, 1, f"missing required key `{key}` (for example `{_EXAMPLES[key]}`)"))
    return validated(path, where, data, lines, problems)


def validated(path: Path, where: Path, data: dict[str, Any], lines: Lines, problems: list[Problem]) -> JobSpec:
    """The spec from plain values, or one SpecError with every problem: of a YAML file (`lines`
    then holds each key's line) or of a `Job` made in Python (no lines; each problem names its key)."""
    spec: JobSpec | None = None
    try:
        spec = JobSpec.model_validate({"path": path, **data})
    except ValidationError as exc:
        problems.extend(_problem_for(where, data, lines, error) for error in exc.errors())
    problems.extend(_template_problems(where, data, lines))
    if spec is not None:
        spec._lines.update(lines)
    if problems:
        problems.sort(key=lambda p: p.line or 0)
        raise SpecError(problems[:MAX_PROBLEMS], more=max(0, len(problems) - MAX_PROBLEMS))
    assert spec is not None
    return spec
