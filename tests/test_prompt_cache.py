"""Prompt caching: the shared prefix is marked when long enough, the emulator bills cache writes and
reads as the API does, and the summary says what it saved."""

from __future__ import annotations

import orjson
from helpers import read_rows, reviews

LONG_SYSTEM = "You label product reviews. " + "Consider tone, intent and context carefully. " * 450  # ~20 KB: > 4,096 tokens


def system_spec(text: str, extra: str = "") -> str:
    return f"system: {orjson.dumps(text).decode()}\n" + extra


def request_lines(home, run_id):
    folder = home / "runs" / run_id
    return [orjson.loads(line) for path in sorted(folder.glob("requests-*.jsonl")) for line in path.read_bytes().splitlines()]


def test_a_long_shared_system_prompt_is_written_once_per_batch_and_read_by_the_rest(make_job, run_cli, isolated_env):
    job = make_job(reviews(20), batch_size=10, extra=system_spec(LONG_SYSTEM))

    result = run_cli("--json", "submit", job.spec, "--run-id", "cached-prefix")

    assert result.exit_code == 0, result.stderr
    system = request_lines(isolated_env, "cached-prefix")[0]["params"]["system"]
    assert system == [{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral"}}]
    out = read_rows(job.output)
    writes = [row["usage"]["cache_creation_input_tokens"] for row in out]
    reads = [row["usage"]["cache_read_input_tokens"] for row in out]
    assert sum(1 for n in writes if n) == 2, "one cache write per batch"
    assert sum(1 for n in reads if n) == 18 and max(writes) == max(reads) > 4096
    summary = orjson.loads(result.stdout)["summary"]
    assert summary["cache_write_tokens"] == sum(writes) and summary["cache_read_tokens"] == sum(reads)
    assert summary["prompt_cache_saved_usd"] > 0
    text = run_cli("status", "cached-prefix")
    assert "prompt cache:" in text.stdout and "saved $" in text.stdout


def test_prompt_cache_off_and_a_short_prefix_leave_requests_as_written(make_job, run_cli, isolated_env):
    off = make_job(reviews(4), name="unmarked", extra=system_spec(LONG_SYSTEM, "prompt_cache: off\n"))
    short = make_job(reviews(4), name="short", extra=system_spec("You label product reviews."))
    for job, run_id in ((off, "off-run"), (short, "short-run")):
        result = run_cli("--json", "submit", job.spec, "--run-id", run_id)
        assert result.exit_code == 0, result.stderr
        assert isinstance(request_lines(isolated_env, run_id)[0]["params"]["system"], str)
        assert orjson.loads(result.stdout)["summary"]["cache_read_tokens"] == 0


def test_few_shot_turns_are_marked_at_the_last_shared_turn(make_job, run_cli, isolated_env):
    messages = (
        "messages:\n"
        f"  - {{role: user, content: {orjson.dumps(LONG_SYSTEM).decode()}}}\n"
        "  - {role: assistant, content: positive}\n"
        "  - {role: user, content: \"Review: {text}\"}\n"
    )
    job = make_job(reviews(6), extra=messages)
    job.spec.write_text(job.spec.read_text().replace('prompt: "Review: {text}"\n', ""))

    result = run_cli("--json", "submit", job.spec, "--run-id", "few-shot")

    assert result.exit_code == 0, result.stderr
    turns = request_lines(isolated_env, "few-shot")[0]["params"]["messages"]
    assert turns[1]["content"] == [{"type": "text", "text": "positive", "cache_control": {"type": "ephemeral"}}]
    assert isinstance(turns[0]["content"], str) and isinstance(turns[2]["content"], str)
    assert orjson.loads(result.stdout)["summary"]["cache_read_tokens"] > 0


def test_more_than_four_cache_breakpoints_are_refused_at_their_line(make_job, run_cli):
    blocks = "".join(f"  - {{type: text, text: part {i}, cache_control: {{type: ephemeral}}}}\n" for i in range(5))
    job = make_job(reviews(2), extra="system:\n" + blocks)

    result = run_cli("validate", job.spec)

    assert result.exit_code == 2
    assert "system.4" in result.stderr and "at most 4" in result.stderr
