"""The three lifecycles a run goes through, each its own type, and the moves a batch may make.

"ended" is said by three parties, and means three things: the API's `processing_status` of a
message batch (`ProcessingStatus.ENDED`: its results can be downloaded), the ledger's state of
that batch (`BatchState.ENDED`: ended, results not yet joined) and the one word for a whole run
(`RunState.ENDED`: nothing is running, but something is left to collect or write). The values
are the strings stored in the ledger and shown by `status`, so no stored row changes.

A batch's moves are declared once in `TRANSITIONS`, as moto declares its lifecycles; the ledger
refuses any other (`IllegalTransition`). Importable without the SDK, for `status` and `runs`.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from batchrunner.errors import IllegalTransition


class BatchState(StrEnum):
    """Where one request file is on its way to the API and back, in the order it moves."""

    PREPARED = "prepared"  # request file written; no create attempted (or the last one was definitely refused)
    CREATING = "creating"  # intent committed; a create call may be in flight
    UNCERTAIN = "uncertain"  # the create call's outcome is unknown: reconcile before anything else
    SUBMITTED = "submitted"  # the API has the batch; poll it
    ENDED = "ended"  # the API says it ended; results not yet joined
    COLLECTED = "collected"  # results downloaded and joined into the ledger
    UNRECOVERABLE = "unrecoverable"  # archived before its results were collected


TRANSITIONS: dict[BatchState, frozenset[BatchState]] = {
    BatchState.PREPARED: frozenset({BatchState.CREATING}),  # the intent, committed before the create call
    BatchState.CREATING: frozenset(
        {
            BatchState.SUBMITTED,  # created (or adopted by reconciling after a crash)
            BatchState.UNCERTAIN,  # the call's outcome is unknown
            BatchState.PREPARED,  # refused, or proven by reconciling never to have been made
        }
    ),
    BatchState.UNCERTAIN: frozenset({BatchState.SUBMITTED, BatchState.PREPARED}),  # adopted, or proven not made
    BatchState.SUBMITTED: frozenset({BatchState.ENDED}),  # a retrieve said `ended`
    BatchState.ENDED: frozenset({BatchState.COLLECTED, BatchState.UNRECOVERABLE}),  # joined, or archived first
    BatchState.COLLECTED: frozenset(),
    BatchState.UNRECOVERABLE: frozenset(),
}

OPEN_STATES = (
    BatchState.PREPARED,
    BatchState.CREATING,
    BatchState.UNCERTAIN,
    BatchState.SUBMITTED,
    BatchState.ENDED,
)
UNSENT_STATES = (BatchState.PREPARED, BatchState.CREATING, BatchState.UNCERTAIN)
FINISHED_STATES = (BatchState.ENDED, BatchState.COLLECTED)  # the API is done with them


def check_transition(batch: str, current: BatchState, target: BatchState) -> None:
    """Refuse a move the table does not declare: a bug in batchrunner, never the user's doing."""
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing"
        raise IllegalTransition(
            f"{batch} cannot move from {current} to {target} (from {current} it may move to {allowed}); "
            "this is a bug in batchrunner: please report it with `batchrunner status RUN --json`"
        )


class ProcessingStatus(StrEnum):
    """A message batch's `processing_status` as the API reports it."""

    IN_PROGRESS = "in_progress"
    CANCELING = "canceling"
    ENDED = "ended"

    @classmethod
    def of(cls, value: str) -> ProcessingStatus:
        """Exhaustive (DESIGN §6): a status this version does not know yet means still running."""
        try:
            return cls(value)
        except ValueError:
            return cls.IN_PROGRESS


class RunState(StrEnum):
    """One word for a run, computed from its batches."""

    SUBMITTING = "submitting"  # a batch is not created yet (or its create is being reconciled)
    RUNNING = "running"  # every batch is created; some are still processing on the API
    ENDED = "ended"  # nothing is processing, but a batch's results or the output are still to collect
    DONE = "done"  # every batch collected (or unrecoverable) and the output written

    @classmethod
    def of(cls, batch_states: Iterable[BatchState], output_written: bool) -> RunState:
        states = set(batch_states)
        if states.intersection(UNSENT_STATES):
            return cls.SUBMITTING
        if BatchState.SUBMITTED in states:
            return cls.RUNNING
        if BatchState.ENDED in states or not output_written:
            return cls.ENDED
        return cls.DONE
