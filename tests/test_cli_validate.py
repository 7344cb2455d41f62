"""`batchrunner validate`: the report for a good job, and a corpus of bad specs and bad input files.

Every bad case must exit 2 with a message that names the file and line and says what to fix,
show no traceback, and write nothing anywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from click.testing import Result

import batchrunner.compile as compile_module

BASE = """\
name: demo
model: claude-haiku-4-5
max_tokens: 64
input: rows.jsonl
id_field: id
prompt: "Review: {text}"
output: out/results.jsonl
"""
ROWS = b'{"id": "r-1", "text": "good"}\n{"id": "r-2", "text": "bad"}\n'
REPO = Path(__file__).resolve().parent.parent


def edit(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new)


@dataclass
class Case:
    """One bad job: the spec, the input files, and where and what the error must say."""

    name: str
    spec: str
    file: str
    line: int
    says: str
    files: dict[str, bytes] = field(default_factory=lambda: {"rows.jsonl": ROWS})
    max_bytes: int | None = None


def rows(*lines: bytes) -> dict[str, bytes]:
    return {"rows.jsonl": b"".join(line + b"\n" for line in lines)}


def csv(data: bytes) -> dict[str, bytes]:
    return {"rows.csv": data}


CSV_SPEC = edit("rows.jsonl", "rows.csv")

CORPUS = [
    # -- the spec file: YAML itself
    Case("malformed-yaml", edit("max_tokens: 64", "max_tokens: [64"), "job.yaml", 4, "malformed YAML"),
    Case("bad-indentation", edit("model: claude-haiku-4-5", "model: a\n  b: c"), "job.yaml", 3, "check the indentation"),
    Case("tab-indentation", BASE + "retry:\n\tmax_attempts: 2\n", "job.yaml", 9, "malformed YAML"),
    Case("duplicate-key", BASE + "max_tokens: 10\n", "job.yaml", 8, "duplicate key `max_tokens` (first on line 3)"),
    Case("python-tag", BASE + "x: !!python/object/apply:os.system [echo hi]\n", "job.yaml", 8,
         "unsupported YAML tag !!python/object/apply:os.system: a spec holds plain data only; remove the tag"),
    Case("python-object-tag", "!!python/object:os.Foo {a: 1}\n", "job.yaml", 1, "unsupported YAML tag !!python/object:os.Foo"),
    Case("set-tag", BASE + "y: !!set {a, b}\n", "job.yaml", 8, "unsupported YAML tag !!set"),
    Case("empty-spec", "", "job.yaml", 1, "the spec is empty"),
    Case("list-spec", "- name: demo\n", "job.yaml", 1, "a job spec is a mapping of keys"),
    Case("two-documents", BASE + "---\nname: again\n", "job.yaml", 8, "malformed YAML"),
    # -- the spec file: keys and types
    Case("unknown-key", BASE + "modle: x\n", "job.yaml", 8, "unknown key `modle`: did you mean `model`?"),
    Case("unknown-nested-key", BASE + "poll: {timout: 5}\n", "job.yaml", 8, "did you mean `timeout`?"),
    Case("missing-model", edit("model: claude-haiku-4-5\n", ""), "job.yaml", 1, "missing required key `model` (for example"),
    Case("missing-output", edit("output: out/results.jsonl\n", ""), "job.yaml", 1, "missing required key `output`"),
    Case("max-tokens-zero", edit("max_tokens: 64", "max_tokens: 0"), "job.yaml", 3, "should be greater than or equal to 1"),
    Case("max-tokens-text", edit("max_tokens: 64", "max_tokens: sixty"), "job.yaml", 3, "should be a valid integer"),
    Case("max-tokens-float", edit("max_tokens: 64", "max_tokens: 6.5"), "job.yaml", 3, "should be a valid integer"),
    Case("bad-name", edit("name: demo", "name: Demo Job"), "job.yaml", 1, "lowercase letters, digits, '-' or '_'"),
    Case("model-list", edit("model: claude-haiku-4-5", "model: [a, b]"), "job.yaml", 2, "`model` should be a valid string"),
    Case("batch-size-zero", BASE + "batch_size: 0\n", "job.yaml", 8, "should be greater than or equal to 1"),
    Case("batch-size-too-big", BASE + "batch_size: 100001\n", "job.yaml", 8, "should be less than or equal to 100000"),
    Case("bad-backend", BASE + "backend: cloud\n", "job.yaml", 8, "should be 'auto', 'local' or 'anthropic'"),
    Case("bad-retry-status", BASE + "retry:\n  statuses: [failed]\n", "job.yaml", 9, "should be 'errored', 'expired' or 'canceled'"),
    Case("poll-intervals", BASE + "poll:\n  initial_interval: 9\n  max_interval: 1\n", "job.yaml", 10, "at least initial_interval"),
    Case("pricing-incomplete", BASE + "pricing: {input_per_mtok: 1}\n", "job.yaml", 8, "missing required key `output_per_mtok`"),
    Case("negative-budget", BASE + "budget_usd: -5\n", "job.yaml", 8, "should be greater than 0"),
    Case("over-budget", BASE + "budget_usd: 0.0000001\n", "job.yaml", 8, "raise the budget, lower max_tokens"),
    Case("budget-unknown-price", edit("claude-haiku-4-5", "house-model") + "budget_usd: 1\n", "job.yaml", 8,
         "add a `pricing:` block"),
    # -- the spec file: prompt and messages
    Case("prompt-and-messages", BASE + "messages: [{role: user, content: hi}]\n", "job.yaml", 8, "not both"),
    Case("no-prompt-or-messages", edit('prompt: "Review: {text}"\n', ""), "job.yaml", 1, "add `prompt:`"),
    Case("attribute-access", edit("{text}", "{text.__class__}"), "job.yaml", 6, "attribute or index access"),
    Case("index-access", edit("{text}", "{text[0]}"), "job.yaml", 6, "attribute or index access"),
    Case("format-spec", edit("{text}", "{text:>{width}}"), "job.yaml", 6, "conversion or format spec"),
    Case("unbalanced-brace", edit("{text}", "{text"), "job.yaml", 6, "write {{ or }} for a literal brace"),
    Case("unquoted-template", edit('"Review: {text}"', "{text}"), "job.yaml", 6, "quote the text"),
    Case("bad-role", edit('prompt: "Review: {text}"', "messages:\n  - {role: bot, content: hi}"), "job.yaml", 7,
         "should be 'user' or 'assistant'"),
    Case("bad-block-type", edit('prompt: "Review: {text}"', "messages:\n  - role: user\n    content: [{type: txt}]"),
         "job.yaml", 8, "`type` should be one of: text, image"),
    # -- the spec file: params and schema
    Case("unknown-param", BASE + "params: {temprature: 0}\n", "job.yaml", 8, "did you mean `temperature`?"),
    Case("temperature-range", BASE + "params:\n  temperature: 1.5\n", "job.yaml", 9, "less than or equal to 1"),
    Case("stream-param", BASE + "params: {stream: true}\n", "job.yaml", 8, "cannot stream; remove it"),
    Case("max-tokens-in-params", BASE + "params: {max_tokens: 9}\n", "job.yaml", 8, "move it out of `params`"),
    Case("tool-without-schema", BASE + "params:\n  tools:\n    - name: lookup\n", "job.yaml", 10,
         "missing required key `input_schema`"),
    Case("thinking-budget", BASE + "params: {thinking: {type: enabled, budget_tokens: 2048}}\n", "job.yaml", 8,
         "raise max_tokens"),
    Case("bad-output-schema", BASE + "output_schema: {type: objekt}\n", "job.yaml", 8, "is not a valid JSON Schema"),
    Case("output-schema-not-mapping", BASE + "output_schema: label\n", "job.yaml", 8, "should be a valid dictionary"),
    # -- the request, held to the API's rules for its version and model (rules.py, the catalog)
    Case("temperature-removed", BASE + "params: {temperature: 0}\n", "job.yaml", 8,
         "`params.temperature` was removed in API version 2026-10-21 (a 400 even at its default): remove it, "
         "or set `api_version: 2023-06-01`"),
    Case("top-k-removed", BASE + "params:\n  stop_sequences: [END]\n  top_k: 5\n", "job.yaml", 10,
         "`params.top_k` was removed in API version 2026-10-21"),
    Case("bad-api-version", BASE + "api_version: 2025-01-01\n", "job.yaml", 8, "should be one of 2023-06-01, 2026-10-21"),
    Case("assistant-document", edit('prompt: "Review: {text}"', "messages:\n  - {role: user, content: hi}\n"
         "  - role: assistant\n    content:\n      - {type: document, source: {type: text, media_type: text/plain, data: x}}\n"
         "  - {role: user, content: '{text}'}"), "job.yaml", 10, "is a document block in an assistant turn"),
    Case("user-text-citations", edit('prompt: "Review: {text}"', "messages:\n  - role: user\n    content:\n"
         "      - {type: text, text: '{text}', citations: [{type: char_location, cited_text: a}]}"), "job.yaml", 9,
         "`messages.0.content.0.citations` are not allowed on a user text block in API version 2026-10-21"),
    Case("tool-schema-objekt", BASE + "params:\n  tools:\n    - name: lookup\n      input_schema: {type: objekt}\n",
         "job.yaml", 11, "`params.tools.0.input_schema` is not a valid JSON Schema at type"),
    Case("tool-schema-not-object", BASE + "params:\n  tools:\n    - name: lookup\n      input_schema: {type: string}\n",
         "job.yaml", 11, "should have `type: object` at its root"),
    Case("tool-bad-name", BASE + "params:\n  tools:\n    - name: bad name!\n      input_schema: {type: object}\n",
         "job.yaml", 10, "`params.tools.0.name` 'bad name!' should be 1-128 of a-z A-Z 0-9 _ -"),
    Case("tool-choice-undefined", BASE + "params:\n  tools:\n    - {name: lookup, input_schema: {type: object}}\n"
         "  tool_choice: {type: tool, name: search}\n", "job.yaml", 11,
         "`params.tool_choice.name` 'search' is not a tool of this request (the tools are lookup)"),
    Case("thinking-with-temperature-2023", edit("max_tokens: 64", "max_tokens: 4096") + "api_version: 2023-06-01\n"
         "params:\n  thinking: {type: enabled, budget_tokens: 1024}\n  temperature: 0.5\n", "job.yaml", 11,
         "`params.temperature` must be 1 while thinking is on"),
    Case("whitespace-stop-sequence", BASE + "params:\n  stop_sequences: [END, '  ']\n", "job.yaml", 9,
         "`params.stop_sequences.1` is empty or only whitespace"),
    Case("max-tokens-absurd", edit("max_tokens: 64", "max_tokens: 1000000000000"), "job.yaml", 3,
         "`max_tokens` 1000000000000 > 64000, which is the maximum allowed number of output tokens for claude-haiku-4-5"),
    Case("max-tokens-absurd-unknown-model", edit("max_tokens: 64", "max_tokens: 1000000000000").replace(
         "claude-haiku-4-5", "house-model"), "job.yaml", 3, "is more than any model can write"),
    Case("max-tokens-batch-beta", edit("max_tokens: 64", "max_tokens: 200000").replace("claude-haiku-4-5", "claude-opus-5-5"),
         "job.yaml", 3, "needs the output-300k-2026-03-24 beta"),
    Case("thinking-enabled-on-opus-4-7", edit("max_tokens: 64", "max_tokens: 4096").replace("claude-haiku-4-5", "claude-opus-4-7")
         + "params: {thinking: {type: enabled, budget_tokens: 1024}}\n", "job.yaml", 8,
         "`params.thinking.type` 'enabled' is not supported for claude-opus-4-7: use 'adaptive' or 'disabled'"),
    Case("thinking-disabled-on-opus-5-5", edit("claude-haiku-4-5", "claude-opus-5-5") + "params: {thinking: {type: disabled}}\n",
         "job.yaml", 8, "'disabled' is not supported for claude-opus-5-5"),
    Case("effort-on-haiku-4-5", BASE + "params: {output_config: {effort: high}}\n", "job.yaml", 8,
         "`params.output_config.effort` 'high' is not supported for claude-haiku-4-5: remove it"),
    Case("forced-tool-choice-opus-5-5", edit("claude-haiku-4-5", "claude-opus-5-5") + "params:\n  tools:\n"
         "    - {name: lookup, input_schema: {type: object}}\n  tool_choice: {type: any}\n", "job.yaml", 11,
         "'any' (a forced tool choice) is not supported for claude-opus-5-5"),
    Case("retired-model", edit("claude-haiku-4-5", "claude-sonnet-4-5"), "job.yaml", 2,
         "`model` claude-sonnet-4-5 was retired on 2026-11-30"),
    Case("sampling-on-default-only-model-2023", edit("claude-haiku-4-5", "claude-opus-4-7") + "api_version: 2023-06-01\n"
         "params: {temperature: 0.5}\n", "job.yaml", 9, "must be left at its default on claude-opus-4-7"),
    # -- the spec file: paths
    Case("unknown-input-extension", edit("rows.jsonl", "rows.txt"), "job.yaml", 4, "is not a .jsonl, .csv or .parquet",
         files={"rows.txt": ROWS}),
    Case("missing-input-file", edit("rows.jsonl", "nowhere.jsonl"), "job.yaml", 4, "`input` file not found"),
    Case("output-is-input", edit("out/results.jsonl", "rows.jsonl"), "job.yaml", 7, "would overwrite the rows"),
    Case("output-where-no-folder-can-be-made", edit("out/results.jsonl", "/proc/x/results.jsonl"), "job.yaml", 7,
         "cannot write the output /proc/x/results.jsonl: /proc is on a system filesystem"),  # root passes os.access there
    # -- the spec file: an output at a URL, held to the rules `submit` holds it to, with no network call
    Case("output-url-with-credentials", edit("out/results.jsonl", "s3://AKID:wJalrXUtnFEMI@bucket/results.jsonl"), "job.yaml", 7,
         "`output` s3://***@bucket/results.jsonl: credentials do not go in the URL"),
    Case("output-url-with-a-signature", edit("out/results.jsonl", "s3://bucket/results.jsonl?X-Amz-Signature=f00d"), "job.yaml", 7,
         "`output` s3://bucket/results.jsonl?X-Amz-Signature=***: credentials do not go in the URL"),
    Case("output-http-url", edit("out/results.jsonl", "http://example.com/results.jsonl"), "job.yaml", 7,
         "at s3://, gs:// or az:// URLs, not http://"),
    Case("output-url-without-its-extra", edit("out/results.jsonl", "gs://bucket/results.jsonl"), "job.yaml", 7,
         "`output` gs://bucket/results.jsonl: needs the gcs extra: pip install 'batchrunner[gcs]'"),  # the test install has no gcsfs
    # -- the input file: JSONL
    Case("invalid-utf8", BASE, "rows.jsonl", 2, "invalid UTF-8 at byte 24 of the line (byte offset 53",
         files=rows(b'{"id": "r-1", "text": "good"}', b'{"id": "r-2", "text": "\xff"}')),
    Case("malformed-json", BASE, "rows.jsonl", 2, "not valid JSON", files=rows(b'{"id": "r-1", "text": "ok"}', b'{"id": ')),
    Case("non-object-row", BASE, "rows.jsonl", 3, "expected a JSON object",
         files=rows(b'{"id": "r-1", "text": "ok"}', b"", b'["r-2", "bad"]')),
    Case("empty-input", BASE, "rows.jsonl", 1, "the file has no rows", files={"rows.jsonl": b""}),
    Case("duplicate-custom-id", BASE, "rows.jsonl", 3, "duplicate custom_id 'r-1' (also on line 1)",
         files=rows(b'{"id": "r-1", "text": "a"}', b'{"id": "r-2", "text": "b"}', b'{"id": "r-1", "text": "c"}')),
    Case("invalid-custom-id", BASE, "rows.jsonl", 1, "must be 1-64 of A-Z a-z 0-9 - _", files=rows(b'{"id": "r 1", "text": "a"}')),
    Case("custom-id-too-long", BASE, "rows.jsonl", 1, "is 65 characters: at most 64",
         files=rows(b'{"id": "' + b"a" * 65 + b'", "text": "a"}')),
    Case("missing-id-field", BASE, "rows.jsonl", 2, "no `id` field for the custom_id",
         files=rows(b'{"id": "r-1", "text": "a"}', b'{"text": "b"}')),
    Case("float-id", BASE, "rows.jsonl", 1, "a custom_id must be a string or an integer", files=rows(b'{"id": 1.5, "text": "a"}')),
    Case("missing-template-field", BASE, "rows.jsonl", 1, "this row has no `text` field, which `prompt` uses",
         files=rows(b'{"id": "r-1", "body": "a"}')),
    Case("empty-rendered-prompt", edit('"Review: {text}"', '"{text}"'), "rows.jsonl", 2, "renders to empty text",
         files=rows(b'{"id": "r-1", "text": "a"}', b'{"id": "r-2", "text": "  "}')),
    Case("oversized-request", BASE, "rows.jsonl", 2, "over the 2,000-byte batch limit: shorten the row's text",
         files=rows(b'{"id": "r-1", "text": "a"}', b'{"id": "r-2", "text": "' + b"x" * 3000 + b'"}'), max_bytes=2000),
    # -- the input file: CSV
    Case("ragged-csv", CSV_SPEC, "rows.csv", 3, "3 field(s), but the header on line 1 has 2: quote fields",
         files=csv(b"id,text\nr-1,good\nr-2,bad,extra\n")),
    Case("csv-bad-quotes", CSV_SPEC, "rows.csv", 2, "malformed CSV", files=csv(b'id,text\nr-1,"good"bad\n')),
    Case("csv-unterminated-quote", CSV_SPEC, "rows.csv", 3, "check its quotes",
         files=csv(b'id,text\nr-1,good\nr-2,"never\nclosed\n')),
    Case("csv-duplicate-header", CSV_SPEC, "rows.csv", 1, "duplicate column name", files=csv(b"id,id\nr-1,a\n")),
    Case("csv-header-only", CSV_SPEC, "rows.csv", 1, "has a header but no rows", files=csv(b"id,text\n")),
    Case("csv-invalid-utf8", CSV_SPEC, "rows.csv", 3, "invalid UTF-8", files=csv(b"id,text\nr-1,a\nr-2,\xc3\x28\n")),
]


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def make(tmp_path: Path, spec: str, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    path = tmp_path / "job.yaml"
    path.write_text(spec)
    return path


def test_the_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 60
    assert len({case.name for case in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_bad_job_exits_2_naming_file_and_line(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: Callable[..., Result]
) -> None:
    if case.max_bytes is not None:
        monkeypatch.setattr(compile_module, "MAX_BATCH_BYTES", case.max_bytes)
    spec = make(tmp_path, case.spec, case.files)
    before = snapshot(tmp_path)
    result = run_cli("validate", spec)
    assert result.exit_code == 2, result.output
    assert f"{case.file}:{case.line}: " in result.stderr, result.stderr
    assert case.says in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert snapshot(tmp_path) == before  # nothing written: no shards, no output, no state home


def test_bad_job_with_json_prints_every_problem_as_data(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = make(tmp_path, edit("max_tokens: 64", "max_tokens: 0") + "modle: x\n", {"rows.jsonl": ROWS})
    result = run_cli("--json", "validate", spec)
    assert result.exit_code == 2
    error = orjson.loads(result.stdout)["error"]
    assert error["type"] == "SpecError" and error["exit_code"] == 2
    assert [(p["line"], p["file"].endswith("job.yaml")) for p in error["problems"]] == [(3, True), (8, True)]


def test_good_job_prints_requests_shards_bytes_tokens_and_cost(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    data = b'\xef\xbb\xbf{"id": "r-1", "text": "good"}\r\n\r\n{"id": "r-2", "text": "bad"}\r\n'  # BOM and CRLF are fine
    spec = make(tmp_path, BASE + "batch_size: 1\n", {"rows.jsonl": data})
    before = snapshot(tmp_path)
    result = run_cli("validate", spec)
    assert result.exit_code == 0, result.output
    assert "valid · 2 requests in 2 shards" in result.stdout
    assert "shard 000: 1 requests" in result.stdout and "shard 001: 1 requests" in result.stdout
    assert "estimated input tokens: ~" in result.stdout
    assert "at batch prices (claude-haiku-4-5)" in result.stdout
    assert snapshot(tmp_path) == before


def test_good_job_json_is_the_report(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = make(tmp_path, BASE, {"rows.jsonl": ROWS})
    result = run_cli("--json", "validate", spec)
    assert result.exit_code == 0
    report = orjson.loads(result.stdout)
    assert report["requests"] == 2 and report["model"] == "claude-haiku-4-5" and report["rows_path"] is None
    assert report["shards"] == [{"index": 0, "path": None, "requests": 2, "bytes": report["bytes"], "first_seq": 0}]
    assert 0 < report["cost_low_usd"] < report["cost_high_usd"]


def test_unknown_model_says_cost_unknown(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = make(tmp_path, edit("claude-haiku-4-5", "house-model"), {"rows.jsonl": ROWS})
    result = run_cli("validate", spec)
    assert result.exit_code == 0 and "cost unknown for house-model" in result.stdout


def test_a_model_the_catalog_does_not_know_is_a_warning_with_the_closest_ids(
    tmp_path: Path, run_cli: Callable[..., Result]
) -> None:
    spec = make(tmp_path, edit("claude-haiku-4-5", "claude-sonnet-9-9"), {"rows.jsonl": ROWS})
    result = run_cli("validate", spec)
    assert result.exit_code == 0, result.output
    assert ("job.yaml:2: model claude-sonnet-9-9 is not in the catalog (as of 2026-11-30): cost unknown; "
            "submit checks it with the API; did you mean claude-sonnet-5-5") in result.stdout
    data = orjson.loads(run_cli("--json", "validate", spec).stdout)
    assert data["cost_low_usd"] is None
    [warning] = data["warnings"]
    assert warning["line"] == 2 and warning["file"].endswith("job.yaml")
    assert "not in the catalog" in warning["message"] and "claude-sonnet-5-5" in warning["message"]
    known = orjson.loads(run_cli("--json", "validate", make(tmp_path, BASE, {"rows.jsonl": ROWS})).stdout)
    assert known["warnings"] == []
    priced = make(tmp_path, edit("claude-haiku-4-5", "house-model") + "pricing: {input_per_mtok: 1, output_per_mtok: 2}\n",
                  {"rows.jsonl": ROWS})
    result = run_cli("validate", priced)
    assert "model house-model is not in the catalog (as of 2026-11-30): priced by the spec's `pricing:`" in result.stdout


def test_temperature_is_refused_under_2026_10_21_and_taken_under_2023_06_01(
    tmp_path: Path, run_cli: Callable[..., Result]
) -> None:
    spec = make(tmp_path, BASE + "batch_size: 10\nparams: {temperature: 0}\n", {"rows.jsonl": ROWS})
    result = run_cli("validate", spec)
    assert result.exit_code == 2
    assert "job.yaml:9: `params.temperature` was removed in API version 2026-10-21" in result.stderr
    spec.write_text(BASE + "batch_size: 10\nparams: {temperature: 0}\napi_version: 2023-06-01\n")
    result = run_cli("validate", spec)
    assert result.exit_code == 0, result.output
    spec.write_text(BASE + "params: {temperature: 0}\napi_version: '2026-10-21'\n")
    assert run_cli("validate", spec).exit_code == 2


def test_opus_5_5_costs_2_and_10_dollars_per_million_tokens_in_a_batch(
    tmp_path: Path, run_cli: Callable[..., Result]
) -> None:
    spec = make(tmp_path, edit("claude-haiku-4-5", "claude-opus-5-5"), {"rows.jsonl": ROWS})
    report = orjson.loads(run_cli("--json", "validate", spec).stdout)
    tokens = report["estimated_input_tokens"]
    assert report["cost_low_usd"] == pytest.approx(tokens * 2 / 1e6)
    assert report["cost_high_usd"] == pytest.approx(tokens * 2 / 1e6 + 2 * 64 * 10 / 1e6)
    # its prefix, claude-opus-5, costs more: the price is never matched by prefix
    older = orjson.loads(run_cli("--json", "validate", make(tmp_path, BASE.replace("claude-haiku-4-5", "claude-opus-5"),
                                                            {"rows.jsonl": ROWS})).stdout)
    assert older["cost_low_usd"] == pytest.approx(older["estimated_input_tokens"] * 2.5 / 1e6)


def test_a_deprecated_model_is_a_warning(tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    spec = make(tmp_path, edit("claude-haiku-4-5", "claude-opus-4-5"), {"rows.jsonl": ROWS})
    result = run_cli("validate", spec)
    assert result.exit_code == 0
    assert "job.yaml:2: model claude-opus-4-5 is deprecated and retires on 2027-01-22" in result.stdout
    assert "warning: " in result.stdout


@pytest.mark.parametrize("job", ["nowhere.yaml", "."])
def test_missing_job_path_is_a_usage_error(job: str, run_cli: Callable[..., Result]) -> None:
    result = run_cli("validate", job)
    assert result.exit_code == 2 and "Invalid value for 'JOB'" in result.output


def test_the_demo_job_is_valid(run_cli: Callable[..., Result]) -> None:
    result = run_cli("validate", REPO / "jobs" / "eval.yaml")
    assert result.exit_code == 0, result.output
    assert "300 requests in 1 shard" in result.stdout


@pytest.mark.parametrize("name", ["duplicate-key", "python-tag", "duplicate-custom-id", "ragged-csv"])
def test_a_real_process_shows_a_short_relative_message(name: str, tmp_path: Path) -> None:
    case = next(c for c in CORPUS if c.name == name)
    make(tmp_path, case.spec, case.files)
    env = {**os.environ, "BATCHRUNNER_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-m", "batchrunner", "validate", "job.yaml"], check=False, cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {case.file}:{case.line}: ")
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "home").exists()
