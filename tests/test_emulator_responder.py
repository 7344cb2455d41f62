"""Simulated answers: schema-valid JSON for many schema shapes, plausible labels, stable output."""

from __future__ import annotations

from typing import Any

import jsonschema
import orjson
import pytest

from batchrunner.emulator.responder import Responder

SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"label": {"enum": ["positive", "negative", "neutral"]}}, "required": ["label"]},
    {"type": "object", "properties": {"kind": {"const": "review"}, "ok": {"type": "boolean"}, "n": {"type": "null"}},
     "required": ["kind", "ok", "n"], "additionalProperties": False},
    {"type": "object", "properties": {
        "stars": {"type": "integer", "minimum": 1, "maximum": 5},
        "price": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 10},
        "even": {"type": "integer", "multipleOf": 2, "minimum": 3, "maximum": 9},
        "summary": {"type": "string", "minLength": 40, "maxLength": 60},
        "code": {"type": "string", "maxLength": 3},
    }, "required": ["stars", "price", "even", "summary", "code"]},
    {"type": "object", "properties": {
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2, "uniqueItems": True},
        "colours": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "minItems": 3, "uniqueItems": True},
        "people": {"type": "array", "minItems": 1, "items": {
            "type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
            "required": ["name", "age"], "additionalProperties": False}},
    }, "required": ["tags", "colours", "people"], "additionalProperties": False},
    {"type": "object", "properties": {"maybe": {"type": ["string", "null"]}, "either": {"anyOf": [{"type": "integer"}, {"type": "string"}]}},
     "required": ["maybe", "either"]},
    {"$defs": {"node": {"type": "object", "properties": {"value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                        "required": ["value", "children"]}},
     "$ref": "#/$defs/node"},
    {"type": "object", "allOf": [{"properties": {"a": {"type": "string"}}, "required": ["a"]}, {"properties": {"b": {"type": "integer"}}, "required": ["b"]}]},
    {"type": "object", "minProperties": 2, "additionalProperties": {"type": "integer"}},
    {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}, "maxItems": 0},
]


def answer(params_extra: dict[str, Any], text: str, *, seed: int = 0, custom_id: str = "r-1") -> dict[str, Any]:
    params = {"model": "claude-haiku-4-5", "max_tokens": 512, "messages": [{"role": "user", "content": text}], **params_extra}
    responder = Responder(seed, 0.0, 0.0, lambda file_id: None)
    return responder.result(custom_id, params, orjson.dumps(params, option=orjson.OPT_SORT_KEYS))


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_structured_answers_are_valid_under_their_schema(schema: dict[str, Any], seed: int) -> None:
    result = answer({"output_config": {"format": {"type": "json_schema", "schema": schema}}}, "Review: decent kettle", seed=seed)
    assert result["type"] == "succeeded", result
    jsonschema.validate(orjson.loads(result["message"]["content"][0]["text"]), schema)


@pytest.mark.parametrize(
    ("review", "label"),
    [
        ("Great blender, I love it, excellent value", "positive"),
        ("Terrible. It arrived broken and I want a refund", "negative"),
    ],
)
def test_sentiment_labels_follow_the_words_in_the_review(review: str, label: str) -> None:
    structured = {"output_config": {"format": {"type": "json_schema", "schema": SCHEMAS[0]}}}
    assert orjson.loads(answer(structured, f"Review: {review}")["message"]["content"][0]["text"]) == {"label": label}
    assert answer({}, f"Review: {review}\nAnswer with one word.")["message"]["content"][0]["text"] == label


def test_an_invalid_schema_errors_the_request() -> None:
    result = answer({"output_config": {"format": {"type": "json_schema", "schema": {"type": "banana"}}}}, "x")
    assert result["type"] == "errored"
    assert result["error"]["error"]["message"].startswith("output_config.format.schema: invalid JSON Schema")


def test_answers_depend_on_seed_and_prompt_only() -> None:
    prompt = "What should I know about photosynthesis?"
    first, again, other_id = answer({}, prompt), answer({}, prompt), answer({}, prompt, custom_id="r-2")
    assert first == again
    assert first["message"]["content"] == other_id["message"]["content"]
    assert first["message"]["id"] != other_id["message"]["id"]
    texts = {answer({}, prompt, seed=seed)["message"]["content"][0]["text"] for seed in range(10)}
    assert len(texts) > 1
    assert all("photosynthesis" in text.lower() for text in texts)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"stream": True}, "stream"),
        ({"temperature": 1.5}, "temperature"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages.0.content.0.text"),
        ({"model": ""}, "model"),
        ({"system": [{"type": "text"}]}, "system"),
    ],
)
def test_bad_params_error_that_request_with_invalid_request_error(params: dict[str, Any], message: str) -> None:
    result = answer(params, "Hello")
    assert (result["type"], result["error"]["error"]["type"]) == ("errored", "invalid_request_error")
    assert result["error"]["error"]["message"].startswith(message)
