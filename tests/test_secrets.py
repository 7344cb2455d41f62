"""The API key goes to the API and nowhere else (issue 7; reliability.md T6), and an object
store's credentials go to the store and nowhere else (issue 17).

A unique canary key drives every path a user can hit: success (with `-v` and the SDK's debug
log), a key the API refuses, a server failing every call, a crash with a traceback (`-v` and
BATCHRUNNER_DEBUG=1), and the local backend with the key set. Each command is a real process,
run with umask 000 so nothing private relies on the user's umask. The canary must appear in no
file under the state home (sampled while the process runs, so the SQLite -wal and -shm are read
while open, and again after), no output, no temp folder, no stdout or stderr. batchrunner
starts no child process, so no argv or environment is passed on: the source has no way to
start one, and procfs shows none while it runs. Everything it creates under the state home is
private (files 0600, folders 0700), and so is the output file.
"""

from __future__ import annotations

import ast
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psycopg
import pytest
from conftest import Bucket
from helpers import read_rows, reviews

from batchrunner.emulator import EmulatorConfig, EmulatorServer, start_in_thread

PACKAGE = Path(__file__).resolve().parent.parent / "batchrunner"
SAMPLE_EVERY_S = 0.05
STARTS_A_PROCESS = {"subprocess", "multiprocessing", "pty", "concurrent.futures.process"}
STARTS_A_PROCESS_CALLS = {"system", "popen", "fork", "forkpty", "spawnv", "spawnve", "spawnl", "posix_spawn", "posix_spawnp",
                          "execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp", "execlpe"}


@dataclass
class Scan:
    """What the canary was looked for in, and where it was found."""

    key: bytes
    hits: list[str] = field(default_factory=list)
    looked_at: set[str] = field(default_factory=set)
    open_wal_seen: bool = False
    loose_modes: list[str] = field(default_factory=list)

    def check(self, where: str, data: bytes) -> None:
        self.looked_at.add(where)
        if self.key in data:
            self.hits.append(where)

    def tree(self, root: Path, *, private: bool) -> None:
        """Read every file under `root` as bytes; with `private`, also hold files to 0600 and folders to 0700."""
        if private and root.is_dir() and root.stat().st_mode & 0o777 != 0o700:
            self.loose_modes.append(f"{root}: {root.stat().st_mode & 0o777:o}")
        for path in sorted(root.rglob("*")):
            try:
                mode = path.stat().st_mode & 0o777
                if path.is_dir():
                    if private and mode != 0o700:
                        self.loose_modes.append(f"{path}: {mode:o}")
                    continue
                data = path.read_bytes()
            except FileNotFoundError:  # a temp file renamed or removed meanwhile
                continue
            if private and mode & 0o077:
                self.loose_modes.append(f"{path}: {mode:o}")
            self.check(str(path), data)


@dataclass
class Tool:
    """Runs batchrunner as a user would, in a real process, and scans everything it leaves."""

    tmp: Path
    key: str
    scan: Scan
    runs: int = 0

    @property
    def home(self) -> Path:
        return self.tmp / "home"

    @property
    def tmpdir(self) -> Path:
        return self.tmp / "tmpdir"

    def env(self, base_url: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "BATCHRUNNER_"))}
        self.tmpdir.mkdir(exist_ok=True)
        return env | {"ANTHROPIC_API_KEY": self.key, "ANTHROPIC_BASE_URL": base_url, "TMPDIR": str(self.tmpdir),
                      "BATCHRUNNER_RECONCILE_WAIT": "1", **extra}

    def __call__(self, *args: str | Path, env: dict[str, str]) -> tuple[int, str]:
        """Run one command, sampling the state home while it runs; returns (exit code, stderr)."""
        self.runs += 1
        logs = self.tmp / "logs"
        logs.mkdir(exist_ok=True)
        out_path, err_path = logs / f"{self.runs}.out", logs / f"{self.runs}.err"
        command = [sys.executable, "-m", "batchrunner", "--home", str(self.home), *map(str, args)]
        assert self.key not in " ".join(command)
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(command, env=env, stdout=out, stderr=err, umask=0)
            while proc.poll() is None:
                self.sample(proc.pid)
                time.sleep(SAMPLE_EVERY_S)
        for stream in (out_path, err_path):
            self.scan.check(f"{' '.join(map(str, args))} ({stream.suffix[1:]})", stream.read_bytes())
        return proc.returncode, err_path.read_text()

    def sample(self, pid: int) -> None:
        if self.home.exists():
            self.scan.open_wal_seen |= (self.home / "ledger.sqlite3-wal").exists()
            self.scan.tree(self.home, private=True)
        assert children(pid) == [], "batchrunner starts no child process"

    def final_scan(self, outputs: list[Path]) -> None:
        self.scan.tree(self.home, private=True)
        self.scan.tree(self.tmpdir, private=False)
        for output in outputs:
            if output.exists():
                assert output.stat().st_mode & 0o077 == 0, f"{output} is readable by others"
                self.scan.check(str(output), output.read_bytes())


