"""Injected faults: which calls fail, which downloads break, and scripted outcomes for the next creates.

Random faults are a pure function of the seed and a per-server call number, so the same seed and the
same sequence of calls fail the same way every time. Scripted create faults (POST /_emulator/faults)
let a test stage exactly the uncertain outcomes a batch client has to reconcile, and `models_down`
takes the Models API away (a 503 on every call) while batches keep working.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from batchrunner.emulator.errors import (
    ApiFailure,
    InvalidRequest,
    Overloaded,
    RateLimited,
    Unavailable,
    WireError,
)

CREATE_MODES = ("apply_then_500", "apply_then_drop", "apply_then_stall", "reject_429", "reject_500", "reject_529")
DEFAULT_STALL_SECONDS = 30.0


def draw(seed: int, stream: str, number: int) -> float:
    """A uniform number in [0, 1) for call `number` of `stream`, the same on every run."""
    digest = hashlib.blake2b(f"{seed}:{stream}:{number}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def rejection(mode: str) -> WireError:
    """The error a fault answers with, before the call has done anything."""
    if mode == "reject_429":
        return RateLimited("Number of requests has exceeded your rate limit (injected by the emulator)", headers=retry_after(0.2))
    if mode == "reject_529":
        return Overloaded("Overloaded (injected by the emulator)")
    return ApiFailure("Internal server error (injected by the emulator)")


def retry_after(seconds: float) -> dict[str, str]:
    """Short waits, so the SDK's retries stay fast: SDK 2.x obeys any value literally."""
    return {"retry-after": str(max(1, round(seconds))), "retry-after-ms": str(round(seconds * 1000))}


@dataclass(frozen=True)
class ScriptedCreate:
    """One staged outcome for the next POST /v1/messages/batches."""

    mode: str
    stall_seconds: float = DEFAULT_STALL_SECONDS

    @property
    def applies(self) -> bool:
        return self.mode.startswith("apply_")

    @classmethod
    def parse(cls, entry: Any) -> ScriptedCreate:
        """`"reject_429"`, or `"apply_then_stall:5"` to stall 5 seconds instead of 30."""
        mode, _, seconds = str(entry).partition(":")
        if mode not in CREATE_MODES:
            raise InvalidRequest(f"create: unknown mode {entry!r}; use one of {', '.join(CREATE_MODES)}")
        if seconds and mode != "apply_then_stall":
            raise InvalidRequest(f"create: only apply_then_stall takes seconds, not {entry!r}")
        try:
            return cls(mode, float(seconds) if seconds else DEFAULT_STALL_SECONDS)
        except ValueError:
            raise InvalidRequest(f"create: {entry!r} needs a number of seconds after the colon") from None


class Faults:
    """Decides, per server, which calls and downloads fail; holds the create script and the list lag."""

    def __init__(self, seed: int, fault_rate: float, truncate_rate: float) -> None:
        self.seed = seed
        self.fault_rate = fault_rate
        self.truncate_rate = truncate_rate
        self.list_lag_seconds = 0.0
        self.models_down = False
        self._script: deque[ScriptedCreate] = deque()
        self._calls = 0
        self._downloads = 0
        self._lock = threading.Lock()

    def for_call(self) -> WireError | None:
        """Call n of this server fails when draw(seed, n) < fault_rate: a 429, 500 or 529."""
        with self._lock:
            self._calls += 1
            number = self._calls
        if not self.fault_rate or draw(self.seed, "call", number) >= self.fault_rate:
            return None
        kind = int(draw(self.seed, "kind", number) * 3)
        return rejection(("reject_429", "reject_500", "reject_529")[kind])

    def truncates_download(self) -> bool:
        with self._lock:
            self._downloads += 1
            number = self._downloads
        return draw(self.seed, "download", number) < self.truncate_rate

    def models_api(self) -> WireError | None:
        """The answer of a Models API that is down: retryable, with a short retry-after."""
        if not self.models_down:
            return None
        return Unavailable("The Models API is unavailable (injected by the emulator)", headers=retry_after(0.05))

    def next_create(self) -> ScriptedCreate | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def configure(self, document: Any) -> dict[str, Any]:
        """Apply a POST /_emulator/faults body: `create` replaces the script, `list_lag_seconds` sets the lag,
        `models_down` (a boolean) takes the Models API away or brings it back."""
        if not isinstance(document, dict) or not set(document) <= {"create", "list_lag_seconds", "models_down"}:
            raise InvalidRequest(
                'faults: send an object with "create" (a list), "list_lag_seconds" (a number) and/or "models_down" (a boolean)'
            )
        if "models_down" in document:
            if not isinstance(document["models_down"], bool):
                raise InvalidRequest("models_down: must be true or false")
            self.models_down = document["models_down"]
        if "create" in document:
            if not isinstance(document["create"], list):
                raise InvalidRequest("create: must be a list of modes")
            script = [ScriptedCreate.parse(entry) for entry in document["create"]]
            with self._lock:
                self._script = deque(script)
        if "list_lag_seconds" in document:
            lag = document["list_lag_seconds"]
            if type(lag) not in (int, float) or lag < 0:
                raise InvalidRequest("list_lag_seconds: must be a number >= 0")
            self.list_lag_seconds = float(lag)
        return self.describe()

    def describe(self) -> dict[str, Any]:
        with self._lock:
            script = [f"{s.mode}:{s.stall_seconds:g}" if s.mode == "apply_then_stall" else s.mode for s in self._script]
        return {
            "create": script,
            "list_lag_seconds": self.list_lag_seconds,
            "models_down": self.models_down,
            "fault_rate": self.fault_rate,
            "truncate_rate": self.truncate_rate,
        }
