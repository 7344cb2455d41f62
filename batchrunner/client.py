"""The one place that builds `anthropic` clients, picks the backend and translates SDK errors.

Every stage talks to the API through `Api`, whose methods take and return plain dicts and
raise only batchrunner errors; the pipeline's stages await them through `AsyncApi`, whose one
`RateBudget` every call of a command passes, each call in a worker thread. The budget follows
the rate-limit headers of every answer the SDK receives. There is one client code path: the
official SDK over HTTP, to the real API or to the emulator started for the `local` backend.

The SDK takes a second to import, so it is imported inside the functions that call it: the
commands that only read the ledger (`runs`, `status`) never load it.
"""

from __future__ import annotations

import asyncio
import os
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from batchrunner import settings
from batchrunner.atomic import private_folder
from batchrunner.errors import (
    ApiError,
    InputError,
    NotDownloadable,
    NotFound,
    ServerDataLost,
    StorageFull,
    SubmitUncertain,
    TooLarge,
)
from batchrunner.settings import BACKENDS

if TYPE_CHECKING:
    import anthropic

LOCAL_API_KEY = "batchrunner-local"
DEFAULT_URL = "https://api.anthropic.com"
DOWNLOAD_CHUNK = 1 << 20
MODELS_PAGE = 1000
T = TypeVar("T")

LIMIT_HEADER = "anthropic-ratelimit-requests-limit"
REMAINING_HEADER = "anthropic-ratelimit-requests-remaining"
RESET_HEADER = "anthropic-ratelimit-requests-reset"
HeaderListener = Callable[[Mapping[str, str]], None]

# Create answers that prove nothing was created; everything else is an unknown outcome.
_DEFINITE_REFUSALS = (400, 401, 402, 403, 404, 413, 422, 429)


@dataclass(frozen=True)
class ResolvedBackend:
    """Where a command's requests go, decided once per command (`resolve_backend`, or a run's own).

    `base_url` is what a later command on the same run must reuse; `simulated` says `auto`
    chose the local emulator for want of a key, so the user is told the answers are simulated.
    """

    name: str
    base_url: str | None
    simulated: bool = False

    @property
    def label(self) -> str:
        return self.name if self.base_url is None or self.name == "local" else f"{self.name} ({self.base_url})"

    @property
    def files_key(self) -> str:
        """Whose file ids these are: `local` (its emulator moves between ports, its data stays) or the URL."""
        return self.name if self.name == "local" else self.base_url or DEFAULT_URL


def resolve_backend(
    flag: str | None, spec_backend: str | None, env: Mapping[str, str], *, base_url: str | None = None
) -> ResolvedBackend:
    """The one backend resolver: the flag (or BATCHRUNNER_BACKEND, through click) wins over the
    spec; `auto` picks `anthropic` when ANTHROPIC_API_KEY is set, else the simulated emulator.
    The `anthropic` backend needs a key, and goes to `base_url` (a run's own), else to
    ANTHROPIC_BASE_URL when that is set."""
    choice = flag or spec_backend or "auto"
    if choice not in BACKENDS:
        raise InputError(f"unknown backend {choice!r}; use one of: {', '.join(BACKENDS)}")
    if choice == "auto":
        choice = "anthropic" if env.get("ANTHROPIC_API_KEY") else "local"
        if choice == "local":
            return ResolvedBackend("local", None, simulated=True)
    if choice == "local":
        return ResolvedBackend("local", None)
    if not (env.get("ANTHROPIC_API_KEY") or env.get("ANTHROPIC_AUTH_TOKEN")):
        raise InputError(
            "the anthropic backend needs ANTHROPIC_API_KEY in the environment "
            "(or use --backend local to run on the built-in emulator)"
        )
    return ResolvedBackend("anthropic", base_url or env.get("ANTHROPIC_BASE_URL") or None)


def simulated_notice(home: Path) -> str:
    """What a user is told, once per command, when `auto` chose the emulator for want of a key."""
    return f"no ANTHROPIC_API_KEY: running on the built-in emulator (its data in {home / 'emulator'}); the answers are simulated"


