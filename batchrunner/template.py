"""Prompt templates: `{field}` placeholders filled from a row, with no attribute access and no code.

A template is parsed once per job with `string.Formatter().parse` (so `{{` and `}}` escape braces
as in Python) and then rendered by plain concatenation. Only bare field names are allowed:
`{a.b}`, `{a[0]}`, `{a!r}` and `{a:>10}` are refused, so a template can never reach an object's
attributes or run a format method. A row value that is not a string appears as its JSON text.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class Template:
    """A prompt with `{field}` placeholders, parsed once and rendered per row without format()."""

    text: str
    literals: tuple[str, ...]  # one more than fields: literal, field, literal, ..., literal
    fields: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Template:
        """Parse `text`; a ValueError says what is wrong with a placeholder and how to write it."""
        literals: list[str] = []
        fields: list[str] = []
        pending = ""
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ValueError(f"unbalanced brace in template ({exc}): write {{{{ or }}}} for a literal brace") from None
        for literal, name, spec, conversion in parsed:
            pending += literal
            if name is None:
                continue
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            if not name:
                raise ValueError(f"empty placeholder {shown}: name a row field like {{text}}, or write {{{{}}}} for braces")
            if "." in name or "[" in name:
                raise ValueError(f"placeholder {shown} uses attribute or index access: use a plain field name like {{text}}")
            if conversion or spec:
                raise ValueError(f"placeholder {shown} has a conversion or format spec: use a plain field name like {{text}}")
            if name != name.strip():
                raise ValueError(f"placeholder {shown} has spaces around the field name: write {{{name.strip()}}}")
            literals.append(pending)
            fields.append(name)
            pending = ""
        literals.append(pending)
        return cls(text, tuple(literals), tuple(fields))

    def render(self, row: Mapping[str, Any]) -> str:
        """Fill in the row's fields; a KeyError names a field the row does not have."""
        lits = self.literals
        out = [lits[0]]
        for i, name in enumerate(self.fields):
            value = row[name]
            out.append(value if type(value) is str else value_text(value))
            out.append(lits[i + 1])
        return "".join(out)

    def renderer(self) -> Callable[[Mapping[str, Any]], str]:
        """`render`, specialised for one or two fields: plain concatenation is the fastest way."""
        if len(self.fields) == 1:
            (l0, l1), (f0,) = self.literals, self.fields

            def render_one(row: Mapping[str, Any]) -> str:
                v = row[f0]
                return l0 + (v if type(v) is str else value_text(v)) + l1

            return render_one
        if len(self.fields) == 2:
            (l0, l1, l2), (f0, f1) = self.literals, self.fields

            def render_two(row: Mapping[str, Any]) -> str:
                v, w = row[f0], row[f1]
                return (
                    l0 + (v if type(v) is str else value_text(v)) + l1 + (w if type(w) is str else value_text(w)) + l2
                )

            return render_two
        return self.render


class InexactNumber(ValueError):
    """A row value that may be an integer beyond 64 bits, which orjson read as a float: the caller
    reads the row again with `inputs.exact_row` and renders that."""


_ROUNDED_FROM = float(2**63)  # orjson keeps every integer below this exact


def _maybe_rounded(value: Any) -> bool:
    if type(value) is float:
        return value.is_integer() and abs(value) >= _ROUNDED_FROM
    if type(value) is list:
        return any(map(_maybe_rounded, value))
    if type(value) is dict:
        return any(map(_maybe_rounded, value.values()))
    return False


def value_text(value: Any) -> str:
    """How a non-string row value appears in a prompt: as its JSON text (3, true, null, [1, 2]).

    orjson refuses integers beyond 64 bits; the standard library writes them exactly.
    """
    if _maybe_rounded(value):
        raise InexactNumber(value)
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))




def template_sources(prompt: Any, messages: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """Every text that is a row template, with its key path: `prompt`, or the texts of `messages`."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    if isinstance(prompt, str):
        found.append((("prompt",), prompt))
    for i, message in enumerate(messages if isinstance(messages, list) else []):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            found.append((("messages", i, "content"), content))
        for j, block in enumerate(content if isinstance(content, list) else []):
            if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
                found.append((("messages", i, "content", j, "text"), block["text"]))
    return found
