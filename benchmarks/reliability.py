"""What the fault and crash sweeps share: a job on disk, the real CLI as a subprocess, and the invariant checks.

The sweep scripts (`sweep_faults.py`, `sweep_crashes.py`) and their CI slices in tests/ call the
same functions, so a figure in the README and a green test check exactly the same things.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from batchrunner import pipeline
from batchrunner.emulator import EmulatorServer
from batchrunner.errors import NotFound

RUN_ID = "sweep"
TERMINAL = {"succeeded", "errored", "expired", "canceled"}
LEDGER = "ledger.sqlite3"
CLI_TIMEOUT_S = 300.0  # a hang guard only; a normal run takes seconds


@dataclass(frozen=True)
class Job:
    """A job spec and its rows on disk, and the custom_ids the output must hold, in order."""

    spec: Path
    output: Path
    ids: list[str]


def write_job(folder: Path, texts: list[str], *, batch_size: int, extra: str = "") -> Job:
    """One row per text (ids r-1, r-2, ...), and a spec that polls fast and lets the run make
    600 calls a minute: the emulator has no rate limit, and the default 40 would only add waiting."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"r-{n}" for n in range(1, len(texts) + 1)]
    rows = folder / "rows.jsonl"
    rows.write_bytes(b"".join(orjson.dumps({"id": i, "text": t}) + b"\n" for i, t in zip(ids, texts, strict=True)))
    spec = folder / "job.yaml"
    spec.write_text(
        "name: sweep\n"
        "model: claude-haiku-4-5\n"
        "max_tokens: 32\n"
        "input: rows.jsonl\n"
        "id_field: id\n"
        'prompt: "Review: {text}"\n'
        "output: out/results.jsonl\n"
        f"batch_size: {batch_size}\n"
        "poll: {initial_interval: 0.1, max_interval: 0.5, requests_per_minute: 600}\n" + extra
    )
    return Job(spec=spec, output=folder / "out" / "results.jsonl", ids=ids)


def cli_env(server: EmulatorServer) -> dict[str, str]:
    """The user's environment pointed at the emulator; nothing of the caller's batchrunner settings
    leaks in but the ledger (BATCHRUNNER_LEDGER=postgresql://... sweeps a PostgreSQL ledger)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "BATCHRUNNER_"))}
    env.update(
        ANTHROPIC_BASE_URL=server.base_url,
        ANTHROPIC_API_KEY="sk-sweep-key",
        BATCHRUNNER_RECONCILE_WAIT="1",  # an uncertain create settles in a second, not ten minutes
        BATCHRUNNER_DEBUG="1",  # an unexpected error prints its traceback, which the sweeps count as a bug
    )
    if os.environ.get("BATCHRUNNER_LEDGER"):
        env["BATCHRUNNER_LEDGER"] = os.environ["BATCHRUNNER_LEDGER"]
    return env


def cli_command(home: Path, *args: str | Path) -> list[str]:
    return [sys.executable, "-m", "batchrunner", "--home", str(home), *map(str, args)]


def cli(home: Path, env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_command(home, *args), check=False, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


def ledger_status(home: Path) -> dict[str, Any]:
    """What `batchrunner --json status sweep` prints: what batchrunner itself says it did. Called as
    the library function the command wraps, which saves a process start (about a second) per check.
    A run that was never registered knows no batch."""
    try:
        return pipeline.status(RUN_ID, home=home).to_dict()
    except NotFound:
        return {"batches": []}


def duplicate_batches(server: EmulatorServer, status: dict[str, Any]) -> int:
    """Batches the emulator made beyond those the ledger knows: each one would be paid for twice."""
    known = sum(1 for batch in status["batches"] if batch["batch_id"])
    return server.stats()["batches_created"] - known


def rows_lost(path: Path, ids: list[str]) -> int:
    """Input rows that are not in the output with a terminal status."""
    if not path.exists():
        return len(ids)
    done = set()
    for line in path.read_bytes().splitlines():
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if row.get("status") in TERMINAL:
            done.add(row.get("custom_id"))
    return len(set(ids) - done)


def output_problems(path: Path, ids: list[str], *, final: bool, previous: bytes | None = None) -> list[str]:
    """The output is absent, the previous version byte for byte, or whole: every line parses, every
    input row once, in input order. `final` also asks for it to exist with a terminal status on every row."""
    if not path.exists():
        return ["no output file"] if final else []
    data = path.read_bytes()
    if previous is not None and data == previous:
        return []
    try:
        rows = [orjson.loads(line) for line in data.splitlines()]
    except orjson.JSONDecodeError as exc:
        return [f"torn output: a line does not parse ({exc})"]
    if not data.endswith(b"\n"):
        return ["torn output: no newline at the end"]
    got = [row.get("custom_id") for row in rows]
    if got != ids:
        missing = sorted(set(ids) - set(got))[:5]
        return [f"output holds {len(got)} rows for {len(ids)} inputs, not each once in order (missing e.g. {missing})"]
    if final:
        open_rows = [row["custom_id"] for row in rows if row.get("status") not in TERMINAL]
        if open_rows:
            return [f"{len(open_rows)} row(s) without a terminal status, e.g. {open_rows[0]}"]
    return []


def exit_code_problems(code: int, path: Path) -> list[str]:
    """0 when every output row succeeded, 3 when some did not."""
    statuses = [orjson.loads(line)["status"] for line in path.read_bytes().splitlines()] if path.exists() else []
    expected = 0 if statuses and all(s == "succeeded" for s in statuses) else 3
    return [] if code == expected else [f"exit code {code}, expected {expected} for this output"]


def leftovers(path: Path) -> list[str]:
    """Temp files beside the output that a finished run should have swept away."""
    if not path.parent.exists():
        return []
    stray = [p.name for p in path.parent.iterdir() if p.name != path.name]
    return [f"left beside the output: {stray}"] if stray else []


def integrity(home: Path) -> str:
    """SQLite's own verdict on the ledger, read-only so the check cannot repair anything."""
    with closing(sqlite3.connect(f"file:{home / LEDGER}?mode=ro", uri=True)) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


def traceback_problems(stderr: str) -> list[str]:
    """With BATCHRUNNER_DEBUG=1 only an unexpected error prints a traceback: that is a bug."""
    return ["unexpected error (traceback on stderr)"] if "Traceback (most recent call last)" in stderr else []
