"""HTTP in and out: match a route, check auth and version, call the engine, serialize the answer.

Nothing here decides what happens to a batch; that is the engine's job. This module only speaks the
wire: both SDK dialects (2.x: Bearer, `page`/`next_page`; 0.x: `x-api-key`, `?beta=true`,
`before_id`/`after_id`), the error envelope, the `request-id` header on every answer, multipart
uploads, and files streamed from disk with sendfile. The Models API is served from the same
catalog the engine judges requests by. A strict server (`reject_unknown_fields`) refuses a form
field the API does not define, `purpose` among them, as the real Files API does.
"""

from __future__ import annotations

import re
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from batchrunner.catalog import Catalog
from batchrunner.emulator.engine import MAX_FILE_BYTES, Engine, new_id
from batchrunner.emulator.errors import (
    ApiFailure,
    AuthenticationFailed,
    DataDeleted,
    InvalidRequest,
    NotFound,
    RateLimited,
    RequestTooLarge,
    WireError,
)
from batchrunner.emulator.faults import Faults, rejection
from batchrunner.emulator.ratelimit import RateLimiter
from batchrunner.rules import API_VERSIONS

UPLOAD_FIELDS = ("file", "expires_in_seconds")  # what the Files API defines; `purpose` is ours
LIFECYCLES = ("active", "deprecated", "retired")
MAX_BATCH_BODY = 256 * 1024 * 1024
MAX_UPLOAD_BODY = MAX_FILE_BYTES + 1024 * 1024
MAX_OTHER_BODY = 1024 * 1024
REASONS = {status.value: status.phrase for status in HTTPStatus} | {529: "Overloaded"}


class Headers(dict[str, str]):
    """Request headers by lower-case name; a repeated header keeps its last value."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Headers
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass
class Response:
    """A JSON body, or a file streamed from disk; `drop` closes the connection without an answer."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    file: Path | None = None
    truncate: bool = False
    drop: bool = False


def json_response(document: Any, status: int = 200) -> Response:
    return Response(status, orjson.dumps(document))


@dataclass
class Stats:
    """What GET /_emulator/stats reports: calls per "METHOD /path-template", and create outcomes."""

    calls: Counter[str] = field(default_factory=Counter)
    create_attempts: int = 0
    batches_created: int = 0
    faults_injected: int = 0
    truncated_downloads: int = 0
    rate_limited: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bump(self, name: str, key: str | None = None) -> None:
        with self.lock:
            if key is None:
                setattr(self, name, getattr(self, name) + 1)
            else:
                self.calls[key] += 1


