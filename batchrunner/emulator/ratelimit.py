"""Requests-per-minute limits, as the API applies and reports them.

A token bucket per API key: it holds up to `requests_per_minute` requests and refills
continuously at that rate, so a client may burst up to the limit and then keep the rate. Every
answer to a /v1/ call carries `anthropic-ratelimit-requests-limit`, `-remaining` and `-reset`
(RFC 3339: when the bucket is full again); past the limit the answer is a 429 `rate_limit_error`
with `retry-after`, the wait until one request is allowed again.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from batchrunner.emulator.errors import RateLimited
from batchrunner.emulator.faults import retry_after

DEFAULT_REQUESTS_PER_MINUTE = 4000  # generous: a Tier 4 organization's limit; far above what a run needs


@dataclass
class Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """The buckets of one server; `take` admits one request for a key or raises RateLimited."""

    def __init__(self, requests_per_minute: int, clock: Callable[[], float] = time.time) -> None:
        self.limit = requests_per_minute
        self.per_second = requests_per_minute / 60.0
        self.clock = clock
        self._buckets: dict[str, Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> dict[str, str]:
        """Admit one request; returns the headers its answer carries."""
        with self._lock:
            now = self.clock()
            bucket = self._buckets.setdefault(key, Bucket(float(self.limit), now))
            bucket.tokens = min(float(self.limit), bucket.tokens + (now - bucket.updated) * self.per_second)
            bucket.updated = now
            admitted = bucket.tokens >= 1.0
            if admitted:
                bucket.tokens -= 1.0
            headers = self._headers(bucket, now)
        if not admitted:
            wait = (1.0 - bucket.tokens) / self.per_second
            raise RateLimited(
                f"This request would exceed your organization's rate limit of {self.limit} requests per minute;"
                " wait for retry-after and slow down",
                headers=headers | retry_after(wait),
            )
        return headers

    def _headers(self, bucket: Bucket, now: float) -> dict[str, str]:
        full_at = now + (self.limit - bucket.tokens) / self.per_second
        return {
            "anthropic-ratelimit-requests-limit": str(self.limit),
            "anthropic-ratelimit-requests-remaining": str(math.floor(bucket.tokens)),
            "anthropic-ratelimit-requests-reset": rfc3339_seconds(math.ceil(full_at)),
        }


def rfc3339_seconds(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
