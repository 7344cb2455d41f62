"""Writes samples/eval.jsonl: 300 short product reviews for the demo job (deterministic).

Run `python samples/make_eval.py` to regenerate it; the same seed gives the same file.
"""

from __future__ import annotations

import random
from pathlib import Path

import orjson

PRODUCTS = [
    "wireless earbuds", "espresso machine", "running shoes", "standing desk", "air fryer",
    "mechanical keyboard", "hiking backpack", "robot vacuum", "electric kettle", "yoga mat",
    "noise-cancelling headphones", "smart watch", "cast iron skillet", "office chair", "e-reader",
    "phone case", "blender", "winter jacket", "desk lamp", "portable charger",
    "bluetooth speaker", "rice cooker", "water bottle", "gaming mouse", "duvet cover",
    "electric toothbrush", "camping tent", "kitchen knife set", "baby monitor", "4K monitor",
]
ASPECTS = ["battery life", "build quality", "price", "setup", "customer service", "design", "comfort",
           "sound", "instructions", "packaging", "size", "weight", "noise level", "durability"]

POSITIVE = [
    "Absolutely love this {product}. The {aspect} is better than I expected.",
    "Best {product} I have owned. Worth every penny.",
    "Arrived a day early and the {aspect} is excellent. Would buy again.",
    "My second {product} from this brand and it did not disappoint.",
    "Five stars. The {aspect} alone makes it worth it.",
    "I was skeptical, but this {product} won me over within a week.",
    "Great value. My whole family uses the {product} every day now.",
    "Solid {product}: the {aspect} is superb and it just works.",
]
NEGATIVE = [
    "Stopped working after two weeks. Very disappointed with this {product}.",
    "The {aspect} is terrible. Returning it.",
    "Do not buy this {product}. Cheap materials and the {aspect} is awful.",
    "Mine arrived broken and customer service never replied.",
    "Way overpriced for what you get. The {aspect} is a joke.",
    "It looked nice in the photos, but the {product} fell apart within a month.",
    "Worst purchase this year. The {aspect} made it unusable for me.",
    "Second replacement, same defect. I give up on this {product}.",
]
NEUTRAL = [
    "It's an ordinary {product}. Does the job, nothing special.",
    "The {aspect} is fine. Not great, not bad.",
    "Works as described. I have no strong feelings about this {product} either way.",
    "Decent {product} for the price, though the {aspect} could be better.",
    "Arrived on time. Haven't used the {product} enough to judge it yet.",
    "Some things I like, some I don't; the {aspect} is about average.",
    "It is a {product}. It does what a {product} does.",
    "Bought it as a gift, so I can't say much about the {aspect}.",
]
EXTRAS = ["", "", "", " Shipping was quick.", " The box was a bit dented.", " Color matches the photos.",
          " I use it daily.", " Took a while to get used to it.", " Bought it on sale."]


def reviews(n: int, seed: int = 7) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(1, n + 1):
        pool = rng.choices([POSITIVE, NEGATIVE, NEUTRAL], weights=[5, 3, 2])[0]
        product = rng.choice(PRODUCTS)
        text = rng.choice(pool).format(product=product, aspect=rng.choice(ASPECTS)) + rng.choice(EXTRAS)
        out.append({"id": f"r-{i}", "product": product, "text": text})
    return out


if __name__ == "__main__":
    path = Path(__file__).with_name("eval.jsonl")
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in reviews(300)))