Handler = Callable[["App", Request], Response]
ROUTES: list[tuple[str, str, str]] = [
    ("POST", "/v1/messages/batches", "create_batch"),
    ("GET", "/v1/messages/batches", "list_batches"),
    ("GET", "/v1/messages/batches/{message_batch_id}", "retrieve_batch"),
    ("DELETE", "/v1/messages/batches/{message_batch_id}", "delete_batch"),
    ("POST", "/v1/messages/batches/{message_batch_id}/cancel", "cancel_batch"),
    ("GET", "/v1/messages/batches/{message_batch_id}/results", "batch_results"),
    ("POST", "/v1/files", "upload_file"),
    ("GET", "/v1/files", "list_files"),
    ("GET", "/v1/files/{file_id}", "file_metadata"),
    ("DELETE", "/v1/files/{file_id}", "delete_file"),
    ("GET", "/v1/files/{file_id}/content", "download_file"),
    ("GET", "/v1/models", "list_models"),
    ("GET", "/v1/models/{model_id}", "retrieve_model"),
    ("GET", "/_emulator/health", "emulator_health"),
    ("GET", "/_emulator/stats", "emulator_stats"),
    ("GET", "/_emulator/faults", "emulator_faults"),
    ("POST", "/_emulator/faults", "set_emulator_faults"),
]
COMPILED = [
    (method, re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"), template, name)
    for method, template, name in ROUTES
]


def match(method: str, path: str) -> tuple[str, str, dict[str, str]] | None:
    for route_method, pattern, template, name in COMPILED:
        found = pattern.match(path)
        if found and route_method == method:
            return template, name, found.groupdict()
    return None


def body_limit(method: str, path: str) -> int:
    if method == "POST" and path == "/v1/messages/batches":
        return MAX_BATCH_BODY
    if method == "POST" and path == "/v1/files":
        return MAX_UPLOAD_BODY
    return MAX_OTHER_BODY


class App:
    """One emulator's state behind the routes: engine, faults, stats, and the key it demands."""

    def __init__(
        self, engine: Engine, faults: Faults, api_key: str | None, closing: threading.Event, *,
        reject_unknown_fields: bool = False, limiter: RateLimiter | None = None,
    ) -> None:
        self.engine = engine
        self.limiter = limiter
        self.faults = faults
        self.api_key = api_key
        self.closing = closing
        self.reject_unknown_fields = reject_unknown_fields
        self.stats = Stats()
        self.started = time.time()

    def handle(self, request: Request) -> Response:
        found = match(request.method, request.path)
        if found is None:
            self.stats.bump("calls", f"{request.method} <unknown>")
            raise NotFound(f"Not found: {request.method} {request.path}")
        template, name, request.params = found
        self.stats.bump("calls", f"{request.method} {template}")
        handler: Handler = getattr(App, name)
        if not template.startswith("/v1/"):
            return handler(self, request)  # the control plane is never limited
        data_dir = self.engine.store.data_dir
        if not data_dir.is_dir():
            raise DataDeleted(f"the emulator's data folder {data_dir} was deleted while it ran; its batches and files are gone")
        fault = self.faults.for_call()
        if fault is not None:
            self.stats.bump("faults_injected")
            raise fault
        key = self.authorize(request)
        if self.limiter is None:
            return handler(self, request)
        try:
            limits = self.limiter.take(key)
        except RateLimited:
            self.stats.bump("rate_limited")
            raise
        try:
            response = handler(self, request)
        except WireError as error:
            error.headers = limits | error.headers
            raise
        response.headers = limits | response.headers
        return response

    def authorize(self, request: Request) -> str:
        """Check the key and version; returns the key, which the rate limit is counted per."""
        key = request.headers.get("x-api-key")
        authorization = request.headers.get("authorization", "")
        if not key and authorization.lower().startswith("bearer "):
            key = authorization[7:].strip()
        if not key:
            raise AuthenticationFailed("x-api-key header is required")
        if self.api_key is not None and key != self.api_key:
            raise AuthenticationFailed("invalid x-api-key")
        version = request.headers.get("anthropic-version")
        if not version:
            raise InvalidRequest("anthropic-version: header is required")
        if version not in API_VERSIONS:
            raise InvalidRequest(f'anthropic-version: "{version}" is not a valid version')
        return str(key)

    def snapshot(self) -> dict[str, Any]:
        with self.stats.lock:
            return {
                "calls": dict(sorted(self.stats.calls.items())),
                "create_attempts": self.stats.create_attempts,
                "batches_created": self.stats.batches_created,
                "files_stored": self.engine.store.count_files(),
                "faults_injected": self.stats.faults_injected,
                "truncated_downloads": self.stats.truncated_downloads,
                "rate_limited": self.stats.rate_limited,
                "uptime_seconds": round(time.time() - self.started, 3),
            }

    # message batches

    def create_batch(self, request: Request) -> Response:
        self.stats.bump("create_attempts")
        scripted = self.faults.next_create()
        if scripted is not None and not scripted.applies:
            self.stats.bump("faults_injected")
            raise rejection(scripted.mode)
        betas = tuple(beta.strip() for beta in request.headers.get("anthropic-beta", "").split(",") if beta.strip())
        batch = self.engine.create_batch(request.body, self.faults.list_lag_seconds, request.headers.get("anthropic-version"), betas)
        self.stats.bump("batches_created")
        if scripted is None:
            return json_response(batch)
        self.stats.bump("faults_injected")
        if scripted.mode == "apply_then_500":
            raise ApiFailure("Internal server error (injected by the emulator after creating the batch)")
        if scripted.mode == "apply_then_drop":
            return Response(drop=True)
        self.closing.wait(scripted.stall_seconds)
        return json_response(batch)

    def list_batches(self, request: Request) -> Response:
        after_id, before_id = cursors(request)
        data, has_more = self.engine.list_batches(page_limit(request), after_id, before_id)
        return json_response(page_document(data, has_more, before_id is not None and after_id is None))

    def retrieve_batch(self, request: Request) -> Response:
        return json_response(self.engine.batch(request.params["message_batch_id"]))

    def cancel_batch(self, request: Request) -> Response:
        return json_response(self.engine.cancel_batch(request.params["message_batch_id"]))

    def delete_batch(self, request: Request) -> Response:
        return json_response(self.engine.delete_batch(request.params["message_batch_id"]))

    def batch_results(self, request: Request) -> Response:
        batch_id = request.params["message_batch_id"]
        path = self.engine.results_path(batch_id)
        truncate = self.faults.truncates_download()
        if truncate:
            self.stats.bump("truncated_downloads")
        disposition = f"attachment; filename*=utf-8''{batch_id}_results.jsonl"
        return Response(content_type="application/x-jsonl", file=path, truncate=truncate,
                        headers={"content-disposition": disposition})

    # files

    def upload_file(self, request: Request) -> Response:
        parts = parse_multipart(request.headers.get("content-type", ""), request.body)
        upload = parts.get("file")
        if upload is None:
            raise InvalidRequest("file: Field required")
        if self.reject_unknown_fields:
            for name in parts:
                if name not in UPLOAD_FIELDS:
                    raise InvalidRequest(f"{name}: Extra inputs are not permitted")
        text = {name: str(part.content, "utf-8", "replace") for name, part in parts.items() if name != "file"}
        return json_response(self.engine.upload_file(
            upload.filename, upload.content_type, upload.content, text.get("purpose"), text.get("expires_in_seconds")
        ))

    def list_files(self, request: Request) -> Response:
        ids = request.query.get("ids[]") or request.query.get("ids")
        after_id, before_id = cursors(request)
        data, has_more = self.engine.list_files(page_limit(request), after_id, before_id, ids)
        return json_response(page_document(data, has_more, before_id is not None and after_id is None))

    def file_metadata(self, request: Request) -> Response:
        return json_response(self.engine.file(request.params["file_id"]))

    def delete_file(self, request: Request) -> Response:
        return json_response(self.engine.delete_file(request.params["file_id"]))

    def download_file(self, request: Request) -> Response:
        path, mime_type = self.engine.file_content(request.params["file_id"])
        return Response(content_type=mime_type, file=path)

    # models

    def list_models(self, request: Request) -> Response:
        """Newest first; retired models only when `lifecycle` asks for them, as the API lists."""
        self.models_available()
        wanted = request.query.get("lifecycle[]") or request.query.get("lifecycle") or ["active", "deprecated"]
        unknown = [value for value in wanted if value not in LIFECYCLES]
        if unknown or len(wanted) > 3:
            raise InvalidRequest(f"lifecycle: Input should be up to 3 of 'active', 'deprecated' or 'retired', not {wanted}")
        after_id, before_id = cursors(request)
        data = [entry.info for entry in self.catalog.entries() if entry.lifecycle in wanted]
        ids = [info["id"] for info in data]
        for cursor in (after_id, before_id):
            if cursor is not None and cursor not in ids:
                raise InvalidRequest(f"No model with id {cursor!r} to page from")
        limit = page_limit(request)
        if before_id is not None and after_id is None:
            end = ids.index(before_id)
            page, has_more = data[max(0, end - limit):end], end > limit
        else:
            start = ids.index(after_id) + 1 if after_id is not None else 0
            stop = ids.index(before_id) if before_id is not None else len(data)
            page, has_more = data[start:min(stop, start + limit)], start + limit < stop
        return json_response(page_document(page, has_more, before_id is not None and after_id is None))

    def retrieve_model(self, request: Request) -> Response:
        self.models_available()
        model_id = request.params["model_id"]
        entry = self.catalog.resolve(model_id)
        if entry is None:
            raise NotFound(f"model: {model_id}")
        return json_response(entry.info)

    @property
    def catalog(self) -> Catalog:
        return self.engine.judge.catalog

    def models_available(self) -> None:
        down = self.faults.models_api()
        if down is not None:
            self.stats.bump("faults_injected")
            raise down

    # control plane

    def emulator_health(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    def emulator_stats(self, request: Request) -> Response:
        return json_response(self.snapshot())

    def emulator_faults(self, request: Request) -> Response:
        return json_response(self.faults.describe())

    def set_emulator_faults(self, request: Request) -> Response:
        try:
            document = orjson.loads(request.body or b"{}")
        except orjson.JSONDecodeError:
            raise InvalidRequest("faults: the body must be JSON") from None
        return json_response(self.faults.configure(document))


def cursors(request: Request) -> tuple[str | None, str | None]:
    """`after_id`/`before_id` (0.x and batches) or an opaque `page` token (2.x files), as cursors."""
    after_id, before_id, page = request.arg("after_id"), request.arg("before_id"), request.arg("page")
    if page:
        if not page.startswith("page_after_"):
            raise InvalidRequest(f"page: {page!r} is not a page token from this API")
        after_id = page.removeprefix("page_after_")
    return after_id, before_id


def page_limit(request: Request) -> int:
    raw = request.arg("limit")
    if raw is None:
        return 20
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise InvalidRequest("limit: Input should be an integer between 1 and 1000")
    return int(raw)


def page_document(data: list[dict[str, Any]], has_more: bool, backwards: bool) -> dict[str, Any]:
    """Both pagination dialects at once; each SDK reads its own keys and ignores the others."""
    first_id = data[0]["id"] if data else None
    last_id = data[-1]["id"] if data else None
    next_page = f"page_after_{last_id}" if has_more and not backwards and last_id else None
    return {"data": data, "has_more": has_more, "first_id": first_id, "last_id": last_id, "next_page": next_page}


@dataclass(frozen=True)
class Part:
    filename: str | None
    content_type: str | None
    content: memoryview


DISPOSITION_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^;\s]*))')


