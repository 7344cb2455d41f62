"""Deterministic, plausible answers for one batch request, and the trigger strings that force an outcome.

The answer depends only on the seed and the request's params (like temperature 0); the request's
fate under `--errored-rate`/`--expired-rate` also depends on its custom_id, so identical prompts
do not all fail together. Nothing here reads the clock or a global random state.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema
import orjson

from batchrunner.emulator.judge import Judge
from batchrunner.rules import DEFAULT_API_VERSION, prompt_blocks

ERROR_TYPES = (
    "invalid_request_error", "authentication_error", "billing_error", "permission_error", "not_found_error",
    "rate_limit_error", "timeout_error", "api_error", "overloaded_error",
)
TRIGGER = re.compile(
    rb"\[\[emulator:(?:errored(?P<error_once>_once)?:(?P<error_type>"
    + "|".join(ERROR_TYPES).encode()
    + rb")|(?P<fate>expired|canceled)(?P<fate_once>_once)?|(?P<invalid_json>invalid_json)(?P<invalid_once>_once)?|slow)\]\]"
)
INVALID_JSON_TEXT = "Sorry, I cannot put that into JSON."
SLOW_TRIGGER = b"[[emulator:slow]]"
RETRYABLE_ERRORS = ("overloaded_error", "api_error")
TRIGGERED_MESSAGES = {
    "invalid_request_error": "messages: the request was refused (forced by an emulator trigger)",
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error",
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
}

POSITIVE = frozenset("great love loved excellent amazing perfect wonderful fantastic best happy recommend awesome".split())
NEGATIVE = frozenset("terrible broken refund awful worst bad hate disappointed poor useless waste returned".split())
STOPWORDS = frozenset(
    "the a an and or of to in on for with is are was were be it this that these those what which who how why "
    "when where your you i me my we our they their answer review text question please word one give tell about "
    "from as at by into can could should would will do does did not no yes just only summarize summarise write "
    "explain describe list classify translate short brief".split()
)
OPENERS = ("Sure.", "Here is a short answer.", "Good question.", "In short:", "Briefly:")
BODIES = (
    "{Topic} mostly comes down to context, and the details matter more than the headline.",
    "The key point about {topic} is that it depends on what you want to achieve.",
    "For {topic}, a simple approach usually works best: start small and check the results.",
    "{Topic} is useful when applied carefully, and less so when it is rushed.",
    "Most of what matters about {topic} can be seen in the first few examples.",
)
CLOSERS = ("Let me know if you want more detail.", "I hope this helps.", "Happy to expand on any part of it.")
WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")

FindFile = Callable[[str], tuple[str, int] | None]  # file id -> (filename, size in bytes), if stored


def estimate_tokens(text: str) -> int:
    """About four characters a token, the usual rule of thumb for English."""
    return max(1, (len(text) + 3) // 4)


def sentiment(text: str) -> str | None:
    """`positive`, `negative` or None, from cheap keyword counts."""
    words = [w.lower() for w in WORD.findall(text)]
    score = sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words)
    if score > 0:
        return "positive"
    if score < 0:
        return "negative"
    return None


@dataclass(frozen=True)
class Conversation:
    """The text a model would read, and what it costs in input tokens."""

    user_text: str
    system_text: str
    input_tokens: int


def read_conversation(params: dict[str, Any], attachment_tokens: Callable[[dict[str, Any]], int]) -> Conversation:
    system = params.get("system") or ""
    system_text = system if isinstance(system, str) else " ".join(b.get("text", "") for b in system)
    chars = len(system_text)
    extra = 8
    user_text = ""
    for message in params["messages"]:
        content = message["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        texts = [block["text"] for block in blocks if block.get("type") == "text"]
        chars += sum(map(len, texts))
        extra += 4 + sum(attachment_tokens(block) for block in blocks if block.get("type") in ("image", "document"))
        if message["role"] == "user":
            user_text = "\n".join(texts)
    return Conversation(user_text, system_text, extra + chars // 4)


def read_files(params: dict[str, Any], find_file: FindFile) -> str:
    """"(read report.pdf, 1,234 bytes)" for each file the request attaches, so a test can see they were read."""
    seen: dict[str, str] = {}
    for message in params["messages"]:
        content = message["content"]
        for block in content if isinstance(content, list) else ():
            source = block.get("source") or {}
            found = find_file(source["file_id"]) if source.get("type") == "file" else None
            if found is not None and source["file_id"] not in seen:
                seen[source["file_id"]] = f"(read {found[0]}, {found[1]:,} bytes)"
    return " ".join(seen.values())


def compose_text(conversation: Conversation, rng: random.Random) -> str:
    """A short reply: one word when the prompt asks for one, else two or three plain sentences."""
    prompt = f"{conversation.system_text}\n{conversation.user_text}".lower()
    if "one word" in prompt or "single word" in prompt or "sentiment" in prompt or "label" in prompt:
        return sentiment(conversation.user_text) or rng.choice(("neutral", "positive", "negative"))
    words = [w for w in WORD.findall(conversation.user_text) if w.lower() not in STOPWORDS]
    topic = max(words, key=len).lower() if words else "this"
    body = rng.choice(BODIES).format(topic=topic, Topic=topic.capitalize())
    return " ".join((rng.choice(OPENERS), body, rng.choice(CLOSERS)))


class Responder:
    """Turns one request into its result line (as a dict), deterministically."""

    def __init__(
        self, seed: int, errored_rate: float, expired_rate: float, find_file: FindFile,
        judge: Judge | None = None, api_version: str = DEFAULT_API_VERSION, betas: tuple[str, ...] = (),
    ) -> None:
        self.seed = seed
        self.errored_rate = errored_rate
        self.expired_rate = expired_rate
        self.find_file = find_file
        self.judge = judge or Judge()
        self.api_version = api_version
        self.betas = betas
        self.schema_answer = SchemaAnswer()
        self.cached_prefixes: set[bytes] = set()  # prompt caching: the marked prefixes this batch has written

    def result(self, custom_id: str, params: Any, canon: bytes, occurrence: int = 0) -> dict[str, Any]:
        """`canon` is the params serialized with sorted keys: what the answer is a function of.

        `occurrence` counts the earlier batches that carried the same request: a retry draws
        its fate anew (errors under --errored-rate are transient, as on the real API), and
        `_once` triggers fire only the first time.
        """
        fate = self._digest(custom_id.encode() + b"\0" + canon + (b"\0%d" % occurrence if occurrence else b""))
        trigger = TRIGGER.search(canon) if b"[[emulator:" in canon else None
        if trigger and occurrence and (trigger["error_once"] or trigger["fate_once"] or trigger["invalid_once"]):
            trigger = None
        if trigger and trigger["fate"]:
            return {"type": trigger["fate"].decode()}
        if trigger and trigger["error_type"]:
            error_type = trigger["error_type"].decode()
            return errored(error_type, TRIGGERED_MESSAGES.get(error_type, "Forced by an emulator trigger"), fate)
        try:
            validate_params(params, self.find_file, self.schema_answer.check_schema)
        except BadParams as bad:
            return errored("invalid_request_error", str(bad), fate)
        refusal = self.judge.verdict(params, self.api_version, self.betas)
        if refusal is not None:
            return errored(refusal.error_type, refusal.message, fate)
        if unit(fate[0:4]) < self.errored_rate:
            error_type = RETRYABLE_ERRORS[fate[8] % len(RETRYABLE_ERRORS)]
            return errored(error_type, TRIGGERED_MESSAGES[error_type], fate)
        if unit(fate[4:8]) < self.expired_rate:
            return {"type": "expired"}
        invalid = bool(trigger and trigger["invalid_json"])
        return {"type": "succeeded", "message": self._message(params, canon, fate, invalid_json=invalid)}

    def _message(self, params: dict[str, Any], canon: bytes, fate: bytes, *, invalid_json: bool = False) -> dict[str, Any]:
        rng = random.Random(self._digest(canon))
        conversation = read_conversation(params, self._attachment_tokens)
        schema = ((params.get("output_config") or {}).get("format") or {}).get("schema")
        if invalid_json:
            text = INVALID_JSON_TEXT
        elif schema is not None:
            instance = self.schema_answer.instance(schema, rng, conversation.user_text)
            text = orjson.dumps(instance).decode()
        else:
            text = " ".join(part for part in (read_files(params, self.find_file), compose_text(conversation, rng)) if part)
        output_tokens = estimate_tokens(text)
        cache_write = cache_read = 0
        marked = self._marked_prefix(params)
        if marked is not None:
            digest, prefix_tokens = marked
            if digest in self.cached_prefixes:
                cache_read = prefix_tokens
            else:
                self.cached_prefixes.add(digest)
                cache_write = prefix_tokens
        stop_reason = "end_turn"
        if output_tokens > params["max_tokens"]:
            text, output_tokens, stop_reason = text[: params["max_tokens"] * 4], params["max_tokens"], "max_tokens"
        return {
            "id": "msg_01" + alphanumeric(fate, 22),
            "type": "message",
            "role": "assistant",
            "model": params["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": max(conversation.input_tokens - cache_write - cache_read, 1),
                "output_tokens": output_tokens,
                "cache_creation_input_tokens": cache_write,
                "cache_read_input_tokens": cache_read,
                "service_tier": "batch",
            },
        }

    def _marked_prefix(self, params: dict[str, Any]) -> tuple[bytes, int] | None:
        """The prompt up to its last cache_control block (a digest, and its tokens), if it is long
        enough for the model to cache; the first request of a batch with it writes the cache, the
        others read it."""
        digest = hashlib.blake2b(params["model"].encode(), digest_size=16)
        chars = 0
        marked = None
        for _path, block in prompt_blocks(params):
            digest.update(orjson.dumps(block, option=orjson.OPT_SORT_KEYS))
            text = block.get("text")
            chars += len(text) if isinstance(text, str) else len(orjson.dumps(block))
            if block.get("cache_control"):
                marked = (digest.copy().digest(), chars // 4)
        model = self.judge.catalog.resolve(params["model"])
        if marked is None or model is None or marked[1] < model.min_cacheable_tokens:
            return None
        return marked

    def _attachment_tokens(self, block: dict[str, Any]) -> int:
        source = block.get("source") or {}
        if source.get("type") == "file":
            found = self.find_file(source["file_id"])
            size = found[1] if found is not None else 0
            return 1500 if block["type"] == "image" else min(size // 4, 100_000)
        if source.get("type") == "base64":
            return 1500 if block["type"] == "image" else min(len(source.get("data", "")) * 3 // 16, 100_000)
        return estimate_tokens(str(source.get("data", ""))) if block["type"] == "document" else 1500

    def _digest(self, data: bytes) -> bytes:
        return hashlib.blake2b(data, digest_size=16, key=self.seed.to_bytes(16, "big", signed=True)).digest()


def errored(error_type: str, message: str, fate: bytes) -> dict[str, Any]:
    return {
        "type": "errored",
        "error": {"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_011C" + alphanumeric(fate[::-1], 20)},
    }


KNOWN_PARAMS = frozenset(
    "model max_tokens messages system metadata stop_sequences temperature top_p top_k tools tool_choice thinking "
    "output_config service_tier container inference_geo mcp_servers context_management stream cache_control".split()
)


class BadParams(ValueError):
    """A request's params the real API would refuse; the request ends `errored`, not the batch."""


