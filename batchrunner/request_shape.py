"""The Messages API request body as TypedDicts, so a spec's request parts are checked before sending.

The Batches API validates `params` only after the whole batch has ended, up to a day later, so
this shape catches mistakes at `validate` time instead. Core parts (messages, content blocks,
tools, tool_choice, thinking, output_config, sampling ranges) are closed: an unknown key is an
error. Server-side block and tool types, which change often, are checked only for `type`/`name`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired

from pydantic import AfterValidator, ConfigDict, Discriminator, Field, Tag, with_config
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

_CLOSED = ConfigDict(extra="forbid", strict=True)
_OPEN = ConfigDict(extra="allow", strict=True)


def _refuse(reason: str) -> Any:
    def check(value: Any) -> Any:
        raise PydanticCustomError("refused", reason)

    return AfterValidator(check)


def _type_tag(*closed: str, open_: tuple[str, ...] = ()) -> Any:
    """Pick a union member by the block's `type`; types in `open_` go to a lenient catch-all."""

    def tag(value: Any) -> str | None:
        kind = value.get("type") if isinstance(value, dict) else None
        if kind in closed:
            return str(kind)
        return "open" if kind in open_ else None

    listed = ", ".join(closed) + (", or a server-side block type" if open_ else "")
    return Discriminator(tag, custom_error_type="block_type", custom_error_message=f"`type` should be one of: {listed}")


@with_config(_CLOSED)
class CacheControl(TypedDict):
    type: Literal["ephemeral"]
    ttl: NotRequired[Literal["5m", "1h"]]


@with_config(_CLOSED)
class TextBlock(TypedDict):
    type: Literal["text"]
    text: str
    cache_control: NotRequired[CacheControl | None]
    citations: NotRequired[list[dict[str, Any]] | None]


@with_config(_CLOSED)
class Base64Source(TypedDict):
    type: Literal["base64"]
    media_type: str
    data: str


@with_config(_CLOSED)
class UrlSource(TypedDict):
    type: Literal["url"]
    url: str


@with_config(_CLOSED)
class FileSource(TypedDict):
    type: Literal["file"]
    file_id: str


@with_config(_CLOSED)
class PlainTextSource(TypedDict):
    type: Literal["text"]
    media_type: Literal["text/plain"]
    data: str


@with_config(_CLOSED)
class ContentSource(TypedDict):
    type: Literal["content"]
    content: str | list[dict[str, Any]]


ImageSource = Annotated[Base64Source | UrlSource | FileSource, Field(discriminator="type")]
DocumentSource = Annotated[
    Base64Source | PlainTextSource | ContentSource | UrlSource | FileSource, Field(discriminator="type")
]


@with_config(_CLOSED)
class ImageBlock(TypedDict):
    type: Literal["image"]
    source: ImageSource
    cache_control: NotRequired[CacheControl | None]
    transformations: NotRequired[dict[str, Any] | None]


@with_config(_CLOSED)
class DocumentBlock(TypedDict):
    type: Literal["document"]
    source: DocumentSource
    cache_control: NotRequired[CacheControl | None]
    citations: NotRequired[dict[str, Any] | None]
    context: NotRequired[str | None]
    title: NotRequired[str | None]


@with_config(_CLOSED)
class ToolUseBlock(TypedDict):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]
    cache_control: NotRequired[CacheControl | None]
    caller: NotRequired[dict[str, Any]]
    toolset_name: NotRequired[str | None]


@with_config(_CLOSED)
class ToolResultBlock(TypedDict):
    type: Literal["tool_result"]
    tool_use_id: str
    content: NotRequired[str | list[dict[str, Any]]]
    is_error: NotRequired[bool]
    cache_control: NotRequired[CacheControl | None]
    toolset_name: NotRequired[str | None]


@with_config(_OPEN)
class OtherBlock(TypedDict):
    """Block types that carry server-side state; passed through as written."""

    type: str


_OPEN_BLOCK_TYPES = (
    "thinking",
    "redacted_thinking",
    "search_result",
    "server_tool_use",
    "web_search_tool_result",
    "web_fetch_tool_result",
    "code_execution_tool_result",
    "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result",
    "tool_search_tool_result",
    "container_upload",
)

ContentBlock = Annotated[
    Annotated[TextBlock, Tag("text")] | Annotated[ImageBlock, Tag("image")] | Annotated[DocumentBlock, Tag("document")] | Annotated[ToolUseBlock, Tag("tool_use")] | Annotated[ToolResultBlock, Tag("tool_result")] | Annotated[OtherBlock, Tag("open")],
    _type_tag("text", "image", "document", "tool_use", "tool_result", open_=_OPEN_BLOCK_TYPES),
]


def _content_tag(value: Any) -> str | None:
    if isinstance(value, str):
        return "text"
    return "blocks" if isinstance(value, list) else None


Content = Annotated[
    Annotated[str, Tag("text")] | Annotated[list[ContentBlock], Tag("blocks")],
    Discriminator(
        _content_tag,
        custom_error_type="content_type",
        custom_error_message="should be a string or a list of content blocks",
    ),
]


