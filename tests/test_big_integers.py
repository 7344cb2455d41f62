"""Integers beyond 64 bits stay exact from the input row to the prompt, the custom_id and the output."""

from __future__ import annotations

import json

import orjson

BIG = 123456789012345678901234567890
SMALLEST = -9223372036854775809  # one below the 64-bit range


def test_a_30_digit_integer_is_exact_in_the_prompt_the_custom_id_and_the_output(tmp_path, run_cli, isolated_env):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        f'{{"id": {BIG}, "text": "fine", "n": {SMALLEST}}}\n'
        f'{{"id": "plain-2", "text": "ok", "n": [{BIG}, 1.5]}}\n'
        '{"id": 3, "text": "a float", "n": 1e30}\n'
    )
    spec = tmp_path / "job.yaml"
    spec.write_text(
        "name: big\nmodel: claude-haiku-4-5\nmax_tokens: 16\ninput: rows.jsonl\nid_field: id\n"
        'prompt: "Review {id}: {text} ({n})"\noutput: out.jsonl\npoll: {initial_interval: 0.05}\n'
    )

    assert run_cli("validate", spec).exit_code == 0
    result = run_cli("submit", spec, "--run-id", "big")

    assert result.exit_code == 0, result.stderr
    sent = [orjson.loads(line) for line in (isolated_env / "runs" / "big" / "requests-000.jsonl").read_bytes().splitlines()]
    assert sent[0]["custom_id"] == str(BIG)
    assert sent[0]["params"]["messages"][0]["content"] == f"Review {BIG}: fine ({SMALLEST})"
    assert sent[1]["params"]["messages"][0]["content"] == f"Review plain-2: ok ([{BIG},1.5])"
    assert sent[2]["params"]["messages"][0]["content"] == "Review 3: a float (1e+30)"
    first, second, _ = (json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines())
    assert (first["custom_id"], first["row"]["id"], first["row"]["n"]) == (str(BIG), BIG, SMALLEST)
    assert second["row"]["n"] == [BIG, 1.5]
