"""Submit: upload each request file, then create its message batch exactly once.

The API has no idempotency key, so a create is made safe by the ledger instead: the intent
is committed before the call, the SDK's retries are off for it, and a call whose outcome is
unknown (timeout, dropped connection, 408, 409, 5xx) is reconciled by listing recent
batches — adopt exactly one match, re-create only once the list proves there is none, and
stop and ask when two match.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from batchrunner.client import AsyncApi, backoff
from batchrunner.crashpoints import crashpoint
from batchrunner.errors import ApiError, CreateAmbiguous, CreateRefused, SubmitUncertain
from batchrunner.ledger import Batch, Ledger, Run
from batchrunner.requestfile import create_body
from batchrunner.states import BatchState
from batchrunner.store import run_data

CLOCK_SKEW = timedelta(minutes=2)
MAX_CREATES = 10  # definite refusals (429) wait with backoff: 10 tries span about five minutes

Notify = Callable[[str], None]


@dataclass(frozen=True)
class SubmitSettings:
    """How long an unknown create may take to show up in the batch list before it counts as not made."""

    reconcile_wait_s: float = 600.0
    reconcile_poll_s: float = 5.0


async def upload_request_file(api: AsyncApi, ledger: Ledger, run: Run, batch: Batch) -> Batch:
    """Upload the shard's JSONL with purpose="batch" (a server that refuses the field gets it without).

    No call of the API reads the file (the batch is created inline), so a spec may skip it.
    """
    if batch.file_id or not run.settings.upload_request_files:
        return batch
    path = await asyncio.to_thread(run_data(run).fetch, batch.request_file)
    filename = f"{run.id}-{Path(batch.request_file).name}"
    meta = await api.upload_file(path, filename=filename, mime_type="application/jsonl", purpose="batch")
    ledger.record_upload(batch, meta["id"], meta["purpose_accepted"])
    crashpoint("submit.uploaded")
    return ledger.batch(batch.pk)


async def create_batch(api: AsyncApi, ledger: Ledger, run: Run, batch: Batch, settings: SubmitSettings, on_event: Notify) -> Batch:
    """Create the batch for one prepared request file: submitted, back to prepared (proven not made), or raise."""
    batch = ledger.record_intent(batch)
    crashpoint("submit.intent")
    size, body = create_body(await asyncio.to_thread(run_data(run).fetch, batch.request_file))
    try:
        remote = await api.create_batch(body, size)
    except SubmitUncertain as exc:
        batch = ledger.record_uncertain(batch, exc.message)
        on_event(f"{describe(batch)}: {exc.message}; reconciling")
        return await reconcile(api, ledger, batch, settings, on_event)
    except ApiError as exc:
        ledger.record_not_created(batch, exc.message)
        raise
    crashpoint("submit.created")
    batch = ledger.record_created(batch, remote)
    crashpoint("submit.recorded")
    return batch


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def _candidates(api: AsyncApi, ledger: Ledger, batch: Batch) -> list[dict[str, Any]]:
    """Unclaimed batches created since just before the intent, with this batch's request count."""
    assert batch.intent_at is not None
    recent = await api.batches_created_since(_parse_time(batch.intent_at) - CLOCK_SKEW)
    claimed = ledger.claimed_batch_ids()
    return [
        remote
        for remote in recent
        if sum(remote["request_counts"].values()) == batch.requests and remote["id"] not in claimed
    ]


async def reconcile(api: AsyncApi, ledger: Ledger, batch: Batch, settings: SubmitSettings, on_event: Notify) -> Batch:
    """Settle a create whose outcome is unknown, without ever creating twice.

    Exactly one matching batch: adopt it (its custom_ids are checked when its results come).
    None: keep looking until the wait has passed since the intent; then it may be created again.
    Two or more: stop, name them, and leave the decision to a person.
    """
    assert batch.state in (BatchState.CREATING, BatchState.UNCERTAIN) and batch.intent_at is not None
    deadline = _parse_time(batch.intent_at).timestamp() + settings.reconcile_wait_s
    while True:
        found = await _candidates(api, ledger, batch)
        if len(found) == 1:
            on_event(f"{describe(batch)}: adopted {found[0]['id']}, created by the uncertain call")
            return ledger.record_created(batch, found[0], adopted=True)
        if len(found) > 1:
            names = ", ".join(f"{remote['id']} (created {remote['created_at']})" for remote in found)
            raise CreateAmbiguous(
                f"the create for {batch.request_file} had an unknown outcome and {len(found)} batches match it: "
                f"{names}. Cancel all but one (`batchrunner cancel` does not know them; use the console or the API), "
                "then run `batchrunner resume` again"
            )
        if time.time() >= deadline:
            on_event(f"{describe(batch)}: no batch appeared for the uncertain create; it will be created again")
            return ledger.record_not_created(batch, "an uncertain create was proven not to have happened")
        await asyncio.sleep(min(settings.reconcile_poll_s, max(0.0, deadline - time.time())))


async def submit_pending(api: AsyncApi, ledger: Ledger, run: Run, settings: SubmitSettings, on_event: Notify) -> None:
    """Bring every batch of the run to `submitted`: reconcile the uncertain first, then create the rest."""
    for batch in ledger.batches(run, states=(BatchState.CREATING, BatchState.UNCERTAIN)):
        await reconcile(api, ledger, batch, settings, on_event)
    for batch in ledger.batches(run, states=(BatchState.PREPARED,)):
        batch = await upload_request_file(api, ledger, run, batch)
        for attempt in range(1, MAX_CREATES + 1):
            try:
                batch = await create_batch(api, ledger, run, batch, settings, on_event)
            except ApiError as exc:
                if exc.status != 429 or attempt == MAX_CREATES:
                    raise
                on_event(f"{describe(batch)}: rate limited before anything was created; waiting to try again")
                await asyncio.sleep(backoff(attempt, first=2.0, cap=60.0))
                continue
            if batch.state != BatchState.PREPARED:
                break
        else:
            raise CreateRefused(
                f"{describe(batch)}: {MAX_CREATES} creates in a row failed without creating anything; "
                "the API may be failing. Run `batchrunner resume` later"
            )
        on_event(f"{describe(batch)}: created {batch.batch_id} with {batch.requests} request{'s' if batch.requests != 1 else ''}")


def describe(batch: Batch) -> str:
    return f"batch {batch.shard + 1} of attempt {batch.attempt}"
