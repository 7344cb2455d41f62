"""Named step boundaries where a test can kill this process, and write sites where it can fill the disk.

Set BATCHRUNNER_CRASH_AT to a point's name (e.g. `submit.created`: the API has made the
batch but its id is not yet in the ledger) and the process dies there, mid-flight, as a
power cut or an OOM kill would. BATCHRUNNER_INTERRUPT_AT sends this process a SIGINT there
instead, as a Ctrl-C would. Unset, a crash point is two comparisons.

Set BATCHRUNNER_FAIL_WRITE_AT to a write site's name and the write there fails as on a full
disk; `ledger.commit@N` lets a ledger's first N-1 commits through (a disk that fills up mid-run).
It is read at each write, so a test can also set it for one in-process command.

An object store (store/) has its own: the crash point `store.uploading` (after each part of an
upload) and the write sites `store.publish@N` (a run's Nth compiled file), `store.upload`,
`store.download` and `output.write.upload`. They are not in POINTS or WRITE_SITES, whose suites
run on the local store, where these are never reached.
"""

from __future__ import annotations

import errno
import os
import signal

from batchrunner.settings import CRASH_AT, FAIL_WRITE_AT, INTERRUPT_AT

POINTS = (
    "cache.planned",
    "compile.done",
    "run.registered",
    "submit.uploaded",
    "submit.intent",
    "submit.created",
    "submit.recorded",
    "poll.polled",
    "collect.start",
    "collect.downloading",
    "collect.downloaded",
    "collect.ingesting",
    "collect.ingested",
    "collect.cached",
    "output.writing",
    "output.written",
)

_TARGET = os.environ.get(CRASH_AT)
_INTERRUPT = os.environ.get(INTERRUPT_AT)


def crashpoint(name: str) -> None:
    """Die here if this is the point the environment names; or get a Ctrl-C here (SIGINT)."""
    if name == _TARGET:
        os.kill(os.getpid(), signal.SIGKILL)
    if name == _INTERRUPT:
        os.kill(os.getpid(), signal.SIGINT)


WRITE_SITES = (
    "compile.write",  # the request files and the rows file, in the run folder
    "ledger.commit",  # a ledger transaction, just before its COMMIT
    "collect.download",  # a batch's results, streamed to a temp file
    "output.write",  # the joined output
    "retry.write",  # the request files of a retry attempt
)


def failpoint(name: str, nth: int = 1) -> None:
    """Fail this write as a full disk does if the environment names its site (and, for `site@N`,
    if this is at least the Nth write there as the caller counts them).

    The error is what write() and fsync() raise on a full disk: ENOSPC with no file name,
    so saying which file it was stays the caller's job, as it is for a real one.
    """
    site, _, from_nth = os.environ.get(FAIL_WRITE_AT, "").partition("@")
    if name == site and nth >= int(from_nth or 1):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