@contextmanager
def connect(backend: ResolvedBackend, home: Path, *, api_version: str | None = None) -> Iterator[Api]:
    """An `Api` on the backend, closed afterwards; for `local`, the emulator runs meanwhile.

    The local emulator keeps its data under the state home, so a run detached today is
    found again, and has ended, when a later command starts it on another port.
    `api_version` is the run's `anthropic-version`, sent on every call; None keeps the SDK's own.
    """
    if backend.name != "local":
        api = Api(backend, backend.base_url or DEFAULT_URL, api_version=api_version)
        try:
            yield api
        finally:
            api.close()
        return
    from batchrunner.emulator import EmulatorConfig, start_in_thread

    config = EmulatorConfig(data_dir=home / "emulator", processing_seconds=settings.seconds(settings.LOCAL_PROCESSING_SECONDS, 3.0))
    private_folder(config.data_dir)  # a `files` or `models` command may be the first to make the state home
    server = start_in_thread(config)
    try:
        api = Api(backend, server.base_url, api_version=api_version, known_limit=config.requests_per_minute)
        try:
            yield api
        finally:
            api.close()
    finally:
        server.close()


def _api_key(backend: ResolvedBackend) -> str | None:
    return LOCAL_API_KEY if backend.name == "local" else os.environ.get("ANTHROPIC_API_KEY")


def _message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(exc.message)


