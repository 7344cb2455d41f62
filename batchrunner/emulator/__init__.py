"""A local stand-in for Anthropic's Message Batches and Files APIs, for the official SDK over loopback.

    with start_in_thread(EmulatorConfig(data_dir=tmp)) as server:
        client = anthropic.Anthropic(base_url=server.base_url, api_key="anything")

Layout, like a moto service: `routes` (HTTP in and out), `engine` (the time-based lifecycle),
`store` (SQLite + blobs), `responder` (deterministic answers and trigger strings), `faults`
(injected failures), `errors` (wire errors). It imports nothing else from batchrunner.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from batchrunner.catalog import Catalog
from batchrunner.emulator.engine import Engine, Settings
from batchrunner.emulator.judge import Judge
from batchrunner.emulator.faults import Faults
from batchrunner.emulator.ratelimit import DEFAULT_REQUESTS_PER_MINUTE, RateLimiter
from batchrunner.emulator.routes import App, RequestHandler
from batchrunner.emulator.store import Store

__all__ = ["EmulatorConfig", "EmulatorServer", "serve_forever", "start_in_thread"]


@dataclass
class EmulatorConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port
    seed: int = 0
    processing_seconds: float = 2.0  # how long a batch takes
    errored_rate: float = 0.0
    expired_rate: float = 0.0
    fault_rate: float = 0.0
    truncate_rate: float = 0.0
    api_key: str | None = None  # None: accept any non-empty key; else require it (401 otherwise)
    models_file: Path | None = None  # a model catalog to serve and judge by, instead of the packaged one
    keep_order: bool = False  # results in request order, instead of the seed's shuffle
    reject_unknown_fields: bool = False  # a strict server: a form field the API does not define is a 400
    requests_per_minute: int | None = DEFAULT_REQUESTS_PER_MINUTE  # per API key; None: no limit


class HTTPServer(ThreadingHTTPServer):
    """Tracks open connections, so closing the server also ends idle keep-alive connections."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, RequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-answer (killed, timed out) is routine, not a server error."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def drop_connections(self) -> None:
        with self.connections_lock:
            open_connections = list(self.connections)
        for connection in open_connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class EmulatorServer:
    """A running emulator: its base URL, its stats, and `close()`. Also a context manager."""

    def __init__(self, config: EmulatorConfig) -> None:
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.config = config
        self._closing = threading.Event()
        self._store = Store(config.data_dir)
        settings = Settings(config.seed, config.processing_seconds, config.errored_rate, config.expired_rate)
        faults = Faults(config.seed, config.fault_rate, config.truncate_rate)
        catalog = Catalog.from_file(config.models_file) if config.models_file is not None else Catalog.default()
        engine = Engine(self._store, settings, judge=Judge(catalog), keep_order=config.keep_order, prepare_ahead=True)
        limiter = RateLimiter(config.requests_per_minute) if config.requests_per_minute is not None else None
        self._app = App(
            engine, faults, config.api_key, self._closing, reject_unknown_fields=config.reject_unknown_fields, limiter=limiter
        )
        self._http = HTTPServer((config.host, config.port), self._app)
        host, port = self._http.server_address[:2]
        self.base_url = f"http://{host!s}:{port}"
        self._thread: threading.Thread | None = None

    def stats(self) -> dict[str, Any]:
        """The same document as GET /_emulator/stats."""
        return self._app.snapshot()

    def serve(self) -> None:
        """Serve in the calling thread until `close()` (from another thread) or Ctrl-C."""
        self._http.serve_forever(poll_interval=0.1)

    def start(self) -> Self:
        """Serve on a background thread; the port is already listening, so callers can connect at once."""
        self._thread = threading.Thread(target=self.serve, name=f"emulator {self.base_url}", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._http.shutdown()
            self._thread.join()
        self._http.server_close()
        self._http.drop_connections()
        self._app.engine.close()
        self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()


def start_in_thread(config: EmulatorConfig) -> EmulatorServer:
    """Start a server on a background thread; it is listening when this returns."""
    return EmulatorServer(config).start()


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve_forever(config: EmulatorConfig, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve in this thread until Ctrl-C or SIGTERM (what process managers send to stop a
    service); `on_ready` gets the base URL once the port is bound."""
    signal.signal(signal.SIGTERM, _stop)
    server = EmulatorServer(config)
    if on_ready is not None:
        on_ready(server.base_url)
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