@with_config(_CLOSED)
class Message(TypedDict):
    role: Literal["user", "assistant"]
    content: Content


System = Annotated[
    Annotated[str, Tag("text")] | Annotated[list[TextBlock], Tag("blocks")],
    Discriminator(
        _content_tag,
        custom_error_type="system_type",
        custom_error_message="should be a string or a list of text blocks",
    ),
]


@with_config(_CLOSED)
class CustomTool(TypedDict):
    name: str
    input_schema: dict[str, Any]
    type: NotRequired[Literal["custom"] | None]
    description: NotRequired[str]
    cache_control: NotRequired[CacheControl | None]
    strict: NotRequired[bool]
    allowed_callers: NotRequired[list[str]]
    defer_loading: NotRequired[bool]
    eager_input_streaming: NotRequired[bool | None]
    input_examples: NotRequired[list[dict[str, Any]]]


@with_config(_OPEN)
class ServerTool(TypedDict):
    """A server tool (web search, code execution, ...): versioned `type` and `name`, the rest as written."""

    type: str
    name: str


def _tool_tag(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    return "custom" if value.get("type") in (None, "custom") else "server"


Tool = Annotated[
    Annotated[CustomTool, Tag("custom")] | Annotated[ServerTool, Tag("server")],
    Discriminator(_tool_tag, custom_error_type="tool_type", custom_error_message="a tool should be a mapping"),
]


@with_config(_CLOSED)
class ToolChoiceAuto(TypedDict):
    type: Literal["auto"]
    disable_parallel_tool_use: NotRequired[bool]


@with_config(_CLOSED)
class ToolChoiceAny(TypedDict):
    type: Literal["any"]
    disable_parallel_tool_use: NotRequired[bool]


@with_config(_CLOSED)
class ToolChoiceTool(TypedDict):
    type: Literal["tool"]
    name: str
    disable_parallel_tool_use: NotRequired[bool]


@with_config(_CLOSED)
class ToolChoiceNone(TypedDict):
    type: Literal["none"]


ToolChoice = Annotated[
    ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone, Field(discriminator="type")
]


@with_config(_CLOSED)
class ThinkingEnabled(TypedDict):
    type: Literal["enabled"]
    budget_tokens: Annotated[int, Field(ge=1024)]
    display: NotRequired[Literal["summarized", "omitted"] | None]


@with_config(_CLOSED)
class ThinkingAdaptive(TypedDict):
    type: Literal["adaptive"]
    display: NotRequired[Literal["summarized", "omitted"] | None]


@with_config(_CLOSED)
class ThinkingDisabled(TypedDict):
    type: Literal["disabled"]


@with_config(_CLOSED)
class ThinkingBetweenTools(TypedDict):
    type: Literal["between_tools"]


Thinking = Annotated[
    ThinkingEnabled | ThinkingAdaptive | ThinkingDisabled | ThinkingBetweenTools, Field(discriminator="type")
]


@with_config(_CLOSED)
class Metadata(TypedDict):
    user_id: NotRequired[str | None]


@with_config(_CLOSED)
class JsonSchemaFormat(TypedDict):
    type: Literal["json_schema"]
    schema: dict[str, Any]


@with_config(_CLOSED)
class OutputConfig(TypedDict):
    effort: NotRequired[Literal["low", "medium", "high", "xhigh", "max"] | None]
    format: NotRequired[JsonSchemaFormat | None]


_TOP_LEVEL = "is a top-level key of the job spec: move it out of `params`"


@with_config(_CLOSED)
class Params(TypedDict):
    """The Messages API parameters a spec may set under `params` (the rest have their own keys)."""

    temperature: NotRequired[Annotated[float, Field(ge=0.0, le=1.0)]]
    top_p: NotRequired[Annotated[float, Field(ge=0.0, le=1.0)]]
    top_k: NotRequired[Annotated[int, Field(ge=0)]]
    stop_sequences: NotRequired[list[str]]
    tools: NotRequired[list[Tool]]
    tool_choice: NotRequired[ToolChoice]
    thinking: NotRequired[Thinking]
    metadata: NotRequired[Metadata]
    output_config: NotRequired[OutputConfig]
    service_tier: NotRequired[Literal["auto", "standard_only"]]
    cache_control: NotRequired[CacheControl | None]
    container: NotRequired[str | dict[str, Any] | None]
    inference_geo: NotRequired[str | None]
    model: NotRequired[Annotated[Any, _refuse(_TOP_LEVEL)]]
    max_tokens: NotRequired[Annotated[Any, _refuse(_TOP_LEVEL)]]
    messages: NotRequired[Annotated[Any, _refuse(_TOP_LEVEL)]]
    system: NotRequired[Annotated[Any, _refuse(_TOP_LEVEL)]]
    stream: NotRequired[Annotated[Any, _refuse("is not allowed: a message batch cannot stream; remove it")]]
    speed: NotRequired[Annotated[Any, _refuse("is not supported in a message batch: remove it")]]


PARAM_NAMES = tuple(name for name in Params.__annotations__ if name not in ("model", "max_tokens", "messages", "system"))
