"""One session per command (issue 13): the emulator starts once, every API call passes one
limiter, `cancel` takes the run's lock, and Ctrl-C while attachments are deleted detaches."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from click.testing import Result
from helpers import read_rows

from batchrunner import emulator as emulator_module
from batchrunner import pipeline
from batchrunner.client import AsyncApi
from batchrunner.emulator import EmulatorServer
from batchrunner.ledger import run_lock

PDFS = 4
ATTACH = "attachments:\n  - field: doc\n"


def attachment_job(make_job: Callable[..., Any], extra: str = "") -> Any:
    rows = [{"id": f"r-{i}", "text": f"summary {i}", "doc": f"docs/report-{i % PDFS}.pdf"} for i in range(1, 9)]
    job = make_job(rows, extra=ATTACH + extra)
    docs = job.rows.parent / "docs"
    docs.mkdir()
    for k in range(PDFS):
        (docs / f"report-{k}.pdf").write_bytes(b"%PDF-1.4\n" + f"% report {k}\n".encode() * (k + 1) + b"%%EOF\n")
    return job


def test_a_local_submit_with_attachments_starts_the_emulator_once(make_job, tmp_path, monkeypatch):
    starts = []
    real_start = emulator_module.start_in_thread

    def counted(config: Any) -> EmulatorServer:
        starts.append(config.data_dir)
        return real_start(config)

    monkeypatch.setattr(emulator_module, "start_in_thread", counted)
    job = attachment_job(make_job)

    outcome = pipeline.submit(job.spec, home=tmp_path / "state", backend="local")

    assert outcome.exit_code == 0
    assert {row["status"] for row in read_rows(job.output)} == {"succeeded"}
    assert starts == [tmp_path / "state" / "emulator"], "live check, uploads, creates, polls and collect share one emulator"


def test_every_api_call_of_a_submit_passes_one_limiter(make_job, tmp_path, emulator, monkeypatch):
    """Live check, uploads, creates, polls, downloads and deletes: one facade, and each call the
    server saw was one acquisition of its limiter."""
    monkeypatch.setenv("ANTHROPIC_BASE_URL", emulator.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-key")
    facades: list[AsyncApi] = []
    real_init = AsyncApi.__init__

    def recorded(self: AsyncApi, api: Any, requests_per_minute: int) -> None:
        real_init(self, api, requests_per_minute)
        facades.append(self)

    monkeypatch.setattr(AsyncApi, "__init__", recorded)
    job = attachment_job(make_job, "keep_attachments: false\npoll: {requests_per_minute: 60, initial_interval: 0.05, max_interval: 0.3}\n")
    job.spec.write_text(job.spec.read_text().replace("poll: {initial_interval: 0.05, max_interval: 0.3}\n", ""))

    outcome = pipeline.submit(job.spec, home=tmp_path / "state", backend="anthropic")

    assert outcome.exit_code == 0
    calls = sum(n for key, n in emulator.stats()["calls"].items() if " /v1/" in key)
    assert len(facades) == 1
    assert facades[0].acquired == calls
    assert calls >= 1 + PDFS + 1 + 1 + 1 + PDFS, "model, uploads, request file, create, poll(s), results, deletes"


def test_a_generated_run_id_another_process_holds_gets_the_next_number(make_job, run_cli: Callable[..., Result], isolated_env):
    """Two cron pods submitting one job in the same second: the second gets a run of its own
    (`-2`), rather than exiting 75 on the first one's lock or continuing the first one's run."""
    job = make_job([{"id": "r-1", "text": "fine"}], name="nightly")
    now = datetime.now(UTC)
    seconds = [(now + timedelta(seconds=k)).strftime("%Y%m%dT%H%M%SZ") for k in range(-1, 60)]

    with ExitStack() as other_pod:
        for second in seconds:
            other_pod.enter_context(run_lock(isolated_env, f"nightly-{second}"))
        result = run_cli("--json", "submit", job.spec, "--detach")

    assert result.exit_code == 4, result.stderr
    run_id = orjson.loads(result.stdout)["run"]["id"]
    assert any(run_id == f"nightly-{second}-2" for second in seconds), run_id
    assert "continuing" not in result.stderr


def test_cancel_takes_the_runs_lock(make_job, run_cli: Callable[..., Result], tmp_path, monkeypatch):
    monkeypatch.setenv("BATCHRUNNER_LOCAL_PROCESSING_SECONDS", "60")  # still running when cancel comes, however busy the machine
    job = make_job([{"id": "r-1", "text": "fine"}])
    detached = run_cli("submit", job.spec, "--run-id", "busy", "--detach")
    assert detached.exit_code == 4, detached.stderr
    home = Path(os.environ["BATCHRUNNER_HOME"])

    with run_lock(home, "busy"):
        refused = run_cli("cancel", "busy")

    assert refused.exit_code == 75, refused.stderr
    assert "run busy is being worked on by pid" in refused.stderr
    assert "cancel requested" not in refused.stderr
    after = run_cli("cancel", "busy")
    assert after.exit_code != 75 and "cancel requested" in after.stderr, "once the lock is free it goes through"


def test_ctrl_c_while_attachments_are_deleted_detaches_and_collect_deletes_the_rest(make_job, emulator, tmp_path):
    job = attachment_job(make_job, "keep_attachments: false\n")
    home = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "BATCHRUNNER_"))}
    env.update(ANTHROPIC_BASE_URL=emulator.base_url, ANTHROPIC_API_KEY="sk-test-key")

    def batchrunner(*args: str | Path, **extra: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "batchrunner", "--home", str(home), *map(str, args)]
        return subprocess.run(command, check=False, env=env | extra, capture_output=True, text=True, timeout=120,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    stopped = batchrunner("submit", job.spec, "--run-id", "tidy", BATCHRUNNER_INTERRUPT_AT="attachments.deleted")

    assert stopped.returncode == 4, stopped.stderr
    assert "detached from run tidy; its batches have ended. `batchrunner collect tidy` finishes it" in stopped.stderr
    assert "Traceback" not in stopped.stderr and "error:" not in stopped.stderr
    assert {row["status"] for row in read_rows(job.output)} == {"succeeded"}, "the output was written before"

    again = batchrunner("collect", "tidy")

    assert again.returncode == 0, again.stderr
    assert [meta for meta in emulator_files(emulator) if meta["filename"].startswith("report-")] == []


def emulator_files(server: EmulatorServer) -> list[dict[str, Any]]:
    import anthropic

    return [meta.model_dump() for meta in anthropic.Anthropic(base_url=server.base_url, api_key="k").files.list(limit=1000)]


def test_a_run_from_an_older_ledger_decodes_with_the_defaults_of_what_it_lacks():
    from batchrunner.spec import RunSettings

    old = b'{"output_schema": null, "keep_request_files": false, "pricing": null,' \
          b' "retry": {"max_attempts": 2, "statuses": ["errored"]},' \
          b' "poll": {"requests_per_minute": 30, "initial_interval": 1, "max_interval": 30.0}, "max_tokens": 64}'

    settings = RunSettings.decode(old)

    assert settings.api_version is None, "spoken to under the SDK's own anthropic-version, as before"
    assert settings.upload_request_files is True
    assert (settings.retry.max_attempts, settings.retry.error_types) == (2, None)
    assert (settings.poll.requests_per_minute, settings.poll.initial_interval, settings.poll.timeout) == (30, 1.0, None)
    assert RunSettings.decode(settings.encode()) == settings
