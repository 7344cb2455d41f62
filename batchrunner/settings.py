"""Every environment variable batchrunner reads, and the backend names, in one place."""

from __future__ import annotations

import math
import os

from batchrunner.errors import InputError

BACKENDS = ("auto", "local", "anthropic")

HOME = "BATCHRUNNER_HOME"  # the state home (--home)
STORE = "BATCHRUNNER_STORE"  # where new runs keep their data: a folder or an object store URL (--store)
BACKEND = "BATCHRUNNER_BACKEND"  # the backend (--backend)
LEDGER = "BATCHRUNNER_LEDGER"  # the ledger URL (--ledger): sqlite:///path or postgresql://...
DEBUG = "BATCHRUNNER_DEBUG"  # show tracebacks of unexpected errors
LOCAL_PROCESSING_SECONDS = "BATCHRUNNER_LOCAL_PROCESSING_SECONDS"  # how long a batch takes on the local emulator
RECONCILE_WAIT = "BATCHRUNNER_RECONCILE_WAIT"  # how long an uncertain create may take to show in the batch list
CREATE_TIMEOUT = "BATCHRUNNER_CREATE_TIMEOUT"  # seconds before a create call counts as uncertain
CRASH_AT = "BATCHRUNNER_CRASH_AT"  # tests: SIGKILL at this named step (see crashpoints.py)
INTERRUPT_AT = "BATCHRUNNER_INTERRUPT_AT"  # tests: SIGINT (a Ctrl-C) at this named step (see crashpoints.py)
FAIL_WRITE_AT = "BATCHRUNNER_FAIL_WRITE_AT"  # tests: a full disk at this write site (see crashpoints.py)


def seconds(name: str, default: float) -> float:
    """A duration from the environment, or the default; a bad value is the user's to fix."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise InputError(f"{name}={raw!r}: give a finite number of seconds, 0 or more")
    return value


def check_numbers() -> None:
    """Read every numeric setting up front, so a bad one stops a command before anything is written."""
    for name in (LOCAL_PROCESSING_SECONDS, RECONCILE_WAIT, CREATE_TIMEOUT):
        seconds(name, 0.0)
