"""The API's per-request rules, applied when a batch ends, as the real Batches API applies them.

The judge is `batchrunner.rules.check_request`, the same one `validate` and `submit` use, over
the emulator's model catalog and under the `anthropic-version` the batch's create was sent with:
so a request the emulator lets through is one batchrunner lets through, and the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchrunner.catalog import Catalog
from batchrunner.rules import check_request


@dataclass(frozen=True)
class Refusal:
    """How the request ends: `errored` with this error type and message."""

    error_type: str
    message: str


class Judge:
    """Judges requests against one catalog (the packaged one, or `serve --models FILE`)."""

    def __init__(self, catalog: Catalog | None = None) -> None:
        self.catalog = catalog or Catalog.default()

    def verdict(self, params: dict[str, Any], api_version: str, betas: tuple[str, ...] = ()) -> Refusal | None:
        """None if the API would run the request; else the first rule it breaks."""
        model_id = params["model"]
        model = self.catalog.resolve(model_id)
        if model is None:
            return Refusal("not_found_error", f"model: {model_id}")
        violations = check_request(params, api_version=api_version, model=model, betas=betas)
        if not violations:
            return None
        first = violations[0]
        return Refusal(first.error_type, first.message)
