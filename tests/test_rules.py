"""rules.check_request, rule by rule: what the API refuses, under which version, on which model."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from batchrunner.catalog import Catalog, ModelEntry
from batchrunner.rules import API_VERSIONS, DEFAULT_API_VERSION, check_request

NEW, OLD = "2026-10-21", "2023-06-01"
CATALOG = Catalog.default()


def entry(model_id: str, **capabilities: bool) -> ModelEntry:
    """A catalog entry, with some top-level capabilities switched, for models the catalog lacks."""
    known = CATALOG.resolve(model_id)
    assert known is not None
    caps = copy.deepcopy(known.capabilities)
    for key, supported in capabilities.items():
        caps[key]["supported"] = supported
    return replace(known, capabilities=caps)


def request(model: str = "claude-haiku-4-5", **params: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 1024, "messages": [{"role": "user", "content": "hi"}], **params}


TOOL = {"name": "lookup", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}
PDF = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}
TEXT_DOC = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hello"}}
IMAGE = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
THINKING = {"type": "enabled", "budget_tokens": 1024}


@dataclass
class Rule:
    name: str
    params: dict[str, Any]
    path: tuple[str | int, ...]
    says: str
    version: str = NEW
    model: str | ModelEntry | None = "claude-haiku-4-5"
    betas: tuple[str, ...] = field(default_factory=tuple)


def user(*blocks: Any) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


RULES = [
    # API version 2026-10-21
    Rule("temperature-removed", request(temperature=0), ("temperature",), "was removed in API version 2026-10-21"),
    Rule("temperature-removed-at-default", request(temperature=1.0), ("temperature",), "a 400 even at its default"),
    Rule("top-p-removed", request(top_p=0.9), ("top_p",), "`top_p` was removed"),
    Rule("top-k-removed-unknown-model", request("claude-x", top_k=5), ("top_k",), "set `api_version: 2023-06-01`",
         model=None),
    Rule("removed-on-default-only-model", request("claude-opus-5-5", temperature=0), ("temperature",),
         "claude-opus-5-5 takes only the default value even under `api_version: 2023-06-01`", model="claude-opus-5-5"),
    Rule("assistant-document", request(messages=[user({"type": "text", "text": "a"}), {"role": "assistant", "content": [TEXT_DOC]}]),
         ("messages", 1, "content", 0), "is a document block in an assistant turn"),
    Rule("user-text-citations", request(messages=[user({"type": "text", "text": "a", "citations": [{"type": "char_location"}]})]),
         ("messages", 0, "content", 0, "citations"), "are not allowed on a user text block"),
    Rule("search-result-citations", request(messages=[user({"type": "search_result", "source": "s", "title": "t", "content": [
         {"type": "text", "text": "a", "citations": [{"type": "char_location"}]}]})]),
         ("messages", 0, "content", 0, "content", 0, "citations"), "inside a search_result"),
    # API version 2023-06-01
    Rule("default-only-sampling-2023", request("claude-sonnet-5", temperature=0.2), ("temperature",),
         "must be left at its default on claude-sonnet-5", version=OLD, model="claude-sonnet-5"),
    Rule("default-only-top-k-2023", request("claude-opus-4-7", top_k=5), ("top_k",), "must be left at its default",
         version=OLD, model="claude-opus-4-7"),
    Rule("thinking-temperature-2023", request(max_tokens=4096, thinking=THINKING, temperature=0.5), ("temperature",),
         "must be 1 while thinking is on", version=OLD),
    Rule("thinking-top-k-2023", request(max_tokens=4096, thinking=THINKING, top_k=5), ("top_k",),
         "cannot be set while thinking is on", version=OLD),
    Rule("thinking-top-p-2023", request(max_tokens=4096, thinking=THINKING, top_p=0.5), ("top_p",),
         "between 0.95 and 1 while thinking is on", version=OLD),
    Rule("thinking-forced-tool", request(max_tokens=4096, thinking=THINKING, tools=[TOOL], tool_choice={"type": "any"}),
         ("tool_choice", "type"), "not allowed while thinking is on"),
    # limits
    Rule("max-tokens-over-model", request(max_tokens=64_001), ("max_tokens",),
         "64001 > 64000, which is the maximum allowed number of output tokens for claude-haiku-4-5: lower it"),
    Rule("max-tokens-batch-beta-not-sent", request("claude-opus-5-5", max_tokens=300_000), ("max_tokens",),
         "needs the output-300k-2026-03-24 beta", model="claude-opus-5-5"),
    Rule("max-tokens-over-batch-beta", request("claude-opus-5-5", max_tokens=300_001), ("max_tokens",), "300001 > 300000",
         model="claude-opus-5-5", betas=("output-300k-2026-03-24",)),
    Rule("max-tokens-absurd-unknown-model", request("claude-x", max_tokens=10**12), ("max_tokens",),
         "more than any model can write", model=None),
    # thinking
    Rule("thinking-enabled-refused", request("claude-fable-5-2", max_tokens=4096, thinking=THINKING), ("thinking", "type"),
         "'enabled' is not supported for claude-fable-5-2: use 'adaptive'", model="claude-fable-5-2"),
    Rule("thinking-disabled-refused", request("claude-opus-5-5", thinking={"type": "disabled"}), ("thinking", "type"),
         "'disabled' is not supported for claude-opus-5-5", model="claude-opus-5-5"),
    Rule("thinking-between-tools-refused", request("claude-haiku-4-5", thinking={"type": "between_tools"}),
         ("thinking", "type"), "'between_tools' is not supported"),
    Rule("thinking-budget-too-small", request(thinking={"type": "enabled", "budget_tokens": 512}),
         ("thinking", "budget_tokens"), "must be at least 1024", model=None),
    Rule("thinking-budget-over-max-tokens", request(thinking={"type": "enabled", "budget_tokens": 1024}),
         ("thinking", "budget_tokens"), "must be less than max_tokens (1024)", model=None),
    Rule("thinking-disabled-at-max-effort", request("claude-opus-5", thinking={"type": "disabled"},
         output_config={"effort": "max"}), ("thinking", "type"), "only at effort high or lower", model="claude-opus-5"),
    # effort, structured outputs, attachments
    Rule("effort-refused", request(output_config={"effort": "low"}), ("output_config", "effort"),
         "'low' is not supported for claude-haiku-4-5: remove it"),
    Rule("effort-level-refused", request("claude-opus-4-5", output_config={"effort": "max"}), ("output_config", "effort"),
         "use one of low, medium, high", model="claude-opus-4-5"),
    Rule("structured-outputs-refused", request(output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}}),
         ("output_config", "format"), "needs structured outputs", model=entry("claude-haiku-4-5", structured_outputs=False)),
    Rule("image-refused", request(messages=[user(IMAGE, {"type": "text", "text": "a"})]), ("messages", 0, "content", 0),
         "cannot read images", model=entry("claude-haiku-4-5", image_input=False)),
    Rule("pdf-refused", request(messages=[user({"type": "text", "text": "a"}, PDF)]), ("messages", 0, "content", 1),
         "cannot read PDFs", model=entry("claude-haiku-4-5", pdf_input=False)),
    Rule("retired-model", request("claude-sonnet-4-5"), ("model",), "was retired on 2026-11-30", model="claude-sonnet-4-5"),
    # tools
    Rule("forced-tool-choice-refused", request("claude-sonnet-5-5", tools=[TOOL], tool_choice={"type": "tool", "name": "lookup"}),
         ("tool_choice", "type"), "(a forced tool choice) is not supported for claude-sonnet-5-5", model="claude-sonnet-5-5"),
    Rule("tool-choice-undefined", request(tools=[TOOL], tool_choice={"type": "tool", "name": "search"}), ("tool_choice", "name"),
         "'search' is not a tool of this request (the tools are lookup)", model=None),
    Rule("tool-choice-without-tools", request(tool_choice={"type": "tool", "name": "search"}), ("tool_choice", "name"),
         "`tools` defines none", model=None),
    Rule("tool-schema-invalid", request(tools=[dict(TOOL, input_schema={"type": "objekt"})]), ("tools", 0, "input_schema"),
         "is not a valid JSON Schema at type", model=None),
    Rule("tool-schema-not-object", request(tools=[dict(TOOL, input_schema={"type": "array"})]), ("tools", 0, "input_schema"),
         "should have `type: object` at its root", model=None),
    Rule("tool-name", request(tools=[dict(TOOL, name="bad name!")]), ("tools", 0, "name"), "should be 1-128 of", model=None),
    Rule("tool-name-too-long", request(tools=[dict(TOOL, name="a" * 129)]), ("tools", 0, "name"), "1-128", model=None),
    Rule("whitespace-stop-sequence", request(stop_sequences=["END", " \n"]), ("stop_sequences", 1), "only whitespace", model=None),
]


@pytest.mark.parametrize("rule", RULES, ids=[rule.name for rule in RULES])
def test_each_rule_names_the_parameter_and_the_fix(rule: Rule) -> None:
    model = CATALOG.resolve(rule.model) if isinstance(rule.model, str) else rule.model
    found = check_request(rule.params, api_version=rule.version, model=model, betas=rule.betas)
    assert [v.path for v in found] == [rule.path], found
    [violation] = found
    assert violation.message.startswith("`" + ".".join(map(str, rule.path)) + "` ")
    assert rule.says in violation.message
    assert violation.error_type == "invalid_request_error"
    assert ": " in violation.message  # every message ends with what to do


@pytest.mark.parametrize("model", [e.id for e in CATALOG.entries() if e.lifecycle != "retired"])
def test_a_plain_request_is_fine_on_every_current_model(model: str) -> None:
    entry_ = CATALOG.resolve(model)
    params = request(model, max_tokens=entry_.max_tokens, cache_control={"type": "ephemeral"}, tools=[TOOL],
                     tool_choice={"type": "auto"}, stop_sequences=["END"],
                     messages=[user({"type": "text", "text": "a", "citations": []}, TEXT_DOC),
                               {"role": "assistant", "content": "ok"}, user({"type": "text", "text": "b"})])
    assert check_request(params, api_version=NEW, model=entry_) == []


def test_2023_06_01_keeps_sampling_for_models_that_take_it() -> None:
    haiku = CATALOG.resolve("claude-haiku-4-5")
    assert check_request(request(temperature=0, top_p=0.5, top_k=3), api_version=OLD, model=haiku) == []
    thinking = request(max_tokens=4096, thinking=THINKING, temperature=1, top_p=0.95)
    assert check_request(thinking, api_version=OLD, model=haiku) == []
    opus = CATALOG.resolve("claude-opus-5-5")
    assert check_request(request("claude-opus-5-5", temperature=1.0), api_version=OLD, model=opus) == []


def test_an_unknown_model_skips_only_the_model_rules() -> None:
    params = request("claude-x", max_tokens=200_000, thinking={"type": "disabled"}, output_config={"effort": "max"})
    assert check_request(params, api_version=NEW, model=None) == []
    assert [v.path for v in check_request(request("claude-x", temperature=0), api_version=NEW, model=None)] == [("temperature",)]


def test_the_batch_beta_allows_300k_output_where_the_model_has_it() -> None:
    opus = CATALOG.resolve("claude-opus-5-5")
    params = request("claude-opus-5-5", max_tokens=300_000)
    assert check_request(params, api_version=NEW, model=opus, betas=("output-300k-2026-03-24",)) == []
    fable = CATALOG.resolve("claude-fable-5-2")
    found = check_request(request("claude-fable-5-2", max_tokens=200_000), api_version=NEW, model=fable,
                          betas=("output-300k-2026-03-24",))
    assert [v.path for v in found] == [("max_tokens",)] and "beta" not in found[0].message


def test_versions() -> None:
    assert API_VERSIONS == ("2023-06-01", "2026-10-21") and DEFAULT_API_VERSION == "2026-10-21"