def validate_params(params: Any, find_file: FindFile, check_schema: Callable[[Any], None]) -> None:
    """The checks the API runs per request, cheap enough for 100,000 requests at a time."""
    if not isinstance(params, dict):
        raise BadParams("params: Input should be a valid dictionary")
    for key in params:
        if key not in KNOWN_PARAMS:
            raise BadParams(f"{key}: Extra inputs are not permitted")
    model = params.get("model")
    if not isinstance(model, str) or not model:
        raise BadParams("model: Field required")
    max_tokens = params.get("max_tokens")
    if type(max_tokens) is not int:
        raise BadParams("max_tokens: Field required")
    if max_tokens < 1:  # the upper bound is the model's, which the rules check (judge.py)
        raise BadParams("max_tokens: Input should be greater than or equal to 1")
    if params.get("stream"):
        raise BadParams("stream: Streaming is not supported in batch requests")
    for name, low, high in (("temperature", 0.0, 1.0), ("top_p", 0.0, 1.0)):
        value = params.get(name)
        if value is not None and (type(value) not in (int, float) or not low <= value <= high):
            raise BadParams(f"{name}: Input should be a number between {low:g} and {high:g}")
    system = params.get("system")
    text_blocks = isinstance(system, list) and all(isinstance(b, dict) and isinstance(b.get("text"), str) for b in system)
    if system is not None and not isinstance(system, str) and not text_blocks:
        raise BadParams("system: Input should be a string or a list of text blocks")
    messages = params.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadParams("messages: Field required and must not be empty")
    for index, message in enumerate(messages):
        validate_message(f"messages.{index}", message, find_file)
    output_format = (params.get("output_config") or {}).get("format") if isinstance(params.get("output_config"), dict) else None
    if output_format is not None:
        if not isinstance(output_format, dict) or output_format.get("type") != "json_schema":
            raise BadParams("output_config.format.type: Input should be 'json_schema'")
        schema = output_format.get("schema")
        if not isinstance(schema, dict):
            raise BadParams("output_config.format.schema: Input should be a valid dictionary")
        try:
            check_schema(schema)
        except jsonschema.SchemaError as bad:
            raise BadParams(f"output_config.format.schema: invalid JSON Schema: {bad.message}") from None


