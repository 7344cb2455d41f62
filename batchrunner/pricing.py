"""What requests cost at batch prices, from the model catalog, so `validate` shows it before a job runs.

Prices come from the catalog entry of the exact model id or alias (never a prefix: a newer model
does not inherit an older one's price). The Message Batches API bills every kind of token at half
the standard rate, cache writes and reads included. A tier such as Haiku 5.5's (prompts over 100K
tokens) reprices the whole request; a request's prompt length counts its input, cache write and
cache read tokens. A spec's `pricing:` block overrides input and output prices (its cache tokens
are then priced as the API's usual multiples of input: 1.25x, 2x and 0.1x). An unknown model has
no price (None) rather than a guessed one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from batchrunner.catalog import BATCH_DISCOUNT, Catalog, ModelEntry, Prices

BYTES_PER_TOKEN = 4


class PriceOverride(Protocol):
    """What a spec's `pricing:` block provides (standard prices; the batch discount still applies)."""

    input_per_mtok: float
    output_per_mtok: float


@dataclass(frozen=True)
class Usage:
    """The billed token counts of one or more requests, as the API's `usage` reports them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0

    @classmethod
    def from_api(cls, usage: Mapping[str, Any] | None) -> Usage:
        """From a Messages API `usage` object: `cache_creation` splits writes into 5m and 1h; without
        the split, `cache_creation_input_tokens` are 5-minute writes (the default TTL)."""
        if not usage:
            return cls()
        split = usage.get("cache_creation") or {}
        write_1h = _int(split.get("ephemeral_1h_input_tokens"))
        write_5m = _int(split.get("ephemeral_5m_input_tokens")) if split else _int(usage.get("cache_creation_input_tokens"))
        return cls(
            input_tokens=_int(usage.get("input_tokens")),
            output_tokens=_int(usage.get("output_tokens")),
            cache_write_5m=write_5m,
            cache_write_1h=write_1h,
            cache_read=_int(usage.get("cache_read_input_tokens")),
        )

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_write_5m + self.cache_write_1h + self.cache_read


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _entry(model: str | ModelEntry, catalog: Catalog | None) -> ModelEntry | None:
    if isinstance(model, ModelEntry):
        return model
    return (catalog or Catalog.default()).resolve(model)


def prices_for(
    model: str | ModelEntry,
    prompt_tokens: int = 0,
    override: PriceOverride | None = None,
    catalog: Catalog | None = None,
) -> Prices | None:
    """The standard prices for one request of this prompt length, or None if they are unknown."""
    if override is not None:
        unit = override.input_per_mtok
        return Prices(unit, override.output_per_mtok, unit * 1.25, unit * 2, unit * 0.1)
    entry = _entry(model, catalog)
    return None if entry is None else entry.prices_for(prompt_tokens)


def standard_price(model: str) -> tuple[float, float] | None:
    """Standard (input, output) USD per million tokens for a model's shortest prompts, or None if unknown."""
    prices = prices_for(model)
    return None if prices is None else (prices.input, prices.output)


def usd(amount: float) -> str:
    """Dollars as people read them: cents above a dollar, four decimals below (a test job costs $0.0012)."""
    return f"${amount:,.4f}" if amount < 1 else f"${amount:,.2f}"


def batch_cost_usd(
    model: str | ModelEntry,
    input_tokens: int,
    output_tokens: int,
    override: PriceOverride | None = None,
    *,
    cache_write_5m: int = 0,
    cache_write_1h: int = 0,
    cache_read: int = 0,
    requests: int = 1,
    catalog: Catalog | None = None,
) -> float | None:
    """What these tokens, summed over `requests` requests, cost at batch prices, or None when the
    model's price is unknown. A tier is chosen by the average prompt length per request, which is
    exact for one request and for requests of similar length."""
    usage = Usage(input_tokens, output_tokens, cache_write_5m, cache_write_1h, cache_read)
    prices = prices_for(model, usage.prompt_tokens // max(requests, 1), override, catalog)
    if prices is None:
        return None
    standard = (
        usage.input_tokens * prices.input
        + usage.output_tokens * prices.output
        + usage.cache_write_5m * prices.cache_write_5m
        + usage.cache_write_1h * prices.cache_write_1h
        + usage.cache_read * prices.cache_read
    )
    return standard * BATCH_DISCOUNT / 1_000_000


def estimate_tokens(text_bytes_len: int) -> int:
    """A cheap token estimate for text of this many UTF-8 bytes (about 4 bytes per token)."""
    return -(-text_bytes_len // BYTES_PER_TOKEN)