def children(pid: int) -> list[str]:
    """Child processes of `pid`, from procfs (Linux); empty where procfs is missing."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += (task / "children").read_text().split()
        except OSError:
            pass
    return found


@pytest.fixture
def canary() -> str:
    return f"sk-ant-api03-CANARY-{secrets.token_hex(16)}"


@pytest.fixture
def tool(tmp_path: Path, canary: str) -> Iterator[Tool]:
    scan = Scan(canary.encode())
    yield Tool(tmp_path, canary, scan)


@pytest.fixture
def server(tmp_path: Path, canary: str) -> Iterator[EmulatorServer]:
    """An emulator that accepts only the canary, with batches slow enough to watch the ledger while open."""
    config = EmulatorConfig(data_dir=tmp_path / "api", processing_seconds=0.5, api_key=canary)
    with start_in_thread(config) as running:
        yield running


def test_success_with_verbose_and_sdk_debug_logs_leaks_nothing(tool: Tool, server: EmulatorServer, make_job: Callable) -> None:
    job = make_job(reviews(6), batch_size=3)
    env = tool.env(server.base_url)

    code, _ = tool("-v", "submit", job.spec, "--backend", "anthropic", "--run-id", "ok", env=env | {"ANTHROPIC_LOG": "debug"})
    assert code == 0
    assert tool("--json", "status", "ok", env=env)[0] == 0

    tool.final_scan([job.output])
    assert len(read_rows(job.output)) == 6
    assert tool.scan.open_wal_seen, "the ledger's -wal was read while the process had it open"
    assert tool.scan.hits == [] and tool.scan.loose_modes == []


def test_a_refused_key_and_a_failing_server_leak_nothing(
    tool: Tool, tmp_path: Path, make_job: Callable
) -> None:
    job = make_job(reviews(3))
    other_key = EmulatorConfig(data_dir=tmp_path / "strict", api_key="sk-ant-api03-someone-else")
    # every call fails; with seed 18 the upload's five tries meet 500, 429, 529, 429, 429, so the backoff stays short
    failing = EmulatorConfig(data_dir=tmp_path / "failing", fault_rate=1.0, seed=18)
    with start_in_thread(other_key) as strict, start_in_thread(failing) as broken:
        code, err = tool("-v", "submit", job.spec, "--backend", "anthropic", "--run-id", "refused", env=tool.env(strict.base_url))
        assert code == 1 and "the API rejected the key" in err and "HTTP 401" in err
        env = tool.env(broken.base_url, BATCHRUNNER_DEBUG="1")
        code, err = tool("-v", "submit", job.spec, "--backend", "anthropic", "--run-id", "failing", env=env)
        assert code == 1 and "(injected by the emulator)" in err
        assert broken.stats()["faults_injected"] >= 2, "the SDK retried before giving up"

    tool.final_scan([job.output])
    assert tool.scan.hits == [] and tool.scan.loose_modes == []


def test_a_crash_with_a_traceback_leaks_nothing(tool: Tool, server: EmulatorServer, make_job: Callable) -> None:
    """An unexpected error under -v and BATCHRUNNER_DEBUG=1 prints its whole traceback."""
    job = make_job(reviews(4))
    env = tool.env(server.base_url, BATCHRUNNER_DEBUG="1")

    code, err = tool("-v", "submit", job.spec, "--backend", "anthropic", "--run-id", "crash",
                     env=env | {"BATCHRUNNER_FAIL_WRITE_AT": "collect.download"})
    assert code == 1 and "Traceback (most recent call last)" in err and "No space left on device" in err
    assert tool("-v", "resume", "crash", env=env)[0] == 0

    tool.final_scan([job.output])
    assert tool.scan.hits == [] and tool.scan.loose_modes == []


def ledger_owned_by_a_new_role(pg_server: str, pg_ledger: str, password: str) -> tuple[str, str, str]:
    """A login role with this password that owns the test's ledger database: (its ledger URL, role, database)."""
    role = f"runner_{secrets.token_hex(4)}"
    database = pg_ledger.rpartition("/")[2]
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'".encode())
        admin.execute(f'ALTER DATABASE "{database}" OWNER TO {role}'.encode())
    return f"postgresql://{role}:{password}@{pg_ledger.partition('@')[2]}", role, database


