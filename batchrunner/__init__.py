"""batchrunner: YAML job spec in, joined results from Anthropic's Message Batches API out."""

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
)

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
]
