"""Wire errors: raising one anywhere in the emulator produces exactly the status and body the SDK parses.

Each class declares its HTTP status and `error.type`; some add a `details.error_code`, which
SDK 2.x uses to pick a narrower exception class (e.g. `FileNotDownloadableError`).
"""

from __future__ import annotations

from typing import Any


class WireError(Exception):
    """An error the API answers with: `{"type":"error","error":{...},"request_id":...}`."""

    status = 500
    type = "api_error"
    error_code: str | None = None

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def envelope(self, request_id: str | None) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.error_code:
            error["details"] = {"error_code": self.error_code}
        return {"type": "error", "error": error, "request_id": request_id}


class InvalidRequest(WireError):
    status = 400
    type = "invalid_request_error"


class FileNotDownloadable(InvalidRequest):
    error_code = "file_not_downloadable"


class AuthenticationFailed(WireError):
    status = 401
    type = "authentication_error"


class NotFound(WireError):
    status = 404
    type = "not_found_error"


class FileExpired(NotFound):
    error_code = "file_expired"


class RequestTooLarge(WireError):
    status = 413
    type = "request_too_large"


class RateLimited(WireError):
    status = 429
    type = "rate_limit_error"


class ApiFailure(WireError):
    status = 500
    type = "api_error"


class Unavailable(WireError):
    status = 503
    type = "api_error"


class DataDeleted(ApiFailure):
    """The data folder was deleted under the running server: nothing it knew can be served again,
    so the answer tells the SDK not to retry (`x-should-retry: false`)."""

    error_code = "emulator_data_deleted"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"x-should-retry": "false"})


class Overloaded(WireError):
    status = 529
    type = "overloaded_error"
