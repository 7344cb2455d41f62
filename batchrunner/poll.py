"""Poll: watch submitted batches until they end, gently.

Each batch is polled on its own schedule, through the command's one rate limiter: the first look
comes once the batch is `initial_interval` old (one just created has not ended), then the wait is
a tenth of the batch's age (with jitter), between `initial_interval` and `max_interval`, so the
end of a batch is noticed within about 10 % of its duration (or `initial_interval`) and a long
batch costs about one poll a minute. Statuses are mapped exhaustively: only `ended`
ends a batch; `in_progress`, `canceling` and any status this version does not know yet mean
"still running". Transient failures (429, 5xx, network) wait and try again.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from batchrunner.client import AsyncApi
from batchrunner.crashpoints import crashpoint
from batchrunner.errors import ApiError, NotFound, ServerDataLost
from batchrunner.ledger import Batch, Ledger
from batchrunner.run_settings import PollSettings
from batchrunner.states import ProcessingStatus


@dataclass(frozen=True)
class Polled:
    """One look at a batch and the wait before the next: what `-v` logs, so a cron log shows
    what the poller does. `status` is the API's processing_status, or `not_found` (just created,
    not visible yet) or `failed` (a transient error, also reported as a notice)."""

    batch_id: str
    status: str
    done: int
    total: int
    next_in: float | None  # seconds; None once the batch has ended


AGE_FRACTION = 0.1  # the wait is this share of the batch's age, so its end is noticed within about 10 %
NOT_FOUND_GRACE_S = 120.0  # a batch just created may not be visible yet; after this, not found is an error


def is_transient(error: ApiError) -> bool:
    if isinstance(error, ServerDataLost):
        return False
    return error.status is None or error.status in (408, 409, 429) or error.status >= 500


def _seconds_since(timestamp: str | None) -> float:
    if not timestamp:
        return 0.0
    created = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return (datetime.now(UTC) - created).total_seconds()


def first_wait(age_s: float, settings: PollSettings) -> float:
    """The wait before the first poll of a batch `age_s` seconds old: none once it is `initial_interval` old."""
    return min(max(settings.initial_interval - age_s, 0.0), settings.initial_interval)


def next_interval(age_s: float, settings: PollSettings) -> float:
    """The wait before the next poll of a batch `age_s` seconds old, before jitter."""
    return min(max(age_s * AGE_FRACTION, settings.initial_interval), settings.max_interval)


def _polled(batch_id: str, batch: Batch, status: str, next_in: float | None) -> Polled:
    counts = batch.request_counts or {}
    done = sum(n for kind, n in counts.items() if kind != "processing")
    return Polled(batch_id=batch_id, status=status, done=done, total=batch.requests, next_in=next_in)


async def wait_until_ended(
    api: AsyncApi,
    ledger: Ledger,
    batch: Batch,
    settings: PollSettings,
    on_update: Callable[[Batch], None],
    on_event: Callable[[str], None],
    on_poll: Callable[[Polled], None],
) -> Batch:
    """Poll one batch until the API says `ended`; returns the batch as last recorded."""
    batch_id = batch.batch_id
    assert batch_id is not None
    await asyncio.sleep(first_wait(_seconds_since(batch.created_at), settings))
    while True:
        try:
            remote = await api.retrieve_batch(batch_id)
        except NotFound:
            if _seconds_since(batch.created_at) > NOT_FOUND_GRACE_S:
                raise
            ledger.count_poll(batch)
            status = "not_found"
        except ApiError as exc:
            if not is_transient(exc):
                raise
            ledger.count_poll(batch)
            on_event(f"{batch_id}: {exc.message}; trying again")
            status = "failed"
        else:
            batch = ledger.record_status(batch, remote)
            on_update(batch)
            status = remote["processing_status"]
            if ProcessingStatus.of(status) is ProcessingStatus.ENDED:
                on_poll(_polled(batch_id, batch, status, None))
                return batch
            crashpoint("poll.polled")
        wait = next_interval(_seconds_since(batch.created_at), settings) * random.uniform(0.9, 1.1)
        on_poll(_polled(batch_id, batch, status, wait))
        await asyncio.sleep(wait)
