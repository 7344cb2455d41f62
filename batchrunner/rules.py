"""The one judge of a Messages API request: what the API would refuse, under which version, on which model.

The Batches API checks each request only when the batch ends, up to a day later, so `validate`
and `submit` ask this module first, and the emulator asks it for every request of a batch, under
the `anthropic-version` the batch was created with. Pure and cheap: no I/O, and a request
without a risky key costs a few dict lookups. Where each rule comes from is in the README
("Models and API versions").
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
import orjson

from batchrunner.catalog import ModelEntry

API_VERSIONS = ("2023-06-01", "2026-10-21")
DEFAULT_API_VERSION = "2026-10-21"
OLD_API_VERSION = "2023-06-01"
SAMPLING = ("temperature", "top_p", "top_k")
OUTPUT_300K_BETA = "output-300k-2026-03-24"
MAX_TOKENS_CEILING = 1_000_000  # no model writes more than 300K tokens; above this it is a typo
MIN_THINKING_BUDGET = 1024
TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
EFFORT_ORDER = ("low", "medium", "high", "xhigh", "max")

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Violation:
    """One thing the API would refuse: where in the params, why and how to fix it.

    `message` starts with the parameter, in backticks, as `dotted(path)` spells it.
    """

    path: Path
    message: str
    error_type: str = "invalid_request_error"


def dotted(path: Path) -> str:
    """A params path as messages name it: ("messages", 1, "content", 0) -> messages.1.content.0."""
    return ".".join(str(part) for part in path) or "params"


def _v(path: Path, reason: str, error_type: str = "invalid_request_error") -> Violation:
    return Violation(path, f"`{dotted(path)}` {reason}", error_type)


MAX_CACHE_BREAKPOINTS = 4


def prompt_blocks(params: Mapping[str, Any]) -> Iterator[tuple[Path, Mapping[str, Any]]]:
    """Every block of the prompt in the order the API caches it (tools, system, messages), with its
    path; a plain-string system or content counts as one text block (it cannot carry cache_control)."""
    tools = params.get("tools")
    for i, tool in enumerate(tools if isinstance(tools, list) else ()):
        if isinstance(tool, Mapping):
            yield ("tools", i), tool
    system = params.get("system")
    if isinstance(system, str):
        yield ("system",), {"type": "text", "text": system}
    for i, block in enumerate(system if isinstance(system, list) else ()):
        if isinstance(block, Mapping):
            yield ("system", i), block
    messages = params.get("messages")
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            yield ("messages", i, "content"), {"type": "text", "text": content}
        for j, block in enumerate(content if isinstance(content, list) else ()):
            if isinstance(block, Mapping):
                yield ("messages", i, "content", j), block


def _breakpoints(params: Mapping[str, Any]) -> list[Violation]:
    marked = [path for path, block in prompt_blocks(params) if block.get("cache_control")]
    if len(marked) <= MAX_CACHE_BREAKPOINTS:
        return []
    return [_v(marked[MAX_CACHE_BREAKPOINTS], f"has cache_control, but a request may mark at most {MAX_CACHE_BREAKPOINTS} "
               f"blocks ({len(marked)} here): remove some (or set `prompt_cache: off` if batchrunner added one)")]


def check_request(
    params: Mapping[str, Any], *, api_version: str, model: ModelEntry | None, betas: Collection[str] = ()
) -> list[Violation]:
    """Every rule `params` breaks under `api_version` on `model` (None: model unknown, so only the
    version and shape rules apply; the caller decides what an unknown model is)."""
    found: list[Violation] = []
    asked = params.get("model")
    name = asked if isinstance(asked, str) else model.id if model is not None else "this model"  # as the user wrote it
    thinking = params.get("thinking")
    thinking_on = isinstance(thinking, Mapping) and thinking.get("type") in ("enabled", "adaptive")
    sampling = [key for key in SAMPLING if key in params]
    if sampling:
        if api_version == OLD_API_VERSION:
            found += _sampling_2023(params, sampling, model, name, thinking_on)
        else:
            found += [_removed(key, api_version, model, name) for key in sampling]
    messages = params.get("messages")
    if api_version != OLD_API_VERSION and isinstance(messages, list):
        found += _blocks_2026(messages, api_version)
    found += _max_tokens(params.get("max_tokens"), model, name, betas)
    if thinking is not None:
        found += _thinking(thinking, params, model, name)
    tool_choice = params.get("tool_choice")
    if isinstance(tool_choice, Mapping):
        found += _tool_choice(tool_choice, params.get("tools"), model, name, thinking_on)
    tools = params.get("tools")
    if isinstance(tools, list):
        found += _tools(tools)
    stops = params.get("stop_sequences")
    if isinstance(stops, list):
        found += [_v(("stop_sequences", i), "is empty or only whitespace: the API refuses it; remove it")
                  for i, stop in enumerate(stops) if isinstance(stop, str) and not stop.strip()]
    found += _breakpoints(params)
    if model is not None:
        found += _model_rules(params, messages, model, name)
    return found


# ---------------------------------------------------------------- API versions


def _removed(key: str, api_version: str, model: ModelEntry | None, name: str) -> Violation:
    if model is not None and model.sampling_2023 == "default_only":
        fix = f"remove it ({name} takes only the default value even under `api_version: {OLD_API_VERSION}`)"
    else:
        fix = f"remove it, or set `api_version: {OLD_API_VERSION}` for a model that still takes it"
    return _v((key,), f"was removed in API version {api_version} (a 400 even at its default): {fix}")


_DEFAULTS = {"temperature": 1.0, "top_p": 1.0}


def _sampling_2023(
    params: Mapping[str, Any], keys: list[str], model: ModelEntry | None, name: str, thinking_on: bool
) -> list[Violation]:
    found = []
    for key in keys:
        value = params[key]
        if model is not None and model.sampling_2023 == "default_only" and value != _DEFAULTS.get(key):
            found.append(_v((key,), f"must be left at its default on {name}, even under API version "
                                    f"{OLD_API_VERSION}: remove it, or pick a model that takes it (such as claude-sonnet-4-6)"))
        elif thinking_on and key == "temperature" and value != 1:
            found.append(_v((key,), "must be 1 while thinking is on: remove it, or turn thinking off"))
        elif thinking_on and key == "top_k":
            found.append(_v((key,), "cannot be set while thinking is on: remove it, or turn thinking off"))
        elif thinking_on and key == "top_p" and not (isinstance(value, (int, float)) and 0.95 <= value <= 1):
            found.append(_v((key,), "must be between 0.95 and 1 while thinking is on: raise it, remove it, or turn thinking off"))
    return found


def _blocks_2026(messages: list[Any], api_version: str) -> list[Violation]:
    found = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("content"), list):
            continue
        role = message.get("role")
        for j, block in enumerate(message["content"]):
            if not isinstance(block, Mapping):
                continue
            kind = block.get("type")
            if role == "assistant" and kind == "document":
                found.append(_v(("messages", i, "content", j), f"is a document block in an assistant turn, which API "
                                f"version {api_version} refuses: move the document into a user turn"))
            elif role == "user" and kind == "text" and block.get("citations"):
                found.append(_v(("messages", i, "content", j, "citations"), f"are not allowed on a user text block in API "
                                f"version {api_version}: remove them"))
            elif role == "user" and kind == "search_result" and isinstance(block.get("content"), list):
                for k, inner in enumerate(block["content"]):
                    if isinstance(inner, Mapping) and inner.get("citations"):
                        found.append(_v(("messages", i, "content", j, "content", k, "citations"), "are not allowed on a "
                                        f"user text block (inside a search_result) in API version {api_version}: remove them"))
    return found


# ---------------------------------------------------------------- shape rules (any model)


def _max_tokens(value: Any, model: ModelEntry | None, name: str, betas: Collection[str]) -> list[Violation]:
    if not isinstance(value, int) or isinstance(value, bool):
        return []
    if model is not None:
        limit = model.max_tokens
        if model.batch_max_tokens is not None and OUTPUT_300K_BETA in betas:
            limit = model.batch_max_tokens
        if value > limit:
            beta = ""
            if model.batch_max_tokens is not None and OUTPUT_300K_BETA not in betas and value <= model.batch_max_tokens:
                beta = f" (the batch-only {model.batch_max_tokens:,} needs the {OUTPUT_300K_BETA} beta, which batchrunner does not send)"
            return [_v(("max_tokens",), f"{value} > {limit}, which is the maximum allowed number of output tokens "
                                        f"for {name}{beta}: lower it")]
        return []
    if value > MAX_TOKENS_CEILING:
        return [_v(("max_tokens",), f"{value:,} is more than any model can write (at most 300,000 tokens): lower it")]
    return []


def _thinking(thinking: Any, params: Mapping[str, Any], model: ModelEntry | None, name: str) -> list[Violation]:
    if not isinstance(thinking, Mapping):
        return []
    kind = thinking.get("type")
    found = []
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        max_tokens = params.get("max_tokens")
        if isinstance(budget, int) and budget < MIN_THINKING_BUDGET:
            found.append(_v(("thinking", "budget_tokens"), f"must be at least {MIN_THINKING_BUDGET}: raise it"))
        elif isinstance(budget, int) and isinstance(max_tokens, int) and budget >= max_tokens:
            found.append(_v(("thinking", "budget_tokens"), f"({budget}) must be less than max_tokens ({max_tokens}): "
                                                            "raise max_tokens or lower the budget"))
    if model is not None and isinstance(kind, str) and not model.supports("thinking", "types", kind):
        takes = [t for t in ("adaptive", "between_tools", "disabled", "enabled") if model.supports("thinking", "types", t)]
        fix = f"use {' or '.join(repr(t) for t in takes)}" if takes else "remove `thinking`"
        found.append(_v(("thinking", "type"), f"{kind!r} is not supported for {name}: {fix}"))
    if model is not None and kind == "disabled" and model.thinking_disabled_max_effort is not None:
        effort = (params.get("output_config") or {}).get("effort") if isinstance(params.get("output_config"), Mapping) else None
        ceiling = model.thinking_disabled_max_effort
        if effort in EFFORT_ORDER and EFFORT_ORDER.index(effort) > EFFORT_ORDER.index(ceiling):
            found.append(_v(("thinking", "type"), f"'disabled' works on {name} only at effort {ceiling} or lower "
                                                  f"(this request asks for {effort}): lower the effort or turn thinking on"))
    return found


def _tool_choice(
    choice: Mapping[str, Any], tools: Any, model: ModelEntry | None, name: str, thinking_on: bool
) -> list[Violation]:
    kind = choice.get("type")
    found = []
    if kind == "tool":
        wanted = choice.get("name")
        defined = [t.get("name") for t in tools if isinstance(t, Mapping)] if isinstance(tools, list) else []
        if wanted not in defined:
            listed = f"the tools are {', '.join(map(str, defined))}" if defined else "`tools` defines none"
            found.append(_v(("tool_choice", "name"), f"{wanted!r} is not a tool of this request ({listed}): "
                                                     "name one of them, or define it in `tools`"))
    if kind in ("any", "tool"):
        if model is not None and not model.forced_tool_choice:
            found.append(_v(("tool_choice", "type"), f"{kind!r} (a forced tool choice) is not supported for {name}: "
                                                     "use 'auto' and ask for the tool in the prompt"))
        elif thinking_on:
            found.append(_v(("tool_choice", "type"), f"{kind!r} forces a tool, which is not allowed while thinking is on: "
                                                     "use 'auto', or turn thinking off"))
    return found


_SCHEMA_CACHE: dict[bytes, str | None] = {}


def _schema_problem(schema: Any) -> str | None:
    """Why a tool's input_schema would be refused, or None; memoized, as every request of a batch
    usually carries the same tools."""
    key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    if key in _SCHEMA_CACHE:
        return _SCHEMA_CACHE[key]
    problem: str | None = None
    if not isinstance(schema, Mapping):
        problem = "should be a JSON Schema object"
    else:
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "the root"
            problem = f"is not a valid JSON Schema at {where}: {exc.message}"
        else:
            if schema.get("type") != "object":
                problem = "should have `type: object` at its root (a tool takes an object of arguments)"
    if len(_SCHEMA_CACHE) < 1024:
        _SCHEMA_CACHE[key] = problem
    return problem


def _tools(tools: list[Any]) -> list[Violation]:
    found = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            continue
        name = tool.get("name")
        if isinstance(name, str) and not TOOL_NAME.fullmatch(name):
            found.append(_v(("tools", i, "name"), f"{name!r} should be 1-128 of a-z A-Z 0-9 _ -: rename the tool"))
        if tool.get("type") in (None, "custom") and "input_schema" in tool:
            problem = _schema_problem(tool["input_schema"])
            if problem is not None:
                found.append(_v(("tools", i, "input_schema"), f"{problem}: fix the schema"))
    return found


# ---------------------------------------------------------------- model rules


def _model_rules(params: Mapping[str, Any], messages: Any, model: ModelEntry, name: str) -> list[Violation]:
    found = []
    if model.lifecycle == "retired":
        retired = str(model.info.get("retires_at") or "")[:10]
        when = f" on {retired}" if retired else ""
        found.append(_v(("model",), f"{name} was retired{when}: requests to it fail; pick a current model "
                                    "(`batchrunner models` lists them)"))
    output_config = params.get("output_config")
    if isinstance(output_config, Mapping):
        effort = output_config.get("effort")
        if isinstance(effort, str) and not model.supports("effort", effort):
            takes = [e for e in EFFORT_ORDER if model.supports("effort", e)]
            fix = f"use one of {', '.join(takes)}" if takes else "remove it"
            found.append(_v(("output_config", "effort"), f"{effort!r} is not supported for {name}: {fix}"))
        if output_config.get("format") is not None and not model.supports("structured_outputs"):
            found.append(_v(("output_config", "format"), f"needs structured outputs, which {name} does not support: "
                                                         "pick a model that does, or remove the schema"))
    if isinstance(messages, list):
        found += _attachments(messages, model, name)
    return found


def _attachments(messages: list[Any], model: ModelEntry, name: str) -> list[Violation]:
    images = model.supports("image_input")
    pdfs = model.supports("pdf_input")
    if images and pdfs:
        return []
    found = []
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, list):
            continue
        for j, block in enumerate(content):
            if not isinstance(block, Mapping):
                continue
            if block.get("type") == "image" and not images:
                found.append(_v(("messages", i, "content", j), f"is an image, and {name} cannot read images: "
                                                               "remove it or pick a model with image input"))
            elif block.get("type") == "document" and not pdfs and _is_pdf(block.get("source")):
                found.append(_v(("messages", i, "content", j), f"is a PDF document, and {name} cannot read PDFs: "
                                                               "remove it or pick a model with PDF input"))
    return found


def _is_pdf(source: Any) -> bool:
    """Whether a document source may be a PDF: base64 PDFs, URLs and uploaded files (whose type the
    request does not say); plain-text and content sources are not."""
    if not isinstance(source, Mapping):
        return False
    kind = source.get("type")
    return kind in ("url", "file") or kind == "base64" and source.get("media_type") == "application/pdf"
