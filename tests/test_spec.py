"""Loading a job spec: defaults, paths, the request shape, templates, and errors at file:line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from batchrunner.catalog import Catalog
from batchrunner.compile import check_spec_request
from batchrunner.errors import SpecError
from batchrunner.request_shape import PARAM_NAMES
from batchrunner.spec import JobSpec, PollSettings, Pricing, RetryPolicy, load_spec
from batchrunner.template import Template

MINIMAL = """\
name: demo
model: claude-haiku-4-5
max_tokens: 64
input: rows.jsonl
output: out/results.jsonl
prompt: "Review: {text}"
"""


def write_spec(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path) -> list[tuple[int | None, str]]:
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    return [(p.line, p.message) for p in caught.value.problems]


def test_minimal_spec_gets_the_documented_defaults(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, MINIMAL))
    assert isinstance(spec, JobSpec)
    assert (spec.name, spec.model, spec.max_tokens) == ("demo", "claude-haiku-4-5", 64)
    assert spec.backend is None and spec.id_field is None and spec.system is None and spec.messages is None
    assert spec.params == {} and spec.output_schema is None and spec.pricing is None and spec.budget_usd is None
    assert spec.batch_size is None and spec.keep_request_files is False
    assert (spec.retry.max_attempts, spec.retry.statuses, spec.retry.error_types) == (1, ["errored", "expired"], None)
    assert (spec.poll.requests_per_minute, spec.poll.initial_interval, spec.poll.max_interval) == (40, 2.0, 60.0)
    assert spec.poll.timeout is None
    assert spec.api_version == "2026-10-21"


@pytest.mark.parametrize("written", ["2023-06-01", "'2023-06-01'"])
def test_api_version_is_text_whether_or_not_yaml_reads_it_as_a_date(tmp_path: Path, written: str) -> None:
    assert load_spec(write_spec(tmp_path, MINIMAL + f"api_version: {written}\n")).api_version == "2023-06-01"


def test_paths_are_absolute_and_relative_to_the_spec_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "jobs").mkdir()
    path = write_spec(tmp_path / "jobs", MINIMAL.replace("rows.jsonl", "../samples/rows.jsonl"))
    monkeypatch.chdir(tmp_path / "jobs")
    spec = load_spec(Path("job.yaml"))
    assert spec.path == path
    assert spec.input_path == tmp_path / "samples" / "rows.jsonl"
    assert spec.output_path == tmp_path / "jobs" / "out" / "results.jsonl"


def test_every_documented_key_loads(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, """\
        name: full_job-1
        model: claude-sonnet-4-6
        max_tokens: 2048
        api_version: 2023-06-01
        backend: local
        input: rows.csv
        output: results.jsonl
        id_field: id
        system: [{type: text, text: You are terse., cache_control: {type: ephemeral}}]
        messages:
          - {role: user, content: "Classify: good"}
          - {role: assistant, content: positive}
          - role: user
            content: [{type: text, text: "Classify: {text}"}]
        params:
          temperature: 1
          stop_sequences: ["\\n\\nEND"]
          metadata: {user_id: abc}
          thinking: {type: enabled, budget_tokens: 1024}
          tools: [{name: lookup, input_schema: {type: object}}, {type: web_search_20250305, name: web_search}]
          tool_choice: {type: auto}
          output_config: {effort: low}
          service_tier: standard_only
        output_schema: {type: object, properties: {label: {type: string}}}
        batch_size: 500
        keep_request_files: true
        budget_usd: 12.5
        pricing: {input_per_mtok: 3, output_per_mtok: 15}
        retry: {max_attempts: 3, statuses: [errored], error_types: [overloaded_error]}
        poll: {requests_per_minute: 20, initial_interval: 1, max_interval: 30, timeout: 3600}
        """))
    assert spec.backend == "local" and spec.batch_size == 500 and spec.keep_request_files
    assert spec.pricing is not None and spec.pricing.output_per_mtok == 15.0
    assert spec.retry.max_attempts == 3 and spec.poll.timeout == 3600.0
    assert spec.params["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert spec.key_line("params", "temperature") == 16
    assert spec.key_line("retry") == 29
    assert check_spec_request(spec) == (Catalog.default().resolve("claude-sonnet-4-6"), [])  # the API would take it


def test_yaml_anchors_and_merge_keys_work(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, MINIMAL + "retry: &r {max_attempts: 2}\npoll: {<<: {timeout: 9}}\n"))
    assert spec.retry.max_attempts == 2 and spec.poll.timeout == 9.0


@pytest.mark.parametrize(
    ("extra", "line", "fragment"),
    [
        ("max_tokens: 10\n", 7, "duplicate key `max_tokens` (first on line 3)"),
        ("modle: x\n", 7, "did you mean `model`?"),
        ("retry: {max_atempts: 2}\n", 7, "unknown key `max_atempts` in `retry`: did you mean `max_attempts`?"),
        ("params: {temprature: 0}\n", 7, "unknown parameter `temprature` in `params`: did you mean `temperature`?"),
        ("params: {temperature: 1.5}\n", 7, "`params.temperature` should be less than or equal to 1"),
        ("params: {top_k: '5'}\n", 7, "`params.top_k` should be a valid integer"),
        ("params: {stream: true}\n", 7, "cannot stream"),
        ("params: {model: x}\n", 7, "is a top-level key of the job spec"),
        ("params:\n  thinking: {type: enabled, budget_tokens: 4096}\n", 7, "must be less than max_tokens (64)"),
        ("params: {tool_choice: {type: sometimes}}\n", 7, "params.tool_choice"),
        ("params: {tools: [{name: t}]}\n", 7, "missing required key `input_schema` in `params.tools.0`"),
        ("output_schema: {type: objekt}\n", 7, "is not a valid JSON Schema"),
        ("output_schema:\n  type: object\n  required: yes\n", 7, "is not a valid JSON Schema at required"),
        ("batch_size: 0\n", 7, "`batch_size` should be greater than or equal to 1"),
        ("batch_size: 100001\n", 7, "`batch_size` should be less than or equal to 100000"),
        ("backend: cloud\n", 7, "should be 'auto', 'local' or 'anthropic'"),
        ("budget_usd: 0\n", 7, "`budget_usd` should be greater than 0"),
        ("pricing: {input_per_mtok: 1}\n", 7, "missing required key `output_per_mtok` in `pricing`"),
        ("retry: {statuses: [failed]}\n", 7, "`retry.statuses.0` should be 'errored', 'expired' or 'canceled'"),
        ("retry: {max_attempts: 11}\n", 7, "less than or equal to 10"),
        ("poll: {initial_interval: 10, max_interval: 5}\n", 7, "should be at least initial_interval"),
        ("system: {text: hi}\n", 7, "quote the text"),
        ("messages: [{role: user, content: hi}]\n", 7, "use either `prompt` or `messages`, not both"),
        ("keep_request_files: 'yes'\n", 7, "should be a valid boolean"),
        ("id_field: ''\n", 7, "`id_field` should have at least 1 character"),
        ("path: elsewhere.yaml\n", 7, "unknown key `path`"),
        ("output: rows.jsonl\n", 7, "duplicate key `output`"),
        ("x: !!python/object/apply:os.system [echo hi]\n", 7, "unsupported YAML tag !!python/object/apply:os.system"),
        ("x: !!set {a, b}\n", 7, "unsupported YAML tag !!set"),
    ],
)
def test_problems_name_the_line_of_the_key(tmp_path: Path, extra: str, line: int, fragment: str) -> None:
    found = problems_of(write_spec(tmp_path, MINIMAL + extra))
    assert any(at == line and fragment in message for at, message in found), found


@pytest.mark.parametrize(
    ("old", "new", "line", "fragment"),
    [
        ("model: claude-haiku-4-5\n", "", 1, "missing required key `model` (for example `model: claude-haiku-4-5`)"),
        ("name: demo\nmodel: claude-haiku-4-5\n", "# tonight's labels\n\nname: demo\n", 3, "missing required key `model`"),
        ("max_tokens: 64", "max_tokens: 0", 3, "`max_tokens` should be greater than or equal to 1 (got 0)"),
        ("max_tokens: 64", "max_tokens: lots", 3, "`max_tokens` should be a valid integer (got 'lots')"),
        ("max_tokens: 64", "max_tokens: true", 3, "`max_tokens` should be a valid integer"),
        ("name: demo", "name: My Job", 1, "lowercase letters, digits"),
        ('prompt: "Review: {text}"\n', "", 1, "add `prompt:` (one user message) or `messages:`"),
        ('"Review: {text}"', '"Review: {text.upper}"', 6, "attribute or index access"),
        ('"Review: {text}"', '"Review: {text[0]}"', 6, "attribute or index access"),
        ('"Review: {text}"', '"Review: {text!r}"', 6, "conversion or format spec"),
        ('"Review: {text}"', '"Review: {text:>9}"', 6, "conversion or format spec"),
        ('"Review: {text}"', '"Review: {text"', 6, "unbalanced brace"),
        ('"Review: {text}"', '"Review: {}"', 6, "empty placeholder"),
        ('"Review: {text}"', '"   "', 6, "is empty"),
        ('"Review: {text}"', "{text}", 6, "quote the text"),
        ("input: rows.jsonl", "input: [rows.jsonl]", 4, "`input` should be a file path"),
        ("output: out/results.jsonl", "output: rows.jsonl", 5, "is the same file as `input`"),
        ("max_tokens: 64", "max_tokens: [64", 4, "malformed YAML"),
        ("model: claude-haiku-4-5", "model: a\n  b: c", 3, "malformed YAML"),
    ],
)
def test_problems_in_the_minimal_spec(tmp_path: Path, old: str, new: str, line: int, fragment: str) -> None:
    assert old in MINIMAL
    found = problems_of(write_spec(tmp_path, MINIMAL.replace(old, new)))
    assert any(at == line and fragment in message for at, message in found), found


def test_messages_are_checked_against_the_api_shape(tmp_path: Path) -> None:
    found = problems_of(write_spec(tmp_path, MINIMAL.replace('prompt: "Review: {text}"', """\