def validate_message(where: str, message: Any, find_file: FindFile) -> None:
    if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
        raise BadParams(f"{where}.role: Input should be 'user' or 'assistant'")
    content = message.get("content")
    if isinstance(content, str):
        if not content:
            raise BadParams(f"{where}.content: must not be empty")
        return
    if not isinstance(content, list) or not content:
        raise BadParams(f"{where}.content: Input should be a string or a non-empty list of content blocks")
    for index, block in enumerate(content):
        at = f"{where}.content.{index}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise BadParams(f"{at}.type: Field required")
        if block["type"] == "text" and not isinstance(block.get("text"), str):
            raise BadParams(f"{at}.text: Field required")
        if block["type"] in ("image", "document"):
            source = block.get("source")
            if not isinstance(source, dict):
                raise BadParams(f"{at}.source: Field required")
            if source.get("type") == "file" and find_file(str(source.get("file_id"))) is None:
                raise BadParams(f"{at}.source.file_id: File not found: {source.get('file_id')}")


NAMES_FOR_SENTENCES = ("summary", "reason", "explanation", "rationale", "description", "answer", "comment", "text")


class SchemaAnswer:
    """Builds an instance of a JSON Schema that reads like a model's answer, and caches schema checks."""

    def __init__(self) -> None:
        self._checked: dict[bytes, jsonschema.SchemaError | None] = {}

    def check_schema(self, schema: dict[str, Any]) -> None:
        key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
        if key not in self._checked:
            try:
                jsonschema.validators.validator_for(schema).check_schema(schema)
                self._checked[key] = None
            except jsonschema.SchemaError as bad:
                self._checked[key] = bad
        refusal = self._checked[key]
        if refusal is not None:
            raise refusal

    def instance(self, schema: dict[str, Any], rng: random.Random, user_text: str) -> Any:
        return Instance(schema, rng, user_text).build(schema, "answer", 0)


