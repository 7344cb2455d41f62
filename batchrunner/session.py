"""One session per command: the ledger, the run and its lock, the backend, one API facade, one loop.

A command that talks to the API opens one session and does everything in it: the live model
check, attachment uploads, creates, polls, downloads, deletes and cancels are awaited through
one `AsyncApi` (so one rate limiter) in one event loop (`run_loop`), under the run's lock, with
the local emulator started once. `Guard` says what Ctrl-C means at any instant: once the run is
in the ledger it detaches (exit 4, its batches go on); before, nothing was sent (exit 130).

    with Guard(home) as guard, Ledger(home) as ledger:          # the state home, Ctrl-C
        with ledger.lock(run_id):                                # one process per run
            with Session.open(home, ledger, backend, ...) as s:  # the backend and its facade
                await step(s)                                    # one event loop

Each command is an async function (`collect_async`, ...) that runs in its caller's event loop;
its sync twin is `run_loop(twin(...))`, which gives it a loop of its own.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self, TypeVar

from batchrunner import settings
from batchrunner.client import AsyncApi, ResolvedBackend, connect, resolve_backend
from batchrunner.errors import BatchrunnerError, Detached, EventLoopRunning, InputError, Interrupted
from batchrunner.ledger import STORAGE_ERRORS, Ledger, Run, ledger_exists
from batchrunner.states import UNSENT_STATES, BatchState

T = TypeVar("T")


@dataclass
class Session:
    """What one command holds while it works: the open ledger, the backend, the one API facade,
    and the run (once there is one)."""

    home: Path
    ledger: Ledger
    backend: ResolvedBackend
    api: AsyncApi
    run: Run | None = None

    @classmethod
    @contextmanager
    def open(
        cls, home: Path, ledger: Ledger, backend: ResolvedBackend, *, api_version: str | None, requests_per_minute: int
    ) -> Iterator[Session]:
        """Connect to the backend (the local emulator starts here, once) and build the facade."""
        with connect(backend, home, api_version=api_version) as api:
            yield cls(home, ledger, backend, AsyncApi(api, requests_per_minute))

    @classmethod
    @contextmanager
    def of_run(cls, home: Path, ledger: Ledger, run: Run) -> Iterator[Session]:
        """An existing run's session: its own backend, anthropic-version and rate limit."""
        with cls.open(
            home, ledger, run_backend(run),
            api_version=run.settings.api_version, requests_per_minute=run.settings.poll.requests_per_minute,
        ) as session:
            session.run = run
            yield session

    @property
    def current(self) -> Run:
        """The run, as the ledger has it now."""
        assert self.run is not None
        self.run = self.ledger.run(self.run.id)
        return self.run


def run_backend(run: Run) -> ResolvedBackend:
    """A run's own backend, where every later command on it goes."""
    return resolve_backend(run.backend, None, os.environ, base_url=run.base_url)


@contextmanager
def run_session(home: Path, run_id: str) -> Iterator[Session]:
    """Lock an existing run and open its backend under its anthropic-version and rate limit:
    what every command that talks to the API about a run opens, once."""
    settings.check_numbers()
    with Guard(home) as guard, Ledger(home, read_only=not ledger_exists(home)) as ledger:  # no ledger: nothing made to say so
        ledger.run(run_id)  # an unknown id is refused before a lock file is made in its name
        guard.run_id = run_id
        with ledger.lock(run_id):
            with Session.of_run(home, ledger, ledger.run(run_id)) as session:
                yield session


_CTRL_C = threading.Event()  # set by the handler run_loop installs, so a Guard knows a cancel came from Ctrl-C


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _CTRL_C.set()
    raise KeyboardInterrupt


def _report(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A Ctrl-C that ended a task beside the main one is the Guard's to report, not asyncio's."""
    if not isinstance(context.get("exception"), KeyboardInterrupt):
        loop.default_exception_handler(context)


async def _quiet(main: Coroutine[Any, Any, T]) -> T:
    asyncio.get_running_loop().set_exception_handler(_report)
    return await main


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run a command's async twin in an event loop of its own: what each sync command is.

    Ctrl-C raises KeyboardInterrupt where the command is, at once: asyncio's own handler would
    only cancel at the next await, so a compile finishing after the Ctrl-C could still register
    its run. Inside a running loop (a notebook, an Airflow or Dagster task) it refuses, naming
    the twin to await instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        twin = str(getattr(main, "__name__", "the command"))
        main.close()
        raise EventLoopRunning(
            f"{twin.removesuffix('_async')}() blocks, so it cannot run inside a running event loop: "
            f"use `await {twin}(...)` there"
        )
    _CTRL_C.clear()
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return _run(main)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        return _run(main)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, except that a Ctrl-C met while the loop waits still unwinds the command
    through its Guard (which says what the Ctrl-C meant) before the loop closes."""
    with asyncio.Runner() as runner:
        loop = runner.get_loop()
        task = loop.create_task(_quiet(main))
        try:
            return loop.run_until_complete(task)
        except KeyboardInterrupt:
            if task.done():
                raise
            task.cancel()
            try:
                return loop.run_until_complete(task)
            except asyncio.CancelledError:
                raise KeyboardInterrupt from None


def detached_message(ledger: Ledger, run: Run) -> str:
    """What Ctrl-C left: batches the API still works on, or only results to gather."""
    if not ledger.batches(run, states=(*UNSENT_STATES, BatchState.SUBMITTED)):
        return f"detached from run {run.id}; its batches have ended. `batchrunner collect {run.id}` finishes it"
    return (
        f"detached from run {run.id}; its batches keep running. Come back with `batchrunner watch {run.id}` "
        f"(or `batchrunner resume {run.id}`), which also submits any batch not sent yet"
    )


class Guard:
    """What Ctrl-C, or a deleted state home, means at any instant of a command on one run.

    Ctrl-C once the run is in the ledger detaches (exit 4; its batches go on, nothing is
    cancelled); before that nothing was sent (exit 130). An error once the state home has been
    deleted under the command says that, in one line, instead of what it broke.
    """

    def __init__(self, home: Path, before_run: str = "interrupted; nothing was sent") -> None:
        self.home = Path(os.path.abspath(home))
        self.before_run = before_run
        self.run_id: str | None = None  # set once the ledger is open

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if isinstance(error, KeyboardInterrupt) or isinstance(error, asyncio.CancelledError) and _CTRL_C.is_set():
            raise self._interrupted() from None
        operational = isinstance(error, (OSError, *STORAGE_ERRORS, BatchrunnerError)) and not isinstance(error, InputError)
        if operational and self.run_id is not None and not ledger_exists(self.home):
            raise BatchrunnerError(
                f"the state home {self.home} was deleted during run {self.run_id}: its ledger and run folders "
                "are gone, so the run cannot be finished or resumed; submit the job again"
            ) from error

    def _interrupted(self) -> BatchrunnerError:
        if self.run_id is not None and ledger_exists(self.home):
            with Ledger(self.home) as ledger:
                if ledger.has_run(self.run_id):
                    return Detached(detached_message(ledger, ledger.run(self.run_id)))
        return Interrupted(self.before_run)
