"""batchrunner: a YAML job spec and rows in, joined results from Anthropic's Message Batches API out.

The library is what the CLI calls; a scheduler (cron, Airflow) can call it directly:

    from batchrunner import pipeline
    outcome = pipeline.submit(Path("jobs/eval.yaml"), home=Path(".batchrunner"), detach=True)
    later = pipeline.collect(outcome.run.id, home=Path(".batchrunner"))   # .exit_code: 0, 3 or 4

or over rows in memory, and back as a frame (`run_async` inside an event loop):

    job = batchrunner.Job(name="eval", model="claude-haiku-4-5", max_tokens=64, prompt="Review: {text}")
    frame = batchrunner.run(job, rows, backend="local").to_pandas()

The commands live in `pipeline` (its function names match the stage modules' names, so they
are not re-exported here), each with its async twin (`pipeline.collect_async`, ...). Names
are loaded on first use, so importing the package stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from batchrunner.errors import (
    ApiError,
    BatchrunnerError,
    BudgetExceeded,
    InputError,
    NotFound,
    RowError,
    RunLocked,
    SpecError,
    StillRunning,
    SubmitUncertain,
    UnknownRun,
)

_LAZY = {
    "Job": "library",
    "run": "library",
    "run_async": "library",
    "Events": "pipeline",
    "Outcome": "pipeline",
    "Selection": "retry",
    "JobSpec": "spec",
    "load_spec": "spec",
    "CompileReport": "compile",
    "compile_job": "compile",
    "validate_job": "compile",
    "Ledger": "ledger",
    "EmulatorConfig": "emulator",
    "start_in_thread": "emulator",
}

__all__ = [
    "ApiError",
    "BatchrunnerError",
    "BudgetExceeded",
    "InputError",
    "NotFound",
    "RowError",
    "RunLocked",
    "SpecError",
    "StillRunning",
    "SubmitUncertain",
    "UnknownRun",
    "pipeline",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    if name == "pipeline":
        return import_module("batchrunner.pipeline")
    if name not in _LAZY:
        raise AttributeError(f"module 'batchrunner' has no attribute {name!r}")
    value = getattr(import_module(f"batchrunner.{_LAZY[name]}"), name)
    globals()[name] = value
    return value