def test_a_ledger_password_appears_in_no_output_file_or_ledger_row(
    tmp_path: Path, canary: str, server: EmulatorServer, make_job: Callable, pg_server: str, pg_ledger: str
) -> None:
    """The password of a postgresql:// ledger, given on the command line and in BATCHRUNNER_LEDGER,
    through a run under -v and the SDK's debug log, a refused password and an unreachable server."""
    password = f"pgpw-CANARY-{secrets.token_hex(16)}"
    url, role, database = ledger_owned_by_a_new_role(pg_server, pg_ledger, password)
    host_and_db = pg_ledger.partition("@")[2]
    wrong = f"postgresql://{role}:{password}-wrong@{host_and_db}"
    tool = Tool(tmp_path, canary, Scan(password.encode()))
    job = make_job(reviews(6), batch_size=3)
    env = tool.env(server.base_url, BATCHRUNNER_DEBUG="1")

    code, err = tool("-v", "--ledger", url, "submit", job.spec, "--backend", "anthropic", "--run-id", "ok",
                     env=env | {"ANTHROPIC_LOG": "debug"})
    assert code == 0, err
    assert tool("--json", "status", "ok", env=env | {"BATCHRUNNER_LEDGER": url})[0] == 0
    code, err = tool("-v", "runs", env=env | {"BATCHRUNNER_LEDGER": wrong})
    assert code == 1 and f"postgresql://{role}:***@" in err and "password authentication failed" in err
    code, err = tool("-v", "--ledger", url.replace(host_and_db.partition("/")[0], "127.0.0.1:1"), "runs", env=env)
    assert code == 1 and "cannot open the ledger" in err

    tool.final_scan([job.output])
    with psycopg.connect(pg_server.rpartition("/")[0] + f"/{database}") as db:
        tables = [row[0] for row in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for table in tables:
            rows = db.execute(f"SELECT t::text FROM {table} t".encode()).fetchall()
            tool.scan.check(f"ledger table {table}", "\n".join(row[0] for row in rows).encode())
    assert {"runs", "batches", "results"} <= set(tables)
    assert tool.scan.hits == [] and tool.scan.loose_modes == []


def test_the_local_backend_never_sends_the_key_and_keeps_its_emulator_private(tool: Tool, make_job: Callable) -> None:
    job = make_job(reviews(3))
    env = tool.env("http://127.0.0.1:9", BATCHRUNNER_LOCAL_PROCESSING_SECONDS="0.3")  # the URL is for `anthropic` only

    code, _ = tool("-v", "submit", job.spec, "--backend", "local", env=env)

    assert code == 0
    assert (tool.home / "emulator" / "emulator.sqlite3").exists()
    tool.final_scan([job.output])
    assert tool.scan.hits == [] and tool.scan.loose_modes == []


@pytest.mark.parametrize("first", ["files list", "submit with the ledger elsewhere"])
def test_the_state_home_is_0700_whichever_command_makes_it(first: str, tool: Tool, make_job: Callable, tmp_path: Path) -> None:
    """Not only the ledger makes the home: the local emulator of a `files` command does, and with
    the ledger in another folder so does the first run folder. Umask 000, so no umask hides it."""
    env = tool.env("http://127.0.0.1:9", BATCHRUNNER_LOCAL_PROCESSING_SECONDS="0.3")
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere' / 'ledger.sqlite3'}"
    args = ("files", "list", "--backend", "local") if first == "files list" else (
        "--ledger", elsewhere, "submit", make_job(reviews(2)).spec, "--backend", "local"
    )

    code, stderr = tool(*args, env=env)

    assert code == 0, stderr
    tool.final_scan([])
    assert tool.scan.loose_modes == []


def test_batchrunner_has_no_way_to_start_a_child_process() -> None:
    """So no argv or environment (with the key in it) is ever handed on."""
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not {alias.name for alias in node.names} & STARTS_A_PROCESS, path
            elif isinstance(node, ast.ImportFrom):
                assert node.module not in STARTS_A_PROCESS, path
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os":
                assert node.attr not in STARTS_A_PROCESS_CALLS, f"{path}: os.{node.attr}"


def test_object_store_credentials_leak_nowhere(
    tmp_path: Path, canary: str, server: EmulatorServer, make_job: Callable, bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The S3 secret key and session token (a canary of their own) with run data and output in the bucket: under -v,
    the SDK's debug log and BATCHRUNNER_DEBUG=1, on success and with the store unreachable, it is
    in no file of the home, no temp file, no stored object, no output and no stream; the spool
    a host keeps of a run is private like the rest of the home."""
    aws_secret = f"AWS-CANARY-{secrets.token_hex(16)}"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", aws_secret)
    monkeypatch.setenv("AWS_SESSION_TOKEN", aws_secret)  # sent with every request, as a pod's role gives it
    tool = Tool(tmp_path, canary, Scan(aws_secret.encode()))
    job = make_job(reviews(4), batch_size=2)
    job.spec.write_text(job.spec.read_text().replace("output: out/results.jsonl", f"output: {bucket.url('out.jsonl')}"))
    env = tool.env(server.base_url, BATCHRUNNER_DEBUG="1")
    store = ("--store", bucket.url("runs"))

    code, _ = tool("-v", *store, "submit", job.spec, "--backend", "anthropic", "--run-id", "s3", env=env | {"ANTHROPIC_LOG": "debug"})
    assert code == 0
    assert tool("--json", "status", "s3", env=env)[0] == 0
    unreachable = env | {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"}
    code, err = tool("-v", *store, "submit", job.spec, "--backend", "anthropic", "--run-id", "gone", env=unreachable)
    assert code == 1 and f"the bucket {bucket.name} does not exist or cannot be reached" in err  # asked before any batch

    tool.final_scan([])
    for key in bucket.keys():
        tool.scan.check(bucket.url(key), bucket.read(key))
    assert len(bucket.read("out.jsonl").splitlines()) == 4 and orjson.loads(bucket.read("out.jsonl").splitlines()[0])["custom_id"] == "r-1"
    assert tool.scan.hits == [] and tool.scan.loose_modes == []


def test_a_ledger_password_and_store_credentials_on_two_hosts_leak_nowhere(
    tmp_path: Path, canary: str, server: EmulatorServer, make_job: Callable, pg_server: str, pg_ledger: str,
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL and S3 together, as the many-hosts CronJobs use them: one secret is both the
    ledger's password (in --ledger) and the S3 secret key and session token. Host A submits,
    host B (another home) watches and collects, under -v and the SDKs' debug logs: the secret is
    in neither home, no temp file, no stream, no stored object and no ledger row."""
    secret = f"CANARY-{secrets.token_hex(16)}"
    url, _, database = ledger_owned_by_a_new_role(pg_server, pg_ledger, secret)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_SESSION_TOKEN", secret)
    scan = Scan(secret.encode())
    host_a, host_b = (Tool(tmp_path / name, canary, scan) for name in ("a", "b"))
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    job = make_job(reviews(4), batch_size=2)
    job.spec.write_text(job.spec.read_text().replace("output: out/results.jsonl", f"output: {bucket.url('out.jsonl')}"))
    debug = {"BATCHRUNNER_DEBUG": "1", "ANTHROPIC_LOG": "debug"}

    code, err = host_a("-v", "--ledger", url, "--store", bucket.url("runs"), "submit", job.spec, "--backend", "anthropic",
                       "--run-id", "both", "--detach", env=host_a.env(server.base_url, **debug))
    assert code == 4, err
    code, err = host_b("-v", "--ledger", url, "watch", "both", env=host_b.env(server.base_url, **debug))
    assert code == 0, err

    host_a.final_scan([])
    host_b.final_scan([])
    for key in bucket.keys():
        scan.check(bucket.url(key), bucket.read(key))
    with psycopg.connect(pg_ledger) as db:
        for (table,) in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall():
            rows = db.execute(f"SELECT t::text FROM {table} t".encode()).fetchall()
            scan.check(f"ledger table {table}", "\n".join(row[0] for row in rows).encode())
    assert len(bucket.read("out.jsonl").splitlines()) == 4 and any(key.startswith("runs/both/results/") for key in bucket.keys())
    assert scan.hits == [] and scan.loose_modes == []
