"""Named step boundaries where a test can kill this process with SIGKILL.

Set BATCHRUNNER_CRASH_AT to a point's name (e.g. `submit.created`: the API has made the
batch but its id is not yet in the ledger) and the process dies there, mid-flight, as a
power cut or an OOM kill would. Unset, a crash point is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

from batchrunner.settings import CRASH_AT

POINTS = (
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
    "output.writing",
    "output.written",
)

_TARGET = os.environ.get(CRASH_AT)


def crashpoint(name: str) -> None:
    """Die here if this is the point the environment names."""
    if name == _TARGET:
        os.kill(os.getpid(), signal.SIGKILL)
