"""The answer cache at work (DESIGN §10): which compiled requests to send, and the cache commands.

While compile renders a new run's requests, a `Planner` looks each one up by its request key
(request_key.py) in batches of keys, so memory stays flat in the number of rows: a cached
request is not sent, a request identical to an earlier row's is sent once (the later rows share
its result), and the rest go on to the request files. Its decisions are streamed to a plan file
that registering the run reads back in one transaction, which copies the cached answers inside
the ledger by the ids the lookups found: only keys and ids pass through Python, never the answers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any


from batchrunner.client import DEFAULT_URL, ResolvedBackend, resolve_backend
from batchrunner.errors import InputError
from batchrunner.crashpoints import crashpoint
from batchrunner.ledger import Ledger, PlannedRequest, ledger_exists
from batchrunner.ledger.cache import CACHED, SENT, SHARED
from batchrunner.ledger.database import LOOKUP_KEYS, utcnow
from batchrunner.request_key import backend_scope, compiled_key

if TYPE_CHECKING:
    from batchrunner.spec import JobSpec

PLAN_NAME = "plan.jsonl"

Emit = Callable[[int, bytes], None]


@dataclass(frozen=True)
class CachePolicy:
    """What a new run does with the cache: `lookup` answers hits from it and sends identical
    requests once (off with `cache: false` or `--no-cache`); `store` caches what comes back
    (off with `cache: false`); answers older than `max_age` do not count."""

    scope: str
    api_version: str
    lookup: bool = True
    store: bool = True
    max_age: timedelta | None = None

    def since(self) -> str | None:
        if self.max_age is None:
            return None
        return utcnow(self.max_age)


class Planner:
    """Decides, request by request in input order, what is sent, shared or answered from the cache.

    `emit(seq, line)` (compile's shard writer) receives the requests to send; `plan`, when given,
    receives one line per request for `read_plan`. `ledger` None (no ledger yet) has no hits.
    """

    def __init__(self, policy: CachePolicy, ledger: Ledger | None, plan: IO[bytes] | None = None) -> None:
        self.policy = policy
        self.ledger = ledger
        self.plan = plan
        self.since = policy.since()
        self.emit: Emit = lambda seq, line: None
        self.pending: list[tuple[int, str, bytes, str]] = []
        self.first_seq: dict[str, int] = {}  # key -> the seq that sends it: one entry per distinct request sent
        self.near: int | None = None  # the id after the last answer found, where the next ones probably are
        self.sent = self.cached = self.duplicates = 0

    @property
    def skipped(self) -> bool:
        """Whether any request is not sent, so the request files are no longer contiguous stretches of the input."""
        return bool(self.cached or self.duplicates)

    def add(self, seq: int, custom_id: str, line: bytes) -> None:
        if not self.policy.store and not self.policy.lookup:
            self.emit(seq, line)
            self._write(SENT, custom_id, b"")
            self.sent += 1
            return
        self.pending.append((seq, custom_id, line, compiled_key(line, custom_id, self.policy.api_version)))
        if len(self.pending) >= LOOKUP_KEYS:
            self.flush()

    def flush(self) -> None:
        hits: dict[str, int] = {}
        if self.policy.lookup and self.ledger is not None and self.pending:
            hits = self.ledger.cached_answers(self.policy.scope, [key for *_, key in self.pending], self.since, self.near)
        for seq, custom_id, line, key in self.pending:
            answer = hits.get(key)
            if answer is not None:
                self.cached += 1
                self.near = answer + 1
                self._write(CACHED, custom_id, b"%d" % answer)
                continue
            if self.policy.lookup:
                first = self.first_seq.get(key)
                if first is not None:
                    self.duplicates += 1
                    self._write(SHARED, custom_id, b"%d" % first)
                    continue
                self.first_seq[key] = seq
            self.sent += 1
            self.emit(seq, line)
            self._write(SENT, custom_id, key.encode() if self.policy.store else b"")
        self.pending.clear()

    def finish(self) -> None:
        self.flush()
        self.first_seq.clear()
        crashpoint("cache.planned")

    def _write(self, kind: bytes, custom_id: str, value: bytes) -> None:
        """One plan line `kind<TAB>custom_id<TAB>value` (no field can hold a tab or a newline:
        custom_ids are [A-Za-z0-9_-], keys hex): a sent request's key, a cached one's answer id,
        or the seq a shared one is sent at."""
        if self.plan is not None:
            self.plan.write(b"%s\t%s\t%s\n" % (kind, custom_id.encode(), value))

    def to_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "cached": self.cached, "duplicates": self.duplicates}


def open_plan(folder: Path) -> IO[bytes]:
    """A new run's plan file, private to its user like the rest of the run folder."""
    fd = os.open(folder / PLAN_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(fd, "wb", buffering=1 << 20)


def read_plan(path: Path) -> Iterator[PlannedRequest]:
    """The planned requests of a run, in input order, as the Planner wrote them."""
    with path.open("rb", buffering=1 << 20) as handle:
        for line in handle:
            kind, custom_id, value = line[:-1].split(b"\t")
            yield kind, custom_id.decode(), value.decode()


def cache_stats(home: Path) -> list[dict[str, Any]]:
    """`batchrunner cache stats`: per backend scope, the answers kept and their size."""
    if not ledger_exists(home):
        return []
    with Ledger(home, read_only=True) as ledger:
        return ledger.cache_stats()


def clear_cache(home: Path, older_than: timedelta | None = None) -> int:
    """`batchrunner cache clear`: forget cached answers (older than an age, or all); how many went."""
    if not ledger_exists(home):
        return 0
    before = None if older_than is None else utcnow(older_than)
    with Ledger(home) as ledger:
        return ledger.clear_cache(before)


def policy_for(spec: JobSpec, backend: ResolvedBackend, *, no_cache: bool = False) -> CachePolicy:
    """A new run's use of the cache: the spec's `cache:`, `--no-cache`, and the backend it runs on."""
    enabled = spec.cache is not False
    return CachePolicy(
        scope=backend_scope(backend.name, backend.base_url, DEFAULT_URL),
        api_version=spec.api_version,
        lookup=enabled and not no_cache,
        store=enabled,
        max_age=spec.cache_max_age(),
    )


@contextmanager
def validation_planner(spec: JobSpec, home: Path) -> Iterator[Planner | None]:
    """For `validate`: a planner that counts what the cache in `home` would answer, reading the
    ledger only; None when the spec turns the cache off or its backend cannot be chosen here."""
    try:
        backend = resolve_backend(None, spec.backend, os.environ)
    except InputError:
        backend = None
    if spec.cache is False or backend is None:
        yield None
        return
    policy = policy_for(spec, backend)
    if not ledger_exists(home):
        yield Planner(policy, None)
        return
    with Ledger(home, read_only=True) as ledger:
        yield Planner(policy, ledger)