class Instance:
    """One walk over a schema; `root` resolves local `$ref`s, `depth` stops recursive schemas."""

    def __init__(self, root: dict[str, Any], rng: random.Random, user_text: str) -> None:
        self.root = root
        self.rng = rng
        self.user_text = user_text
        words = [w.lower() for w in WORD.findall(user_text) if w.lower() not in STOPWORDS]
        self.topic = max(words, key=len) if words else "the request"
        self.words = list(dict.fromkeys(words)) or ["answer"]

    def build(self, schema: Any, name: str, depth: int) -> Any:
        if not isinstance(schema, dict):
            return self.string({}, name)
        if "$ref" in schema:
            return self.build(self.resolve(schema["$ref"]), name, depth + 1)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.pick(schema["enum"])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self.build({**{k: v for k, v in schema.items() if k != key}, **schema[key][0]}, name, depth + 1)
        if "allOf" in schema:
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = self.resolve(part["$ref"]) if "$ref" in part else part
                merged["properties"] = {**merged.get("properties", {}), **part.get("properties", {})}
                merged["required"] = [*merged.get("required", []), *part.get("required", [])]
                merged.update({k: v for k, v in part.items() if k not in ("properties", "required")})
            return self.build(merged, name, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
        if kind == "object":
            return self.object(schema, depth)
        if kind == "array":
            return self.array(schema, name, depth)
        scalars = {"string": self.string, "integer": self.integer, "number": self.number, "boolean": self.boolean}
        return scalars[kind](schema, name) if kind in scalars else None

    def resolve(self, ref: str) -> Any:
        target: Any = self.root
        for part in ref.lstrip("#/").split("/"):
            if part:
                target = target[part.replace("~1", "/").replace("~0", "~")]
        return target

    def pick(self, options: list[Any]) -> Any:
        mood = sentiment(self.user_text)
        for option in options:
            if mood and isinstance(option, str) and option.lower().startswith(mood[:3]):
                return option
        return self.rng.choice(options)

    def object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        names = [n for n in properties if depth < 4 or n in required]
        out = {name: self.build(properties[name], name, depth + 1) for name in names}
        extra_schema = schema.get("additionalProperties", True)
        for name in required:
            if name not in out:
                out[name] = self.build(extra_schema if isinstance(extra_schema, dict) else {}, name, depth + 1)
        index = 1
        while len(out) < schema.get("minProperties", 0) and extra_schema is not False:
            out[f"item_{index}"] = self.build(extra_schema if isinstance(extra_schema, dict) else {}, "item", depth + 1)
            index += 1
        return out

    def array(self, schema: dict[str, Any], name: str, depth: int) -> list[Any]:
        low = schema.get("minItems", 0)
        high = schema.get("maxItems", max(low, 3))
        count = low if depth >= 4 else self.rng.randint(max(low, min(1, high)), max(low, min(high, low + 3)))
        items = schema.get("items", {})
        if isinstance(items, dict) and "enum" in items and schema.get("uniqueItems"):
            return self.rng.sample(items["enum"], min(count, len(items["enum"])))
        out: list[Any] = []
        for _ in range(count * 4):
            if len(out) == count:
                break
            value = self.build(items, name.rstrip("s") or "item", depth + 1)
            if schema.get("uniqueItems") and isinstance(value, str) and value in out:
                value = f"{value} {len(out) + 1}"
            if not schema.get("uniqueItems") or value not in out:
                out.append(value)
        return out

    def string(self, schema: dict[str, Any], name: str) -> str:
        lowered = name.lower()
        if any(hint in lowered for hint in NAMES_FOR_SENTENCES):
            text = f"The text is mainly about {self.topic}."
        elif "name" in lowered or "title" in lowered:
            text = self.rng.choice(self.words).capitalize()
        else:
            text = self.rng.choice(self.words)
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        while len(text) < low:
            text += f" It also mentions {self.rng.choice(self.words)}."
        return text[:high] if high is not None else text

    def integer(self, schema: dict[str, Any], name: str) -> int:
        low, high = self.bounds(schema, integer=True)
        step = max(1, int(schema.get("multipleOf", 1)))
        first = math.ceil(low / step) * step
        choices = range(first, math.floor(high) + 1, step)
        return self.rng.choice(choices) if choices else first

    def number(self, schema: dict[str, Any], name: str) -> float:
        low, high = self.bounds(schema, integer=False)
        if "confidence" in name.lower() or "score" in name.lower():
            low = max(low, min(high, 0.6))
        value = round(self.rng.uniform(low, high), 2)
        return min(max(value, low), high)

    def bounds(self, schema: dict[str, Any], *, integer: bool) -> tuple[float, float]:
        nudge = 1 if integer else 1e-6
        low = schema.get("minimum", schema["exclusiveMinimum"] + nudge if "exclusiveMinimum" in schema else None)
        high = schema.get("maximum", schema["exclusiveMaximum"] - nudge if "exclusiveMaximum" in schema else None)
        if low is None:
            low = 0 if high is None or high >= 0 else high - 10
        if high is None:
            high = low + (10 if integer else 1)
        return low, high

    def boolean(self, schema: dict[str, Any], name: str) -> bool:
        return self.rng.random() < 0.5


ALPHANUMERIC = bytes.maketrans(b"+/", b"Xz")


def alphanumeric(data: bytes, length: int) -> str:
    """IDs shaped like the real ones, as deterministic as `data`; 16 bytes give up to 22 characters."""
    return base64.b64encode(data).rstrip(b"=").translate(ALPHANUMERIC)[:length].decode()


def unit(data: bytes) -> float:
    """Bytes of a digest as a uniform number in [0, 1)."""
    return int.from_bytes(data, "big") / float(1 << (8 * len(data)))
