"""A batch's lifecycle is declared once (states.TRANSITIONS) and the ledger holds every change to it:
each of the 49 (from, to) pairs is tried on a real ledger, through the method that makes that move."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections import deque
from pathlib import Path

import pytest

from batchrunner.errors import EXIT_ERROR, IllegalTransition
from batchrunner.ledger import Batch, Ledger, NewRun
from batchrunner.spec import RunSettings
from batchrunner.states import TRANSITIONS, BatchState, ProcessingStatus, RunState

IDS = itertools.count(1)
P, C, U, S, E = BatchState.PREPARED, BatchState.CREATING, BatchState.UNCERTAIN, BatchState.SUBMITTED, BatchState.ENDED
# The lifecycle of DESIGN §6, spelled out here so that changing the table is a visible change to this test.
ALLOWED = {
    (P, C),  # the intent is committed before the create call
    (C, S), (C, U), (C, P),  # created; outcome unknown; refused (or reconciled as never made)
    (U, S), (U, P),  # reconciling adopts the one match, or proves there is none
    (S, E),  # a retrieve says ended
    (E, BatchState.COLLECTED), (E, BatchState.UNRECOVERABLE),  # joined, or archived before it was
}


def remote(processing_status: str = "in_progress") -> dict[str, object]:
    return {
        "id": f"msgbatch_{next(IDS)}",
        "processing_status": processing_status,
        "request_counts": {"processing": 0, "succeeded": 2, "errored": 0, "canceled": 0, "expired": 0},
        "created_at": "2026-11-24T00:00:00Z",
        "expires_at": "2026-11-25T00:00:00Z",
    }


def move(ledger: Ledger, batch: Batch, target: BatchState) -> Batch:
    """Ask the ledger for `target` the way the stage that makes that move asks for it."""
    if target is BatchState.PREPARED:
        ledger.record_not_created(batch, "the create was refused")
    elif target is BatchState.CREATING:
        ledger.record_intent(batch)
    elif target is BatchState.UNCERTAIN:
        ledger.record_uncertain(batch, "the create timed out")
    elif target is BatchState.SUBMITTED:
        ledger.record_created(batch, remote())
    elif target is BatchState.ENDED:
        ledger.record_status(batch, remote("ended"))
    elif target is BatchState.COLLECTED:
        ledger.mark_collected(batch)
    else:
        ledger.mark_unrecoverable(batch, "archived before it was collected")
    return ledger.batch(batch.pk)


def walks() -> dict[BatchState, list[BatchState]]:
    """The shortest walk from a new batch (prepared) to each state reachable along declared moves."""
    came_from: dict[BatchState, list[BatchState]] = {BatchState.PREPARED: []}
    queue = deque([BatchState.PREPARED])
    while queue:
        here = queue.popleft()
        for there in sorted(TRANSITIONS[here]):
            if there not in came_from:
                came_from[there] = [*came_from[here], there]
                queue.append(there)
    return came_from


def path_to(state: BatchState) -> list[BatchState]:
    return walks()[state]


def new_batch(home: Path, ledger: Ledger) -> Batch:
    run = ledger.create_run(
        NewRun(
            run_id="r1",
            job_name="t",
            spec_path=home / "job.yaml",
            output_path=home / "out.jsonl",
            store=home / "runs" / "r1",
            backend="local",
            base_url=None,
            model="claude-haiku-4-5",
            settings=RunSettings(),
        ),
        shards=[(0, 0, "requests-000.jsonl", 2, 100)],
        custom_ids=["a", "b"],
    )
    (batch,) = ledger.batches(run)
    return batch


def test_the_table_declares_the_lifecycle_every_state_reachable_two_of_them_final():
    assert {(here, there) for here, moves in TRANSITIONS.items() for there in moves} == ALLOWED
    assert set(TRANSITIONS) == set(BatchState)
    assert set(walks()) == set(BatchState)
    assert {state for state, moves in TRANSITIONS.items() if not moves} == {BatchState.COLLECTED, BatchState.UNRECOVERABLE}


@pytest.mark.parametrize(
    ("current", "target"), list(itertools.product(BatchState, BatchState)), ids=lambda state: str(state)
)
def test_the_ledger_makes_exactly_the_declared_moves(tmp_path, current, target):
    with Ledger(tmp_path) as ledger:
        batch = new_batch(tmp_path, ledger)
        for step in path_to(current):
            batch = move(ledger, batch, step)
        assert batch.state is current

        if (current, target) in ALLOWED:
            assert move(ledger, batch, target).state is target
        else:
            with pytest.raises(IllegalTransition) as refused:
                move(ledger, batch, target)
            assert refused.value.exit_code == EXIT_ERROR
            assert f"cannot move from {current} to {target}" in refused.value.message
            assert ledger.batch(batch.pk) == batch, "a refused move changes nothing"


def test_a_move_starts_from_the_stored_state_not_the_callers_copy(tmp_path):
    with Ledger(tmp_path) as ledger:
        stale = new_batch(tmp_path, ledger)
        ledger.record_intent(stale)
        with pytest.raises(IllegalTransition, match="from creating to creating"):
            ledger.record_intent(stale)


@pytest.mark.parametrize("status", ["in_progress", "canceling", "archiving_soon"])
def test_any_status_but_ended_leaves_a_batch_running(tmp_path, status):
    with Ledger(tmp_path) as ledger:
        batch = ledger.record_created(ledger.record_intent(new_batch(tmp_path, ledger)), remote())
        batch = ledger.record_status(batch, remote(status))
        assert (batch.state, batch.processing_status, batch.polls) == (BatchState.SUBMITTED, status, 1)
    assert ProcessingStatus.of(status) is not ProcessingStatus.ENDED


def test_a_run_is_named_by_its_least_advanced_batch():
    B = BatchState
    assert RunState.of([B.COLLECTED, B.UNCERTAIN, B.SUBMITTED], output_written=False) is RunState.SUBMITTING
    assert RunState.of([B.COLLECTED, B.SUBMITTED], output_written=False) is RunState.RUNNING
    assert RunState.of([B.COLLECTED, B.ENDED], output_written=True) is RunState.ENDED
    assert RunState.of([B.COLLECTED, B.UNRECOVERABLE], output_written=False) is RunState.ENDED
    assert RunState.of([B.COLLECTED, B.UNRECOVERABLE], output_written=True) is RunState.DONE


def test_states_and_the_ledger_load_without_the_sdk():
    code = "import sys, batchrunner.states, batchrunner.ledger; print('anthropic' in sys.modules)"
    shown = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert shown.strip() == "False"
