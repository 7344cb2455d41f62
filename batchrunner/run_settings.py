"""What a run keeps of its spec: the settings later commands need, frozen with the run.

Apart from the spec (and its YAML, templates and request shapes) so that the commands that only
read a run, `collect` and `status` among them, load these few models and nothing of the rest.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class Strict(BaseModel):
    """Spec models: exact types, no unknown keys, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Pricing(Strict):
    """Standard USD per million tokens; batch prices are half of these."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


RetryStatus = Literal["errored", "expired", "canceled"]


def _default_retry_statuses() -> list[RetryStatus]:
    return ["errored", "expired"]


class RetryPolicy(Strict):
    """Which failed requests a run retries by itself, and how many attempts each gets in all."""

    max_attempts: int = Field(default=1, ge=1, le=10)
    statuses: list[RetryStatus] = Field(default_factory=_default_retry_statuses)
    error_types: list[str] | None = None


class PollSettings(Strict):
    """How often a run asks the API about its batches."""

    requests_per_minute: int = Field(default=40, ge=1, le=10_000)
    initial_interval: float = Field(default=2.0, gt=0)
    max_interval: float = Field(default=60.0, gt=0)
    timeout: float | None = Field(default=None, gt=0)

    @field_validator("max_interval")
    @classmethod
    def _not_below_initial(cls, value: float, info: ValidationInfo) -> float:
        initial = info.data.get("initial_interval")
        if initial is not None and value < initial:
            raise ValueError(f"should be at least initial_interval ({initial})")
        return value


class RunSettings(BaseModel):
    """What later commands need from the spec, frozen with the run so editing the spec cannot
    change it; decoded once, where the ledger reads the run.

    Every field has a default, so a ledger written before a field existed still decodes:
    `api_version` None is a run from before it was frozen, spoken to under the SDK's own.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    output_schema: dict[str, Any] | None = None
    keep_request_files: bool = False
    pricing: Pricing | None = None
    retry: RetryPolicy = RetryPolicy()
    poll: PollSettings = PollSettings()
    max_tokens: int | None = None
    api_version: str | None = None
    upload_request_files: bool = True
    cache: bool = True  # store the run's succeeded answers in the answer cache (`cache: false` does not)

    @classmethod
    def decode(cls, raw: bytes | str) -> RunSettings:
        return cls.model_validate_json(raw)

    def encode(self) -> bytes:
        return self.model_dump_json().encode()
