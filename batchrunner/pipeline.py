"""The order of the stages: compile → submit → poll → collect, and what each command runs of it.

Every command is a function here that a test or a scheduler can call directly; the CLI only
parses and renders. Each one opens one session (session.py: the run's lock, its backend, one
API facade with one rate limiter) and drives the stages in one event loop. Ctrl-C detaches
(the batches keep running on the server); nothing here ever cancels on its own.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from batchrunner import settings
from batchrunner.atomic import private_folder
from batchrunner.client import resolve_backend, simulated_notice
from batchrunner.collect import archive_warning, collect_batch, write_output
from batchrunner.crashpoints import crashpoint, failpoint
from batchrunner.errors import (
    EXIT_ERROR,
    EXIT_INCOMPLETE,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_RUNNING,
    BatchrunnerError,
    BudgetExceeded,
    InputError,
    Problem,
    RunLocked,
    StillRunning,
)
from batchrunner.ledger import Batch, Ledger, NewRun, Run
from batchrunner.paths import is_url, masked, same_target, shown, shown_target
from batchrunner.poll import Polled, wait_until_ended
from batchrunner.pricing import batch_cost_usd
from batchrunner.requestfile import ROWS_NAME, first_params
from batchrunner.retry import Selection, prepare_attempt, select
from batchrunner.session import Guard, Session, run_loop, run_session
from batchrunner.states import OPEN_STATES, BatchState, RunState
from batchrunner.store import missing_bucket, open_store, run_data, runs_location
from batchrunner.submit import SubmitSettings, submit_pending
from batchrunner.uploads import Uploaded, delete_attachments, upload_attachments

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from batchrunner.compile import CompileReport
    from batchrunner.spec import JobSpec

# The spec, compile and the model check (pydantic models, YAML, JSON Schema) are imported by the
# functions that submit, so `collect`, `watch` and `status` processes do not load them.

OUTPUT_NAME = "output.jsonl"  # a `Job` without an output keeps its results in the run folder
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass
class Events:
    """How the library talks to whoever runs it: notices, warnings (shown even to the quiet),
    a progress callback for the poller, and each poll (for a log)."""

    notice: Callable[[str], None] = lambda message: None
    warning: Callable[[str], None] = lambda message: None
    progress: Callable[[Run, list[Batch]], None] = lambda run, batches: None
    poll: Callable[[Polled], None] = lambda polled: None


@dataclass(frozen=True)
class Outcome:
    """What a command did to a run, and the exit code that says so."""

    run: Run
    state: RunState
    exit_code: int
    summary: dict[str, Any]
    batches: list[Batch] = field(default_factory=list)
    skipped: str | None = None  # why `--all` left this run alone (another process holds it)
    home: Path | None = None  # the state home whose ledger holds the run's results

    def rows(self) -> Iterator[dict[str, Any]]:
        """The output rows (DESIGN §5), in input order, read from the ledger whatever the output's
        format; a row without a result yet is `pending`."""
        for line in self._lines():
            yield orjson.loads(line)

    def to_arrow(self) -> pa.Table:
        """The output rows as one Arrow table, with the columns of a Parquet output."""
        from batchrunner.collect import LedgerOutput
        from batchrunner.output.parquet import arrow_table

        assert self.home is not None
        rows = run_data(self.run).fetch(ROWS_NAME)  # on another host: to its spool
        with Ledger(self.home, read_only=True) as ledger:
            output = LedgerOutput(ledger, ledger.run(self.run.id), self.run.backend, rows)
            return arrow_table(output, rows, self.run.settings.output_schema)

    def to_pandas(self) -> pd.DataFrame:
        """The output rows as a pandas DataFrame, one row per input row, columns as `to_arrow`."""
        return self.to_arrow().to_pandas()

    def _lines(self) -> Iterator[bytes]:
        from batchrunner.collect import output_lines

        assert self.home is not None
        with Ledger(self.home, read_only=True) as ledger:
            yield from output_lines(ledger, ledger.run(self.run.id), self.run.backend)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "run": run_info(self.run, self.state),
            "summary": self.summary,
            "batches": [batch_info(b) for b in self.batches],
            "exit_code": self.exit_code,
        }
        if self.skipped is not None:
            out["skipped"] = self.skipped
        return out


def run_info(run: Run, state: RunState) -> dict[str, Any]:
    return {
        "id": run.id,
        "job": run.job_name,
        "spec": str(run.spec_path),
        "output": str(shown_target(run.output_path)),
        "store": masked(run.store) if is_url(run.store) else run.store,
        "backend": run.backend,
        "base_url": run.base_url,
        "model": run.model,
        "created_at": run.created_at,
        "state": state,
        "requests": run.requests,
        "output_written_at": run.output_written_at,
    }


def batch_info(batch: Batch) -> dict[str, Any]:
    return {
        "attempt": batch.attempt,
        "shard": batch.shard,
        "state": batch.state,
        "batch_id": batch.batch_id,
        "requests": batch.requests,
        "processing_status": batch.processing_status,
        "request_counts": batch.request_counts,
        "file_id": batch.file_id,
        "purpose_accepted": batch.purpose_accepted,
        "created_at": batch.created_at,
        "ended_at": batch.ended_at,
        "expires_at": batch.expires_at,
        "archived_at": batch.archived_at,
        "polls": batch.polls,
        "note": batch.note,
    }


def run_state(run: Run, batches: list[Batch]) -> RunState:
    """One word for a run: submitting, running, ended (to collect), done."""
    return RunState.of((batch.state for batch in batches), run.output_written_at is not None)


def summarize(ledger: Ledger, run: Run) -> Outcome:
    batches = ledger.batches(run)
    summary = ledger.summary(run)
    sent = max(1, summary["counts"]["succeeded"] - summary["cached"])  # a tier (Haiku 5.5 over 100K) is per request
    summary["cost_usd"] = batch_cost_usd(
        run.model,
        summary["input_tokens"],
        summary["output_tokens"],
        run.settings.pricing,
        cache_write_5m=summary["cache_write_tokens"],
        cache_read=summary["cache_read_tokens"],
        requests=sent,
    )
    uncached = batch_cost_usd(
        run.model,
        summary["input_tokens"] + summary["cache_write_tokens"] + summary["cache_read_tokens"],
        summary["output_tokens"],
        run.settings.pricing,
        requests=sent,
    )
    summary["prompt_cache_saved_usd"] = (
        None if uncached is None or summary["cost_usd"] is None else round(uncached - summary["cost_usd"], 6)
    )
    saved = summary["cached_tokens"]
    summary["cost_saved_usd"] = batch_cost_usd(
        run.model,
        saved["input_tokens"],
        saved["output_tokens"],
        run.settings.pricing,
        cache_write_5m=saved["cache_write_tokens"],
        cache_read=saved["cache_read_tokens"],
        requests=max(1, summary["cached"]),
    )
    summary["polls"] = sum(batch.polls for batch in batches)
    summary["polls_per_batch"] = round(summary["polls"] / len(batches), 1) if batches else 0
    summary["warnings"] = [w for w in map(archive_warning, batches) if w] + [
        f"batch {b.batch_id}: {b.note}" for b in batches if b.state == BatchState.UNRECOVERABLE
    ]
    state = run_state(run, batches)
    if state != RunState.DONE:
        code = EXIT_RUNNING
    elif summary["counts"]["succeeded"] == run.requests and not summary["output_invalid"]:
        code = EXIT_OK
    else:
        code = EXIT_INCOMPLETE
    return Outcome(run=run, state=state, exit_code=code, summary=summary, batches=batches, home=ledger.home)


# preparing a run


@contextmanager
def _locked_run_id(ledger: Ledger, run_id: str | None, name: str) -> Iterator[str]:
    """The given run id, locked; or a new one, `<name>-<UTC time>` then `-2`, `-3`, ..., skipping
    any that exists or is locked. Claimed by its lock, then checked, so two hosts submitting the
    same job in the same second get two runs (neither exits 75 nor continues the other's run)."""
    if run_id is not None:
        with ledger.lock(run_id):
            yield run_id
        return
    base = f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    for n in count(1):
        candidate = base if n == 1 else f"{base}-{n}"
        if ledger.has_run(candidate):
            continue
        with ExitStack() as held:
            try:
                held.enter_context(ledger.lock(candidate))
            except RunLocked:
                continue
            if ledger.has_run(candidate):
                continue
            yield candidate
            return


def _check_budget(spec: JobSpec, report: CompileReport, force: bool) -> None:
    from batchrunner.compile import check_budget

    if force:
        return
    try:
        check_budget(spec, report)
    except BudgetExceeded as exc:
        raise BudgetExceeded([replace(p, message=f"{p.message}; or pass --force") for p in exc.problems]) from None


async def _live_check(session: Session, request_file: Path, events: Events) -> None:
    """Ask the backend about the run's model before anything more is created (see models.py)."""
    from batchrunner.models import check_live

    run = session.current
    version = run.settings.api_version or session.api.api_version
    params = first_params(request_file)
    await check_live(session.api, params, api_version=version, spec_path=shown(run.spec_path), notice=events.notice)


async def _check_spec_live(session: Session, spec: JobSpec, events: Events) -> None:
    """After the offline checks, before anything is sent: the spec's request against its model as
    the backend describes it, each problem at its spec line, as `validate` reports them."""
    from batchrunner.compile import check_spec_request
    from batchrunner.models import live_catalog

    catalog = await live_catalog(session.api, spec.model, shown(spec.path), events.notice, line=spec.key_line("model"))
    check_spec_request(spec, catalog)


async def _prepare_run(
    session: Session, spec: JobSpec, run_id: str, force: bool, no_cache: bool, events: Events, store: str | None = None
) -> tuple[Run, dict[str, int]]:
    """Check every row (and file) first, then the live model, then (with attachments: placeholder ids
    first, so nothing is sent if anything is wrong) upload the files the server does not have yet;
    compile into a scratch folder with their real ids, looking each request up in the answer cache
    on the way (answer_cache.py), and register the run in one step. With an object store, the
    compiled files are uploaded before the run is registered, so a run in the ledger always has
    its data where any host can read it. Returns the run and what the cache spared it (Planner.to_dict)."""
    from batchrunner.answer_cache import PLAN_NAME, Planner, open_plan, policy_for, read_plan
    from batchrunner.compile import compile_job

    uploaded: Uploaded | None = None
    if spec.attachments:
        checked = compile_job(spec)
        _check_budget(spec, checked, force)
        await _check_spec_live(session, spec, events)
        assert checked.attachments is not None
        uploaded = await upload_attachments(session.api, session.ledger, checked.attachments, events.notice)
    ledger = session.ledger
    runs_at = runs_location(store, ledger.home)
    runs = ledger.home / "runs" if runs_at is None or is_url(runs_at) else Path(runs_at)
    private_folder(runs)  # with a ledger elsewhere, the state home may not exist yet
    scratch, run_dir = runs / f".{run_id}.compiling", runs / run_id
    for stale in (scratch, run_dir):
        shutil.rmtree(stale, ignore_errors=True)
    scratch.mkdir(mode=0o700)
    try:
        with open_plan(scratch) as plan:
            planner = Planner(policy_for(spec, session.backend, no_cache=no_cache), ledger, plan)
            if uploaded is None:
                report = compile_job(spec, scratch, planner=planner)
            else:
                report = compile_job(spec, scratch, attachments=uploaded.files, file_ids=uploaded.file_ids, planner=planner)
        _check_budget(spec, report, force)
        if uploaded is None:
            await _check_spec_live(session, spec, events)
        crashpoint("compile.done")
        scratch.rename(run_dir)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    remote = f"{runs_at}/{run_id}" if runs_at is not None and is_url(runs_at) else None  # the run's folder in an object store
    try:
        if remote is not None:
            data = open_store(remote, run_dir)
            for count, name in enumerate((ROWS_NAME, *(s.path.name for s in report.shards if s.path is not None)), 1):
                failpoint("store.publish", count)  # tests: the store failing after some of the files are up
                await asyncio.to_thread(data.publish, name, run_dir / name)
        new = NewRun(
            run_id=run_id,
            job_name=spec.name,
            spec_path=spec.path,
            output_path=spec.output_path or (run_dir / OUTPUT_NAME if remote is None else f"{remote}/{OUTPUT_NAME}"),
            store=remote or run_dir,
            backend=session.backend.name,
            base_url=session.backend.base_url,
            model=spec.model,
            settings=spec.run_settings(),
        )
        run = ledger.create_run(
            new,
            shards=[
                (s.index, None if planner.skipped else s.first_seq, s.path.name, s.requests, s.bytes)
                for s in report.shards
                if s.path is not None
            ],
            planned=read_plan(run_dir / PLAN_NAME),
            attachments=[] if uploaded is None else [(sha, uploaded.backend_key, id_) for sha, id_ in uploaded.file_ids.items()],
            keep_attachments=spec.keep_attachments,
        )
    except BaseException:  # not registered (a full disk, a store unreachable): its folder would be an orphan
        if not ledger.has_run(run_id):  # a Ctrl-C just after the commit leaves a registered run
            shutil.rmtree(run_dir, ignore_errors=True)
            if remote is not None:
                _remove_objects(remote, run_dir)
        raise
    crashpoint("run.registered")
    (run_dir / PLAN_NAME).unlink()
    session.run = run
    return run, planner.to_dict()


def _remove_objects(location: str, spool: Path) -> None:
    """What an unregistered run uploaded, as far as the store can still be reached (it may be why
    the run failed): another host could never find these objects through the ledger."""
    with suppress(BatchrunnerError):
        data = open_store(location, spool)
        for name in data.list():
            data.delete(name)


# driving a run


def _submit_settings(run: Run) -> SubmitSettings:
    default = 5.0 if run.backend == "local" else 600.0
    return SubmitSettings(reconcile_wait_s=settings.seconds(settings.RECONCILE_WAIT, default))


async def _check_pending(session: Session, events: Events) -> None:
    """The live check for a run that has batches still to create (resume, a continued submit)."""
    run = session.current
    pending = session.ledger.batches(run, states=(BatchState.PREPARED,))
    if pending:  # every request of a run shares its model and params: any request file will do
        await _live_check(session, run_data(run).fetch(pending[0].request_file), events)


async def _drive(session: Session, *, detach: bool, timeout: float | None, events: Events) -> None:
    """Submit what is not submitted; unless detaching, wait for every batch, collect it, and
    apply the spec's automatic retry policy until it is spent."""
    ledger, api, run = session.ledger, session.api, session.current
    submit_settings, poll_settings = _submit_settings(run), run.settings.poll
    if timeout is None:
        timeout = poll_settings.timeout

    def report_progress(_: Batch | None = None) -> None:
        events.progress(run, ledger.batches(run))

    async def finish(batch: Batch) -> None:
        if batch.state == BatchState.SUBMITTED:
            batch = await wait_until_ended(api, ledger, batch, poll_settings, report_progress, events.notice, events.poll)
        await collect_batch(api, ledger, run, batch, events.notice)
        report_progress()

    async def until_done() -> None:
        while True:
            await submit_pending(api, ledger, run, submit_settings, events.notice)
            if detach:
                return
            report_progress()
            await asyncio.gather(*(finish(batch) for batch in ledger.batches(run, states=(BatchState.SUBMITTED, BatchState.ENDED))))
            if not _retry_automatically(ledger, run, events):
                return

    try:
        await asyncio.wait_for(until_done(), timeout)
    except TimeoutError:
        events.notice(f"stopped waiting after {timeout:g} s (--timeout or poll.timeout); run {run.id} is still running")


def _retry_automatically(ledger: Ledger, run: Run, events: Events) -> bool:
    """Prepare the next attempt if the spec's retry policy asks for one and there is something to retry."""
    policy = run.settings.retry
    attempt = ledger.next_attempt(run)
    if attempt > policy.max_attempts:
        return False
    error_types = tuple(policy.error_types) if policy.error_types is not None else None
    seqs = select(ledger, run, Selection(statuses=tuple(policy.statuses), error_types=error_types))
    if not seqs:
        return False
    prepare_attempt(ledger, run, seqs)
    events.notice(f"retry policy: attempt {attempt} sends {len(seqs)} failed request(s) again")
    return True


async def _collect_ended(session: Session, events: Events) -> None:
    """One look at each unfinished batch, then collect whatever has ended; never waits."""
    ledger, run = session.ledger, session.current
    for batch in ledger.batches(run, states=(BatchState.SUBMITTED,)):
        assert batch.batch_id is not None
        ledger.record_status(batch, await session.api.retrieve_batch(batch.batch_id))
    for batch in ledger.batches(run, states=(BatchState.ENDED,)):
        await collect_batch(session.api, ledger, run, batch, events.notice)


async def _finish(session: Session, events: Events) -> Outcome:
    """Once nothing is open: write the output, then delete the attachments the run does not keep."""
    ledger, run = session.ledger, session.current
    batches = ledger.batches(run)
    if not any(batch.state in OPEN_STATES for batch in batches) and (batches or run.requests):  # no batch: all cached
        write_output(ledger, run, run.backend)
        await delete_attachments(session.api, ledger, session.current, events.notice)
    return summarize(ledger, session.current)


async def _continue(session: Session, *, detach: bool, timeout: float | None, events: Events) -> Outcome:
    """What `resume` and a continued `submit` do: check, submit, (wait, collect), finish."""
    await _check_pending(session, events)
    await _drive(session, detach=detach, timeout=timeout, events=events)
    return await _finish(session, events)


# commands


def submit(
    spec_path: Path,
    *,
    home: Path,
    run_id: str | None = None,
    backend: str | None = None,
    detach: bool = False,
    timeout: float | None = None,
    force: bool = False,
    no_cache: bool = False,
    events: Events | None = None,
    store: str | None = None,
) -> Outcome:
    """Compile, submit, and unless detached wait and collect. With an existing --run-id, continue that run.
    `store` (--store) is where a new run keeps its data: a folder or an object store URL (default: the home).
    `no_cache` sends every request, cached or not (what comes back is still cached)."""
    return run_loop(submit_async(
        spec_path, home=home, run_id=run_id, backend=backend, detach=detach, timeout=timeout, force=force,
        no_cache=no_cache, events=events, store=store,
    ))


async def submit_async(
    spec_path: Path,
    *,
    home: Path,
    run_id: str | None = None,
    backend: str | None = None,
    detach: bool = False,
    timeout: float | None = None,
    force: bool = False,
    no_cache: bool = False,
    events: Events | None = None,
    store: str | None = None,
) -> Outcome:
    """`submit` in the caller's event loop."""
    from batchrunner.spec import load_spec

    settings.check_numbers()
    spec = load_spec(spec_path)
    return await submit_job_async(
        spec, home=home, run_id=run_id, backend=backend, detach=detach, timeout=timeout, force=force,
        no_cache=no_cache, events=events, store=store,
    )


async def submit_job_async(
    spec: JobSpec,
    *,
    home: Path,
    run_id: str | None = None,
    backend: str | None = None,
    detach: bool = False,
    timeout: float | None = None,
    force: bool = False,
    no_cache: bool = False,
    events: Events | None = None,
    store: str | None = None,
) -> Outcome:
    """`submit_async` for a spec already loaded (a YAML file, or a `Job` made in Python)."""
    from batchrunner.compile import check_output_outside, check_output_writable

    events = events or Events()
    settings.check_numbers()
    resolved = resolve_backend(backend, spec.backend, os.environ)
    if run_id is not None and not RUN_ID.match(run_id):
        raise InputError(f"--run-id {run_id!r}: use letters, digits, '_', '-' and '.', at most 100 characters")
    check_output_writable(spec)
    check_output_outside(spec, home)
    runs_at = runs_location(store, home)  # a store URL without its extra is refused before anything is written
    _check_buckets(spec, runs_at)
    if resolved.simulated:  # said once the command goes ahead, not before a refusal
        events.notice(simulated_notice(home))
    with Guard(home) as guard, Ledger(home) as ledger:
        with _locked_run_id(ledger, run_id, spec.name) as run_id:
            guard.run_id = run_id
            if spec.attachments:
                guard.before_run = "interrupted; no batch was created (attachments uploaded so far are reused next time)"
            if ledger.has_run(run_id):
                run = ledger.run(run_id)
                if run.spec_path != spec.path:
                    raise InputError(f"--run-id {run_id} belongs to {run.spec_path}, not {spec.path}")
                events.notice(f"run {run_id} exists; continuing it")
                edited = _edited_since(spec, run)
                if edited:
                    events.warning(
                        f"{' and '.join(edited)} changed after run {run_id} was compiled: continuing it sends the "
                        "requests compiled then; to send the edited job, submit it with another --run-id (or none)"
                    )
                with Session.of_run(home, ledger, run) as session:
                    return await _continue(session, detach=detach, timeout=timeout, events=events)
            _warn_about_other_runs(ledger, spec, events)
            with Session.open(
                home, ledger, resolved, api_version=spec.api_version, requests_per_minute=spec.poll.requests_per_minute
            ) as session:
                return await _submit_new(
                    session, spec, run_id, force=force, no_cache=no_cache, detach=detach, timeout=timeout, events=events,
                    store=store,
                )


def _check_buckets(spec: JobSpec, runs_at: str | None) -> None:
    """Refuse a missing or unreachable bucket for the output or `--store` before a batch is
    created: found at the end, it would fail a run already paid for. Exit 1, as for an API's
    "not found": whether a bucket exists is the world's state, not the spec's (and a store that
    cannot be reached looks the same)."""
    if isinstance(spec.output_path, str) and (problem := missing_bucket(spec.output_path)) is not None:
        raise BatchrunnerError(str(Problem(shown(spec.path), spec.key_line("output"), f"`output` {problem}")))
    if runs_at is not None and is_url(runs_at) and (problem := missing_bucket(runs_at)) is not None:
        raise BatchrunnerError(f"--store {problem}")


async def _submit_new(
    session: Session,
    spec: JobSpec,
    run_id: str,
    *,
    force: bool,
    no_cache: bool,
    detach: bool,
    timeout: float | None,
    events: Events,
    store: str | None,
) -> Outcome:
    run, planned = await _prepare_run(session, spec, run_id, force, no_cache, events, store)
    spared = [f"{planned['cached']} answered from the cache"] if planned["cached"] else []
    spared += [f"{planned['duplicates']} the same as an earlier row's"] if planned["duplicates"] else []
    events.notice(
        f"run {run.id}: {run.requests} requests in {len(session.ledger.batches(run))} batch(es)"
        + (f" ({planned['sent']} to send; {', '.join(spared)})" if spared else "")
    )
    await _drive(session, detach=detach, timeout=timeout, events=events)
    return await _finish(session, events)


def _edited_since(spec: JobSpec, run: Run) -> list[str]:
    """The job's files (spec, input rows) modified after the run was registered from them."""
    registered = datetime.fromisoformat(run.created_at.replace("Z", "+00:00")).timestamp()
    files = [path for path in (spec.path, spec.input_path) if path is not None]
    return [str(shown(path)) for path in files if path.is_file() and path.stat().st_mtime > registered]


def _warn_about_other_runs(ledger: Ledger, spec: JobSpec, events: Events) -> None:
    """Before a new run: an unfinished run of the same job (resume it rather than pay for its
    requests again), or another job's run writing the same output file."""
    for run in ledger.runs():
        state = run_state(run, ledger.batches(run))
        if run.spec_path == spec.path and state != RunState.DONE:
            events.warning(
                f"run {run.id} of this job is not finished ({state}); `batchrunner resume {run.id}` finishes it "
                "(a new run sends every request again)"
            )
        elif spec.output_path is not None and same_target(run.output_path, spec.output_path) and (state != RunState.DONE or run.spec_path != spec.path):
            events.warning(
                f"run {run.id} (job {run.job_name}) also writes {shown_target(spec.output_path)}; "
                "whichever finishes last overwrites the other's output"
            )


def resume(
    run_id: str, *, home: Path, detach: bool = False, timeout: float | None = None, events: Events | None = None
) -> Outcome:
    """Finish whatever was interrupted: reconcile uncertain creates, submit what is unsent,
    then unless detached poll, collect and write the output, like `submit`."""
    return run_loop(resume_async(run_id, home=home, detach=detach, timeout=timeout, events=events))


async def resume_async(
    run_id: str, *, home: Path, detach: bool = False, timeout: float | None = None, events: Events | None = None
) -> Outcome:
    """`resume` in the caller's event loop."""
    events = events or Events()
    with run_session(home, run_id) as session:
        return await _continue(session, detach=detach, timeout=timeout, events=events)


def resume_all(*, home: Path, detach: bool = False, events: Events | None = None) -> list[Outcome]:
    """`resume` for every run that is not done; a run another process holds is skipped, and its
    outcome (still in progress, exit 4) says so.

    A run the live check refuses (its model gone, say) is reported with exit code 2 and left as it
    is, so one such run does not keep a scheduled `resume --all` from finishing the others.
    """
    return run_loop(resume_all_async(home=home, detach=detach, events=events))


async def resume_all_async(*, home: Path, detach: bool = False, events: Events | None = None) -> list[Outcome]:
    """`resume_all` in the caller's event loop."""
    events = events or Events()
    return [await _unless_locked(_resume_or_refused, run_id, home, events, detach=detach) for run_id in _unfinished(home)]


async def _resume_or_refused(run_id: str, *, home: Path, events: Events, detach: bool) -> Outcome:
    try:
        return await resume_async(run_id, home=home, detach=detach, events=events)
    except InputError as exc:
        events.notice(f"run {run_id} not resumed: {exc.message}")
        return replace(status(run_id, home=home), exit_code=EXIT_INVALID)


def watch(run_id: str, *, home: Path, timeout: float | None = None, events: Events | None = None) -> Outcome:
    """Reattach to a run and stay until it is done: `resume` without detaching."""
    return run_loop(watch_async(run_id, home=home, timeout=timeout, events=events))


async def watch_async(run_id: str, *, home: Path, timeout: float | None = None, events: Events | None = None) -> Outcome:
    """`watch` in the caller's event loop."""
    return await resume_async(run_id, home=home, timeout=timeout, events=events)


def retry(
    run_id: str,
    selection: Selection,
    *,
    home: Path,
    detach: bool = False,
    timeout: float | None = None,
    events: Events | None = None,
) -> Outcome:
    """A new attempt with only the selected requests; its results merge into the same output."""
    return run_loop(retry_async(run_id, selection, home=home, detach=detach, timeout=timeout, events=events))


async def retry_async(
    run_id: str,
    selection: Selection,
    *,
    home: Path,
    detach: bool = False,
    timeout: float | None = None,
    events: Events | None = None,
) -> Outcome:
    """`retry` in the caller's event loop."""
    events = events or Events()
    with run_session(home, run_id) as session:
        return await _retry(session, selection, detach=detach, timeout=timeout, events=events)


async def _retry(session: Session, selection: Selection, *, detach: bool, timeout: float | None, events: Events) -> Outcome:
    ledger, run = session.ledger, session.current
    busy = ledger.batches(run, states=OPEN_STATES)
    if busy:
        raise StillRunning(
            f"run {run.id} still has {len(busy)} unfinished batch(es); let them end first "
            f"(`batchrunner watch {run.id}`), then retry"
        )
    seqs = select(ledger, run, selection)
    if not seqs:
        events.notice(f"run {run.id}: nothing matches; no new attempt")
        return await _finish(session, events)
    if ledger.attachments_deleted(run):
        raise InputError(
            f"run {run.id}'s attachments were deleted from the server when it finished (keep_attachments: false), "
            "so its requests cannot be sent again: submit the job as a new run, which uploads them again"
        )
    await _live_check(session, run_data(run).fetch(ledger.batches(run)[0].request_file), events)
    attempt = prepare_attempt(ledger, run, seqs)
    events.notice(f"run {run.id}: attempt {attempt} sends {len(seqs)} request(s) again")
    await _drive(session, detach=detach, timeout=timeout, events=events)
    return await _finish(session, events)


def collect(run_id: str, *, home: Path, events: Events | None = None) -> Outcome:
    """Collect every ended batch of a run and write its output; never waits for running ones."""
    return run_loop(collect_async(run_id, home=home, events=events))


async def collect_async(run_id: str, *, home: Path, events: Events | None = None) -> Outcome:
    """`collect` in the caller's event loop."""
    events = events or Events()
    with run_session(home, run_id) as session:
        return await _collect(session, events)


async def _collect(session: Session, events: Events) -> Outcome:
    await _collect_ended(session, events)
    return await _finish(session, events)


def collect_all(*, home: Path, events: Events | None = None) -> list[Outcome]:
    """`collect` for every run that is not done; a run another process holds is skipped, and its
    outcome (still in progress, exit 4) says so."""
    return run_loop(collect_all_async(home=home, events=events))


async def collect_all_async(*, home: Path, events: Events | None = None) -> list[Outcome]:
    """`collect_all` in the caller's event loop."""
    events = events or Events()
    return [await _unless_locked(collect_async, run_id, home, events) for run_id in _unfinished(home)]


def _unfinished(home: Path) -> list[str]:
    with Ledger(home, read_only=True) as ledger:  # only looks: nothing to collect creates nothing
        return [run.id for run in ledger.runs() if run_state(run, ledger.batches(run)) != RunState.DONE]


async def _unless_locked(
    command: Callable[..., Awaitable[Outcome]], run_id: str, home: Path, events: Events, **options: Any
) -> Outcome:
    """A run held by another process is in progress: counted as such (exit 4), never as done. A run
    whose data is in a folder this host does not have is an error (exit 1) that does not keep the
    others from being done: on a shared ledger it is another host's, submitted without --store."""
    known = status(run_id, home=home)
    missing = _data_missing(known.run)
    if missing is not None:
        return replace(known, exit_code=EXIT_ERROR, skipped=missing)
    try:
        return await command(run_id, home=home, events=events, **options)
    except RunLocked as exc:
        return replace(status(run_id, home=home), exit_code=EXIT_RUNNING, skipped=exc.message)


def _data_missing(run: Run) -> str | None:
    """Why this host cannot act on the run, if its data is in a local folder that is not here."""
    if is_url(run.store) or Path(run.store).is_dir():
        return None
    return (
        f"run {run.id} keeps its data in {run.store}, which this host does not have: finish it where that "
        "folder is (runs that hosts share keep their data where all of them reach it: --store)"
    )


def status(run_id: str | None, *, home: Path) -> Outcome:
    """What the ledger knows of a run (default: the latest), without calling the API."""
    with Ledger(home, read_only=True) as ledger:
        run = ledger.run(run_id) if run_id else ledger.latest_run()
        return summarize(ledger, run)


def list_runs(*, home: Path) -> list[Outcome]:
    with Ledger(home, read_only=True) as ledger:
        return [summarize(ledger, run) for run in ledger.runs()]


def cancel(run_id: str, *, home: Path, events: Events | None = None) -> Outcome:
    """Ask the API to cancel the run's running batches, under the run's lock. They end as
    `canceling` → `ended`; `watch` or `collect` then gathers their partial results."""
    return run_loop(cancel_async(run_id, home=home, events=events))


async def cancel_async(run_id: str, *, home: Path, events: Events | None = None) -> Outcome:
    """`cancel` in the caller's event loop."""
    events = events or Events()
    with run_session(home, run_id) as session:
        return await _cancel(session, events)


async def _cancel(session: Session, events: Events) -> Outcome:
    ledger, run = session.ledger, session.current
    running = ledger.batches(run, states=(BatchState.SUBMITTED,))
    for batch in running:
        assert batch.batch_id is not None
        ledger.record_status(batch, await session.api.cancel_batch(batch.batch_id))
        events.notice(f"{batch.batch_id}: cancel requested")
    if not running:
        events.notice(f"run {run.id} has no running batch: nothing to cancel")
    return summarize(ledger, run)
