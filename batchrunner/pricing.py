"""Batch prices for Claude models, so `validate` can show what a job will cost before it runs.

Prices are the public standard rates in USD per million tokens; the Message Batches API bills
half of that. Models are matched by the longest known prefix, so dated ids and aliases
(`claude-haiku-4-5-20251001`, `claude-sonnet-4-5`) find their family. A spec's `pricing:` block
overrides the table, and an unknown model has no price (None) rather than a guessed one.
"""

from __future__ import annotations

from typing import Protocol

BATCH_DISCOUNT = 0.5
BYTES_PER_TOKEN = 4

# (model id prefix, standard input $/MTok, standard output $/MTok); the longest prefix wins.
STANDARD_PRICES: tuple[tuple[str, float, float], ...] = (
    ("claude-opus-4-0", 15.0, 75.0),
    ("claude-opus-4-1", 15.0, 75.0),
    ("claude-opus-4-2025", 15.0, 75.0),  # claude-opus-4-20250514
    ("claude-opus-4", 5.0, 25.0),  # 4.5 and later
    ("claude-sonnet-4", 3.0, 15.0),
    ("claude-haiku-4", 1.0, 5.0),
    ("claude-3-7-sonnet", 3.0, 15.0),
    ("claude-3-5-sonnet", 3.0, 15.0),
    ("claude-3-5-haiku", 0.8, 4.0),
    ("claude-3-opus", 15.0, 75.0),
    ("claude-3-haiku", 0.25, 1.25),
)


class PriceOverride(Protocol):
    """What a spec's `pricing:` block provides (standard prices; the batch discount still applies)."""

    input_per_mtok: float
    output_per_mtok: float


def standard_price(model: str) -> tuple[float, float] | None:
    """Standard (input, output) USD per million tokens for a model, or None if it is unknown."""
    best: tuple[str, float, float] | None = None
    for prefix, price_in, price_out in STANDARD_PRICES:
        if model.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, price_in, price_out)
    return None if best is None else (best[1], best[2])


def batch_cost_usd(
    model: str, input_tokens: int, output_tokens: int, override: PriceOverride | None = None
) -> float | None:
    """What these tokens cost at batch prices, or None when the model's price is unknown."""
    price = (override.input_per_mtok, override.output_per_mtok) if override is not None else standard_price(model)
    if price is None:
        return None
    return (input_tokens * price[0] + output_tokens * price[1]) * BATCH_DISCOUNT / 1_000_000


def estimate_tokens(text_bytes_len: int) -> int:
    """A cheap token estimate for text of this many UTF-8 bytes (about 4 bytes per token)."""
    return -(-text_bytes_len // BYTES_PER_TOKEN)
