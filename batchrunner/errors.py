"""Every error a user can see, each carrying the exit code the CLI returns for it.

    BatchrunnerError (1)               anything operational: API, network, disk
    ├── InputError (2)                 bad job spec, bad input rows, bad command-line usage;
    │   │                              raised before anything is sent or written
    │   ├── SpecError (2)              a job spec problem, located at file:line
    │   ├── RowError (2)               an input row problem, located at file:line
    │   ├── BudgetExceeded (2)         the worst-case cost is over the spec's budget_usd
    │   └── UnknownRun (2)             a run id the ledger does not know (a typo, or another --home)
    ├── EventLoopRunning (2)           a blocking library call made inside a running event loop
    ├── ApiError (1)                   the API refused or failed a call
    │   ├── NotFound (1)               the API says the thing does not exist
    │   ├── NotDownloadable (1)        the file exists, but the API does not let its content out
    │   ├── TooLarge (1)               a file or request over the API's size limit (files: checked before uploading)
    │   ├── StorageFull (1)            the organization's file storage is full
    │   ├── SubmitUncertain (1)        a create whose outcome is unknown and could not be reconciled
    │   │   └── CreateAmbiguous (1)    an unknown create that two or more batches match: a person decides
    │   ├── CreateRefused (1)          creates that failed again and again, each proven to have made nothing
    │   └── ServerDataLost (1)         the server lost everything (the local emulator's data folder was deleted)
    ├── LedgerUnusable (1)             the state home's ledger is damaged, emptied, or cannot be written
    ├── IllegalTransition (1)          a batch asked to make a move its lifecycle does not have (a bug)
    ├── StillRunning (4)               the run has batches that have not ended yet
    │   └── Detached (4)               Ctrl-C once the run exists: it goes on without us
    ├── Interrupted (130)              Ctrl-C before any run existed: nothing to detach from
    └── RunLocked (75)                 another process holds this run's lock

Messages say what went wrong and what to do next; the CLI prints them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INVALID = 2
EXIT_INCOMPLETE = 3
EXIT_RUNNING = 4
EXIT_LOCKED = 75
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


class BatchrunnerError(Exception):
    """Base of every error batchrunner raises on purpose."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, object]:
        return {"type": type(self).__name__, "message": self.message, "exit_code": self.exit_code}


@dataclass(frozen=True)
class Problem:
    """One located problem in a user's file: where it is and how to fix it."""

    path: Path | str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else f"{self.path}"
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        return {"file": str(self.path), "line": self.line, "message": self.message}


class InputError(BatchrunnerError):
    """The user's input is wrong; nothing was sent and nothing was written.

    Carries every problem found (up to a cap), so one run of `validate` lists them all.
    """

    exit_code = EXIT_INVALID

    def __init__(self, problems: list[Problem] | str, *, more: int = 0) -> None:
        if isinstance(problems, str):
            problems = [Problem("<command line>", None, problems)] if problems else []
        self.problems = problems
        self.more = more
        lines = [str(p) for p in problems]
        if more:
            lines.append(f"... and {more} more problem(s)")
        super().__init__("\n".join(lines))

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        out["problems"] = [p.to_dict() for p in self.problems]
        out["more"] = self.more
        return out


class SpecError(InputError):
    """A problem in a job spec file."""


class RowError(InputError):
    """A problem in an input rows file."""


class BudgetExceeded(InputError):
    """The job's worst-case cost is above its `budget_usd`."""


class UnknownRun(InputError):
    """A run the ledger does not know. Unlike the API's NotFound, it is the user's mistake: a
    mistyped id or another state home."""


class EventLoopRunning(BatchrunnerError):
    """A sync library function called where an event loop is running: its async twin belongs there."""

    exit_code = EXIT_INVALID


class ApiError(BatchrunnerError):
    """The API (real or emulated) refused or failed a call."""

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None) -> None:
        detail = message
        if status is not None:
            detail = f"{message} (HTTP {status}" + (f", request {request_id})" if request_id else ")")
        super().__init__(detail)
        self.status = status
        self.request_id = request_id


class NotFound(ApiError):
    """The API says the batch or file does not exist."""


class NotDownloadable(ApiError):
    """Only files that skills or the code execution tool create can be downloaded, not uploaded ones."""


class TooLarge(ApiError):
    """A file or request over the API's size limit; a file over 500 MB is refused before any byte is sent."""


class StorageFull(ApiError):
    """The organization's Files API storage is used up; deleting files frees it."""


class SubmitUncertain(ApiError):
    """A batch create may or may not have happened, and reconciling did not settle it."""


class CreateAmbiguous(SubmitUncertain):
    """An unknown create matches two or more batches on the server: batchrunner never guesses which."""


class CreateRefused(ApiError):
    """The API failed every create of a batch, each one proven not to have created it: nothing
    is uncertain, the API is failing; `resume` later tries again."""


class LedgerUnusable(BatchrunnerError):
    """The ledger cannot be used as it is; the message names the file and what to do."""


class ServerDataLost(ApiError):
    """The server's data is gone (the local emulator's folder was deleted): no retry can bring it back."""


class IllegalTransition(BatchrunnerError):
    """A batch state change the declared table (states.TRANSITIONS) does not allow; nothing was changed."""


class StillRunning(BatchrunnerError):
    """Some batches have not ended; come back later with `watch`, `collect` or `resume`."""

    exit_code = EXIT_RUNNING


class Detached(StillRunning):
    """Ctrl-C stopped this process, not the run: its batches go on; `watch` or `resume` comes back to it."""


class Interrupted(BatchrunnerError):
    """Ctrl-C before a run was registered: no batch exists, so there is nothing to come back to."""

    exit_code = EXIT_INTERRUPTED


class RunLocked(BatchrunnerError):
    """Another batchrunner process is working on this run."""

    exit_code = EXIT_LOCKED