messages:
  - {role: bot, content: hi}
  - {role: user, content: 3}
  - {role: user, content: [{type: txt, text: a}]}
  - {role: user, content: [{type: image, source: {type: url}}], extra: 1}""")))
    assert (7, "`messages.0.role` should be 'user' or 'assistant' (got 'bot')") in found
    assert (8, "`messages.1.content` should be a string or a list of content blocks (got 3)") in found
    assert any(at == 9 and "`type` should be one of: text, image" in m and "'txt'" in m for at, m in found)
    assert any(at == 10 and "missing required key `url`" in m for at, m in found)
    assert (10, "unknown key `extra` in `messages.3`") in found


def test_all_problems_come_together_in_line_order(tmp_path: Path) -> None:
    found = problems_of(write_spec(tmp_path, "name: Bad Name\nmodel: 3\nmax_tokens: 0\nfoo: 1\n"))
    lines = [line for line, _ in found]
    assert lines == sorted(lines)
    assert {1, 2, 3, 4} <= set(lines)


def test_malformed_and_odd_files(tmp_path: Path) -> None:
    assert problems_of(write_spec(tmp_path, "")) == [(1, "the spec is empty: start with `name:`, `model:`, `max_tokens:`, ...")]
    assert "a job spec is a mapping" in problems_of(write_spec(tmp_path, "- a\n- b\n"))[0][1]
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: demo\nmodel: \xff\n")
    assert problems_of(bad) == [(2, "invalid UTF-8 at byte offset 18: save the spec as UTF-8")]
    two = write_spec(tmp_path, MINIMAL + "---\nname: again\n")
    assert "malformed YAML" in problems_of(two)[0][1]


def test_a_bom_in_the_spec_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.replace("\n", "\r\n").encode())
    assert load_spec(path).name == "demo"


def test_alias_bombs_are_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 12)]
    found = problems_of(write_spec(tmp_path, MINIMAL + "\n".join(lines) + "\n"))
    assert "expands to over" in found[0][1]


@pytest.mark.parametrize(
    ("text", "fields", "rendered"),
    [
        ("Review: {text}", ("text",), "Review: great"),
        ("{a}{b}", ("a", "b"), "great3"),
        ("{{literal}} {a} {b} {c}", ("a", "b", "c"), "{literal} great 3 [1,true,null]"),
        ("no fields", (), "no fields"),
        ("{review text}", ("review text",), "spaced"),
    ],
)
def test_templates_render_fields_and_json_for_non_strings(text: str, fields: tuple[str, ...], rendered: str) -> None:
    row = {"text": "great", "a": "great", "b": 3, "c": [1, True, None], "review text": "spaced"}
    template = Template.parse(text)
    assert template.fields == fields
    assert template.render(row) == rendered
    assert template.renderer()(row) == rendered


def test_template_missing_field_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="text"):
        Template.parse("x {text}").renderer()({"other": 1})


def test_every_spec_key_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    top = [str(f.validation_alias or name) for name, f in JobSpec.model_fields.items() if name not in ("path", "retry", "poll")]
    nested = [f"{key}.{name}" for key, model in (("retry", RetryPolicy), ("poll", PollSettings)) for name in model.model_fields]
    for key in top + nested:
        assert f"| `{key}` |" in readme, f"README's key table lacks `{key}`"
    for name in list(Pricing.model_fields) + list(PARAM_NAMES):
        assert f"`{name}`" in readme or name in readme, f"README does not mention `{name}`"
