"""The models batchrunner knows offline: limits, capabilities and prices, from a data file with its date.

`data/models.json` holds one Models API `ModelInfo` object per model (exactly what
`GET /v1/models/{id}` returns) plus batchrunner's own facts under `batchrunner`: aliases, the
batch-only output limit, how 2023-06-01 treats sampling, prices, and how sure each fact is.
An id is found only by its exact id or alias, never by prefix: `claude-opus-5-5` is not
`claude-opus-5`. `serve --models FILE` and the live check build entries the same way.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from batchrunner.errors import InputError, Problem

BATCH_DISCOUNT = 0.5
LIFECYCLES = ("active", "deprecated", "retired")
SAMPLING_2023 = ("any", "default_only")
PRICE_KEYS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")


@dataclass(frozen=True)
class Prices:
    """Standard USD per million tokens; the Batches API bills every kind at half (BATCH_DISCOUNT)."""

    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Prices:
        values = {key: data[key] for key in PRICE_KEYS}
        for key, value in values.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"price `{key}` should be a number >= 0")
        return cls(**{key: float(value) for key, value in values.items()})


@dataclass(frozen=True)
class ModelEntry:
    """One model: its ModelInfo as the API gives it, and what batchrunner adds for checks and cost."""

    id: str
    aliases: tuple[str, ...]
    info: dict[str, Any]
    lifecycle: str
    max_input_tokens: int
    max_tokens: int
    batch_max_tokens: int | None
    capabilities: dict[str, Any]
    sampling_2023: str
    min_cacheable_tokens: int
    forced_tool_choice: bool
    thinking_disabled_max_effort: str | None
    prices: Prices | None
    tiers: tuple[tuple[int, Prices], ...]
    confidence: dict[str, str]

    def supports(self, *path: str) -> bool:
        """Whether the capability at `path` is supported, e.g. ("thinking", "types", "enabled");
        an absent key is unsupported, as the Models API lists every key it knows."""
        node: Any = self.capabilities
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return False
            node = node[key]
        return isinstance(node, dict) and node.get("supported") is True

    def prices_for(self, prompt_tokens: int) -> Prices | None:
        """The standard prices that apply to a request with this many prompt tokens (tiers such as
        Haiku 5.5's reprice the whole request above a prompt length)."""
        chosen = self.prices
        for above, prices in self.tiers:
            if prompt_tokens > above:
                chosen = prices
        return chosen

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelEntry:
        """An entry from one `models` item of a catalog file; a ValueError/KeyError/TypeError names what is wrong."""
        extras = data.get("batchrunner") or {}
        info = {key: value for key, value in data.items() if key != "batchrunner"}
        entry = cls._from_info(info, extras)
        prices = extras.get("prices")
        return cls(
            **{**entry.__dict__, "prices": None if prices is None else Prices.from_dict(prices),
               "tiers": _tiers(prices)},
        )

    @classmethod
    def from_live(cls, info: dict[str, Any], known: ModelEntry | None) -> ModelEntry:
        """An entry from a live ModelInfo: the API's limits and capabilities win; prices, aliases and
        the sampling rule come from the catalog entry when the id is known."""
        extras: dict[str, Any] = {}
        if known is not None:
            extras = {
                "aliases": list(known.aliases),
                "batch_max_tokens": known.batch_max_tokens,
                "sampling_2023": known.sampling_2023,
                "min_cacheable_tokens": known.min_cacheable_tokens,
                "forced_tool_choice": known.forced_tool_choice,
                "thinking_disabled_max_effort": known.thinking_disabled_max_effort,
                "confidence": known.confidence,
            }
        entry = cls._from_info(info, extras)
        if known is None:
            return entry
        return cls(**{**entry.__dict__, "prices": known.prices, "tiers": known.tiers})

    @classmethod
    def _from_info(cls, info: dict[str, Any], extras: dict[str, Any]) -> ModelEntry:
        model_id = info["id"]
        if not isinstance(model_id, str) or not model_id:
            raise ValueError("`id` should be a non-empty string")
        lifecycle = info.get("lifecycle") or "active"
        if lifecycle not in LIFECYCLES:
            raise ValueError(f"`lifecycle` should be one of {', '.join(LIFECYCLES)}")
        sampling = extras.get("sampling_2023") or "default_only"
        if sampling not in SAMPLING_2023:
            raise ValueError(f"`sampling_2023` should be one of {', '.join(SAMPLING_2023)}")
        capabilities = info.get("capabilities")
        if not isinstance(capabilities, dict):
            raise ValueError("`capabilities` should be a mapping in the Models API shape")
        return cls(
            id=model_id,
            aliases=tuple(str(alias) for alias in extras.get("aliases") or ()),
            info=info,
            lifecycle=lifecycle,
            max_input_tokens=_count(info, "max_input_tokens"),
            max_tokens=_count(info, "max_tokens"),
            batch_max_tokens=extras.get("batch_max_tokens"),
            capabilities=capabilities,
            sampling_2023=sampling,
            min_cacheable_tokens=int(extras.get("min_cacheable_tokens") or 0),
            forced_tool_choice=bool(extras.get("forced_tool_choice", True)),
            thinking_disabled_max_effort=extras.get("thinking_disabled_max_effort"),
            prices=None,
            tiers=(),
            confidence=dict(extras.get("confidence") or {}),
        )


def _count(info: dict[str, Any], key: str) -> int:
    value = info.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{key}` should be a positive integer")
    return value


def _tiers(prices: dict[str, Any] | None) -> tuple[tuple[int, Prices], ...]:
    tiers = [] if prices is None else prices.get("tiers") or []
    return tuple(sorted((int(tier["above_prompt_tokens"]), Prices.from_dict(tier)) for tier in tiers))


@dataclass(frozen=True)
class Catalog:
    """A set of models, looked up by exact id or alias."""

    as_of: str
    sources: dict[str, str]
    models: tuple[ModelEntry, ...]
    _by_name: dict[str, ModelEntry] = field(init=False, repr=False, compare=False)

    @classmethod
    def default(cls) -> Catalog:
        """The catalog shipped in the package (read once per process)."""
        return _packaged()

    @classmethod
    def from_file(cls, path: Path) -> Catalog:
        """A catalog file such as `serve --models FILE` loads; a bad one is an InputError naming it."""
        try:
            return cls.from_bytes(Path(path).read_bytes())
        except OSError as exc:
            raise InputError([Problem(path, None, f"cannot read the model catalog: {exc.strerror}")]) from None
        except ValueError as exc:
            raise InputError([Problem(path, None, f"not a model catalog: {exc}")]) from None

    @classmethod
    def from_bytes(cls, data: bytes) -> Catalog:
        """Parse a catalog; a ValueError says what is wrong and in which model."""
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON ({exc})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("models"), list):
            raise ValueError('expected {"as_of": ..., "sources": {...}, "models": [...]}')
        models = []
        for i, item in enumerate(doc["models"]):
            try:
                if not isinstance(item, dict):
                    raise ValueError("should be a ModelInfo mapping")
                models.append(ModelEntry.from_dict(item))
            except (KeyError, TypeError, ValueError) as exc:
                what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
                label = item.get("id") if isinstance(item, dict) else None
                raise ValueError(f"models[{i}] ({label or 'no id'}): {what}") from None
        seen: dict[str, str] = {}
        for entry in models:
            for name in (entry.id, *entry.aliases):
                if name in seen:
                    raise ValueError(f"`{name}` names both {seen[name]} and {entry.id}")
                seen[name] = entry.id
        return cls(as_of=str(doc.get("as_of") or "unknown"), sources=dict(doc.get("sources") or {}), models=tuple(models))

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {name: e for e in self.models for name in (e.id, *e.aliases)})

    def resolve(self, model_id: str) -> ModelEntry | None:
        """The entry whose id or alias is exactly `model_id`, else None (never a prefix match)."""
        return self._by_name.get(model_id)

    def closest(self, model_id: str, n: int = 3) -> list[str]:
        """The known ids and aliases of models not retired that look most like `model_id`, for "did you mean"."""
        names = [name for name, entry in self._by_name.items() if entry.lifecycle != "retired"]
        return difflib.get_close_matches(model_id, names, n=n, cutoff=0.6)

    def entries(self) -> list[ModelEntry]:
        """Every model, newest first, as the Models API lists them."""
        return sorted(self.models, key=lambda e: str(e.info.get("created_at") or ""), reverse=True)


@cache
def _packaged() -> Catalog:
    return Catalog.from_bytes(resources.files("batchrunner").joinpath("data/models.json").read_bytes())