def parse_multipart(content_type: str, body: bytes) -> dict[str, Part]:
    """Form parts by name; a `file` part counts whether or not it has a filename (SDK 2.x sends none).
    Contents are views into the body, not copies: a big upload is held once."""
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.startswith("multipart/form-data") or boundary is None:
        raise InvalidRequest("Content-Type must be multipart/form-data with a boundary")
    delimiter = b"--" + boundary.group(1).encode()
    view = memoryview(body)
    parts: dict[str, Part] = {}
    position = body.find(delimiter)
    while position >= 0:
        start = position + len(delimiter)
        position = body.find(delimiter, start)
        end = len(body) if position < 0 else position
        if body.startswith(b"--", start):
            break
        if body.startswith(b"\r\n", start):
            start += 2
        separator = body.find(b"\r\n\r\n", start, end)
        head_end, content_start = (end, end) if separator < 0 else (separator, separator + 4)
        if body.endswith(b"\r\n", content_start, end):
            end -= 2
        headers = {}
        for line in body[start:head_end].decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        params = {m[1]: m[2] if m[2] is not None else m[3] for m in DISPOSITION_PARAM.finditer(headers.get("content-disposition", ""))}
        if "name" in params:
            parts[params["name"]] = Part(params.get("filename"), headers.get("content-type"), view[content_start:end])
    return parts


class RequestHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive with Nagle off: without it every small answer stalls about 40 ms."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "batchrunner-emulator"
    timeout = 300
    raw_requestline: bytes  # set by the stdlib's handle_one_request before parse_request
    parsed_headers: Headers

    def do_GET(self) -> None:
        self.dispatch()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a benchmark makes thousands of calls a second."""

    def parse_request(self) -> bool:
        """The request line and headers, without the stdlib's email parser (a third of a poll's cost)."""
        self.requestline = self.raw_requestline.decode("iso-8859-1").rstrip("\r\n")
        parts = self.requestline.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self.close_connection = True
            self.send_error(400, f"Bad request line {self.requestline!r}")
            return False
        self.command, self.path, self.request_version = parts
        headers = Headers()
        while (line := self.rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("iso-8859-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        self.headers = self.parsed_headers = headers  # type: ignore[assignment]
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" or (self.request_version == "HTTP/1.0" and connection != "keep-alive")
        if headers.get("expect", "").lower() == "100-continue":  # curl asks before sending a big upload
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def dispatch(self) -> None:
        app: App = self.server.app  # type: ignore[attr-defined]
        request_id = new_id("req_011C", 20)
        url = urlsplit(self.path)
        try:
            body = self.read_body(body_limit(self.command, url.path))
            request = Request(self.command, url.path, parse_qs(url.query, keep_blank_values=True), self.parsed_headers, body)
            response = app.handle(request)
        except WireError as error:
            response = Response(error.status, orjson.dumps(error.envelope(request_id)), headers=error.headers)
        except Exception as error:  # noqa: BLE001 - a bug in the emulator: answer like the API would, say so on stderr
            traceback.print_exc(file=sys.stderr)
            failure = ApiFailure(f"Internal server error in the emulator: {type(error).__name__}")
            response = Response(500, orjson.dumps(failure.envelope(request_id)))
        self.send(response, request_id)

    def read_body(self, limit: int) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            return self.read_chunked(limit)
        length = int(self.headers.get("content-length") or 0)
        if length > limit:
            self.close_connection = True
            raise RequestTooLarge(f"Request body is {length} bytes; the limit for this endpoint is {limit} bytes")
        return self.rfile.read(length) if length else b""

    def read_chunked(self, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk_size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if chunk_size == 0:
                while self.rfile.readline().strip():
                    pass
                return b"".join(chunks)
            size += chunk_size
            if size > limit:
                self.close_connection = True
                raise RequestTooLarge(f"Request body is over the limit of {limit} bytes for this endpoint")
            chunks.append(self.rfile.read(chunk_size))
            self.rfile.readline()

    def send(self, response: Response, request_id: str) -> None:
        if response.drop:
            self.close_connection = True
            return
        size = response.file.stat().st_size if response.file is not None else len(response.body)
        head = [
            f"HTTP/1.1 {response.status} {REASONS.get(response.status, '')}",
            f"content-type: {response.content_type}",
            f"content-length: {size}",
            f"request-id: {request_id}",
            *(f"{name}: {value}" for name, value in response.headers.items()),
        ]
        if self.close_connection:
            head.append("connection: close")
        head_bytes = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if response.file is None:
            self.wfile.write(head_bytes + response.body)  # one write: small answers leave in one segment
            return
        self.wfile.write(head_bytes)
        with open(response.file, "rb") as source:
            self.connection.sendfile(source, 0, size // 2 if response.truncate else None)
        if response.truncate:
            self.close_connection = True
