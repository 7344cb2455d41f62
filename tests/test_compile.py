"""The compiler: request lines, ids, templates, shards, rows.jsonl, cost, and all-or-nothing writes."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

import batchrunner.compile as compile_module
from batchrunner.catalog import Catalog
from batchrunner.compile import (
    CompileReport,
    check_budget,
    compile_job,
    validate_job,
)
from batchrunner.errors import BudgetExceeded, RowError, SpecError
from batchrunner.pricing import Usage, batch_cost_usd, estimate_tokens, standard_price
from batchrunner.requestfile import BODY_FRAMING
from batchrunner.spec import JobSpec, Pricing, load_spec

SPEC = """\
name: demo
model: claude-haiku-4-5
max_tokens: 64
input: rows.jsonl
output: results.jsonl
id_field: id
system: "Label sentiment. Reply as {\\"label\\": ...}"
prompt: "Review: {text}"
"""


def job(tmp_path: Path, rows: list[dict[str, Any]] | bytes, spec: str = SPEC, name: str = "rows.jsonl") -> JobSpec:
    data = rows if isinstance(rows, bytes) else b"".join(orjson.dumps(r) + b"\n" for r in rows)
    (tmp_path / name).write_bytes(data)
    (tmp_path / "job.yaml").write_text(textwrap.dedent(spec))
    return load_spec(tmp_path / "job.yaml")


def reviews(n: int) -> list[dict[str, Any]]:
    return [{"id": f"r-{i}", "text": f"review number {i}"} for i in range(1, n + 1)]


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def test_request_lines_are_exact_anthropic_bodies_with_custom_id_first(tmp_path: Path) -> None:
    spec = job(tmp_path, reviews(2), SPEC + "api_version: 2023-06-01\nparams: {temperature: 0.5, stop_sequences: [END]}\n")
    report = compile_job(spec, tmp_path / "out")
    first, second = lines(tmp_path / "out" / "requests-000.jsonl")
    assert first.startswith(b'{"custom_id":"r-1","params":{') and first.endswith(b"}}\n")
    assert orjson.loads(first) == {
        "custom_id": "r-1",
        "params": {
            "model": "claude-haiku-4-5",
            "max_tokens": 64,
            "system": 'Label sentiment. Reply as {"label": ...}',  # system is not a template
            "messages": [{"role": "user", "content": "Review: review number 1"}],
            "temperature": 0.5,
            "stop_sequences": ["END"],
        },
    }
    assert orjson.loads(second)["custom_id"] == "r-2"
    assert report.requests == 2 and report.bytes == len(first) + len(second)
    assert report.shards[0].path == tmp_path / "out" / "requests-000.jsonl"


def test_output_schema_becomes_output_config_format(tmp_path: Path) -> None:
    spec = job(tmp_path, reviews(1), SPEC.replace("claude-haiku-4-5", "claude-sonnet-4-6") + textwrap.dedent("""\
        params: {output_config: {effort: low}}
        output_schema:
          type: object
          properties: {label: {enum: [positive, negative, neutral]}}
          required: [label]
        """))
    compile_job(spec, tmp_path / "out")
    params = orjson.loads(lines(tmp_path / "out" / "requests-000.jsonl")[0])["params"]
    assert params["output_config"] == {
        "effort": "low",
        "format": {
            "type": "json_schema",
            "schema": {"type": "object", "properties": {"label": {"enum": ["positive", "negative", "neutral"]}},
                       "required": ["label"]},
        },
    }


def test_messages_templates_fill_every_text_and_keep_static_ones(tmp_path: Path) -> None:
    spec = job(tmp_path, [{"id": 7, "q": 'say "hi"', "n": 3}], SPEC.replace('prompt: "Review: {text}"', textwrap.dedent("""\
        messages:
          - {role: user, content: "Example: {{braces}} stay"}
          - {role: assistant, content: ok}
          - role: user
            content:
              - {type: text, text: "Q: {q}"}
              - {type: text, text: "n={n}", cache_control: {type: ephemeral}}
        """)))
    compile_job(spec, tmp_path / "out")
    request = orjson.loads(lines(tmp_path / "out" / "requests-000.jsonl")[0])
    assert request["custom_id"] == "7"  # an integer id becomes its decimal string
    assert request["params"]["messages"] == [
        {"role": "user", "content": "Example: {braces} stay"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [
            {"type": "text", "text": 'Q: say "hi"'},
            {"type": "text", "text": "n=3", "cache_control": {"type": "ephemeral"}},
        ]},
    ]


def test_without_id_field_ids_are_row_numbers(tmp_path: Path) -> None:
    spec = job(tmp_path, [{"text": "a"}, {"text": "b"}], SPEC.replace("id_field: id\n", ""))
    compile_job(spec, tmp_path / "out")
    ids = [orjson.loads(line)["custom_id"] for line in lines(tmp_path / "out" / "requests-000.jsonl")]
    assert ids == ["row-1", "row-2"]


def test_rows_file_matches_the_input_line_for_line(tmp_path: Path) -> None:
    raw = b'\xef\xbb\xbf{"id": "a", "text": "x"}\r\n\r\n{"id":"b","text":"y","n":[1,2]}\n'
    spec = job(tmp_path, raw)
    report = compile_job(spec, tmp_path / "out")
    assert report.rows_path == tmp_path / "out" / "rows.jsonl"
    assert lines(report.rows_path) == [b'{"id": "a", "text": "x"}\n', b'{"id":"b","text":"y","n":[1,2]}\n']


def test_csv_input_compiles_and_rows_file_holds_the_row_as_json(tmp_path: Path) -> None:
    spec = job(tmp_path, b'id,text\r\nr-1,"multi\nline, with comma"\r\n', SPEC.replace("rows.jsonl", "rows.csv"), "rows.csv")
    report = compile_job(spec, tmp_path / "out")
    request = orjson.loads(lines(tmp_path / "out" / "requests-000.jsonl")[0])
    assert request["params"]["messages"][0]["content"] == "Review: multi\nline, with comma"
    assert orjson.loads(lines(report.rows_path or Path())[0]) == {"id": "r-1", "text": "multi\nline, with comma"}


def test_shards_are_cut_by_count_in_input_order(tmp_path: Path) -> None:
    spec = job(tmp_path, reviews(10), SPEC + "batch_size: 3\n")
    report = compile_job(spec, tmp_path / "out")
    assert [(s.index, s.requests, s.first_seq) for s in report.shards] == [(0, 3, 0), (1, 3, 3), (2, 3, 6), (3, 1, 9)]
    ids = [orjson.loads(line)["custom_id"] for s in report.shards for line in lines(s.path or Path())]
    assert ids == [f"r-{i}" for i in range(1, 11)]
    assert files(tmp_path / "out") == {"rows.jsonl"} | {f"requests-00{i}.jsonl" for i in range(4)}


def test_without_batch_size_a_shard_fills_to_the_api_request_limit(tmp_path: Path) -> None:
    report = compile_job(job(tmp_path, reviews(100_001)), tmp_path / "out")
    assert [(s.requests, s.first_seq) for s in report.shards] == [(100_000, 0), (1, 100_000)]


def test_shards_are_cut_by_serialized_bytes_with_the_batch_framing(tmp_path: Path) -> None:
    spec = job(tmp_path, reviews(50))
    one = len(lines(compile_job(spec, tmp_path / "probe").shards[0].path or Path())[0])
    limit = 4 * one + BODY_FRAMING + 5  # room for four requests, not five
    report = compile_job(spec, tmp_path / "out", max_shard_bytes=limit)
    assert len(report.shards) > 10
    for shard in report.shards:
        body = b'{"requests":[' + b",".join(line.rstrip(b"\n") for line in lines(shard.path or Path())) + b"]}"
        assert len(body) <= limit
        assert shard.bytes == (shard.path or Path()).stat().st_size
    assert sum(s.requests for s in report.shards) == 50
    assert [s.first_seq for s in report.shards] == [sum(x.requests for x in report.shards[:i]) for i in range(len(report.shards))]


def test_the_module_limit_can_be_shrunk_for_tests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = job(tmp_path, reviews(4))
    monkeypatch.setattr(compile_module, "MAX_BATCH_BYTES", 400)
    assert len(compile_job(spec).shards) == 4


def test_validate_mode_writes_nothing_and_reports_the_same_shards(tmp_path: Path) -> None:
    spec = job(tmp_path, reviews(7), SPEC + "batch_size: 2\n")
    before = sorted(tmp_path.rglob("*"))
    report = compile_job(spec)
    assert sorted(tmp_path.rglob("*")) == before
    written = compile_job(spec, tmp_path / "out")
    assert report.rows_path is None and all(s.path is None for s in report.shards)
    assert [(s.requests, s.bytes, s.first_seq) for s in report.shards] == [
        (s.requests, s.bytes, s.first_seq) for s in written.shards
    ]


@pytest.mark.parametrize(
    ("rows", "line", "fragment"),
    [
        (b'{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', 2, "duplicate custom_id 'a' (also on line 1)"),
        (b'{"id": "a b", "text": "x"}\n', 1, "must be 1-64 of A-Z a-z 0-9 - _"),
        (b'{"id": "' + b"x" * 65 + b'", "text": "x"}\n', 1, "is 65 characters: at most 64"),
        (b'{"text": "x"}\n', 1, "no `id` field for the custom_id"),
        (b'{"id": 1.5, "text": "x"}\n', 1, "`id` is float; a custom_id must be a string or an integer"),
        (b'{"id": true, "text": "x"}\n', 1, "`id` is bool"),
        (b'{"id": "a", "txt": "x"}\n', 1, "this row has no `text` field, which `prompt` uses"),
        (b'{"id": "a", "text": "ok"}\n{"id": "b", "text": "x"}\n{"id": "c", "text": "' + b"y" * 2000 + b'"}\n', 3,
         "bytes, over the 1,000-byte batch limit"),
    ],
)
def test_row_problems_name_the_line_and_leave_no_files(tmp_path: Path, rows: bytes, line: int, fragment: str) -> None:
    spec = job(tmp_path, rows)
    with pytest.raises(RowError) as caught:
        compile_job(spec, tmp_path / "out", max_shard_bytes=1000)
    assert [(p.line, fragment in p.message) for p in caught.value.problems][:1] == [(line, True)], caught.value.message
    assert files(tmp_path / "out") == set()


def test_a_row_that_renders_empty_text_is_refused(tmp_path: Path) -> None:
    spec = job(tmp_path, [{"id": "a", "text": "fine"}, {"id": "b", "text": " \n"}], SPEC.replace("Review: {text}", "{text}"))
    with pytest.raises(RowError) as caught:
        compile_job(spec)
    assert [(p.line, p.message) for p in caught.value.problems] == [
        (2, "`prompt` renders to empty text for this row (the API rejects empty text): fill in text")
    ]


def test_a_duplicate_names_both_lines_even_with_many_rows_between(tmp_path: Path) -> None:
    rows = reviews(500) + [{"id": "r-17", "text": "again"}]
    with pytest.raises(RowError) as caught:
        compile_job(job(tmp_path, rows))
    assert [(p.line, p.message) for p in caught.value.problems] == [
        (501, "duplicate custom_id 'r-17' (also on line 17): `id` values must be unique")
    ]


def test_hash_collisions_are_not_mistaken_for_duplicates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compile_module, "hash", lambda value: 1, raising=False)
    report = compile_job(job(tmp_path, reviews(5)), tmp_path / "out")
    assert report.requests == 5 and len(lines(tmp_path / "out" / "requests-000.jsonl")) == 5


def test_problems_are_capped_and_the_rest_counted(tmp_path: Path) -> None:
    rows = [{"id": f"bad id {i}", "text": "x"} for i in range(25)]
    with pytest.raises(RowError) as caught:
        compile_job(job(tmp_path, rows), tmp_path / "out")
    assert len(caught.value.problems) == 20 and caught.value.more == 5
    assert [p.line for p in caught.value.problems] == list(range(1, 21))
    assert "... and 5 more problem(s)" in caught.value.message
    assert files(tmp_path / "out") == set()


def test_a_late_problem_discards_shards_already_written(tmp_path: Path) -> None:
    rows = reviews(30) + [{"id": "oops", "txt": "no text"}]
    with pytest.raises(RowError):
        compile_job(job(tmp_path, rows, SPEC + "batch_size: 5\n"), tmp_path / "out")
    assert files(tmp_path / "out") == set()


def test_input_problems_from_the_reader_are_collected_too(tmp_path: Path) -> None:
    raw = b'{"id": "a", "text": "x"}\nnot json\n[1]\n{"id": "a", "text": "x"}\n'
    with pytest.raises(RowError) as caught:
        compile_job(job(tmp_path, raw))
    assert [p.line for p in caught.value.problems] == [2, 3, 4]


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [("rows.jsonl", "rows.txt", "is not a .jsonl, .csv or .parquet"), ("rows.jsonl", "missing.jsonl", "file not found")],
)
def test_input_path_problems_point_at_the_spec_line(tmp_path: Path, old: str, new: str, fragment: str) -> None:
    spec = job(tmp_path, reviews(1), SPEC.replace(old, new))
    with pytest.raises(SpecError) as caught:
        compile_job(spec)
    assert caught.value.problems[0].line == 4 and fragment in caught.value.message


def test_estimates_and_cost_range(tmp_path: Path) -> None:
    spec = job(tmp_path, reviews(10), SPEC + "pricing: {input_per_mtok: 2, output_per_mtok: 10}\n")
    report = compile_job(spec)
    assert report.estimated_input_tokens > 0
    assert report.cost_low_usd == pytest.approx(report.estimated_input_tokens * 2 / 1e6 / 2)
    assert report.cost_high_usd == pytest.approx((report.estimated_input_tokens * 2 + 640 * 10) / 1e6 / 2)
    unknown = compile_job(job(tmp_path, reviews(1), SPEC.replace("claude-haiku-4-5", "my-own-model")))
    assert unknown.cost_low_usd is None and unknown.cost_high_usd is None and unknown.model == "my-own-model"


def test_report_to_dict(tmp_path: Path) -> None:
    report = compile_job(job(tmp_path, reviews(3)), tmp_path / "out")
    data = report.to_dict()
    assert set(data) == {"requests", "shards", "bytes", "estimated_input_tokens", "cost_low_usd", "cost_high_usd",
                         "model", "rows_path", "warnings"}
    assert data["shards"] == [{"index": 0, "path": str(tmp_path / "out" / "requests-000.jsonl"), "requests": 3,
                               "bytes": report.bytes, "first_seq": 0}]
    assert orjson.loads(orjson.dumps(data)) == data


def test_budget(tmp_path: Path) -> None:
    spec = job(tmp_path, reviews(100), SPEC + "budget_usd: 0.0001\n")
    report = compile_job(spec)
    with pytest.raises(BudgetExceeded) as caught:
        check_budget(spec, report)
    assert caught.value.problems[0].line == 9 and "over `budget_usd` $0.0001:" in caught.value.message
    with pytest.raises(BudgetExceeded, match="add a `pricing:` block"):
        validate_job(job(tmp_path, reviews(1), SPEC.replace("claude-haiku-4-5", "mystery") + "budget_usd: 5\n").path)
    assert isinstance(validate_job(job(tmp_path, reviews(1), SPEC + "budget_usd: 5\n").path), CompileReport)


@pytest.mark.parametrize(
    ("model", "price"),
    [
        ("claude-haiku-4-5", (1.0, 5.0)),
        ("claude-haiku-4-5-20251001", (1.0, 5.0)),
        ("claude-sonnet-4-5", (3.0, 15.0)),
        ("claude-sonnet-4-20250514", (3.0, 15.0)),
        ("claude-opus-4-1", (15.0, 75.0)),
        ("claude-opus-4-20250514", (15.0, 75.0)),
        ("claude-opus-4-5", (5.0, 25.0)),
        ("claude-opus-4-7", (5.0, 25.0)),
        ("claude-3-5-haiku-latest", (0.8, 4.0)),
        ("claude-opus-5-5", (4.0, 20.0)),
        ("claude-opus-5", (5.0, 25.0)),
        ("claude-fable-5-2", (8.0, 40.0)),
        ("claude-fable-5", (10.0, 50.0)),
        ("claude-sonnet-5-5", (2.0, 10.0)),
        ("claude-haiku-5-5", (0.10, 0.50)),
        ("claude-opus-5-5-20270101", None),  # never the price of a prefix
        ("claude-haiku-4", None),
        ("gpt-4o", None),
    ],
)
def test_prices_come_from_the_catalog_by_exact_id_or_alias(model: str, price: tuple[float, float] | None) -> None:
    assert standard_price(model) == price


def test_haiku_5_5_reprices_prompts_over_100k_tokens_output_included() -> None:
    assert batch_cost_usd("claude-haiku-5-5", 100_000, 1_000) == pytest.approx((100_000 * 0.10 + 1_000 * 0.50) / 2e6)
    assert batch_cost_usd("claude-haiku-5-5", 100_001, 1_000) == pytest.approx((100_001 * 0.50 + 1_000 * 2.50) / 2e6)
    # cache reads count toward the prompt's length
    assert batch_cost_usd("claude-haiku-5-5", 50_000, 0, cache_read=50_001) == pytest.approx(
        (50_000 * 0.50 + 50_001 * 0.05) / 2e6)
    # totals over two requests of 60K each stay in the lower tier
    assert batch_cost_usd("claude-haiku-5-5", 120_000, 0, requests=2) == pytest.approx(120_000 * 0.10 / 2e6)


def test_cache_tokens_are_priced_from_usage_at_batch_rates() -> None:
    usage = Usage.from_api({
        "input_tokens": 1_000, "output_tokens": 2_000, "cache_read_input_tokens": 10_000,
        "cache_creation_input_tokens": 4_000,
        "cache_creation": {"ephemeral_5m_input_tokens": 3_000, "ephemeral_1h_input_tokens": 1_000},
    })
    assert usage == Usage(1_000, 2_000, cache_write_5m=3_000, cache_write_1h=1_000, cache_read=10_000)
    assert Usage.from_api({"input_tokens": 5, "cache_creation_input_tokens": 7}).cache_write_5m == 7
    assert Usage.from_api(None) == Usage()
    cost = batch_cost_usd("claude-opus-5-5", 1_000, 2_000, cache_write_5m=3_000, cache_write_1h=1_000, cache_read=10_000)
    assert cost == pytest.approx((1_000 * 4 + 2_000 * 20 + 3_000 * 5 + 1_000 * 8 + 10_000 * 0.2) / 2e6)


def test_batch_cost_is_half_price_and_overridable() -> None:
    assert batch_cost_usd("claude-haiku-4-5", 1_000_000, 1_000_000) == pytest.approx(3.0)
    assert batch_cost_usd("unknown", 10, 10) is None
    assert batch_cost_usd("unknown", 1_000_000, 0, Pricing(input_per_mtok=4, output_per_mtok=8)) == pytest.approx(2.0)
    assert (estimate_tokens(0), estimate_tokens(1), estimate_tokens(8), estimate_tokens(9)) == (0, 1, 2, 3)


def test_an_attachment_the_model_cannot_read_is_an_error_at_the_rows_line(tmp_path: Path) -> None:
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.7\nx")
    (tmp_path / "b.md").write_text("# notes\n")
    (tmp_path / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0 jpeg")
    rows = [{"id": "1", "doc": "b.md", "pic": "c.jpg"}, {"id": "2", "doc": "a.pdf", "pic": "c.jpg"}]
    spec = job(tmp_path, rows, "name: t\nmodel: claude-haiku-4-5\nmax_tokens: 16\ninput: rows.jsonl\noutput: out.jsonl\n"
               "id_field: id\nprompt: Compare.\nattachments:\n  - {field: doc}\n  - {field: pic}\n")
    known = Catalog.default().resolve("claude-haiku-4-5")
    assert known is not None
    assert compile_job(spec).requests == 2  # the packaged Haiku 4.5 reads both

    def without(capability: str) -> Catalog:
        caps = dict(known.capabilities, **{capability: {"supported": False}})
        return Catalog(as_of="test", sources={}, models=(replace(known, capabilities=caps),))

    with pytest.raises(RowError) as caught:
        compile_job(spec, catalog=without("pdf_input"))
    [problem] = caught.value.problems
    assert Path(problem.path).name == "rows.jsonl" and problem.line == 2
    assert "the `doc` attachment is a PDF document, and claude-haiku-4-5 cannot read PDFs" in problem.message
    with pytest.raises(RowError) as caught:
        compile_job(spec, catalog=without("image_input"))
    assert [(p.line, "the `pic` attachment is an image" in p.message) for p in caught.value.problems] == [(1, True), (2, True)]