def _error_code(exc: anthropic.APIStatusError) -> str | None:
    """`error.details.error_code`, which SDK 2.x uses to pick a narrower class; read for any SDK."""
    error = exc.body.get("error") if isinstance(exc.body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    code = details.get("error_code") if isinstance(details, dict) else None
    return code if isinstance(code, str) else None


def _narrower(exc: anthropic.APIStatusError) -> tuple[type[ApiError], str, str]:
    """The refusals a user can act on, by error code (SDK 2.x) or by status and message (the docs)."""
    code = _error_code(exc)
    if code == "emulator_data_deleted":
        return ServerDataLost, "", ""
    if code == "file_not_downloadable":
        return NotDownloadable, "not downloadable: ", (
            "; only files that skills or the code execution tool create can be downloaded, not uploaded ones"
        )
    if code == "storage_quota_exceeded" or (exc.status_code == 403 and "storage" in _message(exc).lower()):
        return StorageFull, "storage full: ", "; delete files you no longer need (`batchrunner files list`, `files delete ID`)"
    if exc.status_code == 413:
        return TooLarge, "too large: ", ""
    return ApiError, "", ""


@contextmanager
def map_sdk_errors(what: str) -> Iterator[None]:
    """Translate SDK exceptions into batchrunner's, most specific first."""
    import anthropic

    try:
        yield
    except anthropic.NotFoundError as exc:
        raise NotFound(f"{what}: not found: {_message(exc)}", status=404, request_id=exc.request_id) from exc
    except anthropic.AuthenticationError as exc:
        raise ApiError(
            f"{what}: the API rejected the key ({_message(exc)}); check ANTHROPIC_API_KEY",
            status=exc.status_code,
            request_id=exc.request_id,
        ) from exc
    except anthropic.APIStatusError as exc:
        kind, label, hint = _narrower(exc)
        raise kind(f"{what}: {label}{_message(exc)}{hint}", status=exc.status_code, request_id=exc.request_id) from exc
    except anthropic.APIConnectionError as exc:
        raise ApiError(f"{what}: could not reach the API ({exc.__cause__ or exc})") from exc


class Api:
    """Synchronous API calls, as the stages need them.

    One `anthropic-version` for every call: a default header overrides the one the SDK pins,
    so a run created under 2023-06-01 is watched, retried and collected under it too. The
    headers of every HTTP answer, the SDK's own retries and error answers included, go to the
    listeners (`listen`). `known_limit` is the requests per minute the server is known to grant
    before it says so (the local emulator's own), or None.
    """

    def __init__(
        self, backend: ResolvedBackend, url: str, *, max_retries: int = 4, api_version: str | None = None,
        known_limit: int | None = None,
    ) -> None:
        import anthropic

        self.backend = backend
        self.url = url
        self.known_limit = known_limit
        self._listeners: list[HeaderListener] = []
        headers = {"anthropic-version": api_version} if api_version else None
        self.sdk = anthropic.Anthropic(
            api_key=_api_key(backend), base_url=url, max_retries=max_retries, default_headers=headers,
            http_client=anthropic.DefaultHttpxClient(event_hooks={"response": [self._answered]}),
        )

    def listen(self, listener: HeaderListener) -> None:
        self._listeners.append(listener)

    def _answered(self, response: Any) -> None:
        for listener in self._listeners:
            listener(response.headers)

    @property
    def api_version(self) -> str:
        """The `anthropic-version` this client sends."""
        return str(self.sdk.default_headers["anthropic-version"])

    def close(self) -> None:
        self.sdk.close()

    def create_batch(self, body: Iterator[bytes], content_length: int) -> dict[str, Any]:
        """One create call with SDK retries off: the API has no idempotency key.

        A definite refusal raises ApiError; anything that may have created the batch
        (timeout, dropped connection, 408, 409, 5xx) raises SubmitUncertain.
        """
        import anthropic

        client = self.sdk.with_options(max_retries=0, timeout=settings.seconds(settings.CREATE_TIMEOUT, 600.0))
        try:
            batch = client.post(
                "/v1/messages/batches",
                content=body,
                cast_to=anthropic.types.messages.MessageBatch,
                options={"headers": {"Content-Type": "application/json", "Content-Length": str(content_length)}},
            )
        except anthropic.APIStatusError as exc:
            if exc.status_code in _DEFINITE_REFUSALS:
                with map_sdk_errors("create batch"):
                    raise
            raise SubmitUncertain(
                f"create batch: the API answered {exc.status_code} ({_message(exc)}); it may have created the batch",
                status=exc.status_code,
                request_id=exc.request_id,
            ) from exc
        except anthropic.APIConnectionError as exc:
            raise SubmitUncertain(f"create batch: the connection failed ({exc.__cause__ or exc})") from exc
        return batch.model_dump(mode="json")

    def retrieve_batch(self, batch_id: str) -> dict[str, Any]:
        with map_sdk_errors(f"batch {batch_id}"):
            return self.sdk.messages.batches.retrieve(batch_id).model_dump(mode="json")

    def batches_created_since(self, since: datetime) -> list[dict[str, Any]]:
        """Batches newest first, paging back until one was created before `since`."""
        found = []
        with map_sdk_errors("list batches"):
            for batch in self.sdk.messages.batches.list(limit=100):
                if batch.created_at < since:
                    break
                found.append(batch.model_dump(mode="json"))
        return found

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        with map_sdk_errors(f"cancel batch {batch_id}"):
            return self.sdk.messages.batches.cancel(batch_id).model_dump(mode="json")

    def download_results(self, results_url: str, out: BinaryIO, on_chunk: Callable[[], None] = lambda: None) -> int:
        """Stream a results file into `out`; a broken stream raises ApiError so the caller restarts."""
        import httpx2

        written = 0
        with map_sdk_errors("download results"):
            response = self.sdk.get(
                results_url,
                cast_to=httpx2.Response,
                stream=True,
                options={"headers": {"Accept": "application/binary"}},
            )
        try:
            for chunk in response.iter_bytes(DOWNLOAD_CHUNK):
                out.write(chunk)
                written += len(chunk)
                on_chunk()
        except httpx2.TransportError as exc:
            received = response.num_bytes_downloaded
            raise ApiError(f"download results: the stream broke after {received:,} bytes ({exc})") from exc
        finally:
            response.close()
        return written

    def upload_file(self, path: Path, *, filename: str, mime_type: str, purpose: str) -> dict[str, Any]:
        """Upload through the Files API, sending `purpose` as a form field; a server that refuses
        the field gets the file without it. The metadata says which: `purpose_accepted`."""
        try:
            return self._upload(path, filename, mime_type, purpose) | {"purpose_accepted": True}
        except ApiError as exc:
            if not _is_purpose_refusal(exc):
                raise
        return self._upload(path, filename, mime_type, None) | {"purpose_accepted": False}

    def _upload(self, path: Path, filename: str, mime_type: str, purpose: str | None) -> dict[str, Any]:
        extra = {"purpose": purpose} if purpose else None
        with map_sdk_errors(f"upload {path}"), path.open("rb") as handle:
            meta = self.sdk.files.upload(file=(filename, handle, mime_type), extra_body=extra)
        return meta.model_dump(mode="json")

    def delete_file(self, file_id: str) -> dict[str, Any]:
        with map_sdk_errors(f"delete file {file_id}"):
            return self.sdk.files.delete(file_id).model_dump(mode="json")

    def file_metadata(self, file_id: str) -> dict[str, Any]:
        with map_sdk_errors(f"file {file_id}"):
            return self.sdk.files.retrieve_metadata(file_id).model_dump(mode="json")

    def files_page(self, *, limit: int, after_id: str | None = None, before_id: str | None = None) -> dict[str, Any]:
        """One page of files, newest first, as `{data, has_more, first_id, last_id}` in either dialect.

        SDK 2.x lists with an opaque forward `page` cursor and has no `after_id`/`before_id`,
        so those go in the query; `has_more`/`first_id`/`last_id` come from the 0.x-dialect
        fields when the server sends them, else from the page's own ids and, paging forward only,
        `next_page` (a forward cursor: it says nothing about newer files).
        """
        query = {name: value for name, value in (("after_id", after_id), ("before_id", before_id)) if value}
        with map_sdk_errors("list files"):
            page = self.sdk.files.list(limit=limit, extra_query=query or None)
        extra = page.model_extra or {}
        data = [meta.model_dump(mode="json") for meta in page.data]
        return {
            "data": data,
            "has_more": bool(extra.get("has_more")) or (before_id is None and page.has_next_page()),
            "first_id": extra.get("first_id") or (data[0]["id"] if data else None),
            "last_id": extra.get("last_id") or (data[-1]["id"] if data else None),
        }

    def iter_files(self, *, limit: int, after_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Every file from newest (or from after `after_id`) to oldest, through the SDK's cursor paging."""
        with map_sdk_errors("list files"):
            for meta in self.sdk.files.list(limit=limit, extra_query={"after_id": after_id} if after_id else None):
                yield meta.model_dump(mode="json")

    def retrieve_model(self, model_id: str) -> dict[str, Any]:
        """GET /v1/models/{id}: the ModelInfo (an alias resolves to its model); unknown is NotFound."""
        with map_sdk_errors(f"model {model_id}"):
            return self.sdk.models.retrieve(model_id).model_dump(mode="json")

    def list_models(self) -> list[dict[str, Any]]:
        """Every model the backend offers, newest first, through the SDK's paging."""
        with map_sdk_errors("list models"):
            return [info.model_dump(mode="json") for info in self.sdk.models.list(limit=MODELS_PAGE)]

    def download_file(self, file_id: str, out: BinaryIO) -> int:
        """Stream a file's content into `out`; a broken stream raises ApiError."""
        import httpx2

        written = 0
        with map_sdk_errors(f"download file {file_id}"), self.sdk.files.with_streaming_response.download(file_id) as response:
            try:
                for chunk in response.iter_bytes(DOWNLOAD_CHUNK):
                    out.write(chunk)
                    written += len(chunk)
            except httpx2.TransportError as exc:
                received = response.http_response.num_bytes_downloaded
                raise ApiError(f"download file {file_id}: the stream broke after {received:,} bytes ({exc})") from exc
        return written


def backoff(attempt: int, *, first: float, cap: float) -> float:
    """Seconds to wait before try `attempt + 1`: doubling from `first` to `cap`, with jitter so
    many clients that failed together do not come back together."""
    return min(cap, first * 2.0 ** (attempt - 1)) * random.uniform(0.75, 1.25)


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) and number >= 0 else None


def _timestamp(value: str | None) -> float | None:
    """An RFC 3339 time (`-reset`) as a Unix timestamp, or None."""
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None
    except ValueError:
        return None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks us to wait: `retry-after-ms`, else `retry-after` in seconds."""
    millis = _number(headers.get("retry-after-ms"))
    return millis / 1000.0 if millis is not None else _number(headers.get("retry-after"))


class RateBudget:
    """How fast a command may call the API: a token bucket that follows the server's own.

    It starts at a rate known to be safe (the spec's poll.requests_per_minute, or the local
    emulator's limit), then each answer's headers move it, never above what the server grants:
    `-limit` sets the rate and the burst, `-remaining` is the requests in hand (the server's
    count, which knows other clients of the key), `-reset` caps the refill at what is missing
    by then, and a `retry-after` (a 429) holds every call until it has passed. Answers arrive in worker threads, hence the lock. `waits` counts the calls
    that had to wait; `limit` is the requests per minute it allows now.
    """

    def __init__(self, requests_per_minute: int, clock: Callable[[], float] = time.time) -> None:
        self.limit = requests_per_minute
        self.waits = 0
        self._clock = clock
        self._tokens = float(requests_per_minute)
        self._per_second = requests_per_minute / 60.0
        self._updated = clock()
        self._not_before = 0.0
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(float(self.limit), self._tokens + elapsed * self._per_second)
        self._updated = now

    def take(self) -> float:
        """Take one request and return 0, or return the seconds to wait before asking again."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            if now < self._not_before:
                return self._not_before - now
            if self._tokens < 1.0:
                return (1.0 - self._tokens) / self._per_second
            self._tokens -= 1.0
            return 0.0

    def observe(self, headers: Mapping[str, str]) -> None:
        """Follow one answer's rate-limit headers; an answer without them changes nothing."""
        limit = _number(headers.get(LIMIT_HEADER))
        remaining = _number(headers.get(REMAINING_HEADER))
        reset = _timestamp(headers.get(RESET_HEADER))
        retry_after = _retry_after(headers)
        with self._lock:
            now = self._clock()
            self._refill(now)
            if limit is not None and limit >= 1:
                self.limit = int(limit)
                self._per_second = self.limit / 60.0
                self._tokens = min(self._tokens, float(self.limit))
            if remaining is not None:
                self._tokens = min(remaining, float(self.limit))
                if reset is not None and reset > now and remaining < self.limit:
                    self._per_second = min(self.limit / 60.0, (self.limit - remaining) / (reset - now))
            if retry_after is not None:
                self._not_before = max(self._not_before, now + retry_after)
                self._tokens = min(self._tokens, 0.0)


class AsyncApi:
    """Every API call of a command, awaited: one rate budget, then the `Api` call in a worker thread.

    The budget is the only one a command has, so live check, uploads, creates, polls,
    downloads and deletes together stay under what the server grants. It starts at
    `requests_per_minute`, or at the server's known limit (the local emulator's), and follows
    every answer. `acquired` counts the calls that passed it.
    """

    def __init__(self, api: Api, requests_per_minute: int) -> None:
        self._api = api
        self.budget = RateBudget(api.known_limit or requests_per_minute)
        api.listen(self.budget.observe)
        self.acquired = 0

    @property
    def backend(self) -> ResolvedBackend:
        return self._api.backend

    @property
    def api_version(self) -> str:
        return self._api.api_version

    async def _call(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        wait = self.budget.take()
        if wait > 0:
            self.budget.waits += 1
            while wait > 0:
                await asyncio.sleep(wait)
                wait = self.budget.take()
        self.acquired += 1
        return await asyncio.to_thread(call, *args, **kwargs)

    async def create_batch(self, body: Iterator[bytes], content_length: int) -> dict[str, Any]:
        return await self._call(self._api.create_batch, body, content_length)

    async def retrieve_batch(self, batch_id: str) -> dict[str, Any]:
        return await self._call(self._api.retrieve_batch, batch_id)

    async def batches_created_since(self, since: datetime) -> list[dict[str, Any]]:
        return await self._call(self._api.batches_created_since, since)

    async def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        return await self._call(self._api.cancel_batch, batch_id)

    async def download_results(self, results_url: str, out: BinaryIO, on_chunk: Callable[[], None]) -> int:
        return await self._call(self._api.download_results, results_url, out, on_chunk)

    async def upload_file(self, path: Path, *, filename: str, mime_type: str, purpose: str) -> dict[str, Any]:
        return await self._call(self._api.upload_file, path, filename=filename, mime_type=mime_type, purpose=purpose)

    async def delete_file(self, file_id: str) -> dict[str, Any]:
        return await self._call(self._api.delete_file, file_id)

    async def file_metadata(self, file_id: str) -> dict[str, Any]:
        return await self._call(self._api.file_metadata, file_id)

    async def retrieve_model(self, model_id: str) -> dict[str, Any]:
        return await self._call(self._api.retrieve_model, model_id)

    async def list_models(self) -> list[dict[str, Any]]:
        return await self._call(self._api.list_models)


def _is_purpose_refusal(error: ApiError) -> bool:
    """A server that does not know the `purpose` form field says so with a 400 naming it.

    Only the server's own message counts: ours also holds the upload's path, which may
    contain the word.
    """
    import anthropic

    cause = error.__cause__
    return (
        error.status == 400
        and isinstance(cause, anthropic.APIStatusError)
        and "purpose" in _message(cause).lower()
    )
